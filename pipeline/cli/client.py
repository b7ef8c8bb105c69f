"""Publish one lifecycle request and wait for its receipt (``cdrpipe erase``, ``restrict``, ``rectify``...).

Contract: :func:`request_and_wait` logs in (a refused login is one line), checks
that the request and receipts topics exist (it never creates a topic: the DPO's
principal needs only Write on the request topics and Read on the receipt topics,
no group), starts reading the receipts topic at its end before it publishes
(acks=all) the request keyed by its request id, so a receipt published after the
request is never missed; it returns the first receipt keyed by that id within
``wait_s`` seconds, or None.
"""

from __future__ import annotations

import asyncio
import json

from aiokafka import TopicPartition

from pipeline.config.settings import Settings
from pipeline.kafka.connection import check_login, kafka_connection
from pipeline.kafka.topics import require_topics


async def request_and_wait(
    settings: Settings, topics: tuple[str, str], request_id: str, payload: bytes, wait_s: float
) -> dict[str, object] | None:
    """Send ``payload`` to ``topics[0]``; the receipt keyed ``request_id`` on ``topics[1]``, or None."""
    request_topic, receipts_topic = topics
    connection = kafka_connection(settings)
    await check_login(connection)
    await require_topics(connection, [request_topic, receipts_topic])
    receipts = connection.consumer(enable_auto_commit=False)
    await receipts.start()
    try:
        partition = TopicPartition(receipts_topic, 0)
        receipts.assign([partition])
        await receipts.seek_to_end(partition)
        await receipts.position(partition)
        producer = connection.producer(acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(request_topic, payload, key=request_id.encode())
        finally:
            await producer.stop()
        deadline = asyncio.get_running_loop().time() + wait_s
        while asyncio.get_running_loop().time() < deadline:
            for messages in (await receipts.getmany(timeout_ms=500)).values():
                for message in messages:
                    if message.key == request_id.encode() and message.value is not None:
                        receipt: dict[str, object] = json.loads(message.value)
                        return receipt
        return None
    finally:
        await receipts.stop()
