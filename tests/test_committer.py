"""The commit protocol in process, with fake offsets: every branch of BatchCommitter (issue 15)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.formats.selection import FormatSelector, builtin_decoders
from pipeline.ingest import Ingestor, PartitionFlush, RawRecord, TopicPartitionKey
from pipeline.keyring import Key
from pipeline.metrics import HEALTH
from pipeline.msisdn import NumberClassifier
from pipeline.pseudonym import PartyPseudonymizer, Pseudonymizer
from pipeline.sink.committer import BatchCommitter, Committed, OffsetsUnavailableError, Replay
from pipeline.sink.publisher import BatchPublisher, intent_path
from pipeline.sink.storage import LocalStorage
from pipeline.sink.storage_errors import StorageError
from tests.samples import call_at, decode_context

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


def _ingestor() -> Ingestor:
    parties = PartyPseudonymizer(NumberClassifier("BE", (2, 5)), Pseudonymizer(Key("k1", b"z" * 32, "t")), 64)
    formats = FormatSelector(builtin_decoders({}), {"cdr.raw": "canonical-json"}, decode_context())
    return Ingestor(formats, parties, 3, 3600.0)


def _records(count: int) -> list[RawRecord]:
    return [RawRecord("cdr.raw", 0, offset, call_at("2026-11-01T10:00:00+00:00", cdr_id=f"c{offset}"))
            for offset in range(count)]  # fmt: skip


def _feed(ingestor: Ingestor, records: list[RawRecord]) -> None:
    for record in records:
        assert ingestor.add(record) is None


def _stored_ids(root: Path) -> list[str]:
    return sorted(
        i for path in root.glob("cdr/*/*.parquet") for i in pq.read_table(path)["cdr_id"].to_pylist()
    )


def _parts(root: Path, storage: LocalStorage | None = None) -> tuple[Ingestor, FakeOffsets, AppliedCommitter]:
    ingestor, offsets = _ingestor(), FakeOffsets(root)
    publisher = BatchPublisher(storage or LocalStorage(root), attempts=1, sleep=lambda _: None)
    return ingestor, offsets, AppliedCommitter(ingestor, publisher, offsets)


def test_files_are_durable_before_the_offsets_are_committed(tmp_path: Path) -> None:
    ingestor, offsets, committer = _parts(tmp_path)
    _feed(ingestor, _records(3))
    assert committer.commit_batch(ingestor.take(KEY))
    assert offsets.committed_offsets[KEY] == 3
    assert offsets.files_at_commit == [{"cdr.raw+0+00000000000000000000.parquet"}]
    assert _stored_ids(tmp_path) == ["c0", "c1", "c2"]


def test_a_stale_owner_drops_its_batch_and_moves_to_the_committed_offset(tmp_path: Path) -> None:
    ingestor, offsets, committer = _parts(tmp_path)
    _feed(ingestor, _records(6))
    offsets.committed_offsets[KEY] = 4  # a new owner committed while this worker held the records
    assert not committer.commit_batch(ingestor.take(KEY))
    assert offsets.seeks == [(KEY, 4)]
    assert ingestor.held() == [], "every batch of the partition is dropped"
    assert _stored_ids(tmp_path) == [] and not (tmp_path / "_cdrpipe").exists()


def test_a_recorded_boundary_is_adopted_and_the_replay_rebuilds_that_batch(tmp_path: Path) -> None:
    records = _records(6)
    earlier = _ingestor()
    _feed(earlier, records[:2])
    crashed = earlier.take(KEY)  # cut at 2 (by age), published, then the worker died
    BatchPublisher(LocalStorage(tmp_path)).claim(crashed)
    ingestor, offsets, committer = _parts(tmp_path)
    _feed(ingestor, records[:3])
    assert not committer.commit_batch(ingestor.take(KEY))
    assert offsets.seeks == [(KEY, 0)] and KEY not in offsets.committed_offsets
    _feed(ingestor, records[:3])  # consumed again from offset 0: the batch ends at the recorded 2
    rebuilt = ingestor.take(KEY)
    assert (rebuilt.first_offset, rebuilt.commit_offset) == (0, 2)
    assert committer.commit_batch(rebuilt)
    assert offsets.committed_offsets[KEY] == 2


def test_a_failed_publish_commits_nothing_and_replays_the_same_range(tmp_path: Path) -> None:
    storage = FailingStorage(tmp_path)
    ingestor, offsets, committer = _parts(tmp_path, storage)
    records = _records(3)
    _feed(ingestor, records)
    assert not committer.commit_batch(ingestor.take(KEY))
    assert offsets.committed_offsets == {} and offsets.seeks == [(KEY, 0)]
    assert storage.read(intent_path("cdr.raw", 0, 0)) is not None, "the boundary was recorded first"
    storage.failing = False
    _feed(ingestor, records)
    assert committer.commit_batch(ingestor.take(KEY))
    assert offsets.committed_offsets[KEY] == 3 and _stored_ids(tmp_path) == ["c0", "c1", "c2"]


def test_unreadable_committed_offsets_replay_the_batch_and_mark_the_worker_unhealthy(tmp_path: Path) -> None:
    ingestor, offsets, committer = _parts(tmp_path)
    _feed(ingestor, _records(3))
    offsets.reachable = False
    assert not committer.commit_batch(ingestor.take(KEY))
    assert not HEALTH.healthy
    assert offsets.seeks == [(KEY, 0)] and _stored_ids(tmp_path) == []
    offsets.reachable = True
    _feed(ingestor, _records(3))
    assert committer.commit_batch(ingestor.take(KEY))
    assert HEALTH.healthy


def test_a_revoke_mid_batch_leaves_the_batch_to_the_new_owner_who_rebuilds_the_same_files(
    tmp_path: Path,
) -> None:
    records = _records(3)
    ingestor, offsets, committer = _parts(tmp_path)
    _feed(ingestor, records)
    offsets.owned = False  # the partition was revoked while the files were being published
    assert not committer.commit_batch(ingestor.take(KEY))
    assert ingestor.held() == []
    published = {path.name: path.read_bytes() for path in tmp_path.glob("cdr/*/*.parquet")}
    new_owner, new_offsets, new_committer = _parts(tmp_path)
    _feed(new_owner, records)
    assert new_committer.commit_batch(new_owner.take(KEY))
    assert new_offsets.committed_offsets[KEY] == 3
    assert {path.name: path.read_bytes() for path in tmp_path.glob("cdr/*/*.parquet")} == published


def test_an_intent_is_forgotten_only_after_the_next_batch_commits(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    ingestor, _, committer = _parts(tmp_path, storage)
    records = _records(6)
    _feed(ingestor, records[:3])
    assert committer.commit_batch(ingestor.take(KEY))
    assert storage.read(intent_path("cdr.raw", 0, 0)) is not None
    _feed(ingestor, records[3:])
    assert committer.commit_batch(ingestor.take(KEY))
    assert storage.read(intent_path("cdr.raw", 0, 0)) is None
    assert storage.read(intent_path("cdr.raw", 0, 3)) is not None


def test_a_file_that_cannot_be_encoded_is_replayed_as_dead_letters_and_the_rest_is_committed(
    tmp_path: Path,
) -> None:
    ingestor, offsets = _ingestor(), FakeOffsets(tmp_path)

    def failing_filter(table: pa.Table, translations: object) -> pa.Table:
        if "c1" in table.column("cdr_id").to_pylist():
            raise ValueError("cannot")
        return table

    publisher = BatchPublisher(LocalStorage(tmp_path), row_filter=failing_filter)
    committer = AppliedCommitter(ingestor, publisher, offsets)
    days = ["2026-11-01T10:00:00+00:00", "2026-11-02T10:00:00+00:00"]
    records = [
        RawRecord("cdr.raw", 0, offset, call_at(days[offset % 2], cdr_id=f"c{offset}")) for offset in range(3)
    ]
    _feed(ingestor, records)
    assert not committer.commit_batch(ingestor.take(KEY))
    assert offsets.seeks == [(KEY, 0)] and _stored_ids(tmp_path) == []
    letters = ingestor.add_batch(records)
    assert [(letter.record.offset, letter.reason.value) for letter in letters] == [(1, "unstorable")]
    assert committer.commit_batch(ingestor.take(KEY))
    assert offsets.committed_offsets[KEY] == 3 and _stored_ids(tmp_path) == ["c0", "c2"]


def test_after_a_failed_batch_the_later_batches_of_its_partition_are_skipped(tmp_path: Path) -> None:
    storage = FailingStorage(tmp_path)
    ingestor, offsets = _ingestor(), FakeOffsets(tmp_path)
    committer = BatchCommitter(BatchPublisher(storage, attempts=1), offsets)
    records = _records(6)
    _feed(ingestor, records[:3])
    first = ingestor.take(KEY)
    _feed(ingestor, records[3:])
    second = ingestor.take(KEY)
    other = _ingestor()
    _feed(other, [RawRecord("cdr.raw", 1, 0, records[0].value)])
    elsewhere = other.take(("cdr.raw", 1))
    outcomes = committer.commit_batches([first, second, elsewhere])
    assert outcomes[0] == Replay(KEY, 0, 3), "the first batch failed and is replayed"
    assert len(outcomes) == 2, "the second batch of the partition was not attempted"
    assert outcomes[1] == Replay(("cdr.raw", 1), 0, 1), "another partition is still tried"
    assert offsets.committed_offsets == {}, "no later batch committed past the failed one"
