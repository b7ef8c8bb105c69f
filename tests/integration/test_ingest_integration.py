"""End to end on the real broker: worker process, canonical JSON in, Parquet checked with DuckDB."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import msgspec
import polars as pl
import pytest
from aiokafka import AIOKafkaConsumer

from pipeline.cli import demo
from pipeline.keys.keyring import rotate_keyring
from pipeline.record import CanonicalCdr
from tests.support.helpers import (
    WorkerProcess,
    broker_address,
    find_raw_numbers,
    publish,
    raw_number_needles,
    wait_stored,
)

pytestmark = pytest.mark.integration

CDR_COUNT = 5_000


def _traffic(count: int, seed: int) -> tuple[list[CanonicalCdr], dict[str, str]]:
    """Demo CDRs whose caller is re-drawn from a small pool, each call spelling it anew.

    Returns the CDRs and, per cdr_id, the caller's true E.164 number.
    """
    rng = random.Random(seed)
    pool = [demo._random_subscriber(rng) for _ in range(300)]
    cdrs, truth = [], {}
    for cdr in demo.generate(count, seed=seed, start=datetime(2026, 11, 20, 12, tzinfo=UTC), days=4):
        subscriber = rng.choice(pool)
        cdrs.append(msgspec.structs.replace(cdr, caller=demo.spell(subscriber, rng), direction="inbound"))
        truth[cdr.cdr_id] = subscriber.e164
    return cdrs, truth


def test_worker_stores_every_cdr_once_pseudonymised(worker_env: dict[str, str], tmp_path: Path) -> None:
    cdrs, caller_truth = _traffic(CDR_COUNT, seed=11)
    worker = WorkerProcess(worker_env, tmp_path / "worker.log").start()
    try:
        sent = asyncio.run(
            publish(
                broker_address(worker_env),
                worker_env["CDRPIPE_RAW_TOPICS"],
                (demo.encode(cdr) for cdr in cdrs),
            )
        )
        assert sent == CDR_COUNT
        wait_stored(worker_env)
    finally:
        assert worker.stop() == 0, worker.log()

    store = Path(worker_env["CDRPIPE_STORE"])
    files = sorted(store.glob("cdr/call_date=*/*.parquet"))
    assert files, "no Parquet file was published"
    rows = duckdb.sql(
        f"""SELECT cdr_id, call_date, start_time, caller_pseudonym, caller_number_type, key_id
            FROM read_parquet('{store}/cdr/*/*.parquet', hive_partitioning = true)"""
    ).fetchall()

    stored_ids = [row[0] for row in rows]
    assert len(stored_ids) == CDR_COUNT
    assert set(stored_ids) == {cdr.cdr_id for cdr in cdrs}

    expected_dates = {cdr.cdr_id: cdr.start_time.astimezone(UTC).date() for cdr in cdrs}
    assert all(call_date == expected_dates[cdr_id] for cdr_id, call_date, *_ in rows)
    assert all(start.astimezone(UTC).date() == call_date for _, call_date, start, *_ in rows)

    pseudonyms_of_number: dict[str, set[str]] = defaultdict(set)
    for cdr_id, _, _, pseudonym, number_type, key_id in rows:
        assert number_type == "E164" and key_id == "k1"
        pseudonyms_of_number[caller_truth[cdr_id]].add(pseudonym)
    assert all(len(pseudonyms) == 1 for pseudonyms in pseudonyms_of_number.values())
    distinct = {next(iter(pseudonyms)) for pseudonyms in pseudonyms_of_number.values()}
    assert len(distinct) == len(pseudonyms_of_number), "two numbers share a pseudonym"

    by_date = (
        pl.scan_parquet(f"{store}/cdr/**/*.parquet", hive_partitioning=True)
        .group_by("call_date")
        .agg(pl.len().alias("calls"))
        .collect()
    )
    assert by_date.schema["call_date"] == pl.Date
    expected_per_date: dict[object, int] = defaultdict(int)
    for call_date in expected_dates.values():
        expected_per_date[call_date] += 1
    stored_per_date = dict(zip(by_date["call_date"].to_list(), by_date["calls"].to_list(), strict=True))
    assert stored_per_date == expected_per_date

    _assert_no_raw_numbers(files, cdrs, set(caller_truth.values()))
    _assert_no_raw_numbers([tmp_path / "worker.log"], cdrs, set(caller_truth.values()))


def _assert_no_raw_numbers(paths: list[Path], cdrs: list[CanonicalCdr], numbers: set[str]) -> None:
    """No party string, E.164 number or national significant number occurs in the raw bytes."""
    needles = raw_number_needles(numbers, [cdr.caller for cdr in cdrs] + [cdr.callee for cdr in cdrs])
    for path in paths:
        leaked = find_raw_numbers(path.read_bytes(), needles)
        assert not leaked, f"{path.name} contains {len(leaked)} raw numbers"


async def _read_topic(bootstrap: str, topic: str, expected: int, timeout_s: float = 30) -> list:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        messages: list = []
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(messages) < expected and asyncio.get_running_loop().time() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                messages.extend(batch)
        return messages
    finally:
        await consumer.stop()


def test_undecodable_records_go_to_the_dlq_with_reason_and_source(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    bootstrap = broker_address(worker_env)
    raw_topic = worker_env["CDRPIPE_RAW_TOPICS"]
    good = [demo.encode(cdr) for cdr in demo.generate(200, seed=5)]
    bad = [b"{not json", b'{"cdr_id": "x"}', b"\xff\xfe\x00"]
    worker_env = {**worker_env, "CDRPIPE_TOPIC_FORMATS": f"{raw_topic}=canonical-json"}
    worker = WorkerProcess(worker_env, tmp_path / "worker.log").start()
    try:
        asyncio.run(publish(bootstrap, raw_topic, good[:100] + bad + good[100:]))
        wait_stored(worker_env)
        dead = asyncio.run(_read_topic(bootstrap, worker_env["CDRPIPE_DLQ_TOPIC"], expected=len(bad)))
    finally:
        assert worker.stop() == 0, worker.log()

    assert sorted(message.value for message in dead) == sorted(bad)
    for message in dead:
        headers = {name: value.decode() for name, value in message.headers}
        assert headers["dlq-reason"] in {"undecodable", "schema"}
        assert headers["dlq-message"]
        assert headers["dlq-source-topic"] == raw_topic
        assert headers["dlq-format"] == "canonical-json"
        assert int(headers["dlq-source-offset"]) >= 0
    stored = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{worker_env['CDRPIPE_STORE']}/cdr/*/*.parquet')"
    ).fetchall()
    assert stored == [(200,)]


def test_rows_keep_the_key_id_they_were_written_with_across_rotation(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    bootstrap = broker_address(worker_env)
    raw_topic = worker_env["CDRPIPE_RAW_TOPICS"]
    before = list(demo.generate(300, seed=21))
    after = list(demo.generate(300, seed=22))

    worker = WorkerProcess(worker_env, tmp_path / "worker.log").start()
    asyncio.run(publish(bootstrap, raw_topic, (demo.encode(cdr) for cdr in before)))
    wait_stored(worker_env)
    assert worker.stop() == 0, worker.log()
    store = worker_env["CDRPIPE_STORE"]
    query = f"SELECT cdr_id, key_id FROM read_parquet('{store}/cdr/*/*.parquet')"
    first_run = dict(duckdb.sql(query).fetchall())

    rotate_keyring(Path(worker_env["CDRPIPE_KEYRING"]))
    worker = WorkerProcess(worker_env, tmp_path / "worker.log").start()
    asyncio.run(publish(bootstrap, raw_topic, (demo.encode(cdr) for cdr in after)))
    wait_stored(worker_env)
    assert worker.stop() == 0, worker.log()

    key_ids = dict(duckdb.sql(query).fetchall())
    assert len(key_ids) == 600
    assert {key_ids[cdr.cdr_id] for cdr in before} == {"k1"}
    assert {key_ids[cdr.cdr_id] for cdr in after} == {"k2"}
    assert {cdr_id: key_ids[cdr_id] for cdr_id in first_run} == first_run
