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
  written as one file (``day_one_file``: what compaction would give the analyst);
* on S3 (a moto server whose access log counts the requests by kind): the first
  ``BENCH_YEAR_S3_DAYS`` dates, then the same dates with twice the files, reading
  every footer, the erasure cold and with manifests, export and restriction;
* after compaction, when ``pipeline.compaction.compact_store`` exists: the same
  requests and queries on a compacted copy, and rewriting all of it.

``BENCH_YEAR_PARTS`` (``requests,queries,retention,s3,compaction``) chooses the parts;
``BENCH_YEAR_PROFILE=1`` profiles one erasure with manifests.

Results go to ``benchmarks/results/year.json``; ``benchmarks/year.md`` holds a run's numbers.
Run: ``make bench-year`` or ``python -m benchmarks.year``.
"""

from __future__ import annotations

import cProfile
import io
import json
import os
import pstats
import random
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import boto3
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
from pipeline.lifecycle.ledger import SubjectLedger
from pipeline.lifecycle.operations.export import subject_rows
from pipeline.lifecycle.operations.finder import data_files, search
from pipeline.lifecycle.operations.restriction import (
    HoldOutcome,
    Ledger,
    Passes,
    put_back_in_use,
    take_out_of_use,
)
from pipeline.lifecycle.operations.retention import apply_retention
from pipeline.lifecycle.requests import chain
from pipeline.lifecycle.requests.receipts import Receipt
from pipeline.lifecycle.subject import Subject, subject_from_number
from pipeline.numbers.msisdn import NumberClassifier
from pipeline.record import CanonicalCdr, validate
from pipeline.store import subject_index
from pipeline.store.naming import file_path, partition_dir
from pipeline.store.object_storage import open_storage
from pipeline.store.parquet import decode, encode
from pipeline.store.storage import LocalStorage, Storage

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

    def __init__(self, storage: Storage, subject: Subject) -> None:
        self._storage = storage
        self._saved = {path: storage.read(path) for path in search(storage, subject.pseudonyms).candidates}

    def restore(self) -> None:
        for path, data in self._saved.items():
            assert data is not None
            self._storage.publish(path, data)
        for path in self._storage.list("restricted"):
            self._storage.delete(path)


def _erase(storage: Storage, built: int) -> Receipt:
    """One subject's erasure through the erasure processor (both passes, no settle wait)."""
    view = SubjectLedger()
    processor = ErasureProcessor(
        storage,
        lambda: KEYRING,
        CLASSIFIER,
        ledger=Ledger(view, view.add),
        passes=Passes(0, lambda _: None),
        residual_copies=list,
    )
    document = {"request_id": f"bench-{time.time_ns()}", "subject": SUBJECT,
                "requested_at": datetime.now(UTC).isoformat()}  # fmt: skip
    receipt = processor.handle(json.dumps(document).encode())
    assert receipt.passed and receipt.rows_removed == built, receipt
    return receipt


def _requests(storage: Storage, subject: Subject, saved: SubjectFiles, built: int) -> dict[str, float]:
    """Seconds of one subject's erasure (cold, then with manifests), export, restriction and lift."""
    timings = Timings()
    timings["erase_cold_s"], receipt = _timed(lambda: _erase(storage, built))
    timings["erase_cold_files_read"] = float(receipt.files_read or 0)
    saved.restore()
    if os.environ.get("BENCH_YEAR_PROFILE"):
        profile = cProfile.Profile()
        profile.runcall(lambda: _erase(storage, built))
        saved.restore()
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(30)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "year-erase-profile.txt").write_text(text.getvalue())
    timings["erase_s"], receipt = _timed(lambda: _erase(storage, built))
    timings["erase_files_read"] = float(receipt.files_read or 0)
    saved.restore()

    def export() -> int:
        table = subject_rows(storage, subject).table
        assert table is not None
        return int(table.num_rows)

    timings["export_s"], exported = _timed(export)
    assert exported == built

    view = SubjectLedger()
    ledger, passes, now = Ledger(view, view.add), Passes(0, lambda _: None), datetime.now(UTC)
    timings["restrict_s"], restricted = _timed(
        lambda: take_out_of_use(
            storage, ledger, request_id="bench-restrict", subject=subject, requested_at=now,
            existing="quarantine", action="restrict", passes=passes,
        )
    )  # fmt: skip
    assert restricted.rows_moved == built and restricted.verification is not None
    assert restricted.verification.passed, restricted
    timings["lift_s"], lifted = _timed(
        lambda: put_back_in_use(
            storage, ledger, subject=subject, requested_at=datetime.now(UTC), ending="restrict", passes=passes
        )
    )
    assert isinstance(lifted, HoldOutcome) and lifted.rows_moved == built, lifted
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


def compact_year(storage: Storage) -> dict[str, Any] | None:
    """Compact every call date of the store with the project's compaction, or None if it has none yet.

    The hook the "after compaction" measurements wait for: once ``pipeline.compaction`` provides
    ``compact_store(storage) -> dict`` (what it did, by date), this compacts the synthetic year.
    """
    try:
        # Imported here: the compaction is another part of the project, merged after this benchmark.
        from pipeline.compaction import compact_store  # noqa: PLC0415
    except ImportError:
        return None
    done: dict[str, Any] = compact_store(storage)
    return done


def rewrite_whole_store(storage: Storage) -> int:
    """Read and rewrite every data file (the copy-on-write cost of touching all of it); files rewritten."""
    paths = data_files(storage)
    for path in paths:
        data = storage.read(path)
        assert data is not None
        stored = decode(data)
        storage.publish(path, encode(stored.table, stored.keys))
    return len(paths)


class MotoServer:
    """A moto S3 server on loopback whose access log counts the requests it answered, by kind."""

    def __init__(self, log_path: Path) -> None:
        self._log_path = log_path
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._log = log_path.open("wb")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log, stderr=self._log,
        )  # fmt: skip
        self.endpoint = f"http://127.0.0.1:{self.port}"
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        self.env = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1",
                    "AWS_ENDPOINT_URL": self.endpoint}  # fmt: skip
        os.environ.update({name: value for name, value in self.env.items() if name != "AWS_ENDPOINT_URL"})
        self.client = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                                   aws_access_key_id="bench", aws_secret_access_key="bench")  # fmt: skip

    def requests(self) -> dict[str, int]:
        """The requests answered so far, by kind (LIST is a GET with ``list-type``)."""
        counts = {"LIST": 0, "GET": 0, "HEAD": 0, "PUT": 0, "DELETE": 0, "POST": 0}
        self._log.flush()
        for line in self._log_path.read_text(errors="replace").splitlines():
            # werkzeug colours some lines (206, 404...): the method is matched without the quote
            found = re.search(r"(GET|PUT|HEAD|DELETE|POST) (\S+) HTTP/", line)
            if found:
                kind = "LIST" if found[1] == "GET" and "list-type" in found[2] else found[1]
                counts[kind] += 1
        return counts

    def close(self) -> None:
        self._process.terminate()
        self._process.wait(10)
        self._log.close()


def _requests_of(server: MotoServer, function: Callable[[], T]) -> tuple[float, dict[str, int], T]:
    before = server.requests()
    seconds, result = _timed(function)
    after = server.requests()
    return (
        seconds,
        {kind: after[kind] - before[kind] for kind in after if after[kind] != before[kind]},
        result,
    )


def s3_measurements(root: Path, counts: dict[str, int], days: int, scratch: Path) -> dict[str, Any]:
    """Requests and seconds of the subject requests on moto S3: ``days`` dates, then twice their files.

    The second store has the same dates and the same subject files plus one copy of every other file
    (twice the files per date): what an erasure asks of S3 should grow with the dates and the
    subject's files, not with the files in the store.
    """
    scratch.mkdir(parents=True, exist_ok=True)
    server = MotoServer(scratch / "moto.log")
    report: dict[str, Any] = {"s3_days": days}
    try:
        first_day = date.fromordinal(counts["first_day_ordinal"])
        subject = subject_from_number(SUBJECT, KEYRING, CLASSIFIER)
        local = LocalStorage(root)
        probe = subject_index.Probe(subject.pseudonyms)
        for doubled in (False, True):
            bucket = f"year-{int(doubled)}"
            server.client.create_bucket(Bucket=bucket)
            uploads: list[tuple[str, bytes]] = []
            for number in range(days):
                for path in local.list(partition_dir(first_day + timedelta(days=number))):
                    data = (root / path).read_bytes()
                    uploads.append((path, data))
                    footer = pq.read_metadata(io.BytesIO(data)).metadata or {}
                    index = footer.get(subject_index.METADATA_KEY)
                    if doubled and index is not None and not probe.might_hold(subject_index.decode(index)):
                        uploads.append((path.replace(".parquet", "9.parquet"), data))
            with ThreadPoolExecutor(16) as uploaders:
                list(uploaders.map(lambda item, bucket=bucket: server.client.put_object(
                    Bucket=bucket, Key=f"store/{item[0]}", Body=item[1]), uploads))  # fmt: skip
            storage = open_storage(f"s3://{bucket}/store", server.env)
            name = "s3_doubled" if doubled else "s3"
            table = subject_rows(storage, subject).table
            built = 0 if table is None else table.num_rows
            saved = SubjectFiles(storage, subject)
            for leftover in storage.list("_cdrpipe"):
                storage.delete(leftover)
            report[f"{name}_files"] = len(uploads)
            report[f"{name}_footers_once_s"], report[f"{name}_footers_once_requests"], _ = _requests_of(
                server, lambda storage=storage: footers_once(storage)
            )
            for step in ("erase_cold", "erase"):
                seconds, asked, _ = _requests_of(
                    server, lambda storage=storage, built=built: _erase(storage, built)
                )
                report[f"{name}_{step}_s"], report[f"{name}_{step}_requests"] = seconds, asked
                saved.restore()
            seconds, asked, _ = _requests_of(server, lambda storage=storage: subject_rows(storage, subject))
            report[f"{name}_export_s"], report[f"{name}_export_requests"] = seconds, asked
            view = SubjectLedger()
            ledger, passes = Ledger(view, view.add), Passes(0, lambda _: None)

            def restrict(
                storage: Storage = storage, ledger: Ledger = ledger, passes: Passes = passes
            ) -> None:
                take_out_of_use(
                    storage, ledger, request_id="bench-restrict", subject=subject,
                    requested_at=datetime.now(UTC),
                    existing="quarantine", action="restrict", passes=passes,
                )  # fmt: skip

            seconds, asked, _ = _requests_of(server, restrict)
            report[f"{name}_restrict_s"], report[f"{name}_restrict_requests"] = seconds, asked
            saved.restore()
            for key, value in report.items():
                if key.startswith(name):
                    print(f"  {key:32} {value}", flush=True)
    finally:
        server.close()
    return report


def _parts() -> set[str]:
    return set(os.environ.get("BENCH_YEAR_PARTS", "requests,queries,retention,s3,compaction").split(","))


def main() -> None:
    scale = _setting("BENCH_YEAR_SCALE", 100)
    days = _setting("BENCH_YEAR_DAYS", 365)
    parts = _parts()
    chain.seal_with(lambda: KEYRING)  # the register and audit entries of the requests are sealed
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
    subject = subject_from_number(SUBJECT, KEYRING, CLASSIFIER)
    if "requests" in parts:
        report["footers_once_s"], rows = _timed(lambda: footers_once(storage))
        print(f"  {'footers_once_s':32} {report['footers_once_s']:10.3f}", flush=True)
        assert rows == counts["rows"], (rows, counts["rows"])
        saved = SubjectFiles(storage, subject)
        shutil.rmtree(root / "_cdrpipe")  # that search wrote manifests: the first erasure runs without
        report.update(_requests(storage, subject, saved, counts["subject_rows"]))
        report["erase_over_footers"] = round(report["erase_s"] / report["footers_once_s"], 3)
        report["erase_cold_over_footers"] = round(report["erase_cold_s"] / report["footers_once_s"], 3)
    pseudonym = Pseudonymizer(KEYRING.keys[1]).pseudonym(Domain.SUBSCRIBER, SUBJECT)
    middle = date.fromordinal(counts["first_day_ordinal"] + days * 3 // 4)
    if "queries" in parts:
        report.update(_queries(root, middle, pseudonym))
        report["duckdb_day_over_one_file"] = round(
            report["duckdb_day_s"] / report["duckdb_day_one_file_s"], 1
        )
    if "retention" in parts:
        report["retention_day_files"] = CUTS_PER_DAY * PARTITIONS
        report["retention_day_s"] = retention_of_a_day(base / "retention-day")
    if "s3" in parts:
        report.update(s3_measurements(root, counts, _setting("BENCH_YEAR_S3_DAYS", 20), base / "s3"))
    shutil.rmtree(root / "_cdrpipe", ignore_errors=True)
    if "compaction" in parts:
        report.update(_after_compaction(root, base, counts, middle, pseudonym))

    report = {name: round(value, 3) if isinstance(value, float) else value for name, value in report.items()}
    for name, value in report.items():
        print(f"{name:34} {value}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "year.json").write_text(json.dumps(report, indent=2) + "\n")


def _after_compaction(
    root: Path, base: Path, counts: dict[str, int], middle: date, pseudonym: str
) -> dict[str, Any]:
    """The same measurements on a compacted copy of the year, when the project can compact."""
    compacted = base / f"{root.name}-compacted"
    shutil.rmtree(compacted, ignore_errors=True)
    shutil.copytree(root, compacted)
    storage = LocalStorage(compacted)
    seconds, done = _timed(lambda: compact_year(storage))
    if done is None:
        shutil.rmtree(compacted)
        print("  compaction: not in this version (pipeline.compaction.compact_store); skipped")
        return {"compaction": "not built"}
    report: dict[str, Any] = {"compact_s": seconds, "compacted_files": len(data_files(storage))}
    subject = subject_from_number(SUBJECT, KEYRING, CLASSIFIER)
    saved = SubjectFiles(storage, subject)
    after = _requests(storage, subject, saved, counts["subject_rows"])
    report.update({f"compacted_{name}": value for name, value in after.items()})
    report.update(
        {f"compacted_{name}": value for name, value in _queries(compacted, middle, pseudonym).items()}
    )
    report["rewrite_whole_compacted_store_s"], _ = _timed(lambda: rewrite_whole_store(storage))
    report["compacted_erase_over_rewrite"] = round(
        report["compacted_erase_s"] / report["rewrite_whole_compacted_store_s"], 4
    )
    shutil.rmtree(compacted)
    return report


if __name__ == "__main__":
    main()
