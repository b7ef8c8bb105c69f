"""Erasure and subject access on a year of data, against rewriting the whole store.

Builds a local store of ``BENCH_LIFECYCLE_DAYS`` daily partitions (default
365) with ``BENCH_LIFECYCLE_FILES_PER_DAY`` files each (default 4) and
``BENCH_LIFECYCLE_ROWS`` rows in all (default 2,000,000), written with the
sink's own encoder under two keys (a rotation half-way through the year).
One subject calls a few times a month. In one run it measures:

* ``erase``: :meth:`ErasureProcessor.handle` for the subject (ledger write,
  two passes, verification, receipt);
* ``export``: the subject's rows as Parquet, as ``cdrpipe export`` writes them;
* ``rewrite_all``: reading and re-encoding every file of the store (the
  baseline: what a copy-on-write delete without an index must do);

and prints each as a ratio to ``rewrite_all`` (goal: <= 5%). It checks the
erasure: afterwards the subject has no row and everyone else keeps theirs.
Run: ``make bench-lifecycle`` or ``python -m benchmarks.lifecycle_store``.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import msgspec
import phonenumbers
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.cli.demo import example_number
from pipeline.keys.keyring import Key, Keyring
from pipeline.keys.pseudonym import Domain, Pseudonymizer
from pipeline.lifecycle.erasure import ErasureProcessor
from pipeline.lifecycle.ledger import LedgerEntry, SubjectLedger
from pipeline.lifecycle.operations.export import subject_rows, write_export
from pipeline.lifecycle.operations.finder import data_files
from pipeline.lifecycle.operations.restriction import Ledger, Passes
from pipeline.lifecycle.requests.chain import seal_with
from pipeline.lifecycle.requests.erasure_request import ErasureRequest
from pipeline.lifecycle.requests.signing import sign_message
from pipeline.lifecycle.subject import subject_from_number
from pipeline.numbers.msisdn import NumberClassifier
from pipeline.store.parquet import decode, encode
from pipeline.store.schema import CDR_SCHEMA
from pipeline.store.storage import LocalStorage, Storage

RESULTS = Path(__file__).resolve().parent / "results"
SUBJECT = example_number(phonenumbers.PhoneNumberType.MOBILE)
SUBJECT_CALLS_PER_DAY = 0.1
DISTINCT_NUMBERS = 200_000
CLASSIFIER = NumberClassifier("BE", (2, 5))
T = TypeVar("T")


def _setting(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _pseudonym_pool(key: Key) -> list[str]:
    pseudonymizer = Pseudonymizer(key)
    others = (f"+3247{n:07d}" for n in range(DISTINCT_NUMBERS + 1))
    return [pseudonymizer.pseudonym(Domain.SUBSCRIBER, number) for number in others if number != SUBJECT]


def _day_file(
    rng: random.Random,
    *,
    day: date,
    file_index: int,
    rows: int,
    pool: list[str],
    subject: str | None,
    key_id: str,
) -> pa.Table:
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    starts = sorted(midnight + timedelta(seconds=rng.randrange(86_400)) for _ in range(rows))
    durations = [rng.randrange(5, 900) for _ in range(rows)]
    callers = [rng.choice(pool) for _ in range(rows)]
    if subject is not None:
        callers[rng.randrange(rows)] = subject
    ends = [start + timedelta(seconds=duration) for start, duration in zip(starts, durations, strict=True)]
    missing = pa.nulls(rows, pa.string())
    columns = {
        "cdr_id": [f"{day.isoformat()}-{file_index}-{row}" for row in range(rows)],
        "source": ["acd"] * rows,
        "start_time": starts,
        "answer_time": starts,
        "end_time": ends,
        "duration_s": durations,
        "billsec_s": durations,
        "direction": ["inbound"] * rows,
        "disposition": ["ANSWERED"] * rows,
        "caller_pseudonym": callers,
        "caller_number_type": ["E164"] * rows,
        "caller_country": ["BE"] * rows,
        "caller_line_type": ["MOBILE"] * rows,
        "caller_shortcode": missing,
        "callee_pseudonym": [rng.choice(pool) for _ in range(rows)],
        "callee_number_type": ["E164"] * rows,
        "callee_country": ["BE"] * rows,
        "callee_line_type": ["FIXED_LINE"] * rows,
        "callee_shortcode": missing,
        "connected_pseudonym": missing,
        "agent_pseudonym": missing,
        "queue": [rng.choice(("sales", "support", "billing")) for _ in range(rows)],
        "hangup_cause": ["NORMAL_CLEARING"] * rows,
        "cost": pa.nulls(rows, pa.float64()),
        "currency": missing,
        "key_id": [key_id] * rows,
    }
    return pa.table(columns, schema=CDR_SCHEMA)


def build_store(storage: LocalStorage, keyring: Keyring, days: int, files_per_day: int, rows: int) -> int:
    """Write the store, each file dated as if written on its call date; returns the subject's rows."""
    rng = random.Random(7)
    pools = {key.key_id: _pseudonym_pool(key) for key in keyring.keys}
    subject = {key.key_id: Pseudonymizer(key).pseudonym(Domain.SUBSCRIBER, SUBJECT) for key in keyring.keys}
    rows_per_file = max(1, rows // (days * files_per_day))
    subject_rows_written = 0
    first_day = datetime.now(UTC).date() - timedelta(days=days)
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        key = keyring.keys[0] if offset < days // 2 else keyring.keys[1]
        for file_index in range(files_per_day):
            calls = rng.random() < SUBJECT_CALLS_PER_DAY / files_per_day
            subject_rows_written += calls
            table = _day_file(
                rng,
                day=day,
                file_index=file_index,
                rows=rows_per_file,
                pool=pools[key.key_id],
                subject=subject[key.key_id] if calls else None,
                key_id=key.key_id,
            )
            path = f"cdr/call_date={day.isoformat()}/cdr.raw+{file_index}+{offset:020d}.parquet"
            storage.publish(path, encode(table, [key.ref]))
            written_at = datetime(day.year, day.month, day.day, 23, 59, tzinfo=UTC).timestamp()
            os.utime(storage.root / path, (written_at, written_at))
    return subject_rows_written


def rewrite_all(storage: Storage) -> int:
    """Read, decode, re-encode and publish every data file; returns the rows rewritten."""
    rows = 0
    for path in data_files(storage):
        data = storage.read(path)
        assert data is not None
        stored = decode(data)
        storage.publish(path, encode(stored.table, stored.keys))
        rows += stored.table.num_rows
    return rows


def count_rows(storage: Storage) -> int:
    """Rows in the store, from the footers."""
    total = 0
    for path in data_files(storage):
        with storage.open_input(path) as handle:
            total += pq.read_metadata(handle).num_rows
    return total


def _timed(function: Callable[[], T]) -> tuple[float, T]:
    began = time.perf_counter()
    result = function()
    return time.perf_counter() - began, result


def main() -> None:
    days = _setting("BENCH_LIFECYCLE_DAYS", 365)
    files_per_day = _setting("BENCH_LIFECYCLE_FILES_PER_DAY", 4)
    rows = _setting("BENCH_LIFECYCLE_ROWS", 2_000_000)
    keyring = Keyring(
        "k2", (Key("k1", secrets.token_bytes(32), "bench"), Key("k2", secrets.token_bytes(32), "bench"))
    )
    subject = subject_from_number(SUBJECT, keyring, CLASSIFIER)
    seal_with(lambda: keyring)  # the erasure's audit entry is sealed, as in the worker
    with tempfile.TemporaryDirectory(prefix="cdrpipe-bench-") as root:
        storage = LocalStorage(Path(root))
        began = time.perf_counter()
        subject_count = build_store(storage, keyring, days, files_per_day, rows)
        total = count_rows(storage)
        print(f"store: {days} days x {files_per_day} files, {total:,} rows, subject in {subject_count} rows "
              f"(built in {time.perf_counter() - began:.1f} s)")  # fmt: skip

        export_path = Path(root) / "export.parquet"

        def export() -> int:
            table = subject_rows(storage, subject)
            assert table is not None
            write_export(table, export_path, "parquet")
            return int(table.num_rows)

        export_s, exported = _timed(export)
        assert exported == subject_count, (exported, subject_count)

        ledger: list[LedgerEntry] = []
        processor = ErasureProcessor(
            storage,
            lambda: keyring,
            CLASSIFIER,
            ledger=Ledger(SubjectLedger(), ledger.append),
            passes=Passes(0, lambda seconds: None),
            residual_copies=list,
        )
        request = ErasureRequest(request_id="bench", subject=SUBJECT, requested_at=datetime.now(UTC))
        signed = sign_message(msgspec.json.encode(request), keyring.active)  # as the CLI sends it
        erase_s, receipt = _timed(lambda: processor.handle(signed))
        assert receipt.passed and receipt.rows_removed == subject_count
        assert count_rows(storage) == total - subject_count
        assert subject_rows(storage, subject) is None

        rewrite_s, rewritten = _timed(lambda: rewrite_all(storage))
        assert rewritten == total - subject_count

    report = {
        "store": {"days": days, "files": days * files_per_day, "rows": total, "subject_rows": subject_count},
        "rewrite_all_s": round(rewrite_s, 3),
        "erase_s": round(erase_s, 3),
        "export_s": round(export_s, 3),
        "erase_ratio": round(erase_s / rewrite_s, 4),
        "export_ratio": round(export_s / rewrite_s, 4),
        "goal_ratio": 0.05,
    }
    print(f"rewrite whole store  {rewrite_s:8.2f} s   1.000")
    print(f"erase one subject    {erase_s:8.2f} s   {report['erase_ratio']:.3f}  (goal <= 0.05)")
    print(f"export one subject   {export_s:8.2f} s   {report['export_ratio']:.3f}  (goal <= 0.05)")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lifecycle_store.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
