"""All formats through the real broker: every record is a row or a dead letter, with its reason and source."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from pipeline.cli import demo
from pipeline.config.settings import load_settings
from pipeline.formats import asterisk_csv
from pipeline.formats.selection import FormatSelector, builtin_decoders
from pipeline.kafka.connection import kafka_connection
from pipeline.kafka.lag import ingest_lag
from pipeline.kafka.topics import ensure_topics, topic_plans
from pipeline.record import RecordRejectedError
from tests.support.helpers import REPO, WorkerProcess, broker_address, publish, read_dead_letters, wait_stored
from tests.support.samples import decode_context
from tests.support.wire_formats import asterisk_line, freeswitch_document

pytestmark = pytest.mark.integration

VALID = 100_000
MALFORMED = 10_000
Message = tuple[bytes, list[tuple[str, bytes]]]


def _valid_messages(rng: random.Random) -> tuple[list[Message], set[str]]:
    messages: list[Message] = []
    ids = set()
    for index, cdr in enumerate(demo.generate(VALID, seed=404, distinct_ratio=0.2)):
        kind = index % 5
        if kind < 3:
            payload, name = demo.encode(cdr), "canonical-json"
        elif kind == 3:
            payload, name = asterisk_line(cdr), "asterisk-csv"
        else:
            payload, name = freeswitch_document(cdr), "freeswitch-json"
        headers = [("cdr-format", name.encode())] if rng.random() < 0.5 else []
        messages.append((payload, headers))
        ids.add(cdr.cdr_id if kind != 3 else asterisk_csv.decode(payload, decode_context()).cdr_id)
    return messages, ids


def _break(payload: bytes, how: int) -> bytes:
    """A payload no decoder accepts, in one of five ways."""
    if how == 0:
        return payload[: len(payload) // 2]
    if how == 1:
        return b"\xff\xfe" + payload
    if how == 2:
        return b"not a cdr at all"
    if payload.startswith(b'{"schema_version"'):
        return payload.replace(b'"direction":"', b'"direction":"sideways-')
    if payload.startswith(b"{"):
        return payload.replace(b'"duration": "', b'"duration": "-')
    return payload.replace(b'"DOCUMENTATION",', b"")


def _malformed_messages(rng: random.Random, valid: list[Message]) -> list[Message]:
    selector = FormatSelector(builtin_decoders({}), {}, decode_context())
    broken = []
    for _ in range(MALFORMED):
        payload, headers = rng.choice(valid)
        bad = _break(payload, rng.randrange(4))
        with pytest.raises(RecordRejectedError):
            selector.decode("cdr.raw", headers, bad)
        broken.append((bad, headers))
    return broken


async def _produce(bootstrap: str, topic: str, messages: list[tuple[Message, bool]]) -> set[tuple[int, int]]:
    """Publish in order; return (partition, offset) of the messages flagged as malformed."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    await producer.start()
    try:
        futures = [
            (await producer.send(topic, payload, headers=headers), bad)
            for (payload, headers), bad in messages
        ]
        coordinates = set()
        for future, bad in futures:
            metadata = await future
            if bad:
                coordinates.add((metadata.partition, metadata.offset))
        return coordinates
    finally:
        await producer.stop()


def test_mixed_formats_with_malformed_records(worker_env: dict[str, str], tmp_path: Path) -> None:
    rng = random.Random(99)
    valid, valid_ids = _valid_messages(rng)
    assert len(valid_ids) == VALID
    malformed = _malformed_messages(rng, valid)
    stream = [(message, False) for message in valid] + [(message, True) for message in malformed]
    rng.shuffle(stream)
    bootstrap = broker_address(worker_env)
    worker_env = {**worker_env, "CDRPIPE_FLUSH_ROWS": "20000"}
    worker = WorkerProcess(worker_env, tmp_path / "worker.log").start()
    try:
        bad_coordinates = asyncio.run(_produce(bootstrap, worker_env["CDRPIPE_RAW_TOPICS"], stream))
        wait_stored(worker_env, timeout_s=300)
        letters = asyncio.run(read_dead_letters(bootstrap, worker_env["CDRPIPE_DLQ_TOPIC"], MALFORMED))
        assert worker.process is not None and worker.process.poll() is None, "the worker stopped"
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]

    store = worker_env["CDRPIPE_STORE"]
    stored = duckdb.sql(f"SELECT cdr_id FROM read_parquet('{store}/cdr/*/*.parquet')").fetchall()
    assert len(stored) == VALID
    assert {row[0] for row in stored} == valid_ids
    assert len(letters) == MALFORMED
    assert all(letter["dlq-reason"] and letter["dlq-message"] for letter in letters)
    assert {letter["dlq-source-topic"] for letter in letters} == {worker_env["CDRPIPE_RAW_TOPICS"]}
    seen = {(int(letter["dlq-source-partition"]), int(letter["dlq-source-offset"])) for letter in letters}
    assert seen == bad_coordinates
    assert worker.log().count("ingest started") == 1


def test_publish_round_trips_a_master_csv(worker_env: dict[str, str], tmp_path: Path) -> None:
    lines = (REPO / "tests" / "data" / "asterisk" / "Master.csv").read_bytes().splitlines()
    broken = [lines[0].replace(b'"ANSWERED"', b'"SOMETIMES"'), b'"only","three","fields"']
    master = tmp_path / "Master.csv"
    master.write_bytes(b"\n".join(lines[:20] + broken + lines[20:]) + b"\n")
    worker = WorkerProcess(worker_env, tmp_path / "worker.log").start()
    try:
        published = subprocess.run(
            [sys.executable, "-m", "pipeline", "publish", "--format", "asterisk-csv", str(master)],
            env=worker_env, cwd=REPO, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert published.returncode == 0, published.stderr
        assert f"published {len(lines) + 2} CDRs from 1 files" in published.stdout
        wait_stored(worker_env)
        bootstrap = broker_address(worker_env)
        letters = asyncio.run(read_dead_letters(bootstrap, worker_env["CDRPIPE_DLQ_TOPIC"], 2))
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
    rows = duckdb.sql(f"SELECT count(*) FROM read_parquet('{worker_env['CDRPIPE_STORE']}/cdr/*/*.parquet')")
    assert rows.fetchall() == [(len(lines),)]
    assert sorted(letter["dlq-reason"] for letter in letters) == ["schema", "schema"]
    assert {letter["dlq-format"] for letter in letters} == {"asterisk-csv"}


def test_records_wait_while_the_dead_letter_topic_cannot_be_written(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    bootstrap = broker_address(worker_env)
    dlq = worker_env["CDRPIPE_DLQ_TOPIC"]
    valid = list(demo.generate(400, seed=41))
    malformed = [f'{{"cdr_id": "broken-{index}"'.encode() for index in range(40)]
    worker = WorkerProcess(worker_env, tmp_path / "worker.log").start()
    try:
        asyncio.run(_delete_topic(bootstrap, dlq))
        asyncio.run(publish(bootstrap, worker_env["CDRPIPE_RAW_TOPICS"],
                            [demo.encode(cdr) for cdr in valid] + malformed))  # fmt: skip
        worker.wait_for("the dead-letter topic cannot be written", timeout_s=120)
        settings = load_settings(worker_env)
        assert asyncio.run(ingest_lag(settings)) > 0, "offsets moved past unsent dead letters"
        plan = next(plan for plan in topic_plans(settings) if plan.name == dlq)
        asyncio.run(ensure_topics(kafka_connection(settings), [plan]))
        wait_stored(worker_env, timeout_s=240)
        letters = asyncio.run(read_dead_letters(bootstrap, dlq, len(malformed)))
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
    coordinates = {(letter["dlq-source-partition"], letter["dlq-source-offset"]) for letter in letters}
    assert len(coordinates) == len(malformed), "a dead letter was lost"
    store = worker_env["CDRPIPE_STORE"]
    stored = duckdb.sql(f"SELECT cdr_id FROM read_parquet('{store}/cdr/*/*.parquet')").fetchall()
    assert sorted(row[0] for row in stored) == sorted(cdr.cdr_id for cdr in valid)


async def _delete_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()
