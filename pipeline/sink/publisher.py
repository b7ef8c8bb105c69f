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
  caller must then not commit the batch's offsets. Rows that cannot be
  encoded raise :class:`UnstorableRowsError` before anything is written: the
  caller replays the batch with those records dead-lettered.
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

from pipeline.ingest import PartitionFlush, PendingFile
from pipeline.sink.parquet import encode
from pipeline.sink.storage import Storage
from pipeline.sink.storage_errors import StorageError, TerminalStorageError

log = logging.getLogger(__name__)

INTENT_DIR = "_cdrpipe/intents"
T = TypeVar("T")
RowFilter = Callable[[pa.Table, Mapping[str, tuple[str, ...]]], pa.Table]


def intent_path(topic: str, partition: int, first_offset: int) -> str:
    """Where the intent of the batch starting at ``first_offset`` is recorded."""
    return f"{INTENT_DIR}/{topic}+{partition}+{first_offset:020d}.json"


class UnstorableRowsError(Exception):
    """Some rows of a batch cannot be stored; ``offsets`` maps their source offsets to a safe message."""

    def __init__(self, offsets: dict[int, str]) -> None:
        super().__init__(f"{len(offsets)} rows cannot be stored")
        self.offsets = offsets


class BatchPublisher:
    """Claims boundaries and publishes batches to one storage.

    Each failed storage attempt is reported to ``on_storage_failure`` (the
    worker's health) and retried with exponential backoff, except a
    :class:`~pipeline.sink.storage_errors.TerminalStorageError`, which is
    raised at once.
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
    ) -> None:
        self.storage = storage
        self._on_storage_failure = on_storage_failure
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
        """Publish every file of the batch (minus erased rows); return the bytes written.

        Every file is encoded before the first one is written, so a batch with
        an unstorable row publishes nothing (:class:`UnstorableRowsError`).
        """
        encoded = [(pending.path, self._encode(pending)) for pending in flush.files]
        written = 0
        for path, data in encoded:
            if data is None:
                continue
            self._retrying(partial(self.storage.publish, path, data))
            written += len(data)
        return written

    def _encode(self, pending: PendingFile) -> bytes | None:
        """The Parquet bytes of a file's rows after the row filter; None if no row is left."""
        try:
            table = self._row_filter(pending.table, pending.translations)
            return encode(table) if table.num_rows else None
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
        delay = self._first_backoff_s
        for attempt in range(1, self._attempts + 1):
            try:
                return operation()
            except TerminalStorageError:
                self._on_storage_failure()
                raise  # retrying cannot help; the caller reports what to fix
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
