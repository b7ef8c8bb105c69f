"""The per-record job of the baselines: what a user writes for one event at a time.

Each event is decoded with cdrpipe's own decoders, its parties are normalised
and pseudonymised with cdrpipe's cached pseudonymizer, the row goes into a
column buffer, and every :data:`FILE_ROWS` rows (and at the end) a Parquet file
is written. The baselines thus do the same work as cdrpipe with the same
libraries; what differs is how the framework hands them records.

Contract: :meth:`RecordJob.process` returns True once ``target`` records were
processed; then the last file is written and ``done.json`` in the output
directory holds the count and the times of the first and last record.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.config.settings import load_settings
from pipeline.ingest.rows import build_rows
from pipeline.record import CanonicalCdr
from pipeline.store.parquet import encode
from pipeline.worker.assembly import build_formats, build_parties

FILE_ROWS = 100_000


class RecordJob:
    """Decode one record per call, buffer it; normalise, pseudonymise and write Parquet per file."""

    def __init__(self, out_dir: Path, target: int) -> None:
        settings = load_settings()
        self._formats = build_formats(settings)
        self._parties = build_parties(settings)
        self._out_dir = out_dir
        self._target = target
        self._rows: list[CanonicalCdr] = []
        self._files = 0
        self.count = 0
        self._first: float | None = None

    def process(self, topic: str, headers: Sequence[tuple[str, bytes]], value: bytes) -> bool:
        """Handle one record; True when the target count is reached (and everything is written).

        Records after the target are ignored.
        """
        if self.count >= self._target:
            return True
        if self._first is None:
            self._first = time.time()
        self._rows.append(self._formats.decode(topic, headers, value))
        self.count += 1
        if len(self._rows) >= FILE_ROWS:
            self._write()
        if self.count < self._target:
            return False
        self._write()
        done = {"count": self.count, "first_record_at": self._first, "last_record_at": time.time()}
        (self._out_dir / "done.json").write_text(json.dumps(done))
        return True

    def _write(self) -> None:
        if not len(self._rows):
            return
        path = self._out_dir / f"part-{self._files:05d}.parquet"
        path.write_bytes(encode(build_rows(self._rows, self._parties), [self._parties.key_ref]))
        self._files += 1
        self._rows = []


def written_rows(out_dir: Path) -> int:
    """Rows in the Parquet files a job wrote."""
    return sum(pq.read_metadata(path).num_rows for path in out_dir.glob("part-*.parquet"))
