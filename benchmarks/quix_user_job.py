"""Baseline (e): the job as a Quix Streams user would write it, without any of cdrpipe's code.

``json.loads`` per record, ``phonenumbers.parse`` cached per raw string, an
``hmac`` per number, rows kept as dicts and written with ``pyarrow`` every
:data:`FILE_ROWS` records. It is what a skeptic would put next to cdrpipe:
the same output columns that matter (E.164 pseudonyms, call facts), none of
cdrpipe's batching. Started by the throughput benchmark like
:mod:`benchmarks.quix_job` (``BENCH_APP_ID``, ``BENCH_TOPIC``, ``BENCH_TARGET``,
``BENCH_OUT``); it writes ``done.json`` when the target count is written.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import secrets
import time
from pathlib import Path
from typing import Any

import phonenumbers
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.quix_job import run_quix

FILE_ROWS = 100_000
KEY = secrets.token_bytes(32)


@functools.lru_cache(maxsize=262_144)
def pseudonym(raw: str) -> str | None:
    """The keyed pseudonym of a number as a user would compute it (None if it does not parse)."""
    try:
        parsed = phonenumbers.parse(raw, "BE")
    except phonenumbers.NumberParseException:
        return None
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return hmac.new(KEY, e164.encode(), hashlib.sha256).hexdigest()[:32]


class UserJob:
    """Rows as dicts, written to Parquet every :data:`FILE_ROWS` records."""

    def __init__(self, out: Path, target: int) -> None:
        self.out, self.target = out, target
        self.rows: list[dict[str, Any]] = []
        self.count = self.files = 0
        self.first: float | None = None

    def process(self, value: bytes) -> bool:
        """Handle one record; True once the target count is written."""
        if self.count >= self.target:
            return True
        self.first = self.first or time.time()
        cdr = json.loads(value)
        cdr["caller"] = pseudonym(cdr["caller"])
        cdr["callee"] = pseudonym(cdr["callee"])
        self.rows.append(cdr)
        self.count += 1
        if len(self.rows) >= FILE_ROWS or self.count == self.target:
            pq.write_table(pa.Table.from_pylist(self.rows), self.out / f"part-{self.files:05d}.parquet")
            self.files += 1
            self.rows = []
        if self.count < self.target:
            return False
        done = {"count": self.count, "first_record_at": self.first, "last_record_at": time.time()}
        (self.out / "done.json").write_text(json.dumps(done))
        return True


def main() -> None:
    """Run the user's job in Quix Streams until the target count is written."""
    run_quix(lambda out, target: UserJob(out, target).process)


if __name__ == "__main__":
    main()
