"""The commit protocol in process, with fake offsets: every branch of BatchCommitter."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from pipeline.ingest.ingestor import Ingestor
from pipeline.ingest.records import RawRecord
from pipeline.observability.metrics import HEALTH
from pipeline.sink.batch import Routed
from pipeline.sink.committer import BatchCommitter
from pipeline.sink.outcomes import Replay
from pipeline.sink.publisher import BatchPublisher, intent_path
from pipeline.store.storage import LocalStorage
from tests.support.commit_fakes import (
    KEY,
    AppliedCommitter,
    FailingStorage,
    FakeOffsets,
    feed,
    records_at,
    small_ingestor,
    stored_ids,
)
from tests.support.samples import call_at


def _parts(root: Path, storage: LocalStorage | None = None) -> tuple[Ingestor, FakeOffsets, AppliedCommitter]:
    ingestor, offsets = small_ingestor(), FakeOffsets(root)
    publisher = BatchPublisher(storage or LocalStorage(root), attempts=1, sleep=lambda _: None)
    return ingestor, offsets, AppliedCommitter(ingestor, publisher, offsets)


def test_files_are_durable_before_the_offsets_are_committed(tmp_path: Path) -> None:
    ingestor, offsets, committer = _parts(tmp_path)
    feed(ingestor, records_at(3))
    assert committer.commit_batch(ingestor.take(KEY))
    assert offsets.committed_offsets[KEY] == 3
    assert offsets.files_at_commit == [{"cdr.raw+0+00000000000000000000.parquet"}]
    assert stored_ids(tmp_path) == ["c0", "c1", "c2"]


def test_a_stale_owner_drops_its_batch_and_moves_to_the_committed_offset(tmp_path: Path) -> None:
    ingestor, offsets, committer = _parts(tmp_path)
    feed(ingestor, records_at(6))
    offsets.committed_offsets[KEY] = 4  # a new owner committed while this worker held the records
    assert not committer.commit_batch(ingestor.take(KEY))
    assert offsets.seeks == [(KEY, 4)]
    assert ingestor.held() == [], "every batch of the partition is dropped"
    assert stored_ids(tmp_path) == [] and not (tmp_path / "_cdrpipe").exists()


def test_a_recorded_boundary_is_adopted_and_the_replay_rebuilds_that_batch(tmp_path: Path) -> None:
    records = records_at(6)
    earlier = small_ingestor()
    feed(earlier, records[:2])
    crashed = earlier.take(KEY)  # cut at 2 (by age), published, then the worker died
    BatchPublisher(LocalStorage(tmp_path)).claim(crashed)
    ingestor, offsets, committer = _parts(tmp_path)
    feed(ingestor, records[:3])
    assert not committer.commit_batch(ingestor.take(KEY))
    assert offsets.seeks == [(KEY, 0)] and KEY not in offsets.committed_offsets
    feed(ingestor, records[:3])  # consumed again from offset 0: the batch ends at the recorded 2
    rebuilt = ingestor.take(KEY)
    assert (rebuilt.first_offset, rebuilt.commit_offset) == (0, 2)
    assert committer.commit_batch(rebuilt)
    assert offsets.committed_offsets[KEY] == 2


def test_a_failed_publish_commits_nothing_and_replays_the_same_range(tmp_path: Path) -> None:
    storage = FailingStorage(tmp_path)
    ingestor, offsets, committer = _parts(tmp_path, storage)
    records = records_at(3)
    feed(ingestor, records)
    assert not committer.commit_batch(ingestor.take(KEY))
    assert offsets.committed_offsets == {} and offsets.seeks == [(KEY, 0)]
    assert storage.read(intent_path("cdr.raw", 0, 0)) is not None, "the boundary was recorded first"
    storage.failing = False
    feed(ingestor, records)
    assert committer.commit_batch(ingestor.take(KEY))
    assert offsets.committed_offsets[KEY] == 3 and stored_ids(tmp_path) == ["c0", "c1", "c2"]


def test_unreadable_committed_offsets_replay_the_batch_and_mark_the_worker_unhealthy(tmp_path: Path) -> None:
    ingestor, offsets, committer = _parts(tmp_path)
    feed(ingestor, records_at(3))
    offsets.reachable = False
    assert not committer.commit_batch(ingestor.take(KEY))
    assert not HEALTH.healthy
    assert offsets.seeks == [(KEY, 0)] and stored_ids(tmp_path) == []
    offsets.reachable = True
    feed(ingestor, records_at(3))
    assert committer.commit_batch(ingestor.take(KEY))
    assert HEALTH.healthy


def test_a_revoke_mid_batch_leaves_the_batch_to_the_new_owner_who_rebuilds_the_same_files(
    tmp_path: Path,
) -> None:
    records = records_at(3)
    ingestor, offsets, committer = _parts(tmp_path)
    feed(ingestor, records)
    offsets.owned = False  # the partition was revoked while the files were being published
    assert not committer.commit_batch(ingestor.take(KEY))
    assert ingestor.held() == []
    published = {path.name: path.read_bytes() for path in tmp_path.glob("cdr/*/*.parquet")}
    new_owner, new_offsets, new_committer = _parts(tmp_path)
    feed(new_owner, records)
    assert new_committer.commit_batch(new_owner.take(KEY))
    assert new_offsets.committed_offsets[KEY] == 3
    assert {path.name: path.read_bytes() for path in tmp_path.glob("cdr/*/*.parquet")} == published


def test_an_intent_is_forgotten_only_after_the_next_batch_commits(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    ingestor, _, committer = _parts(tmp_path, storage)
    records = records_at(6)
    feed(ingestor, records[:3])
    assert committer.commit_batch(ingestor.take(KEY))
    assert storage.read(intent_path("cdr.raw", 0, 0)) is not None
    feed(ingestor, records[3:])
    assert committer.commit_batch(ingestor.take(KEY))
    assert storage.read(intent_path("cdr.raw", 0, 0)) is None
    assert storage.read(intent_path("cdr.raw", 0, 3)) is not None


def test_a_file_that_cannot_be_encoded_is_replayed_as_dead_letters_and_the_rest_is_committed(
    tmp_path: Path,
) -> None:
    ingestor, offsets = small_ingestor(), FakeOffsets(tmp_path)

    def failing_filter(table: pa.Table, translations: object) -> Routed:
        if "c1" in table.column("cdr_id").to_pylist():
            raise ValueError("cannot")
        return Routed(table, None, 0)

    publisher = BatchPublisher(LocalStorage(tmp_path), row_filter=failing_filter)
    committer = AppliedCommitter(ingestor, publisher, offsets)
    days = ["2026-11-01T10:00:00+00:00", "2026-11-02T10:00:00+00:00"]
    records = [
        RawRecord("cdr.raw", 0, offset, call_at(days[offset % 2], cdr_id=f"c{offset}")) for offset in range(3)
    ]
    feed(ingestor, records)
    assert not committer.commit_batch(ingestor.take(KEY))
    assert offsets.seeks == [(KEY, 0)] and stored_ids(tmp_path) == []
    letters = ingestor.add_batch(records)
    assert [(letter.record.offset, letter.reason.value) for letter in letters] == [(1, "unstorable")]
    assert committer.commit_batch(ingestor.take(KEY))
    assert offsets.committed_offsets[KEY] == 3 and stored_ids(tmp_path) == ["c0", "c2"]


def test_after_a_failed_batch_the_later_batches_of_its_partition_are_skipped(tmp_path: Path) -> None:
    storage = FailingStorage(tmp_path)
    ingestor, offsets = small_ingestor(), FakeOffsets(tmp_path)
    committer = BatchCommitter(BatchPublisher(storage, attempts=1), offsets)
    records = records_at(6)
    feed(ingestor, records[:3])
    first = ingestor.take(KEY)
    feed(ingestor, records[3:])
    second = ingestor.take(KEY)
    other = small_ingestor()
    feed(other, [RawRecord("cdr.raw", 1, 0, records[0].value)])
    elsewhere = other.take(("cdr.raw", 1))
    outcomes = committer.commit_batches([first, second, elsewhere])
    assert outcomes[0] == Replay(KEY, 0, 3), "the first batch failed and is replayed"
    assert len(outcomes) == 2, "the second batch of the partition was not attempted"
    assert outcomes[1] == Replay(("cdr.raw", 1), 0, 1), "another partition is still tried"
    assert offsets.committed_offsets == {}, "no later batch committed past the failed one"
