"""Fakes for the commit protocol: offsets, a failing store, a small ingestor and its records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipeline.formats.selection import FormatSelector, builtin_decoders
from pipeline.ingest.ingestor import Ingestor
from pipeline.ingest.records import RawRecord
from pipeline.keys.keyring import Key
from pipeline.keys.pseudonym import PartyPseudonymizer, Pseudonymizer
from pipeline.numbers.msisdn import NumberClassifier
from pipeline.sink.batch import PartitionFlush, TopicPartitionKey
from pipeline.sink.committer import BatchCommitter
from pipeline.sink.outcomes import Committed, OffsetsUnavailableError
from pipeline.sink.publisher import BatchPublisher
from pipeline.store.errors import StorageError
from pipeline.store.storage import LocalStorage
from tests.support.samples import call_at, decode_context

KEY = ("cdr.raw", 0)


class FakeOffsets:
    """The group's committed offsets and the consumer's seeks, recorded; commits can be refused."""

    def __init__(self, store: Path) -> None:
        self.store = store
        self.committed_offsets: dict[TopicPartitionKey, int] = {}
        self.seeks: list[tuple[TopicPartitionKey, int]] = []
        self.files_at_commit: list[set[str]] = []
        self.owned = True
        self.reachable = True

    def committed(self, key: TopicPartitionKey) -> int | None:
        if not self.reachable:
            raise OffsetsUnavailableError("broker unreachable")
        return self.committed_offsets.get(key)

    def commit(self, key: TopicPartitionKey, offset: int) -> bool:
        if not self.owned:
            return False
        self.files_at_commit.append({path.name for path in self.store.glob("cdr/*/*.parquet")})
        self.committed_offsets[key] = offset
        return True

    def seek(self, key: TopicPartitionKey, offset: int) -> None:
        self.seeks.append((key, offset))


class FailingStorage(LocalStorage):
    """A local store whose data-file publishes fail while ``failing`` is set."""

    failing = True

    def publish(self, relative_path: str, data: bytes) -> None:
        if self.failing:
            raise StorageError("disk unplugged")
        super().publish(relative_path, data)


class AppliedCommitter:
    """The committer as the Kafka service drives it: each outcome is applied at once."""

    def __init__(
        self, ingestor: Ingestor, publisher: BatchPublisher, offsets: FakeOffsets, **options: Any
    ) -> None:
        self.committer = BatchCommitter(publisher, offsets, **options)
        self.ingestor = ingestor
        self.offsets = offsets

    def commit_batch(self, flush: PartitionFlush) -> bool:
        outcome = self.committer.commit_batch(flush)
        outcome.apply(self.ingestor, self.offsets)
        return isinstance(outcome, Committed)


def small_ingestor() -> Ingestor:
    parties = PartyPseudonymizer(NumberClassifier("BE", (2, 5)), Pseudonymizer(Key("k1", b"z" * 32, "t")), 64)
    formats = FormatSelector(builtin_decoders({}), {"cdr.raw": "canonical-json"}, decode_context())
    return Ingestor(formats, parties, 3, 3600.0)


def records_at(count: int) -> list[RawRecord]:
    return [RawRecord("cdr.raw", 0, offset, call_at("2026-11-01T10:00:00+00:00", cdr_id=f"c{offset}"))
            for offset in range(count)]  # fmt: skip


def feed(ingestor: Ingestor, records: list[RawRecord]) -> None:
    for record in records:
        assert ingestor.add(record) is None


def stored_ids(root: Path) -> list[str]:
    return sorted(
        i for path in root.glob("cdr/*/*.parquet") for i in pq.read_table(path)["cdr_id"].to_pylist()
    )
