"""The ingest path without Kafka: decode, pseudonymise, route to per-partition batches.

Contract:

* :meth:`Ingestor.add` consumes one raw record in offset order per partition.
  A valid record becomes a row in its partition's batch, under its call date,
  unless its call date is already past the retention period (then it is
  dropped and counted in ``expired_dropped``); any other record is returned
  as a :class:`DeadLetter` (never raised).
* :meth:`Ingestor.take` removes a partition's oldest batch and returns the
  files to publish and the offset to commit once they (and the dead letters
  returned for that partition so far) are durable. File names depend only on
  the topic, partition and the batch's first offset.
* Boundaries: a batch is cut by row count, by age, or at a boundary recorded
  earlier for its first offset (:meth:`Ingestor.rewind`). Replaying from a
  batch's first offset with its recorded boundary rebuilds exactly the same
  batch, and so exactly the same files.
* Each batch carries the translations of its parties' pseudonyms to the
  keyring's other keys (:class:`~pipeline.lifecycle.translation.KeyTranslator`),
  so the erasure ledger matches them whatever key an entry was computed with.
  :meth:`Ingestor.rekey` switches to a rotated keyring between two records.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Protocol

from pipeline.lifecycle.retention import horizon
from pipeline.lifecycle.translation import KeyTranslator
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
    """A file to publish: its store-relative path, its rows and their pseudonyms' translations."""

    path: str
    rows: ColumnBuffer
    translations: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PartitionFlush:
    """What one batch produced: files to publish, then the offset to commit.

    The batch covers offsets ``first_offset`` (inclusive) to ``commit_offset`` (exclusive).
    """

    topic: str
    partition: int
    first_offset: int
    files: tuple[PendingFile, ...]
    commit_offset: int

    @property
    def rows(self) -> int:
        """Rows across the batch's files."""
        return sum(len(pending.rows) for pending in self.files)


@dataclass(slots=True)
class _PartitionBatch:
    first_offset: int
    opened_at: float
    next_offset: int
    end_offset: int | None
    sealed: bool = False
    rows: int = 0
    by_date: dict[date, ColumnBuffer] = field(default_factory=dict)
    translations: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(slots=True)
class _PartitionState:
    batches: list[_PartitionBatch] = field(default_factory=list)
    boundaries: dict[int, int] = field(default_factory=dict)


class Ingestor:
    """Routes decoded records of many partitions into per-partition, per-call-date buffers."""

    def __init__(
        self,
        decoder: RecordDecoder,
        parties: PartyPseudonymizer,
        flush_rows: int,
        flush_seconds: float,
        *,
        max_buffered_rows: int | None = None,
        retention_days: int | None = None,
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
        clock: Callable[[], float] = time.monotonic,
        translator: KeyTranslator | None = None,
    ) -> None:
        self._decoder = decoder
        self._parties = parties
        self._translator = translator or KeyTranslator(parties, ())
        self._flush_rows = flush_rows
        self._flush_seconds = flush_seconds
        self._max_buffered_rows = max_buffered_rows or 8 * flush_rows
        self._clock = clock
        self._retention_days = retention_days
        self._today = today
        self.expired_dropped = 0
        self._horizon: tuple[float, date] | None = None
        self._partitions: dict[TopicPartitionKey, _PartitionState] = {}

    @property
    def parties(self) -> PartyPseudonymizer:
        """The pseudonymiser the rows are built with."""
        return self._parties

    def rekey(self, parties: PartyPseudonymizer, translator: KeyTranslator) -> None:
        """Pseudonymise the next records under ``parties`` (a rotated keyring's active key)."""
        self._parties = parties
        self._translator = translator

    @property
    def buffered_rows(self) -> int:
        """Rows held in memory across all partitions."""
        return sum(batch.rows for state in self._partitions.values() for batch in state.batches)

    def add(self, record: RawRecord) -> DeadLetter | None:
        """Route ``record``; return it as a dead letter if it cannot be stored."""
        batch = self._batch_for(record)
        batch.next_offset = record.offset + 1
        if record.value is None:
            return DeadLetter(record, RejectReason.UNDECODABLE, "message has no value (tombstone)", "unknown")
        try:
            cdr = self._decoder.decode(record.topic, record.headers, record.value)
        except RecordRejectedError as rejected:
            return DeadLetter(record, rejected.reason, rejected.message, rejected.format_name)
        call_date = cdr.start_time.date()
        if self._retention_days is not None and call_date < self._oldest_kept_date(self._retention_days):
            self.expired_dropped += 1
            return None
        buffer = batch.by_date.get(call_date)
        if buffer is None:
            buffer = batch.by_date[call_date] = ColumnBuffer()
        buffer.append(cdr, self._parties)
        self._translator.note(cdr, batch.translations)
        batch.rows += 1
        return None

    def _oldest_kept_date(self, retention_days: int) -> date:
        """The retention horizon, looked up again at most once a second."""
        now = self._clock()
        if self._horizon is None or now - self._horizon[0] >= 1.0:
            self._horizon = (now, horizon(self._today(), retention_days))
        return self._horizon[1]

    def _batch_for(self, record: RawRecord) -> _PartitionBatch:
        state = self._partitions.setdefault((record.topic, record.partition), _PartitionState())
        current = state.batches[-1] if state.batches else None
        if current is not None and not current.sealed:
            if current.end_offset is None or record.offset < current.end_offset:
                return current
            current.sealed = True
        batch = _PartitionBatch(
            first_offset=record.offset,
            opened_at=self._clock(),
            next_offset=record.offset,
            end_offset=state.boundaries.pop(record.offset, None),
        )
        state.batches.append(batch)
        return batch

    def due(self) -> list[TopicPartitionKey]:
        """Partitions whose oldest batch should be published now.

        A batch is due when sealed at a recorded boundary, when it reached the
        row or age limit (unless it must run to a recorded boundary), or when
        the worker holds more rows than its memory limit.
        """
        now = self._clock()
        pressure = self.buffered_rows >= self._max_buffered_rows
        due = []
        for key, state in self._partitions.items():
            if not state.batches:
                continue
            batch = state.batches[0]
            if batch.end_offset is not None:
                ready = batch.sealed or batch.next_offset >= batch.end_offset
            else:
                aged = now - batch.opened_at >= self._flush_seconds
                ready = pressure or aged or batch.rows >= self._flush_rows
            if ready:
                due.append(key)
        return due

    def held(self) -> list[TopicPartitionKey]:
        """Every partition with a batch in memory."""
        return [key for key, state in self._partitions.items() if state.batches]

    def take(self, key: TopicPartitionKey) -> PartitionFlush:
        """Remove the oldest batch of ``key`` and describe how to publish and commit it."""
        batch = self._partitions[key].batches.pop(0)
        topic, partition = key
        files = tuple(
            PendingFile(file_path(call_date, topic, partition, batch.first_offset), rows, batch.translations)
            for call_date, rows in sorted(batch.by_date.items())
        )
        return PartitionFlush(topic, partition, batch.first_offset, files, batch.next_offset)

    def rewind(self, key: TopicPartitionKey, first_offset: int, end_offset: int) -> None:
        """Drop the partition's batches: consumption restarts at ``first_offset``, cut at ``end_offset``."""
        state = self._partitions.setdefault(key, _PartitionState())
        state.batches.clear()
        state.boundaries[first_offset] = end_offset

    def restart(self, key: TopicPartitionKey) -> int | None:
        """Drop the partition's batches; return the offset consumption must restart from."""
        state = self._partitions.get(key)
        if state is None or not state.batches:
            return None
        first_offset = state.batches[0].first_offset
        state.batches.clear()
        return first_offset

    def discard(self, keys: Iterable[TopicPartitionKey]) -> None:
        """Forget partitions this worker no longer owns (their records will be replayed)."""
        for key in keys:
            self._partitions.pop(key, None)
