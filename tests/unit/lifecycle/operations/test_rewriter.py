"""Copy-on-write rewrites of a subject's files, and their verification."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.lifecycle.operations.finder import search
from pipeline.lifecycle.operations.rewriter import rewrite_file, verify_erasure
from pipeline.lifecycle.subject import subject_from_number
from tests.support.lifecycle_store import CLASSIFIER, KEYS, SUBJECT, sample_store


def test_rewrite_removes_rows_deletes_emptied_files_and_verifies(tmp_path: Path) -> None:
    storage = sample_store(tmp_path)
    subject = subject_from_number(SUBJECT, KEYS, CLASSIFIER)
    requested_at = datetime(2026, 11, 2, tzinfo=UTC)
    results = [
        rewrite_file(storage, path, subject.pseudonyms, "delete", requested_at)
        for path in search(storage, subject.pseudonyms).candidates
    ]
    assert [(result.rows_affected, result.deleted) for result in results] == [(1, False), (1, True)]
    remaining = pq.read_table(tmp_path / "cdr/call_date=2026-11-01/t+0+0.parquet")
    assert remaining.column("cdr_id").to_pylist() == ["b"]
    assert not (tmp_path / "cdr/call_date=2026-11-01/t+1+0.parquet").exists()
    touched = [result.path for result in results]
    verification = verify_erasure(storage, subject.pseudonyms, subject.keys, requested_at, touched)
    assert verification.passed and (verification.files_in_store, verification.files_checked) == (2, 1)
    assert verification.coverage.keys_in_store == {key.ref for key in KEYS.keys}
    assert search(storage, subject.pseudonyms).candidates == []


def test_rows_after_the_request_time_are_kept(tmp_path: Path) -> None:
    storage = sample_store(tmp_path)
    subject = subject_from_number(SUBJECT, KEYS, CLASSIFIER)
    result = rewrite_file(
        storage,
        "cdr/call_date=2026-11-01/t+0+0.parquet",
        subject.pseudonyms,
        "delete",
        datetime(2026, 10, 1, tzinfo=UTC),
    )
    assert result.rows_affected == 0
