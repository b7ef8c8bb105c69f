"""On the real broker: the messages that used to crash the worker cost one dead letter each."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import duckdb
import pytest
from aiokafka import AIOKafkaProducer

from pipeline.cli import demo
from tests.support.helpers import WorkerProcess, broker_address, read_dead_letters, wait_stored
from tests.support.wire_formats import freeswitch_document

pytestmark = pytest.mark.integration


def _superscript_duration(document: bytes) -> bytes:
    parsed = json.loads(document)
    parsed["variables"]["duration"] = "\u00b9"
    return json.dumps(parsed).encode()


async def _produce(bootstrap: str, topic: str, payloads: list[bytes]) -> list[int]:
    """Publish to partition 0 in order; return the offsets."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        futures = [await producer.send(topic, payload, partition=0) for payload in payloads]
        return [(await future).offset for future in futures]
    finally:
        await producer.stop()


def test_records_that_used_to_crash_the_worker_are_dead_lettered(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    bootstrap = broker_address(worker_env)
    calls = list(demo.generate(6, seed=16))
    poison = {
        "superscript duration": _superscript_duration(freeswitch_document(calls[0])),
        "oversized duration": demo.encode(calls[1]).replace(
            b'"duration_s":', b'"duration_s":3000000000,"x":'
        ),
    }
    payloads = [
        demo.encode(calls[2]),
        freeswitch_document(calls[3]),
        poison["superscript duration"],
        poison["oversized duration"],
        demo.encode(calls[4]),
        freeswitch_document(calls[5]),
    ]
    worker = WorkerProcess(worker_env, tmp_path / "worker.log").start()
    assert worker.process is not None
    pid = worker.process.pid
    try:
        offsets = asyncio.run(_produce(bootstrap, worker_env["CDRPIPE_RAW_TOPICS"], payloads))
        wait_stored(worker_env)
        letters = asyncio.run(read_dead_letters(bootstrap, worker_env["CDRPIPE_DLQ_TOPIC"], len(poison)))
        assert worker.process.poll() is None and worker.process.pid == pid, "the worker stopped"
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
    assert worker.log().count("ingest started") == 1, "the worker restarted"
    assert "Crashed" not in worker.log()

    store = worker_env["CDRPIPE_STORE"]
    stored = {
        row[0] for row in duckdb.sql(f"SELECT cdr_id FROM read_parquet('{store}/cdr/*/*.parquet')").fetchall()
    }
    assert stored == {calls[index].cdr_id for index in (2, 3, 4, 5)}
    found = {
        (int(letter["dlq-source-partition"]), int(letter["dlq-source-offset"])): letter for letter in letters
    }
    assert set(found) == {(0, offsets[2]), (0, offsets[3])}
    assert found[(0, offsets[2])]["dlq-reason"] == "schema"
    assert found[(0, offsets[2])]["dlq-format"] == "freeswitch-json"
    assert found[(0, offsets[3])]["dlq-reason"] == "out_of_range"
    assert all(letter["dlq-source-topic"] == worker_env["CDRPIPE_RAW_TOPICS"] for letter in letters)
