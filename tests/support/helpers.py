"""Test helpers: a worker process on the real broker, and publishing/reading utilities."""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import duckdb
import phonenumbers
import pyarrow.parquet as pq
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from pipeline.cli import demo
from pipeline.config.settings import load_settings
from pipeline.kafka.connection import KafkaConnection, kafka_connection
from pipeline.kafka.lag import wait_for_ingest
from pipeline.kafka.topics import TopicPlan, ensure_topics

REPO = Path(__file__).resolve().parents[2]


def free_port_pair() -> int:
    """A port P such that P and P+1 are free on 127.0.0.1 (broker and controller)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return int(port)
    raise RuntimeError("no free port pair found")


LISTEN_PORTS = range(20_000, 32_000)
"""Below Linux's ephemeral range (32768-60999): a port a worker listens on again after a
restart must not be taken meanwhile by some client's outgoing connection."""


def broker_address(env: dict[str, str]) -> str:
    """The ``host:port`` bootstrap list of ``env``'s ``CDRPIPE_BROKER``, as Kafka clients take it."""
    return load_settings(env).kafka.bootstrap_servers


def connection_to(bootstrap: str) -> KafkaConnection:
    """A plaintext connection to the ``host:port`` list ``bootstrap``."""
    return kafka_connection(load_settings({"CDRPIPE_BROKER": f"kafka://{bootstrap}"}))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now and outside the ephemeral range."""
    for _ in range(200):
        port = random.choice(LISTEN_PORTS)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free listening port found")


class WorkerProcess:
    """`cdrpipe worker` as a child process, with its output captured to a file."""

    def __init__(self, env: dict[str, str], log_path: Path, module: str = "pipeline") -> None:
        self.env = env
        self.log_path = log_path
        self.module = module  # run as ``python -m <module> worker``: the cdrpipe command, or a test's own
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child process owns it
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module, "worker", "--loglevel", "info"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.env.get("CDRPIPE_TEST_CWD", str(REPO)),
        )
        log.close()
        self.wait_ready()
        return self

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.log()}")
            if "ingest started" in self.log():
                return
            time.sleep(0.2)
        raise AssertionError(f"worker not ready after {timeout_s}s:\n{self.log()}")

    def wait_for(self, text: str, timeout_s: float) -> None:
        """Block until ``text`` appears in the worker's log."""
        deadline = time.monotonic() + timeout_s
        while text not in self.log():
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not logged after {timeout_s}s:\n{self.log()[-3000:]}")
            time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout_s: float = 30) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()


def start_workers(env: dict[str, str], log_dir: Path, count: int) -> list[WorkerProcess]:
    """``count`` workers of one group, each with its own web port and log file, started."""
    workers = [
        WorkerProcess({**env, "CDRPIPE_WEB_PORT": str(free_port())}, log_dir / f"worker-{index}.log")
        for index in range(count)
    ]
    for worker in workers:
        worker.start()
    return workers


async def publish(bootstrap: str, topic: str, values: Iterable[bytes]) -> int:
    """Publish ``values`` to ``topic`` (created with 4 partitions if missing, acks=all); return the count."""
    await ensure_topics(connection_to(bootstrap), [TopicPlan(topic, 4, {})])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=10)
    await producer.start()
    try:
        futures = [await producer.send(topic, value) for value in values]
        await asyncio.gather(*futures)
        return len(futures)
    finally:
        await producer.stop()


async def read_dead_letters(bootstrap: str, topic: str, expected: int) -> list[dict[str, str]]:
    """The headers of the DLQ's messages: wait for ``expected`` of them, then a little longer for extras."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        headers: list[dict[str, str]] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while len(headers) < expected and loop.time() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                headers.extend({key: value.decode() for key, value in message.headers} for message in batch)
        await asyncio.sleep(1)
        for batch in (await consumer.getmany(timeout_ms=1000)).values():
            headers.extend({key: value.decode() for key, value in message.headers} for message in batch)
        return headers
    finally:
        await consumer.stop()


def wait_stored(env: dict[str, str], timeout_s: float = 120) -> None:
    """Block until the ingest group has committed everything in the raw topics."""
    lag = asyncio.run(wait_for_ingest(load_settings(env), timeout_s))
    assert lag == 0, f"{lag} records still not stored after {timeout_s}s"


def raw_number_needles(numbers: Iterable[str], spellings: Iterable[str] = ()) -> set[bytes]:
    """What a leak of these numbers looks like in bytes: E.164 with and without '+',
    the national significant number, and every spelling seen on the wire."""
    needles: set[bytes] = set()
    for number in numbers:
        parsed = phonenumbers.parse(number)
        needles |= {number.encode(), number[1:].encode()}
        needles.add(phonenumbers.national_significant_number(parsed).encode())
    needles |= {spelling.encode() for spelling in spellings if len(spelling) >= 6}
    return needles


def find_raw_numbers(content: bytes, needles: set[bytes]) -> list[bytes]:
    """Needles occurring in ``content`` as whole tokens (not inside a longer digit or word run).

    Pseudonyms are 32 hex characters: a digit run inside one is not a leak, while
    a leaked value is delimited by a length prefix, quote, separator or the line.
    """
    if not needles:
        return []
    alternatives = b"|".join(re.escape(needle) for needle in sorted(needles, key=len, reverse=True))
    pattern = re.compile(rb"(?<![0-9A-Za-z])(?:" + alternatives + rb")(?![0-9])")
    return sorted({match.group(0) for match in pattern.finditer(content)})


def publish_demo(env: dict[str, str], count: int, seed: int) -> set[str]:
    """Publish ``count`` demo CDRs to the worker's raw topic; return their ids."""
    cdrs = list(demo.generate(count, seed=seed))
    bootstrap = broker_address(env)
    asyncio.run(publish(bootstrap, env["CDRPIPE_RAW_TOPICS"], (demo.encode(cdr) for cdr in cdrs)))
    return {cdr.cdr_id for cdr in cdrs}


def fast_env(worker_env: dict[str, str]) -> dict[str, str]:
    """``worker_env`` with batches cut fast and a short session: kills and rebalances happen mid-batch."""
    return {
        **worker_env,
        "CDRPIPE_FLUSH_ROWS": "4000",
        "CDRPIPE_FLUSH_SECONDS": "0.5",
        "CDRPIPE_SESSION_TIMEOUT_S": "6",
    }


def assert_exactly_once(store: Path, expected_ids: set[str]) -> None:
    """Every expected cdr_id once, nothing else; every file readable; no temporary file visible."""
    files = sorted(store.glob("cdr/call_date=*/*"))
    hidden = [path.name for path in files if path.name.startswith(".") or not path.name.endswith(".parquet")]
    assert not hidden, f"temporary or foreign files visible: {hidden[:5]}"
    for path in files:
        pq.read_metadata(path)
    counts = duckdb.sql(
        f"SELECT count(*), count(DISTINCT cdr_id) FROM read_parquet('{store}/cdr/*/*.parquet')"
    ).fetchall()[0]
    stored = {
        row[0] for row in duckdb.sql(f"SELECT cdr_id FROM read_parquet('{store}/cdr/*/*.parquet')").fetchall()
    }
    lost, extra = len(expected_ids - stored), len(stored - expected_ids)
    assert (lost, extra, counts[0] - counts[1]) == (0, 0, 0), (
        f"lost={lost} unexpected={extra} duplicates={counts[0] - counts[1]}"
    )
