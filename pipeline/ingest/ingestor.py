"""Decode a poll's records and build their rows, a chunk at a time, into partition batches.

Contract:

* :meth:`Ingestor.add_batch` consumes the records of one poll, in offset
  order per partition. A valid record becomes a row in its partition's
  batch, unless its call date is already past the retention period (then it
  is dropped and counted in ``expired_dropped``); any other record is
  returned as a :class:`~pipeline.ingest.records.DeadLetter` (never raised),
  with reason ``unstorable`` when it decoded but could not become a row. The
  records of a poll are decoded in one pass, and each chunk's rows are built
  straight into Arrow columns (:mod:`pipeline.ingest.rows`), with every
  distinct party string resolved once.
* Batching, boundaries and hand-over are :class:`~pipeline.ingest.batches.PartitionBatches`'.
* Each batch carries the translations of its parties' pseudonyms to the
  keyring's other keys (:class:`~pipeline.ingest.translation.KeyTranslator`),
  so the erasure ledger matches them whatever key an entry was computed with.
  :meth:`Ingestor.rekey` switches to a rotated keyring between two polls.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.ingest.batches import PartitionBatch, PartitionBatches, call_dates
from pipeline.ingest.records import DeadLetter, RawRecord, RecordDecoder
from pipeline.ingest.rows import build_rows, unstorable_rows
from pipeline.ingest.translation import KeyTranslator
from pipeline.keys.pseudonym import PartyPseudonymizer
from pipeline.record import CanonicalCdr, RecordRejectedError, RejectReason, retention_horizon


@dataclass(slots=True)
class _Chunk:
    """What one poll brought for one batch, before its rows are built."""

    batch: PartitionBatch
    cdrs: list[CanonicalCdr] = field(default_factory=list)
    records: list[RawRecord] = field(default_factory=list)


class Ingestor(PartitionBatches):
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
        super().__init__(flush_rows, flush_seconds, max_buffered_rows, clock)
        self._decoder = decoder
        self._parties = parties
        self._translator = translator or KeyTranslator(parties, ())
        self._retention_days = retention_days
        self._today = today
        self.expired_dropped = 0
        self._horizon: tuple[float, date] | None = None

    @property
    def parties(self) -> PartyPseudonymizer:
        """The pseudonymiser the rows are built with."""
        return self._parties

    def rekey(self, parties: PartyPseudonymizer, translator: KeyTranslator) -> None:
        """Pseudonymise the next records under ``parties`` (a rotated keyring's active key)."""
        self._parties = parties
        self._translator = translator

    def add(self, record: RawRecord) -> DeadLetter | None:
        """Route one record (see :meth:`add_batch`); return it as a dead letter if it cannot be stored."""
        letters = self.add_batch([record])
        return letters[0] if letters else None

    def add_batch(self, records: Sequence[RawRecord]) -> list[DeadLetter]:
        """Route the records of one poll; return those that cannot be stored as dead letters."""
        letters: list[DeadLetter] = []
        chunks: dict[int, _Chunk] = {}
        for record in records:
            batch = self.batch_for(record)
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
        unstorable = self.take_unstorable(record)
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
        self._translator.note(chunk.cdrs, chunk.batch.translations)
        table, offsets = self._rows(chunk.cdrs, chunk.records, letters)
        table, offsets = self._drop_expired(table, offsets)
        if table.num_rows:
            chunk.batch.keys.add(self._parties.key_ref)
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
        kept = pc.greater_equal(call_dates(table), pa.scalar(horizon_date))
        dropped = table.num_rows - (pc.sum(pc.cast(kept, pa.int64())).as_py() or 0)
        if dropped == 0:
            return table, offsets
        self.expired_dropped += dropped
        return table.filter(kept), offsets.filter(kept)

    def _oldest_kept_date(self, retention_days: int) -> date:
        """The retention horizon, looked up again at most once a second."""
        now = self._clock()
        if self._horizon is None or now - self._horizon[0] >= 1.0:
            self._horizon = (now, retention_horizon(self._today(), retention_days))
        return self._horizon[1]


def _unstorable_message(exc: BaseException) -> str:
    """A dead letter's message for a record that could not become a row: the exception type only."""
    return f"the record could not be stored ({type(exc).__name__})"


def _offsets(records: list[RawRecord]) -> pa.Array:
    return pa.array([record.offset for record in records], pa.int64())
