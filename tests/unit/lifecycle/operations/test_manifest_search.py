"""Searches through the store manifest: a cache that spares footer reads and never hides a row."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.lifecycle.erasure import ErasureProcessor
from pipeline.lifecycle.ledger import SubjectLedger
from pipeline.lifecycle.operations.export import subject_rows
from pipeline.lifecycle.operations.finder import search, survey
from pipeline.lifecycle.operations.quarantine import move_subject_rows
from pipeline.lifecycle.operations.restriction import Ledger, Passes, take_out_of_use
from pipeline.lifecycle.operations.retention import apply_retention
from pipeline.lifecycle.operations.rewriter import rewrite_subject_files
from pipeline.lifecycle.subject import subject_from_number
from pipeline.store import manifest
from pipeline.store.naming import DATASET, QUARANTINE, manifest_path
from pipeline.store.storage import Stamp
from tests.support.counting_storage import CountingStorage
from tests.support.lifecycle_store import CLASSIFIER, KEYS, SUBJECT, parquet_file, sample_store
from tests.support.signed import signed

DAY = date(2026, 11, 1)
DAY_DIR = "cdr/call_date=2026-11-01"
SUBJECT_FILES = [f"{DAY_DIR}/t+0+0.parquet", f"{DAY_DIR}/t+1+0.parquet"]
NOON = "2026-11-01T12:00:00+00:00"


def _store(tmp_path: Path) -> CountingStorage:
    sample_store(tmp_path)
    return CountingStorage(tmp_path)


def _pseudonyms() -> frozenset[str]:
    return subject_from_number(SUBJECT, KEYS, CLASSIFIER).pseudonyms


def test_a_second_search_reads_the_manifest_and_no_footer(tmp_path: Path) -> None:
    storage = _store(tmp_path)
    first = search(storage, _pseudonyms())
    assert first.candidates == SUBJECT_FILES and len(storage.opened) == 3
    assert sorted(manifest.load(storage, DATASET, DAY)) == ["t+0+0.parquet", "t+1+0.parquet", "t+2+0.parquet"]
    storage.opened.clear()
    second = search(storage, _pseudonyms())
    assert second == first
    assert storage.opened == []


def test_a_missing_or_unreadable_manifest_is_read_through_the_footers(tmp_path: Path) -> None:
    storage = _store(tmp_path)
    search(storage, _pseudonyms())
    storage.delete(manifest_path(DATASET, DAY))
    assert search(storage, _pseudonyms()).candidates == SUBJECT_FILES
    storage.publish(manifest_path(DATASET, DAY), b"{not json")
    storage.opened.clear()
    assert search(storage, _pseudonyms()).candidates == SUBJECT_FILES
    assert len(storage.opened) == 3


def test_a_file_replaced_behind_the_manifest_is_read_again(tmp_path: Path) -> None:
    storage = _store(tmp_path)
    search(storage, _pseudonyms())
    # t+2+0 held only someone else; a replay merge (no manifest update) gives it a row of the subject.
    storage.publish(
        f"{DAY_DIR}/t+2+0.parquet",
        parquet_file(KEYS.keys[1], [("d", "0475999888", NOON), ("e", "0475000111", NOON)]),
    )
    storage.opened.clear()
    assert search(storage, _pseudonyms()).candidates == [*SUBJECT_FILES, f"{DAY_DIR}/t+2+0.parquet"]
    assert storage.opened == [f"{DAY_DIR}/t+2+0.parquet"]
    table = subject_rows(storage, subject_from_number(SUBJECT, KEYS, CLASSIFIER)).table
    assert table is not None and sorted(table.column("cdr_id").to_pylist()) == ["a", "c", "e"]


def test_a_new_file_missing_from_the_manifest_is_found(tmp_path: Path) -> None:
    storage = _store(tmp_path)
    search(storage, _pseudonyms())
    storage.publish(f"{DAY_DIR}/t+3+0.parquet", parquet_file(KEYS.keys[0], [("f", "0475000111", NOON)]))
    storage.publish(
        "cdr/call_date=2026-11-02/t+0+9.parquet",
        parquet_file(KEYS.keys[0], [("g", "0475000111", "2026-11-02T08:00:00+00:00")]),
    )
    found = search(storage, _pseudonyms()).candidates
    assert found == [*SUBJECT_FILES, f"{DAY_DIR}/t+3+0.parquet", "cdr/call_date=2026-11-02/t+0+9.parquet"]


def test_an_entry_of_a_file_that_is_gone_is_never_used_and_is_dropped(tmp_path: Path) -> None:
    storage = _store(tmp_path)
    search(storage, _pseudonyms())
    (tmp_path / SUBJECT_FILES[0]).unlink()
    assert search(storage, _pseudonyms()).candidates == SUBJECT_FILES[1:]
    assert sorted(manifest.load(storage, DATASET, DAY)) == ["t+1+0.parquet", "t+2+0.parquet"]


def test_a_manifest_entry_without_a_subject_index_makes_its_file_a_candidate(tmp_path: Path) -> None:
    storage = _store(tmp_path)
    search(storage, _pseudonyms())
    entries = manifest.load(storage, DATASET, DAY)
    entries["t+2+0.parquet"] = dataclasses.replace(entries["t+2+0.parquet"], subjects=None)
    manifest.save(storage, DATASET, DAY, entries)
    assert search(storage, _pseudonyms()).candidates == [*SUBJECT_FILES, f"{DAY_DIR}/t+2+0.parquet"]


def test_a_search_of_files_modified_since_keeps_the_entries_of_the_others(tmp_path: Path) -> None:
    storage = _store(tmp_path)
    search(storage, _pseudonyms())
    search(storage, _pseudonyms(), modified_since=datetime.now(UTC))
    assert sorted(manifest.load(storage, DATASET, DAY)) == ["t+0+0.parquet", "t+1+0.parquet", "t+2+0.parquet"]


def test_writers_keep_the_manifest_current_so_later_searches_read_no_footer(tmp_path: Path) -> None:
    storage = _store(tmp_path)
    pseudonyms = _pseudonyms()
    moved = move_subject_rows(storage, pseudonyms, DATASET, QUARANTINE)
    assert moved.rows_moved == 2 and moved.verified
    storage.opened.clear()
    assert search(storage, pseudonyms).candidates == [
        f"restricted/call_date=2026-11-01/t+{n}+0.parquet" for n in (0, 1)
    ]
    assert storage.opened == []
    assert sorted(manifest.load(storage, DATASET, DAY)) == ["t+0+0.parquet", "t+2+0.parquet"]
    results, _ = rewrite_subject_files(storage, pseudonyms, "delete", datetime.now(UTC))
    assert sum(result.rows_affected for result in results) == 2
    storage.opened.clear()
    assert search(storage, pseudonyms).candidates == []
    assert storage.opened == []
    assert storage.read(manifest_path(QUARANTINE, DAY)) is None, "a manifest of no files is deleted"
    rows = [pq.read_metadata(tmp_path / path).num_rows for path in storage.list("cdr")]
    assert rows == [1, 1]


def test_retention_deletes_the_manifests_of_the_dates_it_expires(tmp_path: Path) -> None:
    storage = _store(tmp_path)
    search(storage, _pseudonyms())
    assert storage.read(manifest_path(DATASET, DAY)) is not None
    report = apply_retention(storage, datetime(2027, 11, 1, tzinfo=UTC), retention_days=30)
    assert report.files == 3
    assert storage.read(manifest_path(DATASET, DAY)) is None


def test_a_restriction_reads_each_footer_once_across_its_passes_and_its_check(tmp_path: Path) -> None:
    storage = _store(tmp_path)
    view = SubjectLedger()
    subject = subject_from_number(SUBJECT, KEYS, CLASSIFIER)
    outcome = take_out_of_use(
        storage, Ledger(view, view.add), request_id="r-1", subject=subject, requested_at=datetime.now(UTC),
        existing="quarantine", action="restrict", passes=Passes(0, lambda _: None),
    )  # fmt: skip
    assert outcome.rows_moved == 2 and outcome.verification is not None and outcome.verification.passed
    # t+2+0 holds only someone else: its footer is read once (five times before the passes shared
    # one survey); the moved files are read again only because the move rewrote them.
    assert storage.opened.count(f"{DAY_DIR}/t+2+0.parquet") == 1


def test_an_erasure_receipt_says_how_many_files_it_opened_and_how_long_it_took(tmp_path: Path) -> None:
    storage = _store(tmp_path)
    view = SubjectLedger()
    processor = ErasureProcessor(
        storage, lambda: KEYS, CLASSIFIER, ledger=Ledger(view, view.add),
        passes=Passes(0, lambda _: None), residual_copies=list,
    )  # fmt: skip
    document = {"request_id": "r-1", "subject": SUBJECT, "requested_at": NOON}
    receipt = processor.handle(signed(document, KEYS))
    assert receipt.passed and receipt.rows_removed == 2
    # three footers, and the two files holding the subject read, rewritten (t+1+0 deleted) and checked
    assert receipt.files_read == 3 and receipt.seconds is not None and receipt.seconds >= 0
    assert storage.opened.count(f"{DAY_DIR}/t+2+0.parquet") == 1
    storage.opened.clear()
    again = processor.handle(signed({**document, "request_id": "r-2"}, KEYS))
    # The manifest describes every file, and no index can hold the subject any more: nothing is opened.
    assert again.passed and again.files_read == 0 and storage.opened == []


class _ManifestCountingStorage(CountingStorage):
    """Also counts the manifest bases read and published."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.bases_read: list[str] = []
        self.bases_published: list[str] = []

    def read(self, relative_path: str) -> bytes | None:
        if relative_path.startswith("_cdrpipe/manifest/"):
            self.bases_read.append(relative_path)
        return super().read(relative_path)

    def publish(self, relative_path: str, data: bytes) -> Stamp:
        if relative_path.startswith("_cdrpipe/manifest/"):
            self.bases_published.append(relative_path)
        return super().publish(relative_path, data)


def test_a_survey_that_defers_its_bases_publishes_them_once_when_its_writer_records(tmp_path: Path) -> None:
    sample_store(tmp_path)
    storage = _ManifestCountingStorage(tmp_path)
    read = survey(storage, save_manifests=False)
    assert read.unsaved == {(DATASET, DAY)} and storage.bases_published == []
    assert manifest.load(storage, DATASET, DAY) == {}
    results, _ = rewrite_subject_files(storage, _pseudonyms(), "delete", datetime.now(UTC), read=read)
    assert sum(result.rows_affected for result in results) == 2
    assert storage.bases_published == [manifest_path(DATASET, DAY)] and read.unsaved == set()
    # The survey took the rewrite in from the store: t+0+0 rewritten, t+1+0 deleted.
    assert read.entries[SUBJECT_FILES[0]].stamp == storage.stamp(SUBJECT_FILES[0])
    assert SUBJECT_FILES[1] not in read.stamps and SUBJECT_FILES[1] not in read.entries
    assert sorted(manifest.load(storage, DATASET, DAY)) == ["t+0+0.parquet", "t+2+0.parquet"]
    storage.opened.clear()
    storage.bases_read.clear()
    again = survey(storage, previous=read)
    assert again.footers_read == 0 and storage.opened == [] and storage.bases_read == []


def test_a_file_changed_after_the_request_recorded_it_is_read_again(tmp_path: Path) -> None:
    storage = _store(tmp_path)
    pseudonyms = _pseudonyms()
    read = survey(storage)
    rewrite_subject_files(storage, pseudonyms, "delete", datetime.now(UTC), read=read)
    # Another writer (a replay merge) gives the rewritten file a row of the subject again, behind
    # the survey and the manifest the erasure just published.
    storage.publish(
        SUBJECT_FILES[0], parquet_file(KEYS.keys[1], [("h", "0475000111", NOON), ("i", "0475999888", NOON)])
    )
    storage.opened.clear()
    again = survey(storage, previous=read)
    assert again.search(pseudonyms).candidates == [SUBJECT_FILES[0]]
    assert storage.opened == [SUBJECT_FILES[0]]


def test_an_erasure_with_manifests_reads_and_publishes_each_base_once(tmp_path: Path) -> None:
    sample_store(tmp_path)
    storage = _ManifestCountingStorage(tmp_path)
    search(storage, _pseudonyms())
    storage.bases_read.clear()
    storage.bases_published.clear()
    view = SubjectLedger()
    processor = ErasureProcessor(
        storage, lambda: KEYS, CLASSIFIER, ledger=Ledger(view, view.add),
        passes=Passes(0, lambda _: None), residual_copies=list,
    )  # fmt: skip
    receipt = processor.handle(signed({"request_id": "r-1", "subject": SUBJECT, "requested_at": NOON}, KEYS))
    assert receipt.passed and receipt.rows_removed == 2
    base = manifest_path(DATASET, DAY)
    assert storage.bases_read.count(base) == 1 and storage.bases_published.count(base) == 1
    assert sorted(manifest.load(storage, DATASET, DAY)) == ["t+0+0.parquet", "t+2+0.parquet"]
