"""What the benchmarks share: the broker address, demo traffic, worker processes and their memory."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from pathlib import Path

from aiokafka import AIOKafkaProducer

from pipeline.cli.demo import encode, generate
from pipeline.config.settings import load_settings
from pipeline.kafka.connection import kafka_connection
from pipeline.kafka.topics import TopicPlan, ensure_topics


def bootstrap() -> str:
    """The local broker's bootstrap address (``CDRPIPE_BROKER``)."""
    return os.environ.get("CDRPIPE_BROKER", "kafka://127.0.0.1:9092").removeprefix("kafka://")


async def produce(topic: str, count: int, partitions: int) -> None:
    """Create ``topic`` and write ``count`` demo CDRs into it."""
    await ensure_topics(kafka_connection(load_settings()), [TopicPlan(topic, partitions, {})])
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap(), linger_ms=20, max_batch_size=512 * 1024, acks=1
    )
    await producer.start()
    try:
        pending = []
        for cdr in generate(count, seed=1):
            pending.append(await producer.send(topic, encode(cdr)))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def peak_rss_mib(pid: int) -> float:
    """The peak resident memory of ``pid`` so far (``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate ``process`` (kill it after a minute)."""
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def worker_env(base: dict[str, str], app_id: str, work: Path, topic: str) -> dict[str, str]:
    """A worker's environment: its own app id, raw topic, store and state under ``work``."""
    return {
        **base,
        "CDRPIPE_APP_ID": app_id,
        "CDRPIPE_RAW_TOPICS": topic,
        "CDRPIPE_STORE": str(work / "store"),
        "CDRPIPE_STATE_DIR": str(work / "state"),
    }
