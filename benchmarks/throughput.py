"""Ingest throughput on the real local broker: cdrpipe against the floor, Faust and Quix Streams.

One run (``make bench``; record count from ``BENCH_COUNT``, default 1,000,000;
partitions from ``BENCH_PARTITIONS``, default 4):

1. produces ``BENCH_COUNT`` demo CDRs (about 20% distinct subscribers, numbers
   in varying spellings, canonical JSON without a format header) once into a
   fresh topic;
2. (a) ``floor``: a bare aiokafka ``getmany`` loop that touches every value;
3. (b) ``cdrpipe``: ``cdrpipe worker`` from its first consumed record (its
   ``/metrics``) until the group has committed everything (offsets are committed only after the Parquet is
   published), then checks that the store holds exactly ``BENCH_COUNT``
   distinct ``cdr_id`` s; its peak RSS comes from ``/proc``;
4. (b2) ``cdrpipe_x2``: two worker processes sharing the topic, aggregate;
5. (c) ``faust_agent``: an idiomatic Faust agent doing the same per-record
   work (:mod:`benchmarks.faust_agent`), on the first ``BENCH_BASELINE_COUNT``
   records (default 200,000: it is slow);
6. (d) ``quix``: the same job in Quix Streams (:mod:`benchmarks.quix_job`), on
   all records;
7. (e) ``quix_user``: the job as a Quix Streams user would write it, without
   cdrpipe's code (:mod:`benchmarks.quix_user_job`), on all records;
8. (f) ``cdrpipe_ledger``: one cdrpipe worker again, with ``BENCH_LEDGER_ENTRIES``
   (default 10,000) erasure ledger entries of other subjects to check every
   row against.

Every rate counts from the job's first record to its last (cdrpipe: to the last
commit, after the last file is published), so no job's start-up is charged to
it; cdrpipe's rate from process start is reported beside it. Workers run
with default settings except ``CDRPIPE_FLUSH_SECONDS`` (``BENCH_FLUSH_SECONDS``,
default 2): with the default 10 s, the last partial batch of each partition
waits up to 10 s after the topic is drained, which measures the age limit, not
the throughput. It prints
records/s, the ratios b/a, b/c, b/d, b/e, x2/b, f/b and the peak RSS, and writes them to
``benchmarks/results/throughput.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.dataset as ds
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.processes import bootstrap, free_port, peak_rss_mib, produce, stop, worker_env
from benchmarks.record_job import written_rows
from pipeline.config.settings import load_settings
from pipeline.kafka.connection import kafka_connection
from pipeline.kafka.lag import ingest_lag
from pipeline.kafka.topics import TopicPlan, ensure_topics
from pipeline.keys.keyring import Keyring, init_keyring
from pipeline.lifecycle.ledger import KeyedPseudonym, LedgerEntry, encode_entry
from pipeline.lifecycle.requests.signing import sign_message

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
POLL_S = 0.2
FIRST_RECORD_POLL_S = 0.02


@dataclass(frozen=True, slots=True)
class Run:
    """One measured configuration.

    ``seconds`` runs from the first record the job received to its last one
    (cdrpipe: to everything committed); ``wall_seconds``, for cdrpipe only,
    from process start, so its start-up is charged too.
    """

    records: int
    seconds: float
    peak_rss_mib: float | None = None
    wall_seconds: float | None = None

    @property
    def rate(self) -> float:
        """Records per second."""
        return self.records / self.seconds


def _setting(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


async def floor(topic: str, count: int, partition_count: int) -> Run:
    """A bare aiokafka ``getmany`` loop over every partition, touching every value."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(), enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, partition) for partition in range(partition_count)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        began = time.perf_counter()
        seen = touched = 0
        while seen < count:
            batches = await consumer.getmany(timeout_ms=500, max_records=50_000)
            for messages in batches.values():
                for message in messages:
                    touched += len(message.value or b"")
                seen += len(messages)
        assert touched > 0
        return Run(seen, time.perf_counter() - began)
    finally:
        await consumer.stop()


def _profile(pid: int, work: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling ``pid`` until it exits; collapsed stacks go to ``results/cdrpipe-profile.txt``."""
    RESULTS.mkdir(exist_ok=True)
    output = RESULTS / "cdrpipe-profile.txt"
    command = ["py-spy", "record", "--pid", str(pid), "--format", "raw", "--rate", "200", "-o", str(output)]
    with (work / "py-spy.log").open("wb") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


async def fill_ledger(topic: str, entries: int, keyring: Keyring) -> None:
    """Write ``entries`` erasure ledger entries of random subjects (none of the benchmark's), signed
    under ``keyring`` as the workers write them (the workers refuse unsigned ones)."""
    await ensure_topics(
        kafka_connection(load_settings()), [TopicPlan(topic, 1, {"cleanup.policy": "compact"})]
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap(), linger_ms=20, acks=1)
    await producer.start()
    try:
        requested_at = datetime.now(UTC)
        pending = []
        for index in range(entries):
            subject = [
                KeyedPseudonym("k1", secrets.token_hex(16)),
                KeyedPseudonym("k1", secrets.token_hex(16)),
            ]
            entry = LedgerEntry(request_id=f"bench-{index}", requested_at=requested_at, subject=subject)
            signed = sign_message(encode_entry(entry), keyring.active)
            pending.append(await producer.send(topic, signed, key=entry.key.encode()))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def cdrpipe(base: dict[str, str], work: Path, topic: str, count: int, processes: int) -> Run:
    """``processes`` cdrpipe workers from start until the group committed all ``count`` records."""
    env = worker_env(base, f"bench-cdrpipe-{uuid.uuid4().hex[:8]}", work, topic)
    settings = load_settings(env)
    began = time.perf_counter()
    workers = []
    ports = [free_port() for _ in range(processes)]
    work.mkdir(parents=True)
    for index in range(processes):
        own_env = {**env, "CDRPIPE_WEB_PORT": str(ports[index])}
        with (work / f"worker-{index}.log").open("wb") as log:
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "pipeline", "worker", "--loglevel", "warn"],
                    env=own_env,
                    cwd=REPO,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    profiler = _profile(workers[0].pid, work) if processes == 1 and os.environ.get("BENCH_PROFILE") else None
    try:
        first_record = _first_record_at(ports, workers, work)
        while True:
            for worker in workers:
                if worker.poll() is not None:
                    raise RuntimeError(f"a worker exited early; see {work}/worker-*.log")
            try:
                if asyncio.run(ingest_lag(settings)) == 0:
                    break
            except LookupError:
                pass
            time.sleep(POLL_S)
        finished = time.perf_counter()
        peak = max(peak_rss_mib(worker.pid) for worker in workers)
    finally:
        for worker in workers:
            stop(worker)
        if profiler is not None:
            profiler.wait(timeout=60)
    _check_store(work / "store", count)
    return Run(count, finished - first_record, peak, finished - began)


def _first_record_at(ports: list[int], workers: list[subprocess.Popen[bytes]], work: Path) -> float:
    """When the first worker counted its first consumed record (its ``/metrics``, polled every 20 ms)."""
    while True:
        for port in ports:
            if _records_consumed(port) > 0:
                return time.perf_counter()
        if any(worker.poll() is not None for worker in workers):
            raise RuntimeError(f"a worker exited early; see {work}/worker-*.log")
        time.sleep(FIRST_RECORD_POLL_S)


def _records_consumed(port: int) -> float:
    """``cdrpipe_records_consumed_total`` of the worker serving ``port`` (0 until it answers)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "cdrpipe_records_consumed_total":
                return sample.value
    return 0.0


def _check_store(store: Path, count: int) -> None:
    table = ds.dataset(store / "cdr", format="parquet", partitioning="hive").to_table(columns=["cdr_id"])
    ids = table.column("cdr_id")
    distinct = len(ids.unique())
    if table.num_rows != count or distinct != count:
        raise AssertionError(f"the store holds {table.num_rows} rows, {distinct} distinct; expected {count}")


def baseline(module: str, base: dict[str, str], work: Path, topic: str, count: int) -> Run:
    """A per-record baseline job, timed from its first to its last record."""
    work.mkdir(parents=True)
    env = {
        **base,
        "BENCH_APP_ID": f"bench-{module.rsplit('.', 1)[-1]}-{uuid.uuid4().hex[:8]}",
        "BENCH_TOPIC": topic,
        "BENCH_TARGET": str(count),
        "BENCH_OUT": str(work),
    }
    arguments = [sys.executable, "-m", module] + (
        ["worker", "--loglevel", "warn"] if "faust" in module else []
    )
    with (work / "job.log").open("wb") as log:
        process = subprocess.Popen(arguments, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    done = work / "done.json"
    try:
        while not done.exists():
            if process.poll() is not None and not done.exists():
                raise RuntimeError(f"{module} exited early; see {work}/job.log")
            time.sleep(POLL_S)
        peak = peak_rss_mib(process.pid) if process.poll() is None else None
    finally:
        stop(process)
    report = json.loads(done.read_text())
    rows = written_rows(work)
    if rows != count:
        raise AssertionError(f"{module} wrote {rows} rows; expected {count}")
    return Run(count, report["last_record_at"] - report["first_record_at"], peak)


def _timed_section(label: str, measure: Callable[[], Run]) -> Run:
    print(f"measuring {label} ...", flush=True)
    run = measure()
    rss = f", peak RSS {run.peak_rss_mib:.0f} MiB" if run.peak_rss_mib is not None else ""
    wall = ""
    if run.wall_seconds is not None:
        wall = f", {run.records / run.wall_seconds:,.0f}/s from process start"
    print(
        f"  {label:12s} {run.rate:>10,.0f} records/s ({run.records:,} in {run.seconds:.1f} s{rss}{wall})",
        flush=True,
    )
    return run


def _measure_all(work: Path, topic: str, count: int, baseline_count: int, partitions: int) -> dict[str, Run]:
    """Produce the topic, then measure every configuration (logs stay in ``work`` on failure)."""
    keyring = work / "keyring.json"
    keys = init_keyring(keyring)
    base = {key: value for key, value in os.environ.items() if not key.startswith("CDRPIPE_")}
    base.update(
        {
            "CDRPIPE_BROKER": f"kafka://{bootstrap()}",
            "CDRPIPE_KEYRING": str(keyring),
            "CDRPIPE_FLUSH_SECONDS": os.environ.get("BENCH_FLUSH_SECONDS", "2"),
        }
    )
    print(f"producing {count:,} CDRs into {topic} ({partitions} partitions) ...", flush=True)
    began = time.perf_counter()
    asyncio.run(produce(topic, count, partitions))
    print(f"  produced in {time.perf_counter() - began:.1f} s", flush=True)
    ledger_topic = f"bench.ledger.{uuid.uuid4().hex[:8]}"
    asyncio.run(fill_ledger(ledger_topic, _setting("BENCH_LEDGER_ENTRIES", 10_000), keys))
    with_ledger = {**base, "CDRPIPE_LEDGER_TOPIC": ledger_topic}

    measures: dict[str, tuple[str, Callable[[], Run]]] = {
        "floor": ("floor", lambda: asyncio.run(floor(topic, count, partitions))),
        "cdrpipe": ("cdrpipe", lambda: cdrpipe(base, work / "one", topic, count, 1)),
        "cdrpipe_x2": ("cdrpipe x2", lambda: cdrpipe(base, work / "two", topic, count, 2)),
        "faust_agent": (
            "faust agent",
            lambda: baseline("benchmarks.faust_agent", base, work / "faust", topic, baseline_count),
        ),
        "quix": ("quix", lambda: baseline("benchmarks.quix_job", base, work / "quix", topic, count)),
        "quix_user": (
            "quix user",
            lambda: baseline("benchmarks.quix_user_job", base, work / "quix-user", topic, count),
        ),
        "cdrpipe_ledger": ("cdrpipe+ledger", lambda: cdrpipe(with_ledger, work / "ledger", topic, count, 1)),
    }
    chosen = os.environ.get("BENCH_RUNS", ",".join(measures)).split(",")
    return {name: _timed_section(*measures[name]) for name in measures if name in chosen}


def main() -> None:
    count = _setting("BENCH_COUNT", 1_000_000)
    baseline_count = min(count, _setting("BENCH_BASELINE_COUNT", 200_000))
    partitions = _setting("BENCH_PARTITIONS", 4)
    topic = f"bench.raw.{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix="cdrpipe-bench-"))
    runs = _measure_all(work, topic, count, baseline_count, partitions)
    shutil.rmtree(work)
    pairs = {
        "b/a (goal >= 0.25)": ("cdrpipe", "floor"),
        "b/c (goal >= 10)": ("cdrpipe", "faust_agent"),
        "b/d (goal >= 2)": ("cdrpipe", "quix"),
        "b/e (goal >= 3)": ("cdrpipe", "quix_user"),
        "x2/b (goal >= 1.6)": ("cdrpipe_x2", "cdrpipe"),
        "f/b (goal >= 0.95)": ("cdrpipe_ledger", "cdrpipe"),
    }
    ratios = {
        name: runs[top].rate / runs[bottom].rate
        for name, (top, bottom) in pairs.items()
        if top in runs and bottom in runs
    }
    print()
    for name, ratio in ratios.items():
        print(f"{name:20s} {ratio:6.2f}")
    if "cdrpipe" in runs:
        print(f"{'peak RSS (MiB)':20s} {runs['cdrpipe'].peak_rss_mib:6.0f}  (goal <= 512)")
    report = {
        "records": count,
        "baseline_records": baseline_count,
        "partitions": partitions,
        "runs": {
            name: {
                "records_per_s": round(run.rate),
                "seconds": round(run.seconds, 2),
                "peak_rss_mib": run.peak_rss_mib,
                "records_per_s_from_process_start": (
                    round(run.records / run.wall_seconds) if run.wall_seconds is not None else None
                ),
            }
            for name, run in runs.items()
        },
        "ratios": {name.split()[0]: round(ratio, 3) for name, ratio in ratios.items()},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "throughput.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
