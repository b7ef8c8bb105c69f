"""Re-applying the ledger to a restored store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pipeline.lifecycle.ledger import LedgerEntry
from pipeline.lifecycle.operations.export import subject_rows
from pipeline.lifecycle.operations.reapply import reapply_ledger
from pipeline.lifecycle.requests.audit import read_audit
from pipeline.lifecycle.subject import subject_from_number
from tests.support.lifecycle_store import CLASSIFIER, KEYS, sample_store


def test_reapplying_the_ledger_erases_restored_rows_once_and_audits_it(tmp_path: Path) -> None:
    storage = sample_store(tmp_path)
    subject = subject_from_number("+32475000111", KEYS, CLASSIFIER)
    entry = LedgerEntry(request_id="r-1", subject=list(subject.pairs), requested_at=datetime.now(UTC))
    first = reapply_ledger(storage, [entry])
    assert first.rows_affected == 2 and first.verification_passed
    assert first.files_deleted == ["cdr/call_date=2026-11-01/t+1+0.parquet"]
    assert first.files_rewritten == ["cdr/call_date=2026-11-01/t+0+0.parquet"]
    assert subject_rows(storage, subject).table is None
    kept = {path: (tmp_path / path).stat().st_mtime_ns for path in storage.list("cdr")}
    second = reapply_ledger(storage, [entry])
    assert (second.rows_affected, second.files_rewritten, second.files_deleted) == (0, [], [])
    assert {path: (tmp_path / path).stat().st_mtime_ns for path in storage.list("cdr")} == kept
    audits = [entry for entry in read_audit(storage) if entry["kind"] == "ledger-reapply"]
    assert [audit["rows_affected"] for audit in audits] == [2, 0]
    assert all(audit["request_ids"] == ["r-1"] for audit in audits)
