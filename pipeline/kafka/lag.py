"""How far the ingest consumer group has come: committed offsets against the log end.

The lookup uses a consumer with the ingest group id that never subscribes,
so it never joins the group or disturbs its assignment.

Contract: :func:`ingest_lag` returns the number of records in the raw topics
that the ingest group has not committed yet (0 when the store holds everything
published so far). Partitions without a committed offset count from 0.
:func:`committed_offsets` returns the group's committed offset of every raw
partition that has one (compaction never goes beyond them).
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import TopicPartition

from pipeline.config.settings import Settings
from pipeline.kafka.connection import KafkaConnection, kafka_connection


def ingest_group(settings: Settings) -> str:
    """The consumer group id of the ingest path."""
    return f"{settings.kafka.app_id}-ingest"


async def _raw_partitions(settings: Settings, connection: KafkaConnection) -> list[TopicPartition]:
    admin = connection.admin()
    await admin.start()
    try:
        described = await admin.describe_topics(list(settings.topics.raw_topics))
    finally:
        await admin.close()
    missing = [topic["topic"] for topic in described if topic["error_code"] != 0]
    if missing:
        raise LookupError(f"raw topics {missing} do not exist yet: start the worker first")
    return [
        TopicPartition(topic["topic"], partition["partition"])
        for topic in described
        for partition in topic["partitions"]
    ]


async def ingest_lag(settings: Settings) -> int:
    """Records published to the raw topics but not yet committed by the ingest group."""
    connection = kafka_connection(settings)
    partitions = await _raw_partitions(settings, connection)
    consumer = connection.consumer(group_id=ingest_group(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
        lag = 0
        for tp in partitions:
            committed = await consumer.committed(tp)
            lag += max(ends[tp] - (committed or 0), 0)
        return lag
    finally:
        await consumer.stop()


async def committed_offsets(settings: Settings, connection: KafkaConnection) -> dict[tuple[str, int], int]:
    """The ingest group's committed offset of each raw partition that has one."""
    admin = connection.admin()
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(ingest_group(settings))
    finally:
        await admin.close()
    raw = set(settings.topics.raw_topics)
    return {
        (tp.topic, tp.partition): meta.offset
        for tp, meta in offsets.items()
        if tp.topic in raw and meta.offset >= 0
    }


async def wait_for_ingest(settings: Settings, timeout_s: float, poll_s: float = 0.5) -> int:
    """Wait until the ingest lag is 0 or ``timeout_s`` passes; return the last lag seen."""
    deadline = time.monotonic() + timeout_s
    lag = await ingest_lag(settings)
    while lag and time.monotonic() < deadline:
        await asyncio.sleep(poll_s)
        lag = await ingest_lag(settings)
    return lag
