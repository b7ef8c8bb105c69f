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
* :meth:`BatchPublisher.publish` passes each file's rows and their
  pseudonyms' translations through the row filter (the erasure ledger),
  then publishes every file of the batch, retrying failed writes with exponential backoff, and raises
  :class:`~pipeline.sink.storage.StorageError` if they keep failing; the
  caller must then not commit the batch's offsets.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import partial
from typing import TypeVar

import pyarrow as pa

from pipeline.ingest import PartitionFlush
from pipeline.lifecycle.ledger import Routed
from pipeline.lifecycle.quarantine import merge_into
from pipeline.sink.naming import QUARANTINE, in_area
from pipeline.sink.parquet import encode
from pipeline.sink.storage import Storage, StorageError

log = logging.getLogger(__name__)

INTENT_DIR = "_cdrpipe/intents"
T = TypeVar("T")
RowFilter = Callable[[pa.Table, Mapping[str, tuple[str, ...]]], pa.Table | Routed]
"""The ledger's view of a file's rows: the rows to keep, or where each row goes (:class:`Routed`)."""


def intent_path(topic: str, partition: int, first_offset: int) -> str:
    """Where the intent of the batch starting at ``first_offset`` is recorded."""
    return f"{INTENT_DIR}/{topic}+{partition}+{first_offset:020d}.json"


class BatchPublisher:
    """Claims boundaries and publishes batches to one storage.

    Each failed storage attempt is retried with exponential backoff and
    reported to ``on_storage_failure`` (the worker's health).
    """

    def __init__(
        self,
        storage: Storage,
        *,
        row_filter: RowFilter = lambda table, translations: table,
        attempts: int = 5,
        first_backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        on_storage_failure: Callable[[], None] = lambda: None,
        on_suppressed: Callable[[int], None] = lambda count: None,
    ) -> None:
        self.storage = storage
        self._on_storage_failure = on_storage_failure
        self._on_suppressed = on_suppressed
        self._row_filter = row_filter
        self._attempts = attempts
        self._first_backoff_s = first_backoff_s
        self._sleep = sleep

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

    def publish(self, flush: PartitionFlush) -> int:
        """Publish every file of the batch as the ledger routes its rows; return the bytes written.

        Erased and suppressed rows are not written. Restricted rows are merged
        into the file's mirror in the quarantine (merged, not replaced: the
        mirror may hold rows that a restriction or objection moved there).
        """
        written = 0
        for pending in flush.files:
            routed = self._row_filter(pending.rows.to_table(), pending.translations)
            if not isinstance(routed, Routed):
                routed = Routed(routed, None, 0)
            if routed.suppressed:
                self._on_suppressed(routed.suppressed)
            if routed.quarantined is not None:
                restricted = routed.quarantined
                self._retrying(
                    partial(merge_into, self.storage, in_area(pending.path, QUARANTINE), restricted)
                )
            if routed.kept.num_rows == 0:
                continue
            data = encode(routed.kept)
            self._retrying(partial(self.storage.publish, pending.path, data))
            written += len(data)
        return written

    def forget(self, topic: str, partition: int, first_offset: int) -> None:
        """Remove the intent of a batch whose offsets are committed and superseded."""
        try:
            self.storage.delete(intent_path(topic, partition, first_offset))
        except StorageError as exc:
            log.warning("could not remove an old intent (harmless, retried later): %s", exc)

    def _retrying(self, operation: Callable[[], T]) -> T:
        delay = self._first_backoff_s
        for attempt in range(1, self._attempts + 1):
            try:
                return operation()
            except StorageError as exc:
                self._on_storage_failure()
                if attempt == self._attempts:
                    raise
                log.warning(
                    "storage attempt %d/%d failed, retrying in %.1fs: %s", attempt, self._attempts, delay, exc
                )
                self._sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")
