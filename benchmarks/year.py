"""A year of the trickle's small files: subject requests, retention and analyst queries, in one run.

The store is laid out as a steady trickle writes it: 4 partitions, each cut
every 10 s, so 34,560 files a day at full scale whatever the rate; at 50 CDR/s
a file holds 125 rows. 0.5% of records arrive 1-3 days late, so about 47% of
the batches (1 - 0.995^125) also add a one-row file to an earlier date, under
the same ``<topic>+<partition>+<first offset>`` name. ``BENCH_YEAR_SCALE``
(default 100) divides the number of cuts, hence files and rows (at 100: 344
files and 43,000 rows per date, plus the late files); ``BENCH_YEAR_DAYS``
(default 365) is the number of call dates.

Rows are made by the project's own row builder (:func:`build_rows` of
validated CDRs, pseudonymised under a two-key keyring rotated half-way through
the year) and encoded by its Parquet writer (:func:`encode`: bloom filters,
subject index and key ids in the footer). To build a year in minutes, files
without the subject are copies of a pool of ``TEMPLATES`` encoded files per
key, each copy under its own name and modification time; the subject calls
``SUBJECT_CALLS_PER_DAY`` times a day on average, each call in a freshly built
file. The build is written without fsync (the layout is what is measured) and
cached under ``BENCH_YEAR_DIR`` (default ``data/bench-year``) per scale and days.

In one run it measures, on local disk, after removing manifests and DPO records:

* ``footers_once``: reading every footer of the store once, 8 at a time (the baseline);
* ``erase_cold`` then ``erase``: one subject's erasure (:class:`ErasureProcessor`,
  two passes and the verification) with no manifest, then with the manifests the
  first left (the subject's files put back in between, so their entries are stale);
* ``export``, ``restrict`` and ``lift`` of the same subject, with manifests;
* ``retention_day``: :func:`apply_retention` of one date of full-scale file count
  (34,560 files) in a separate store;
* DuckDB and Polars: calls per queue over one day, one month and the year, one
  pseudonym's calls over the year, and the one-day query on that day's rows
  written as one file (``day_one_file``: what compaction would give the analyst).

Results go to ``benchmarks/results/year.json``; ``benchmarks/year.md`` holds a run's numbers.
Run: ``make bench-year`` or ``python -m benchmarks.year``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import phonenumbers
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.cli.demo import example_number
from pipeline.ingest.rows import build_rows
from pipeline.keys.keyring import Key, Keyring
from pipeline.keys.pseudonym import Domain, PartyPseudonymizer, Pseudonymizer
from pipeline.lifecycle.erasure import ErasureProcessor
from pipeline.lifecycle.ledger import LedgerEntry, SubjectLedger
from pipeline.lifecycle.operations.export import subject_rows, write_export
from pipeline.lifecycle.operations.finder import data_files, search
from pipeline.lifecycle.operations.restriction import Ledger, Passes, put_back_in_use, take_out_of_use
from pipeline.lifecycle.operations.retention import apply_retention
from pipeline.lifecycle.requests.erasure_request import ErasureRequest
from pipeline.lifecycle.subject import Subject, subject_from_number
from pipeline.numbers.msisdn import NumberClassifier
from pipeline.record import CanonicalCdr, validate
from pipeline.store.naming import file_path, partition_dir
from pipeline.store.parquet import decode, encode
from pipeline.store.storage import LocalStorage

RESULTS = Path(__file__).resolve().parent / "results"
TOPIC = "cdr.raw"
PARTITIONS = 4
CUTS_PER_DAY = 8_640  # one cut every 10 s
ROWS_PER_FILE = 125  # 50 CDR/s over 4 partitions
LATE_SHARE = 0.005
TEMPLATES = 64
SUBJECT_CALLS_PER_DAY = 0.5
DISTINCT_NUMBERS = 20_000
FOOTER_READERS = 8
SUBJECT = example_number(phonenumbers.PhoneNumberType.MOBILE)
CLASSIFIER = NumberClassifier("BE", (2, 5))
KEYRING = Keyring("k2", (Key("k1", b"1" * 32, "bench"), Key("k2", b"2" * 32, "bench")))
QUEUES = ("sales", "support", "billing")
T = TypeVar("T")


def _setting(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


class Timings(dict[str, float]):
    """Seconds by measurement, each printed as it is taken (a year's run is long)."""

    def __setitem__(self, name: str, seconds: float) -> None:
        print(f"  {name:32} {seconds:10.3f}", flush=True)
        super().__setitem__(name, seconds)


def _timed(function: Callable[[], T]) -> tuple[float, T]:
    began = time.perf_counter()
    result = function()
    return time.perf_counter() - began, result


def _cdrs(rng: random.Random, day: date, rows: int, subject_row: int | None) -> list[CanonicalCdr]:
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    cdrs = []
    for row in range(rows):
        start = midnight + timedelta(seconds=rng.randrange(86_000))
        duration = rng.randrange(5, 400)
        caller = SUBJECT if row == subject_row else f"+3247{rng.randrange(DISTINCT_NUMBERS):07d}"
        cdr = CanonicalCdr(
            cdr_id=f"{day.isoformat()}-{rng.getrandbits(48):012x}",
            source="acd",
            start_time=start,
            answer_time=start,
            end_time=start + timedelta(seconds=duration),
            duration_s=duration,
            billsec_s=duration,
            caller=caller,
            callee=f"+322{rng.randrange(DISTINCT_NUMBERS):07d}",
            direction="inbound",
            disposition="answered",
            queue=rng.choice(QUEUES),
        )
        cdrs.append(validate(cdr))
    return cdrs


def _encoded(rng: random.Random, key: Key, day: date, rows: int, subject_row: int | None = None) -> bytes:
    parties = PartyPseudonymizer(CLASSIFIER, Pseudonymizer(key), 4096)
    return encode(build_rows(_cdrs(rng, day, rows, subject_row), parties), [key.ref])


def _write(root: Path, path: str, data: bytes, written_at: float) -> None:
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    os.utime(target, (written_at, written_at))


def build_year(root: Path, days: int, scale: int) -> dict[str, int]:
    """Write the year under ``root`` (skipped when a complete build is there); return its counts."""
    done = root / ".complete.json"
    if done.exists():
        cached: dict[str, int] = json.loads(done.read_text())
        return cached
    shutil.rmtree(root, ignore_errors=True)
    rng = random.Random(2026)
    first_day = datetime.now(UTC).date() - timedelta(days=days)
    keys = KEYRING.keys
    templates = [[_encoded(rng, key, first_day, ROWS_PER_FILE) for _ in range(TEMPLATES)] for key in keys]
    tiny = [[_encoded(rng, key, first_day, 1) for _ in range(TEMPLATES)] for key in keys]
    cuts = CUTS_PER_DAY // scale
    late_chance = 1 - (1 - LATE_SHARE) ** ROWS_PER_FILE
    subject_chance = SUBJECT_CALLS_PER_DAY / (cuts * PARTITIONS)
    counts = {"first_day_ordinal": first_day.toordinal(), "late_files": 0, "rows": 0, "subject_rows": 0}
    offsets = [0] * PARTITIONS
    for number in range(days):
        day = first_day + timedelta(days=number)
        half = 0 if number < days // 2 else 1
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
        for cut in range(cuts):
            written_at = midnight + (cut + 1) * 86_400 / cuts
            for partition in range(PARTITIONS):
                first = offsets[partition]
                if rng.random() < subject_chance:
                    data = _encoded(rng, keys[half], day, ROWS_PER_FILE, rng.randrange(ROWS_PER_FILE))
                    counts["subject_rows"] += 1
                else:
                    data = rng.choice(templates[half])
                _write(root, file_path(day, TOPIC, partition, first), data, written_at)
                counts["rows"] += ROWS_PER_FILE
                if number >= 3 and rng.random() < late_chance:
                    late = day - timedelta(days=rng.randint(1, 3))
                    _write(root, file_path(late, TOPIC, partition, first), rng.choice(tiny[half]), written_at)
                    counts["late_files"] += 1
                    counts["rows"] += 1
                offsets[partition] += ROWS_PER_FILE
    done.write_text(json.dumps(counts))
    return counts


def footers_once(storage: LocalStorage) -> int:
    """Read every footer of the store once, ``FOOTER_READERS`` at a time; the rows they count."""

    def rows(path: str) -> int:
        with storage.open_input(path) as handle:
            return int(pq.read_metadata(handle).num_rows)

    with ThreadPoolExecutor(FOOTER_READERS) as readers:
        return sum(readers.map(rows, data_files(storage)))


class SubjectFiles:
    """The subject's files as built, to put back after a request changed them."""

    def __init__(self, storage: LocalStorage, subject: Subject) -> None:
        self._root = storage.root
        self._saved: dict[str, tuple[bytes, float]] = {}
        for path in search(storage, subject.pseudonyms).candidates:
            self._saved[path] = ((self._root / path).read_bytes(), (self._root / path).stat().st_mtime)

    def restore(self) -> None:
        for path, (data, mtime) in self._saved.items():
            _write(self._root, path, data, mtime)
        shutil.rmtree(self._root / "restricted", ignore_errors=True)


def _requests(storage: LocalStorage, subject: Subject, saved: SubjectFiles, built: int) -> dict[str, float]:
    """Seconds of one subject's erasure (cold, then with manifests), export, restriction and lift."""
    timings = Timings()

    def erase() -> None:
        entries: list[LedgerEntry] = []
        processor = ErasureProcessor(
            storage,
            lambda: KEYRING,
            CLASSIFIER,
            write_ledger=entries.append,
            settle_seconds=0,
            residual_copies=list,
        )
        request = ErasureRequest(
            request_id=f"bench-{time.time_ns()}", subject=SUBJECT, requested_at=datetime.now(UTC)
        )
        receipt = processor.process(request)
        assert receipt.passed and receipt.rows_removed == built, receipt

    timings["erase_cold_s"], _ = _timed(erase)
    saved.restore()
    timings["erase_s"], _ = _timed(erase)
    saved.restore()

    export_path = storage.root.parent / "export.parquet"

    def export() -> int:
        table = subject_rows(storage, subject)
        assert table is not None
        write_export(table, export_path, "parquet")
        return int(table.num_rows)

    timings["export_s"], exported = _timed(export)
    assert exported == built
    export_path.unlink()

    view = SubjectLedger()
    written: list[LedgerEntry] = []

    def write(entry: LedgerEntry) -> None:
        written.append(entry)
        view.add(entry)

    ledger, passes, now = Ledger(view, write), Passes(0, lambda _: None), datetime.now(UTC)
    timings["restrict_s"], restricted = _timed(
        lambda: take_out_of_use(
            storage, ledger, request_id="bench-restrict", subject=subject, requested_at=now,
            existing="quarantine", action="restrict", passes=passes,
        )
    )  # fmt: skip
    assert restricted["rows_moved"] == built and restricted["verification"]["passed"], restricted
    timings["lift_s"], lifted = _timed(
        lambda: put_back_in_use(
            storage, ledger, subject=subject, requested_at=datetime.now(UTC), ending="restrict", passes=passes
        )
    )
    assert isinstance(lifted, dict) and lifted["rows_moved"] == built, lifted
    saved.restore()
    return timings


def _duckdb(sql: str) -> float:
    began = time.perf_counter()
    relation = duckdb.sql(sql)
    assert relation is not None
    relation.fetchall()
    return time.perf_counter() - began


def _polars(frame: pl.LazyFrame) -> float:
    began = time.perf_counter()
    frame.collect()
    return time.perf_counter() - began


def _queries(root: Path, day: date, pseudonym: str) -> dict[str, float]:
    """Seconds of the analysts' queries over ``day``, its month, the year and one pseudonym."""
    compacted = root.parent / "compacted-day.parquet"
    day_files = sorted(Path(root, partition_dir(day)).glob("*.parquet"))
    stored = [decode(path.read_bytes()) for path in day_files]
    table = pa.concat_tables(file.table for file in stored)
    keys = frozenset().union(*(file.keys for file in stored))
    compacted.write_bytes(encode(table.combine_chunks().sort_by("start_time"), keys))
    scopes: dict[str, str] = {
        "day": f"{root}/{partition_dir(day)}/*.parquet",
        "day_one_file": str(compacted),
        "month": f"{root}/cdr/call_date={day.isoformat()[:7]}-*/*.parquet",
        "year": f"{root}/cdr/*/*.parquet",
    }
    timings = Timings()
    for scope, pattern in scopes.items():
        sql = f"SELECT queue, count(*), sum(duration_s) FROM read_parquet('{pattern}') GROUP BY queue"
        timings[f"duckdb_{scope}_s"] = _duckdb(sql)
        frame = pl.scan_parquet(pattern).group_by("queue").agg(pl.len(), pl.col("duration_s").sum())
        timings[f"polars_{scope}_s"] = _polars(frame)
    year = scopes["year"]
    timings["duckdb_pseudonym_year_s"] = _duckdb(
        f"SELECT count(*) FROM read_parquet('{year}') WHERE caller_pseudonym = '{pseudonym}'"
    )
    timings["polars_pseudonym_year_s"] = _polars(
        pl.scan_parquet(year).filter(pl.col("caller_pseudonym") == pseudonym).select(pl.len())
    )
    compacted.unlink()
    return timings


def retention_of_a_day(scratch: Path) -> float:
    """Seconds :func:`apply_retention` takes to expire one date of 34,560 files (full-scale count)."""
    shutil.rmtree(scratch, ignore_errors=True)
    day = date(2020, 1, 1)
    data = _encoded(random.Random(1), KEYRING.keys[0], day, 1)
    for cut in range(CUTS_PER_DAY):
        for partition in range(PARTITIONS):
            _write(scratch, file_path(day, TOPIC, partition, cut * ROWS_PER_FILE), data, time.time())
    seconds, report = _timed(lambda: apply_retention(LocalStorage(scratch), datetime.now(UTC), 30))
    assert report.files == CUTS_PER_DAY * PARTITIONS
    shutil.rmtree(scratch)
    return seconds


def main() -> None:
    scale = _setting("BENCH_YEAR_SCALE", 100)
    days = _setting("BENCH_YEAR_DAYS", 365)
    base = Path(os.environ.get("BENCH_YEAR_DIR", "data/bench-year")).resolve()
    root = base / f"scale-{scale}-days-{days}"
    build_s, counts = _timed(lambda: build_year(root, days, scale))
    storage = LocalStorage(root)
    for leftover in ("_cdrpipe", "restricted"):
        shutil.rmtree(root / leftover, ignore_errors=True)
    files = len(data_files(storage))
    print(
        f"year: {days} dates at 1/{scale} of the files, {files:,} files ({counts['late_files']:,} late), "
        f"{counts['rows']:,} rows, subject in {counts['subject_rows']} rows (ready in {build_s:.0f} s)"
    )
    report: dict[str, Any] = {"scale": scale, "days": days, "files": files, "files_per_date": files / days}
    report.update({name: counts[name] for name in ("late_files", "rows", "subject_rows")})
    report["footers_once_s"], rows = _timed(lambda: footers_once(storage))
    print(f"  {'footers_once_s':32} {report['footers_once_s']:10.3f}", flush=True)
    assert rows == counts["rows"], (rows, counts["rows"])
    saved = SubjectFiles(storage, subject_from_number(SUBJECT, KEYRING, CLASSIFIER))
    shutil.rmtree(root / "_cdrpipe")  # that search wrote manifests: the first erasure runs without
    report.update(
        _requests(storage, subject_from_number(SUBJECT, KEYRING, CLASSIFIER), saved, counts["subject_rows"])
    )
    pseudonym = Pseudonymizer(KEYRING.keys[1]).pseudonym(Domain.SUBSCRIBER, SUBJECT)
    middle = date.fromordinal(counts["first_day_ordinal"] + days * 3 // 4)
    report.update(_queries(root, middle, pseudonym))
    report["retention_day_files"] = CUTS_PER_DAY * PARTITIONS
    report["retention_day_s"] = retention_of_a_day(base / "retention-day")
    shutil.rmtree(root / "_cdrpipe", ignore_errors=True)

    report = {name: round(value, 3) if isinstance(value, float) else value for name, value in report.items()}
    report["erase_over_footers"] = round(report["erase_s"] / report["footers_once_s"], 3)
    report["erase_cold_over_footers"] = round(report["erase_cold_s"] / report["footers_once_s"], 3)
    report["duckdb_day_over_one_file"] = round(report["duckdb_day_s"] / report["duckdb_day_one_file_s"], 1)
    for name, value in report.items():
        print(f"{name:34} {value}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "year.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
