"""Read the erasure ledger topic into an :class:`SubjectLedger`: all of it first, then as it grows.

Contract: after :meth:`LedgerReader.start` returns, the ledger holds every
entry published before the call; :meth:`LedgerReader.poll` adds newer ones.
Messages that are not ledger entries are skipped and logged.
"""

from __future__ import annotations

import logging

import msgspec
from aiokafka import TopicPartition

from pipeline.kafka.connection import KafkaConnection
from pipeline.lifecycle.ledger import SubjectLedger, decode_entry

log = logging.getLogger(__name__)


class LedgerReader:
    """A group-less consumer of the single-partition ledger topic."""

    def __init__(self, connection: KafkaConnection, topic: str, ledger: SubjectLedger) -> None:
        self._partition = TopicPartition(topic, 0)
        self._ledger = ledger
        self._consumer = connection.consumer(enable_auto_commit=False)

    async def start(self) -> None:
        """Start and read the whole ledger."""
        await self._consumer.start()
        self._consumer.assign([self._partition])
        await self._consumer.seek_to_beginning(self._partition)
        end = (await self._consumer.end_offsets([self._partition]))[self._partition]
        while await self._consumer.position(self._partition) < end:
            await self.poll(timeout_ms=1000)
        log.info("erasure ledger loaded: %d entries", len(self._ledger))

    async def poll(self, timeout_ms: int = 1000) -> None:
        """Add the entries that arrived since the last poll."""
        batches = await self._consumer.getmany(timeout_ms=timeout_ms)
        for messages in batches.values():
            for message in messages:
                if message.value is None:
                    continue
                try:
                    self._ledger.add(decode_entry(message.value))
                except msgspec.DecodeError:
                    log.error(
                        "skipping a ledger message that is not a ledger entry (offset %d)", message.offset
                    )

    async def stop(self) -> None:
        await self._consumer.stop()
