"""The publish protocol of one batch: claim its boundary, publish its files, then commit.

Before a batch's files are published, an *intent* records the batch's offset
range under ``_cdrpipe/intents/<topic>+<partition>+<first offset>.json``. The
intent is created exclusively: whoever records a batch starting at an offset
first decides where that batch ends, for every later replay and for any other
worker holding the same offsets. A replay after a crash therefore rebuilds
the same rows under the same file names, and a stale worker cannot replace a
file with a different cut of the same offsets.

Contract:

* :meth:`BatchPublisher.claim` returns the end offset recorded for the
  batch's first offset: the batch's own end if this call recorded it.
* :meth:`BatchPublisher.publish` leaves out the rows whose offsets the
  compaction of their call date covers (:mod:`pipeline.store.coverage`:
  they are in a compacted file already), passes each file's other rows and their
  pseudonyms' translations through the row filter (the erasure ledger),
  then publishes every file of the batch, retrying failed writes with exponential backoff, adds
  each file to its date's store manifest (a segment of this publisher's own:
  :class:`~pipeline.store.manifest.SegmentWriter`, so workers publishing into one
  date never overwrite each other's entries), and raises
  :class:`~pipeline.store.storage.StorageError` if they keep failing; the
  caller must then not commit the batch's offsets. Rows that cannot be
  encoded raise :class:`UnstorableRowsError` before anything is written: the
  caller replays the batch with those records dead-lettered.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.sink.batch import PartitionFlush, PendingFile, Routed
from pipeline.store import coverage, manifest
from pipeline.store.errors import StorageError
from pipeline.store.merge import merge_into
from pipeline.store.naming import QUARANTINE, in_area, partition_date
from pipeline.store.parquet import encode
from pipeline.store.retry import storage_retrying
from pipeline.store.storage import Storage

log = logging.getLogger(__name__)

INTENT_DIR = "_cdrpipe/intents"
T = TypeVar("T")
RowFilter = Callable[[pa.Table, Mapping[str, tuple[str, ...]]], Routed]
"""The ledger's view of a file's rows: where each row goes (:class:`Routed`)."""


def intent_path(topic: str, partition: int, first_offset: int) -> str:
    """Where the intent of the batch starting at ``first_offset`` is recorded."""
    return f"{INTENT_DIR}/{topic}+{partition}+{first_offset:020d}.json"


@dataclass(frozen=True, slots=True)
class Published:
    """What publishing a batch wrote: bytes and rows in the dataset, rows quarantined, rows suppressed,
    and rows left out because a compacted file holds them already."""

    bytes_written: int
    rows: int
    quarantined: int
    suppressed: int
    covered: int = 0


class UnstorableRowsError(Exception):
    """Some rows of a batch cannot be stored; ``offsets`` maps their source offsets to a safe message."""

    def __init__(self, offsets: dict[int, str]) -> None:
        super().__init__(f"{len(offsets)} rows cannot be stored")
        self.offsets = offsets


class BatchPublisher:
    """Claims boundaries and publishes batches to one storage.

    Each failed storage attempt is reported to ``on_storage_failure`` (the
    worker's health) and retried by the storage retry policy
    (:func:`~pipeline.store.retry.storage_retrying`: exponential backoff),
    except a :class:`~pipeline.store.errors.TerminalStorageError`,
    which is raised at once.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        row_filter: RowFilter = lambda table, translations: Routed(table, None, 0),
        attempts: int = 5,
        first_backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        on_storage_failure: Callable[[], None] = lambda: None,
    ) -> None:
        self.storage = storage
        self._on_storage_failure = on_storage_failure
        self._row_filter = row_filter
        self._retry = storage_retrying(attempts, first_backoff_s, sleep, log)
        self._segments = manifest.SegmentWriter(storage)

    def claim(self, flush: PartitionFlush) -> int:
        """Record the batch's range unless one is recorded; return the recorded end offset."""
        path = intent_path(flush.topic, flush.partition, flush.first_offset)
        document = {
            "topic": flush.topic,
            "partition": flush.partition,
            "first_offset": flush.first_offset,
            "end_offset": flush.commit_offset,
            "files": [pending.path for pending in flush.files],
            "recorded_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }
        if self._retrying(lambda: self.storage.create_exclusive(path, json.dumps(document).encode())):
            return flush.commit_offset
        recorded = self._retrying(lambda: self.storage.read(path))
        if recorded is None:
            raise StorageError(f"intent {path} vanished while it was read")
        return int(json.loads(recorded)["end_offset"])

    def publish(self, flush: PartitionFlush) -> Published:
        """Publish every file of the batch as the ledger routes its rows; say what was written.

        Erased and suppressed rows are not written. Restricted rows are merged
        into the file's mirror in the quarantine (merged, not replaced: the
        mirror may hold rows that a restriction or objection moved there).
        Every file is routed and encoded before the first one is written, so a
        file whose rows cannot be stored publishes nothing of the batch
        (:class:`UnstorableRowsError`).
        """
        uncovered, already_compacted = self._uncovered(flush)
        prepared = [(pending, self._prepare(pending)) for pending in uncovered]
        written = rows = quarantined = suppressed = 0
        for pending, (routed, data) in prepared:
            if routed.quarantined is not None:
                mirror = in_area(pending.path, QUARANTINE)
                self._guarded(
                    pending,
                    partial(
                        self._retrying,
                        partial(merge_into, self.storage, mirror, routed.quarantined, pending.keys),
                    ),
                )
            if data is not None:
                stamp = self._retrying(partial(self.storage.publish, pending.path, data))
                written += len(data)
                if stamp is not None:
                    covered = manifest.CoveredRange(
                        flush.topic, flush.partition, flush.first_offset, flush.commit_offset
                    )
                    self._segments.add(pending.path, manifest.encoded_entry(data, stamp, covered))
            else:
                # The ledger left no row: no file either (a replay may find one, or the
                # temporary file of a publish cut short, holding rows that must go).
                self._retrying(partial(self.storage.delete, pending.path))
            rows += routed.kept.num_rows
            quarantined += routed.quarantined.num_rows if routed.quarantined is not None else 0
            suppressed += routed.suppressed
        return Published(written, rows, quarantined, suppressed, already_compacted)

    def _uncovered(self, flush: PartitionFlush) -> tuple[list[PendingFile], int]:
        """The batch's files without the rows compaction covers, and how many rows were left out.

        A file whose every row is covered is left out whole: neither published nor deleted
        (a file of that name still in the store is one compaction is replacing, or one it kept).
        """
        files, covered = [], 0
        for pending in flush.files:
            call_date = partition_date(pending.path)
            if call_date is None:
                files.append(pending)
                continue
            recorded = self._retrying(partial(coverage.load, self.storage, call_date))
            mask = recorded.covered(flush.topic, flush.partition, pending.offsets)
            count = int(pc.sum(pc.cast(mask, pa.int64())).as_py() or 0)
            if count == 0:
                files.append(pending)
                continue
            covered += count
            if count < pending.rows:
                keep = pc.invert(mask)
                files.append(
                    PendingFile(
                        pending.path,
                        pending.table.filter(keep),
                        pending.offsets.filter(keep),
                        pending.keys,
                        pending.translations,
                    )
                )
        return files, covered

    def _prepare(self, pending: PendingFile) -> tuple[Routed, bytes | None]:
        """Where the ledger sends the file's rows, and the Parquet bytes of those it keeps."""

        def route_and_encode() -> tuple[Routed, bytes | None]:
            routed = self._row_filter(pending.table, pending.translations)
            return routed, encode(routed.kept, pending.keys) if routed.kept.num_rows else None

        return self._guarded(pending, route_and_encode)

    def _guarded(self, pending: PendingFile, operation: Callable[[], T]) -> T:
        try:
            return operation()
        except StorageError:
            raise
        except Exception as exc:
            # Anything else is about the file's rows, not the store: they were built already,
            # so no single one can be blamed; the file's records, not the partition, stop here.
            message = f"the row could not be written to Parquet ({type(exc).__name__})"
            raise UnstorableRowsError(dict.fromkeys(pending.offsets.to_pylist(), message)) from exc

    def forget(self, topic: str, partition: int, first_offset: int) -> None:
        """Remove the intent of a batch whose offsets are committed and superseded."""
        try:
            self.storage.delete(intent_path(topic, partition, first_offset))
        except StorageError as exc:
            log.warning("could not remove an old intent (harmless, retried later): %s", exc)

    def _retrying(self, operation: Callable[[], T]) -> T:
        def attempt() -> T:
            try:
                return operation()
            except StorageError:
                self._on_storage_failure()  # every failed attempt, terminal ones too
                raise

        return self._retry.copy()(attempt)
