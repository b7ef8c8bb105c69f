"""Offset-ordered batches per partition, cut by size, age, memory or a recorded boundary.

Contract:

* A batch is cut by row count, by age, by the worker's memory limit, or at a
  boundary recorded earlier for its first offset (:meth:`PartitionBatches.rewind`).
  Replaying from a batch's first offset with its recorded boundary rebuilds
  exactly the same batch, and so exactly the same files.
* :meth:`PartitionBatches.take` removes a partition's oldest batch and returns
  the files to publish (one per UTC call date, split with Arrow) and the
  offset to commit once they are durable. File names depend only on the
  topic, partition, call date and the batch's first offset.
* The records at offsets marked unstorable by a rewind are dead-lettered when
  they come again (:meth:`PartitionBatches.take_unstorable`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.ingest.records import RawRecord
from pipeline.keys.fingerprint import KeyRef
from pipeline.sink.batch import PartitionFlush, PendingFile, TopicPartitionKey
from pipeline.store.naming import file_path


@dataclass(slots=True)
class PartitionBatch:
    first_offset: int
    opened_at: float
    next_offset: int
    end_offset: int | None
    sealed: bool = False
    rows: int = 0
    tables: list[pa.Table] = field(default_factory=list)
    offsets: list[pa.Array] = field(default_factory=list)
    translations: dict[str, tuple[str, ...]] = field(default_factory=dict)
    keys: set[KeyRef] = field(default_factory=set)
    """The keys the batch's rows were pseudonymised under (a rotation mid-batch adds one)."""


@dataclass(slots=True)
class _PartitionState:
    batches: list[PartitionBatch] = field(default_factory=list)
    boundaries: dict[int, int] = field(default_factory=dict)
    unstorable: dict[int, str] = field(default_factory=dict)


class PartitionBatches:
    """The batches of every partition this worker holds, in offset order."""

    def __init__(
        self,
        flush_rows: int,
        flush_seconds: float,
        max_buffered_rows: int | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._flush_rows = flush_rows
        self._flush_seconds = flush_seconds
        self._max_buffered_rows = max_buffered_rows or 8 * flush_rows
        self._clock = clock
        self._partitions: dict[TopicPartitionKey, _PartitionState] = {}

    @property
    def buffered_rows(self) -> int:
        """Rows held in memory across all partitions."""
        return sum(batch.rows for state in self._partitions.values() for batch in state.batches)

    def take_unstorable(self, record: RawRecord) -> str | None:
        """The dead-letter message of ``record`` if a rewind marked it unstorable (once), else None."""
        state = self._partitions.get((record.topic, record.partition))
        return state.unstorable.pop(record.offset, None) if state is not None else None

    def batch_for(self, record: RawRecord) -> PartitionBatch:
        state = self._partitions.setdefault((record.topic, record.partition), _PartitionState())
        current = state.batches[-1] if state.batches else None
        if current is not None and not current.sealed:
            if current.end_offset is None or record.offset < current.end_offset:
                return current
            current.sealed = True
        batch = PartitionBatch(
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
            dates = call_dates(table)
            for call_date in sorted(pc.unique(dates).to_pylist()):
                mask = pc.equal(dates, pa.scalar(call_date, pa.date32()))
                path = file_path(call_date, topic, partition, batch.first_offset)
                files.append(
                    PendingFile(
                        path,
                        table.filter(mask),
                        offsets.filter(mask),
                        frozenset(batch.keys),
                        batch.translations,
                    )
                )
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


def call_dates(table: pa.Table) -> pa.Array:
    """The UTC call date of each row (``start_time`` is stored in UTC)."""
    return pc.cast(table.column("start_time").combine_chunks(), pa.date32())
