"""Publish one lifecycle request and wait for its receipt (``cdrpipe erase``, ``restrict``, ``rectify``...).

Contract: :func:`request_and_wait` logs in (a refused login is one line), checks
that the request and receipts topics exist (it never creates a topic: the DPO's
principal needs only Write on the request topics and Read on the receipt topics,
no group), starts reading the receipts topic at its end before it publishes
(acks=all) the request keyed by its request id, so a receipt published after the
request is never missed. The request is signed with the keyring's active key
(:mod:`pipeline.lifecycle.requests.signing`); the receipt returned is the first one
within ``wait_s`` seconds that is keyed by the request id, whose MAC holds and
that answers this very request (its ``answers`` is the digest of the message
sent), or None. Any other receipt with that id is ignored, with one line on
standard error (a forged one, or the answer to another request reusing the id).
"""

from __future__ import annotations

import asyncio
import json

import click
from aiokafka import TopicPartition

from pipeline.config.settings import Settings
from pipeline.kafka.connection import check_login, kafka_connection
from pipeline.kafka.topics import require_topics
from pipeline.keys.keyring import Keyring
from pipeline.lifecycle.requests.signing import message_digest, sign_message, verified_message


async def request_and_wait(
    settings: Settings,
    topics: tuple[str, str],
    request_id: str,
    payload: bytes,
    *,
    keyring: Keyring,
    wait_s: float,
) -> dict[str, object] | None:
    """Sign ``payload``, send it to ``topics[0]``; its receipt on ``topics[1]``, or None (module contract)."""
    request_topic, receipts_topic = topics
    signed = sign_message(payload, keyring.active)
    answers = message_digest(signed)
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
            await producer.send_and_wait(request_topic, signed, key=request_id.encode())
        finally:
            await producer.stop()
        deadline = asyncio.get_running_loop().time() + wait_s
        while asyncio.get_running_loop().time() < deadline:
            for messages in (await receipts.getmany(timeout_ms=500)).values():
                for message in messages:
                    if message.key != request_id.encode():
                        continue
                    receipt = accepted_receipt(
                        message.value, keyring, answers, f"{receipts_topic} offset {message.offset}"
                    )
                    if receipt is not None:
                        return receipt
        return None
    finally:
        await receipts.stop()


def accepted_receipt(
    value: bytes | None, keyring: Keyring, answers: str, where: str
) -> dict[str, object] | None:
    """The receipt in ``value`` if it is signed and answers the request sent, else None (said on stderr)."""
    checked = verified_message(value, keyring, "receipt", where)  # a refusal is logged (stderr)
    if checked is None:
        return None
    receipt: dict[str, object] = json.loads(checked)
    if receipt.get("answers") != answers:
        click.echo(
            f"cdrpipe: ignored a receipt with this request id that answers another request ({where})",
            err=True,
        )
        return None
    return receipt
