"""Read the erasure ledger topic into an :class:`SubjectLedger`: all of it first, then as it grows.

Contract: after :meth:`LedgerReader.start` returns, the ledger holds every
authenticated entry published before the call; :meth:`LedgerReader.poll` adds
newer ones. An entry is authenticated when its MAC holds under a key of the
keyring (:mod:`pipeline.lifecycle.requests.signing`) and it was published under its own
key (:attr:`~pipeline.lifecycle.ledger.LedgerEntry.key`, which names its
request id): a copy of a genuine entry published under another entry's key is
refused like a forgery. Every refused message (a tombstone too: cdrpipe never
writes one) is counted in ``cdrpipe_lifecycle_messages_refused{message="ledger"}``
and logged with its offset, never its payload, and changes nothing; if it was
published under the key of an entry the ledger holds, the ledger notes that
entry as overshadowed, for the lifecycle owner to write it again
(:meth:`~pipeline.lifecycle.ledger.SubjectLedger.take_overshadowed`). A signed
message that is not a ledger entry of this version is skipped and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import msgspec
from aiokafka import TopicPartition

from pipeline.errors import KeyringError
from pipeline.kafka.connection import KafkaConnection
from pipeline.keys.keyring import Keyring
from pipeline.lifecycle.ledger import SubjectLedger, decode_entry
from pipeline.lifecycle.requests.signing import refuse, verified_message

log = logging.getLogger(__name__)


class LedgerReader:
    """A group-less consumer of the single-partition ledger topic, checking every entry's MAC."""

    def __init__(
        self,
        connection: KafkaConnection,
        topic: str,
        ledger: SubjectLedger,
        keyring: Callable[[], Keyring],
    ) -> None:
        self._partition = TopicPartition(topic, 0)
        self._ledger = ledger
        self._keyring = keyring
        self._last_keyring: Keyring | None = None
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
                self.take(message.key, message.value, message.offset)

    def take(self, key: bytes | None, value: bytes | None, offset: int) -> None:
        """Add one message of the topic to the ledger if it is an authenticated entry (module contract)."""
        where = f"{self._partition.topic} offset {offset}"
        named = key.decode("utf-8", "replace") if key is not None else None
        checked = verified_message(value, self._verifying_keyring(), "ledger", where)
        if checked is None:
            self._overshadow(named)
            return
        try:
            entry = decode_entry(checked)
        except msgspec.DecodeError:
            log.error("skipping a signed ledger message that is not a ledger entry (%s)", where)
            return
        if named != entry.key:
            refuse("ledger", "misplaced", where)
            self._overshadow(named)
            return
        self._ledger.add(entry)

    def _overshadow(self, key: str | None) -> None:
        if key is not None:
            self._ledger.overshadow(key)

    def _verifying_keyring(self) -> Keyring:
        """The keyring as its file holds it now, or the last one that loaded if a rotation broke it.

        Refusing genuine entries because the file is being fixed would weaken protection.
        """
        try:
            self._last_keyring = self._keyring()
        except KeyringError as exc:
            if self._last_keyring is None:
                raise
            log.error("the keyring cannot be loaded, checking ledger entries with the last one: %s", exc)
        return self._last_keyring

    async def stop(self) -> None:
        await self._consumer.stop()
