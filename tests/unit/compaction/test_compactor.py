"""Compaction without Kafka: small files merged once, only committed batches, the ledger on the way out."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.compaction.compactor import COVERS_METADATA_KEY, DateReport, Policy, compact_store, horizons
from pipeline.lifecycle.ledger import KeyedPseudonym, LedgerEntry
from pipeline.lifecycle.operations.quarantine import move_subject_rows, release_unheld
from pipeline.lifecycle.operations.rewriter import rewrite_subject_files
from pipeline.lifecycle.requests.audit import read_audit
from pipeline.observability.metrics import REGISTRY
from pipeline.sink.publisher import BatchPublisher
from pipeline.store import coverage
from pipeline.store.errors import StorageError
from pipeline.store.naming import coverage_path, is_compacted
from pipeline.store.storage import LocalStorage, Stamp
from tests.support.mini_pipeline import KEY, TOPIC, MiniPipeline, stored, stored_ids
from tests.support.samples import call_at

DAY1, DAY2 = "2026-11-01T", "2026-11-02T"
POLICY = Policy(target_rows=1000, quiet_s=60)


def later() -> datetime:
    """A time at which every file just written has been quiet for longer than :data:`POLICY` asks."""
    return datetime.now(UTC) + timedelta(hours=1)


def _names(storage: LocalStorage, area: str = "cdr") -> list[str]:
    return [path.split("/", 1)[1] for path in storage.list(area)]


def _filled(tmp_path: Path, calls: int = 20, partitions: int = 2) -> MiniPipeline:
    pipeline = MiniPipeline(LocalStorage(tmp_path))
    for number in range(calls):
        day = DAY1 if number % 3 else DAY2  # a third of the calls on the second date, interleaved
        pipeline.call(number % partitions, f"c{number}", f"{day}10:{number % 60:02d}:00+00:00")
    pipeline.consume()
    return pipeline


def test_a_date_s_committed_small_files_become_one_sorted_file_and_every_row_stays_once(
    tmp_path: Path,
) -> None:
    pipeline = _filled(tmp_path)
    before = stored_ids(pipeline.storage)
    reports = compact_store(
        pipeline.storage, pipeline.ledger, pipeline.offsets.committed_offsets, later(), POLICY
    )
    assert stored_ids(pipeline.storage) == before
    assert {report.call_date for report in reports} == {"2026-11-01", "2026-11-02"}
    names = _names(pipeline.storage)
    compacted = [name for name in names if is_compacted(name.split("/")[1])]
    assert len(compacted) == 2  # one per date
    # The latest batch of each partition is left alone: a worker that lost it may still publish it.
    assert sorted(name.split("/")[1] for name in names if name not in compacted) == sorted(
        {f"{TOPIC}+0+00000000000000000009.parquet", f"{TOPIC}+1+00000000000000000009.parquet"}
    )
    for name in compacted:
        table = pq.read_table(tmp_path / "cdr" / name)
        starts = table.column("start_time").to_pylist()
        assert starts == sorted(starts)
        covers = json.loads(pq.read_metadata(tmp_path / "cdr" / name).metadata[COVERS_METADATA_KEY])
        assert covers == {TOPIC: {"0": [[0, 9]], "1": [[0, 9]]}}


def test_files_are_cut_to_even_sizes_below_the_target(tmp_path: Path) -> None:
    pipeline = MiniPipeline(LocalStorage(tmp_path))
    for number in range(31):
        pipeline.call(0, f"c{number}", f"{DAY1}10:{number:02d}:00+00:00")
    pipeline.consume()
    compact_store(
        pipeline.storage, pipeline.ledger, pipeline.offsets.committed_offsets, later(), Policy(10, 60)
    )
    sizes = sorted(
        pq.read_metadata(tmp_path / "cdr" / name).num_rows
        for name in _names(pipeline.storage)
        if is_compacted(name.split("/")[1])
    )
    assert sizes == [10, 10, 10]  # 30 rows below the latest batch's offset 30, in 3 files of 10


def test_only_committed_quiet_batches_are_compacted(tmp_path: Path) -> None:
    pipeline = _filled(tmp_path)
    storage = pipeline.storage
    # A worker published a batch of partition 0 but has not committed it: it is not the store's yet.
    pipeline.call(0, "late", f"{DAY1}11:00:00+00:00")
    pipeline.call(0, "late2", f"{DAY1}11:01:00+00:00")
    pipeline.call(0, "late3", f"{DAY1}11:02:00+00:00")
    uncommitted = dict(pipeline.offsets.committed_offsets)
    pipeline.consume()
    compact_store(storage, pipeline.ledger, uncommitted, later(), POLICY)
    assert f"call_date=2026-11-01/{TOPIC}+0+00000000000000000010.parquet" in _names(storage)
    # A partition the group never committed is not compacted at all; files not quiet yet neither.
    fresh = _filled(tmp_path / "other")
    assert compact_store(fresh.storage, fresh.ledger, {}, later(), POLICY) == []
    assert (
        compact_store(fresh.storage, fresh.ledger, fresh.offsets.committed_offsets, datetime.now(UTC), POLICY)
        == []
    )


def test_the_horizon_is_the_latest_committed_batch_when_its_intent_remains() -> None:
    intent = "_cdrpipe/intents/{}+0+{:020d}.json"
    paths = [
        intent.format(TOPIC, 3),
        intent.format(TOPIC, 12),
        intent.format(TOPIC, 20),
        intent.format("x", 1),
    ]
    assert horizons({(TOPIC, 0): 20, (TOPIC, 1): 7}, paths) == {(TOPIC, 0): 12, (TOPIC, 1): 7}


def test_a_replay_of_compacted_offsets_adds_nothing(tmp_path: Path) -> None:
    pipeline = _filled(tmp_path)
    compact_store(pipeline.storage, pipeline.ledger, pipeline.offsets.committed_offsets, later(), POLICY)
    before = stored_ids(pipeline.storage)
    for partition in (0, 1):
        pipeline.reset(partition, 0)  # an operator resets the group's offsets
    pipeline.consume()
    assert stored_ids(pipeline.storage) == before
    # ...and compacting again after the replay changes nothing either.
    compact_store(pipeline.storage, pipeline.ledger, pipeline.offsets.committed_offsets, later(), POLICY)
    assert stored_ids(pipeline.storage) == before


def test_a_replay_cut_elsewhere_in_a_compacted_range_adds_nothing(tmp_path: Path) -> None:
    pipeline = _filled(tmp_path)
    compact_store(pipeline.storage, pipeline.ledger, pipeline.offsets.committed_offsets, later(), POLICY)
    pipeline.call(0, "new", f"{DAY1}12:00:00+00:00")
    pipeline.consume()
    compact_store(pipeline.storage, pipeline.ledger, pipeline.offsets.committed_offsets, later(), POLICY)
    pipeline.reset(0, 4)  # cuts no batch had ([4, 7), [7, 10)), then the latest batch as recorded
    pipeline.consume()
    assert stored_ids(pipeline.storage) == sorted([f"c{number}" for number in range(20)] + ["new"])


def test_an_unreadable_coverage_stops_the_publish_instead_of_doubling_rows(tmp_path: Path) -> None:
    pipeline = _filled(tmp_path)
    compact_store(pipeline.storage, pipeline.ledger, pipeline.offsets.committed_offsets, later(), POLICY)
    (tmp_path / coverage_path(datetime(2026, 11, 1).date())).write_text("{not json")
    pipeline.reset(0, 0)
    publisher = BatchPublisher(pipeline.storage, row_filter=pipeline.ledger.route, first_backoff_s=0)
    with pytest.raises(AssertionError):  # the batch is replayed, not committed
        pipeline.consume(publisher)
    with pytest.raises(StorageError, match="cannot be read"):
        coverage.load(pipeline.storage, datetime(2026, 11, 1).date())


SUBJECT = "0475000111"


def _subject_pipeline(tmp_path: Path) -> MiniPipeline:
    pipeline = MiniPipeline(LocalStorage(tmp_path))
    for number in range(12):
        caller = SUBJECT if number % 4 == 0 else f"04759990{number:02d}"
        pipeline.call(0, f"c{number}", f"{DAY1}10:{number:02d}:00+00:00", caller=caller)
    pipeline.consume()
    return pipeline


def _subject_entry(pipeline: MiniPipeline, action: str, request_id: str = "r1") -> LedgerEntry:
    table = stored(pipeline.storage)
    pseudonym = table.column("caller_pseudonym").to_pylist()[table.column("cdr_id").to_pylist().index("c0")]
    return LedgerEntry(
        request_id=request_id,
        requested_at=datetime.now(UTC) + timedelta(days=1),
        action=action,  # type: ignore[arg-type]
        subject=[KeyedPseudonym(KEY.key_id, pseudonym)],
    )


def _compact(pipeline: MiniPipeline, policy: Policy = POLICY) -> list[DateReport]:
    return compact_store(
        pipeline.storage, pipeline.ledger, pipeline.offsets.committed_offsets, later(), policy
    )


SUBJECT_IDS = ["c0", "c4", "c8"]
OTHERS = sorted(f"c{number}" for number in range(12) if number % 4)


def test_an_erasure_newer_than_the_inputs_is_applied_on_the_way_out(tmp_path: Path) -> None:
    pipeline = _subject_pipeline(tmp_path)
    pipeline.ledger.add(
        _subject_entry(pipeline, "erase")
    )  # the ledger knows; the files were not rewritten yet
    (report,) = _compact(pipeline)
    assert stored_ids(pipeline.storage) == OTHERS
    assert report.rows_removed_by_ledger == 3


def test_a_restriction_newer_than_the_inputs_quarantines_and_an_objection_drops(tmp_path: Path) -> None:
    pipeline = _subject_pipeline(tmp_path)
    pipeline.ledger.add(_subject_entry(pipeline, "restrict"))
    (report,) = _compact(pipeline)
    assert stored_ids(pipeline.storage, ("restricted",)) == SUBJECT_IDS
    assert stored_ids(pipeline.storage, ("cdr",)) == OTHERS
    assert report.rows_quarantined == 3
    objected = _subject_pipeline(tmp_path / "objection")
    objected.ledger.add(_subject_entry(objected, "suppress"))
    _compact(objected)
    assert stored_ids(objected.storage) == OTHERS


def test_the_quarantine_is_compacted_and_a_lift_after_it_recreates_no_small_file(tmp_path: Path) -> None:
    pipeline = _subject_pipeline(tmp_path)
    entry = _subject_entry(pipeline, "restrict")
    pipeline.ledger.add(entry)
    move_subject_rows(pipeline.storage, entry.subject_pseudonyms(), "cdr", "restricted")
    assert len(pipeline.storage.list("restricted")) == 3
    _compact(pipeline)
    restricted = [path.rsplit("/", 1)[1] for path in pipeline.storage.list("restricted")]
    assert len(restricted) == 1 and is_compacted(restricted[0])
    assert stored_ids(pipeline.storage, ("restricted",)) == SUBJECT_IDS
    pipeline.ledger.add(LedgerEntry(request_id="r1", requested_at=datetime.now(UTC), action="ended"))
    release_unheld(pipeline.storage, pipeline.ledger, entry.subject_pseudonyms())
    assert stored_ids(pipeline.storage, ("restricted",)) == []
    assert stored_ids(pipeline.storage) == sorted(SUBJECT_IDS + OTHERS)
    small = [path for path in pipeline.storage.list("cdr") if not is_compacted(path.rsplit("/", 1)[1])]
    assert small == [f"cdr/call_date=2026-11-01/{TOPIC}+0+00000000000000000009.parquet"]  # the latest batch


def test_a_restriction_and_lift_right_after_compaction_find_every_row(tmp_path: Path) -> None:
    pipeline = _subject_pipeline(tmp_path)
    _compact(pipeline)
    entry = _subject_entry(pipeline, "restrict")
    pipeline.ledger.add(entry)
    moved = move_subject_rows(pipeline.storage, entry.subject_pseudonyms(), "cdr", "restricted")
    assert moved.rows_moved == 3 and moved.verified
    pipeline.ledger.add(LedgerEntry(request_id="r1", requested_at=datetime.now(UTC), action="ended"))
    release_unheld(pipeline.storage, pipeline.ledger, entry.subject_pseudonyms())
    assert stored_ids(pipeline.storage, ("cdr",)) == sorted(SUBJECT_IDS + OTHERS)
    # and a replay after all that still adds nothing
    pipeline.reset(0, 0)
    pipeline.consume()
    assert stored_ids(pipeline.storage) == sorted(SUBJECT_IDS + OTHERS)


def test_an_erasure_right_after_compaction_rewrites_the_compacted_file(tmp_path: Path) -> None:
    pipeline = _subject_pipeline(tmp_path)
    _compact(pipeline)
    entry = _subject_entry(pipeline, "erase")
    pipeline.ledger.add(entry)
    results, _ = rewrite_subject_files(
        pipeline.storage, entry.subject_pseudonyms(), "delete", entry.requested_at
    )
    assert sum(result.rows_affected for result in results) == 3
    assert stored_ids(pipeline.storage) == OTHERS
    pipeline.reset(0, 0)
    pipeline.consume()
    assert stored_ids(pipeline.storage) == OTHERS


def test_a_cdr_sent_two_and_three_times_is_stored_once_after_compaction(tmp_path: Path) -> None:
    pipeline = MiniPipeline(LocalStorage(tmp_path))
    twice, thrice = (
        call_at(f"{DAY1}10:00:00+00:00", cdr_id="twice"),
        call_at(f"{DAY1}10:01:00+00:00", cdr_id="thrice"),
    )
    for payload in (twice, thrice, twice, thrice, thrice):
        pipeline.send(0, payload)
    for number in range(4):
        pipeline.call(0, f"c{number}", f"{DAY1}11:{number:02d}:00+00:00")
    pipeline.consume()
    assert stored_ids(pipeline.storage).count("thrice") == 3
    duplicates_before = REGISTRY.get_sample_value("cdrpipe_compaction_duplicates_removed_total") or 0
    (report,) = _compact(pipeline)
    assert stored_ids(pipeline.storage) == sorted(["twice", "thrice", "c0", "c1", "c2", "c3"])
    assert report.duplicates_removed == 3
    assert REGISTRY.get_sample_value("cdrpipe_compaction_duplicates_removed_total") == duplicates_before + 3
    (audit,) = [entry for entry in read_audit(pipeline.storage) if entry["kind"] == "compaction"]
    assert audit["duplicates_removed"] == 3


@pytest.mark.parametrize("target_rows", [1000, 2], ids=["into-a-partial-file", "against-full-files"])
def test_a_cdr_sent_again_after_compaction_is_removed_by_the_next_pass(
    tmp_path: Path, target_rows: int
) -> None:
    pipeline = MiniPipeline(LocalStorage(tmp_path))
    for number in range(9):
        pipeline.call(0, f"c{number}", f"{DAY1}10:{number:02d}:00+00:00")
    pipeline.consume()
    _compact(pipeline, Policy(target_rows, 60))
    for resent in (3, 3, 5):  # c3 twice more, c5 once more, and some new calls
        pipeline.call(0, f"c{resent}", f"{DAY1}10:{resent:02d}:00+00:00")
    for number in range(9, 13):
        pipeline.call(0, f"c{number}", f"{DAY1}10:{number:02d}:00+00:00")
    pipeline.consume()
    assert stored_ids(pipeline.storage).count("c3") == 3
    reports = _compact(pipeline, Policy(target_rows, 60))
    assert sum(report.duplicates_removed for report in reports) == 3
    assert stored_ids(pipeline.storage) == sorted(f"c{number}" for number in range(13))


class _ReplayDuringPass(LocalStorage):
    """A store in which a stale worker republishes one input while the pass publishes its first output."""

    def __init__(self, root: Path, republished: str) -> None:
        super().__init__(root)
        self.republished = republished
        self.raced = False

    def publish(self, relative_path: str, data: bytes) -> Stamp:
        if is_compacted(relative_path.rsplit("/", 1)[-1]) and not self.raced:
            self.raced = True
            content = self.read(self.republished)
            assert content is not None
            super().publish(self.republished, content)
        return super().publish(relative_path, data)


def test_an_input_changed_during_the_pass_is_kept_and_its_copies_go_at_the_next_pass(tmp_path: Path) -> None:
    pipeline = _filled(tmp_path)
    expected = stored_ids(pipeline.storage)
    raced = f"cdr/call_date=2026-11-01/{TOPIC}+0+00000000000000000003.parquet"
    racing = _ReplayDuringPass(tmp_path, raced)
    reports = compact_store(racing, pipeline.ledger, pipeline.offsets.committed_offsets, later(), POLICY)
    assert [report.inputs_changed for report in reports if report.call_date == "2026-11-01"] == [[raced]]
    assert sorted(set(stored_ids(pipeline.storage))) == expected  # nothing lost; the raced rows are twice
    _compact(pipeline)
    assert stored_ids(pipeline.storage) == expected


def test_an_orphaned_temporary_file_of_a_compacted_date_is_removed_and_a_young_one_kept(
    tmp_path: Path,
) -> None:
    pipeline = _filled(tmp_path)
    directory = tmp_path / "cdr" / "call_date=2026-11-01"
    orphan = directory / f".{TOPIC}+0+00000000000000000003.parquet.0123456789ab.tmp"
    young = directory / f".{TOPIC}+0+00000000000000000009.parquet.ba9876543210.tmp"
    orphan.write_bytes(b"rows of a publish killed mid-write")
    young.write_bytes(b"a publish in flight")
    # Everything but the young temporary settled two hours ago; the quiet period is ten minutes,
    # far longer than the test, so the young one is never old enough however slow the machine is.
    old = (datetime.now(UTC) - timedelta(hours=2)).timestamp()
    for path in directory.iterdir():
        if path != young:
            os.utime(path, (old, old))
    compact_store(
        pipeline.storage,
        pipeline.ledger,
        pipeline.offsets.committed_offsets,
        datetime.now(UTC),
        Policy(1000, 600),
    )
    assert not orphan.exists() and young.exists()
