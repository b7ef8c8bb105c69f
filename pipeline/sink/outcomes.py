"""How a batch's commit ended, and what the caller must then do to its partition.

The committer (:mod:`pipeline.sink.committer`) runs in a worker thread and
never touches what the consuming thread owns. It returns an :data:`Outcome`,
which the consuming thread applies to the batches it holds
(:class:`HeldBatches`, the ingestor) and to its consumer (:class:`Offsets`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from pipeline.sink.batch import TopicPartitionKey


class HeldBatches(Protocol):
    """What the caller holds of each partition (the ingestor), as outcomes change it."""

    def rewind(
        self, key: TopicPartitionKey, first_offset: int, end_offset: int, unstorable: dict[int, str] | None
    ) -> None:
        """Drop the partition's batches; it is consumed again from ``first_offset``, cut at ``end_offset``."""

    def discard(self, keys: Iterable[TopicPartitionKey]) -> None:
        """Forget the partitions' batches."""


class OffsetsUnavailableError(Exception):
    """The group's committed offset could not be read (the broker is unreachable or busy)."""


class Offsets(Protocol):
    """The consumer group's committed offsets and the consumer's position, per partition.

    ``committed`` and ``commit`` are called from the committing thread, ``seek``
    from the thread that owns the consumer (where outcomes are applied).
    """

    def committed(self, key: TopicPartitionKey) -> int | None:
        """The group's committed offset; raises :class:`OffsetsUnavailableError` if it cannot be read."""

    def commit(self, key: TopicPartitionKey, offset: int) -> bool:
        """Commit ``offset``; False if this consumer no longer owns the partition (nothing committed)."""

    def seek(self, key: TopicPartitionKey, offset: int) -> None:
        """Consume the partition from ``offset`` next (no effect on a partition no longer owned)."""


@dataclass(frozen=True, slots=True)
class Committed:
    """The batch's files are durable and its end offset is committed."""

    def apply(self, ingestor: HeldBatches, offsets: Offsets) -> None:
        """Nothing to undo."""


@dataclass(frozen=True, slots=True)
class Replay:
    """Nothing was committed: consume the partition again from the batch's first offset.

    The replay is cut at ``end_offset`` (the recorded boundary), and the records
    at the offsets of ``unstorable`` come back as dead letters.
    """

    key: TopicPartitionKey
    first_offset: int
    end_offset: int
    unstorable: dict[int, str] | None = None

    def apply(self, ingestor: HeldBatches, offsets: Offsets) -> None:
        """Drop what the worker holds for the partition and move its consumer back."""
        ingestor.rewind(self.key, self.first_offset, self.end_offset, self.unstorable)
        offsets.seek(self.key, self.first_offset)


@dataclass(frozen=True, slots=True)
class Drop:
    """The partition's batches are not this worker's to commit any more (stale, or revoked)."""

    key: TopicPartitionKey
    resume_at: int | None = None

    def apply(self, ingestor: HeldBatches, offsets: Offsets) -> None:
        """Forget the partition's batches; resume at the owner's committed offset if one is known."""
        ingestor.discard([self.key])
        if self.resume_at is not None:
            offsets.seek(self.key, self.resume_at)


Outcome = Committed | Replay | Drop
