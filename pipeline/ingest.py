"""The ingest path without Kafka: decode, pseudonymise, route to per-partition batches.

Contract:

* :meth:`Ingestor.add_batch` consumes the records of one poll, in offset
  order per partition. A valid record becomes a row in its partition's
  batch, unless its call date is already past the retention period (then it
  is dropped and counted in ``expired_dropped``); any other record is
  returned as a :class:`DeadLetter` (never raised), with reason
  ``unstorable`` when it decoded but could not become a row. A poll is
  handled a chunk at a time: its records are decoded in one pass, and each
  chunk's rows are built straight into Arrow columns (:mod:`pipeline.rows`),
  with every distinct party string resolved once.
* :meth:`Ingestor.take` removes a partition's oldest batch and returns the
  files to publish (one per UTC call date, split with Arrow) and the offset
  to commit once they (and the dead letters returned for that partition so
  far) are durable. File names depend only on the topic, partition, call
  date and the batch's first offset.
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

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.lifecycle.retention import horizon
from pipeline.lifecycle.translation import KeyTranslator
from pipeline.pseudonym import PartyPseudonymizer
from pipeline.record import CanonicalCdr, RecordRejectedError, RejectReason
from pipeline.rows import build_rows, unstorable_rows
from pipeline.sink.naming import file_path

TopicPartitionKey = tuple[str, int]


class RecordDecoder(Protocol):
    """Chooses a message's format and decodes it (see ``FormatSelector``).

    Both methods raise only :class:`~pipeline.record.RecordRejectedError`.
    """

    def choose(self, topic: str, headers: Sequence[tuple[str, bytes]], payload: bytes) -> str: ...

    def decode_as(self, name: str, payload: bytes) -> CanonicalCdr: ...


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
    """A file to publish: its path, its rows, each row's source offset, and the rows' translations.

    ``translations`` maps each pseudonym of the rows to the same party's pseudonyms
    under the keyring's other keys (see :mod:`pipeline.lifecycle.ledger`).
    """

    path: str
    table: pa.Table
    offsets: pa.Array
    translations: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        """How many rows the file holds."""
        return int(self.table.num_rows)


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
        return sum(pending.rows for pending in self.files)


@dataclass(slots=True)
class _PartitionBatch:
    first_offset: int
    opened_at: float
    next_offset: int
    end_offset: int | None
    sealed: bool = False
    rows: int = 0
    tables: list[pa.Table] = field(default_factory=list)
    offsets: list[pa.Array] = field(default_factory=list)
    translations: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(slots=True)
class _Chunk:
    """What one poll brought for one batch, before its rows are built."""

    batch: _PartitionBatch
    cdrs: list[CanonicalCdr] = field(default_factory=list)
    records: list[RawRecord] = field(default_factory=list)


@dataclass(slots=True)
class _PartitionState:
    batches: list[_PartitionBatch] = field(default_factory=list)
    boundaries: dict[int, int] = field(default_factory=dict)
    unstorable: dict[int, str] = field(default_factory=dict)


class Ingestor:
    """Routes decoded records of many partitions into per-partition batches of Arrow rows."""

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
        """Route one record (see :meth:`add_batch`); return it as a dead letter if it cannot be stored."""
        letters = self.add_batch([record])
        return letters[0] if letters else None

    def add_batch(self, records: Sequence[RawRecord]) -> list[DeadLetter]:
        """Route the records of one poll; return those that cannot be stored as dead letters."""
        letters: list[DeadLetter] = []
        chunks: dict[int, _Chunk] = {}
        for record in records:
            batch = self._batch_for(record)
            batch.next_offset = record.offset + 1
            chunk = chunks.get(id(batch))
            if chunk is None:
                chunk = chunks[id(batch)] = _Chunk(batch)
            letter = self._decode_into(chunk, record)
            if letter is not None:
                letters.append(letter)
        for chunk in chunks.values():
            letters.extend(self._build(chunk))
        return letters

    def _decode_into(self, chunk: _Chunk, record: RawRecord) -> DeadLetter | None:
        unstorable = self._partitions[(record.topic, record.partition)].unstorable.pop(record.offset, None)
        if unstorable is not None:
            return DeadLetter(record, RejectReason.UNSTORABLE, unstorable, "unknown")
        if record.value is None:
            return DeadLetter(record, RejectReason.UNDECODABLE, "message has no value (tombstone)", "unknown")
        try:
            name = self._decoder.choose(record.topic, record.headers, record.value)
            chunk.cdrs.append(self._decoder.decode_as(name, record.value))
        except RecordRejectedError as rejected:
            return DeadLetter(record, rejected.reason, rejected.message, rejected.format_name)
        chunk.records.append(record)
        return None

    def _build(self, chunk: _Chunk) -> list[DeadLetter]:
        """Build the chunk's rows as Arrow columns and add them to its batch."""
        letters: list[DeadLetter] = []
        for cdr in chunk.cdrs:
            self._translator.note(cdr, chunk.batch.translations)
        table, offsets = self._rows(chunk.cdrs, chunk.records, letters)
        table, offsets = self._drop_expired(table, offsets)
        if table.num_rows:
            chunk.batch.tables.append(table)
            chunk.batch.offsets.append(offsets)
            chunk.batch.rows += table.num_rows
        return letters

    def _rows(
        self, cdrs: list[CanonicalCdr], records: list[RawRecord], letters: list[DeadLetter]
    ) -> tuple[pa.Table, pa.Array]:
        """The rows of ``cdrs`` (decoded from ``records``) and their offsets.

        A CDR that cannot become a row is dead-lettered instead, and the others
        are built again without it.
        """
        try:
            return build_rows(cdrs, self._parties), _offsets(records)
        except Exception as exc:
            # One record that cannot become a row must not stop the partition. The text of
            # exc may quote a value, so only its type is kept.
            message = _unstorable_message(exc)
        bad = set(unstorable_rows(cdrs, self._parties))
        letters.extend(
            DeadLetter(records[index], RejectReason.UNSTORABLE, message, "unknown") for index in sorted(bad)
        )
        keep = [index for index in range(len(cdrs)) if index not in bad]
        kept = [records[index] for index in keep]
        return build_rows([cdrs[index] for index in keep], self._parties), _offsets(kept)

    def _drop_expired(self, table: pa.Table, offsets: pa.Array) -> tuple[pa.Table, pa.Array]:
        """Rows whose call date is before the retention horizon are dropped (and counted)."""
        if self._retention_days is None:
            return table, offsets
        horizon_date = self._oldest_kept_date(self._retention_days)
        kept = pc.greater_equal(_call_dates(table), pa.scalar(horizon_date))
        dropped = table.num_rows - (pc.sum(pc.cast(kept, pa.int64())).as_py() or 0)
        if dropped == 0:
            return table, offsets
        self.expired_dropped += dropped
        return table.filter(kept), offsets.filter(kept)

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

    def over_memory_limit(self) -> bool:
        """Whether the worker holds as many rows as it may keep in memory."""
        return self.buffered_rows >= self._max_buffered_rows

    def due(self) -> list[TopicPartitionKey]:
        """Partitions whose oldest batch should be published now.

        A batch is due when sealed at a recorded boundary, when it reached the
        row or age limit (unless it must run to a recorded boundary), or when
        the worker holds more rows than its memory limit.
        """
        now = self._clock()
        pressure = self.over_memory_limit()
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
        files: list[PendingFile] = []
        if batch.tables:
            # one chunk per column: the ledger's and the encoder's column passes run once
            table = pa.concat_tables(batch.tables).combine_chunks()
            offsets = pa.concat_arrays(batch.offsets)
            call_dates = _call_dates(table)
            for call_date in sorted(pc.unique(call_dates).to_pylist()):
                mask = pc.equal(call_dates, pa.scalar(call_date, pa.date32()))
                path = file_path(call_date, topic, partition, batch.first_offset)
                files.append(PendingFile(path, table.filter(mask), offsets.filter(mask), batch.translations))
        return PartitionFlush(topic, partition, batch.first_offset, tuple(files), batch.next_offset)

    def rewind(
        self,
        key: TopicPartitionKey,
        first_offset: int,
        end_offset: int,
        unstorable: Mapping[int, str] | None = None,
    ) -> None:
        """Drop the partition's batches: consumption restarts at ``first_offset``, cut at ``end_offset``.

        The records at the offsets of ``unstorable`` (offset to message) are
        returned as dead letters when they come again instead of being decoded.
        """
        state = self._partitions.setdefault(key, _PartitionState())
        state.batches.clear()
        state.boundaries[first_offset] = end_offset
        state.unstorable.update(unstorable or {})

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


def _unstorable_message(exc: BaseException) -> str:
    """A dead letter's message for a record that could not become a row: the exception type only."""
    return f"the record could not be stored ({type(exc).__name__})"


def _offsets(records: list[RawRecord]) -> pa.Array:
    return pa.array([record.offset for record in records], pa.int64())


def _call_dates(table: pa.Table) -> pa.Array:
    """The UTC call date of each row (``start_time`` is stored in UTC)."""
    return pc.cast(table.column("start_time").combine_chunks(), pa.date32())
