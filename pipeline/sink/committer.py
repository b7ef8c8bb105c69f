"""The exactly-once step of one batch: stale check → claim intent → publish → commit → forget.

This is the whole commit protocol, as plain synchronous code behind a small
:class:`Offsets` interface (the consumer group's committed offsets and the
consumer's position), so every branch is unit-tested without Kafka. The Kafka
service runs it in a worker thread, while it goes on consuming, and only
adapts the consumer to :class:`Offsets`.

Contract of :meth:`BatchCommitter.commit_batch` (one batch of one partition,
handed over by :meth:`pipeline.ingest.batches.PartitionBatches.take`):

* It returns :class:`Committed` only when the batch's files are durable in
  the store and its end offset is committed for the consumer group, in that
  order.
* Otherwise it returns how the partition must go on (:class:`Replay` or
  :class:`Drop`), which the caller applies to the ingestor and consumer on
  their own thread; the records are then consumed again (or by their new
  owner) and land under the same file names, so nothing is lost and nothing
  is stored twice. The committer itself never touches the ingestor.
* A terminal storage error (the store refuses: permissions, full disk, no
  bucket) makes the worker unhealthy at once, is logged once with what to
  fix, and is tried again only after ``terminal_pause_s``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from pipeline.observability.metrics import (
    BYTES_PUBLISHED,
    FILES_PUBLISHED,
    HEALTH,
    PUBLISH_SECONDS,
    RECORDS_ALREADY_COMPACTED,
    RECORDS_QUARANTINED,
    RECORDS_SUPPRESSED,
    RECORDS_WRITTEN,
)
from pipeline.sink.batch import PartitionFlush, TopicPartitionKey
from pipeline.sink.outcomes import Committed, Drop, Offsets, OffsetsUnavailableError, Outcome, Replay
from pipeline.sink.publisher import BatchPublisher, UnstorableRowsError
from pipeline.store.errors import StorageError, TerminalStorageError

log = logging.getLogger(__name__)

TERMINAL_PAUSE_S = 10.0
"""How long a worker waits before trying again a store that refused with a terminal error."""


class BatchCommitter:
    """Publishes a batch's files, then commits its offsets; one partition's batches in offset order."""

    def __init__(
        self,
        publisher: BatchPublisher,
        offsets: Offsets,
        *,
        terminal_pause_s: float = TERMINAL_PAUSE_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._publisher = publisher
        self._offsets = offsets
        self._terminal_pause_s = terminal_pause_s
        self._sleep = sleep
        self._terminal_reported: str | None = None
        self._committed_batch: dict[TopicPartitionKey, int] = {}

    def commit_batches(self, flushes: list[PartitionFlush]) -> list[Outcome]:
        """Commit ``flushes`` in order; after one of a partition fails, its later ones are skipped.

        A skipped batch needs nothing: the failed one's outcome replays or drops
        the whole partition from an earlier offset.
        """
        outcomes: list[Outcome] = []
        failed: set[TopicPartitionKey] = set()
        for flush in flushes:
            key = (flush.topic, flush.partition)
            if key in failed:
                continue
            outcome = self.commit_batch(flush)
            if not isinstance(outcome, Committed):
                failed.add(key)
            outcomes.append(outcome)
        return outcomes

    def commit_batch(self, flush: PartitionFlush) -> Outcome:
        """Publish and commit one batch, or say how the partition must be replayed or dropped.

        The outcome is applied by the caller, on the thread that owns the ingestor and consumer.
        """
        key = (flush.topic, flush.partition)
        facts = _facts(flush)
        try:
            committed = self._offsets.committed(key)
        except OffsetsUnavailableError as exc:
            log.warning("cannot read the committed offset of %s[%d], replaying: %s", *key, exc, extra=facts)
            HEALTH.failed()
            return Replay(key, flush.first_offset, flush.commit_offset)
        if committed is not None and committed > flush.first_offset:
            # Another owner committed past these records while this worker held them.
            # Publishing now could replace that owner's files with an older cut: drop it.
            log.warning(
                "%s[%d]: offsets from %d are already committed by another owner; dropping a stale batch",
                *key,
                flush.first_offset,
                extra=facts,
            )
            return Drop(key, resume_at=committed)
        began = time.perf_counter()
        try:
            recorded_end = self._publisher.claim(flush)
            if recorded_end != flush.commit_offset:
                # An earlier owner published (or may have published) files for a batch that
                # starts here and ends elsewhere. Rebuild exactly that batch so the replay
                # overwrites those files with identical rows instead of leaving a second cut.
                log.info(
                    "%s[%d]: offset %d was first cut at %d; rebuilding that batch",
                    *key,
                    flush.first_offset,
                    recorded_end,
                    extra=facts,
                )
                return Replay(key, flush.first_offset, recorded_end)
            published = self._publisher.publish(flush)
        except TerminalStorageError as exc:
            self._report_terminal(str(exc))
            self._sleep(self._terminal_pause_s)  # no point in hammering a store that refuses
            return Replay(key, flush.first_offset, flush.commit_offset)
        except StorageError as exc:
            log.error("%s[%d]: publishing failed, nothing committed, will replay: %s", *key, exc, extra=facts)
            return Replay(key, flush.first_offset, flush.commit_offset)
        except UnstorableRowsError as exc:
            # Nothing was written. Replaying the same range (its boundary is recorded) turns
            # those records into dead letters, so the partition moves on without them.
            log.error(
                "%s[%d]: %d records cannot be stored; replaying offsets %s..%s with them dead-lettered",
                *key,
                len(exc.offsets),
                f"{flush.first_offset:,}",
                f"{flush.commit_offset:,}",
                extra={**facts, "records": len(exc.offsets)},
            )
            return Replay(key, flush.first_offset, flush.commit_offset, exc.offsets)
        # thousands separators: the log scrubber replaces plain runs of 7+ digits (pipeline.numbers.text)
        log.info(
            "published %d files (%s rows, %s quarantined, %s suppressed, %s already compacted, %s bytes) "
            "for %s[%d] offsets %s..%s",
            len(flush.files),
            f"{published.rows:,}",
            f"{published.quarantined:,}",
            f"{published.suppressed:,}",
            f"{published.covered:,}",
            f"{published.bytes_written:,}",
            flush.topic,
            flush.partition,
            f"{flush.first_offset:,}",
            f"{flush.commit_offset:,}",
            extra={
                **facts,
                "files": len(flush.files),
                "rows": published.rows,
                "bytes": published.bytes_written,
                "quarantined": published.quarantined,
                "suppressed": published.suppressed,
                "already_compacted": published.covered,
            },
        )
        if not self._offsets.commit(key, flush.commit_offset):
            # The partition moved to another worker, which replays from the last commit and
            # rebuilds this batch from its intent; this worker must forget what it holds.
            log.warning("commit of %s[%d] failed, its new owner replays the batch", *key, extra=facts)
            return Drop(key)
        self._forget_previous(key, flush.first_offset)
        self._terminal_reported = None
        HEALTH.recovered()
        # Counted once the offsets are committed: a replayed batch is not counted twice.
        RECORDS_WRITTEN.inc(published.rows)
        RECORDS_QUARANTINED.inc(published.quarantined)
        RECORDS_SUPPRESSED.inc(published.suppressed)
        RECORDS_ALREADY_COMPACTED.inc(published.covered)
        FILES_PUBLISHED.inc(len(flush.files))
        BYTES_PUBLISHED.inc(published.bytes_written)
        PUBLISH_SECONDS.observe(time.perf_counter() - began)
        return Committed()

    def _report_terminal(self, problem: str) -> None:
        """Mark the worker unhealthy and say once (per distinct problem) what the operator must fix."""
        HEALTH.failed(problem)
        if problem != self._terminal_reported:
            log.error("the store refuses writes, nothing is committed until this is fixed: %s", problem)
            self._terminal_reported = problem

    def _forget_previous(self, key: TopicPartitionKey, first_offset: int) -> None:
        # The previous batch's offsets are now below the committed offset: no replay and no
        # stale owner can reach them again, so its intent can go. This batch's own intent
        # stays until the next commit, because a worker that just lost the partition may
        # still be between its stale check and its claim, and must find this boundary.
        previous = self._committed_batch.get(key)
        if previous is not None:
            self._publisher.forget(key[0], key[1], previous)
        self._committed_batch[key] = first_offset


def _facts(flush: PartitionFlush) -> dict[str, object]:
    """A batch's coordinates as log fields (``extra=``): JSON log lines carry them as fields."""
    return {
        "topic": flush.topic,
        "partition": flush.partition,
        "first_offset": flush.first_offset,
        "end_offset": flush.commit_offset,
    }
