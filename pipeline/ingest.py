"""The ingest path without Kafka: decode, pseudonymise, route to per-partition batches.

Contract:

* :meth:`Ingestor.add` consumes one raw record in offset order per partition.
  A valid record becomes a row in its partition's batch, under its call date;
  any other record is returned as a :class:`DeadLetter` (never raised).
* :meth:`Ingestor.take` removes a partition's batch and returns the files to
  publish and the offset to commit once they (and the dead letters returned
  for that partition so far) are durable. File names depend only on the
  topic, partition and the batch's first offset, so a replay from the
  committed offset reproduces them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Protocol

from pipeline.pseudonym import PartyPseudonymizer
from pipeline.record import CanonicalCdr, RecordRejectedError, RejectReason
from pipeline.rows import ColumnBuffer
from pipeline.sink.naming import file_path

TopicPartitionKey = tuple[str, int]


class RecordDecoder(Protocol):
    """Decodes a message's payload given its topic and headers (see ``FormatSelector``)."""

    def decode(self, topic: str, headers: Sequence[tuple[str, bytes]], payload: bytes) -> CanonicalCdr: ...


@dataclass(frozen=True, slots=True)
class RawRecord:
    """The parts of a Kafka message the ingest path uses."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record rejected with a reason; ``message`` never contains input values."""

    record: RawRecord
    reason: RejectReason
    message: str
    format_name: str


@dataclass(frozen=True, slots=True)
class PendingFile:
    """A file to publish: its store-relative path and its rows."""

    path: str
    rows: ColumnBuffer


@dataclass(frozen=True, slots=True)
class PartitionFlush:
    """What one partition's batch produced: files to publish, then the offset to commit."""

    topic: str
    partition: int
    files: tuple[PendingFile, ...]
    commit_offset: int


@dataclass(slots=True)
class _PartitionBatch:
    first_offset: int
    opened_at: float
    next_offset: int
    rows: int = 0
    by_date: dict[date, ColumnBuffer] = field(default_factory=dict)


class Ingestor:
    """Routes decoded records of many partitions into per-partition, per-call-date buffers."""

    def __init__(
        self,
        decoder: RecordDecoder,
        parties: PartyPseudonymizer,
        flush_rows: int,
        flush_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._decoder = decoder
        self._parties = parties
        self._flush_rows = flush_rows
        self._flush_seconds = flush_seconds
        self._clock = clock
        self._batches: dict[TopicPartitionKey, _PartitionBatch] = {}

    @property
    def buffered_rows(self) -> int:
        """Rows held in memory across all partitions."""
        return sum(batch.rows for batch in self._batches.values())

    def add(self, record: RawRecord) -> DeadLetter | None:
        """Route ``record``; return it as a dead letter if it cannot be stored."""
        key = (record.topic, record.partition)
        batch = self._batches.get(key)
        if batch is None:
            batch = _PartitionBatch(record.offset, self._clock(), record.offset)
            self._batches[key] = batch
        batch.next_offset = record.offset + 1
        if record.value is None:
            return DeadLetter(record, RejectReason.UNDECODABLE, "message has no value (tombstone)", "unknown")
        try:
            cdr = self._decoder.decode(record.topic, record.headers, record.value)
        except RecordRejectedError as rejected:
            return DeadLetter(record, rejected.reason, rejected.message, rejected.format_name)
        call_date = cdr.start_time.date()
        buffer = batch.by_date.get(call_date)
        if buffer is None:
            buffer = batch.by_date[call_date] = ColumnBuffer()
        buffer.append(cdr, self._parties)
        batch.rows += 1
        return None

    def due(self) -> list[TopicPartitionKey]:
        """Partitions whose batch reached the row limit or the age limit."""
        now = self._clock()
        return [
            key
            for key, batch in self._batches.items()
            if batch.rows >= self._flush_rows or now - batch.opened_at >= self._flush_seconds
        ]

    def held(self) -> list[TopicPartitionKey]:
        """Every partition with a batch in memory."""
        return list(self._batches)

    def take(self, key: TopicPartitionKey) -> PartitionFlush:
        """Remove the batch of ``key`` and describe how to publish and commit it."""
        batch = self._batches.pop(key)
        topic, partition = key
        files = tuple(
            PendingFile(file_path(call_date, topic, partition, batch.first_offset), rows)
            for call_date, rows in sorted(batch.by_date.items())
        )
        return PartitionFlush(topic, partition, files, batch.next_offset)

    def discard(self, keys: Iterable[TopicPartitionKey]) -> None:
        """Forget batches of partitions this worker no longer owns (they will be replayed)."""
        for key in keys:
            self._batches.pop(key, None)
