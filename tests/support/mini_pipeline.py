"""The ingest path without Kafka over a real store: raw logs, the real publisher and committer."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.formats.selection import FormatSelector, builtin_decoders
from pipeline.ingest.ingestor import Ingestor
from pipeline.ingest.records import RawRecord
from pipeline.keys.keyring import Key
from pipeline.keys.pseudonym import PartyPseudonymizer, Pseudonymizer
from pipeline.lifecycle.ledger import SubjectLedger
from pipeline.numbers.msisdn import NumberClassifier
from pipeline.sink.batch import TopicPartitionKey
from pipeline.sink.committer import BatchCommitter
from pipeline.sink.outcomes import Committed
from pipeline.sink.publisher import BatchPublisher
from pipeline.store.naming import AREAS
from pipeline.store.storage import Storage
from tests.support.samples import call_at, decode_context

TOPIC = "cdr.raw"
KEY = Key("k1", b"z" * 32, "t")


class GroupOffsets:
    """The consumer group's committed offsets, kept in a dict (an operator may reset them)."""

    def __init__(self) -> None:
        self.committed_offsets: dict[TopicPartitionKey, int] = {}

    def committed(self, key: TopicPartitionKey) -> int | None:
        return self.committed_offsets.get(key)

    def commit(self, key: TopicPartitionKey, offset: int) -> bool:
        self.committed_offsets[key] = offset
        return True

    def seek(self, key: TopicPartitionKey, offset: int) -> None:
        """The consumer of :meth:`MiniPipeline.consume` starts at the committed offset anyway."""


class MiniPipeline:
    """Records appended to a raw log, consumed by a worker that restarts at every :meth:`consume`."""

    def __init__(self, storage: Storage, ledger: SubjectLedger | None = None, flush_rows: int = 3) -> None:
        self.storage = storage
        self.ledger = ledger if ledger is not None else SubjectLedger()
        self.flush_rows = flush_rows
        self.log: dict[int, list[bytes]] = {}
        self.offsets = GroupOffsets()

    def send(self, partition: int, payload: bytes) -> int:
        """Append ``payload`` to the partition's log; return its offset."""
        records = self.log.setdefault(partition, [])
        records.append(payload)
        return len(records) - 1

    def call(self, partition: int, cdr_id: str, start: str, **fields: Any) -> int:
        """Append a call (canonical JSON) starting at ``start``; return its offset."""
        return self.send(partition, call_at(start, cdr_id=cdr_id, **fields))

    def consume(self, publisher: BatchPublisher | None = None) -> None:
        """Consume every partition from its committed offset to the end, publishing and committing batches."""
        publisher = publisher or BatchPublisher(self.storage, row_filter=self.ledger.route)
        committer = BatchCommitter(publisher, self.offsets)
        parties = PartyPseudonymizer(NumberClassifier("BE", (2, 5)), Pseudonymizer(KEY), 64)
        formats = FormatSelector(builtin_decoders({}), {TOPIC: "canonical-json"}, decode_context())
        ingestor = Ingestor(formats, parties, self.flush_rows, 3600.0)
        for partition, records in sorted(self.log.items()):
            key = (TOPIC, partition)
            for offset in range(self.offsets.committed(key) or 0, len(records)):
                assert ingestor.add(RawRecord(TOPIC, partition, offset, records[offset])) is None
                for due in ingestor.due():
                    assert isinstance(committer.commit_batch(ingestor.take(due)), Committed)
            while key in ingestor.held():
                assert isinstance(committer.commit_batch(ingestor.take(key)), Committed)

    def reset(self, partition: int, offset: int = 0) -> None:
        """What an operator's offset reset does: the group consumes the partition again from ``offset``."""
        self.offsets.committed_offsets[(TOPIC, partition)] = offset


def stored(storage: Storage, areas: tuple[str, ...] = AREAS) -> pa.Table:
    """Every row of ``areas`` (all by default), read through the storage."""
    tables = []
    for area in areas:
        for path in storage.list(area):
            with storage.open_input(path) as handle:
                tables.append(pq.read_table(handle))
    return pa.concat_tables(tables) if tables else pa.table({"cdr_id": pa.array([], pa.string())})


def stored_ids(storage: Storage, areas: tuple[str, ...] = AREAS) -> list[str]:
    """The ``cdr_id`` of every row of ``areas``, sorted (a copy stored twice appears twice)."""
    return sorted(stored(storage, areas).column("cdr_id").to_pylist())
