"""Lifecycle parts without Kafka: subject index, rewriter, retention (injected clock), DPO purge, export."""

from __future__ import annotations

import json
import os
import secrets
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.errors import ConfigError
from pipeline.formats.selection import FormatSelector, builtin_decoders
from pipeline.ingest.ingestor import Ingestor
from pipeline.ingest.records import RawRecord
from pipeline.keys.pseudonym import PartyPseudonymizer, Pseudonymizer
from pipeline.lifecycle.ledger import LedgerEntry
from pipeline.lifecycle.operations.export import subject_rows, write_export
from pipeline.lifecycle.operations.finder import search
from pipeline.lifecycle.operations.reapply import reapply_ledger
from pipeline.lifecycle.operations.retention import apply_retention
from pipeline.lifecycle.operations.rewriter import rewrite_file, verify_erasure
from pipeline.lifecycle.requests.audit import append_audit, purge_audit, read_audit
from pipeline.lifecycle.requests.receipts import purge_receipts, receipt_path
from pipeline.lifecycle.subject import subject_from_number
from pipeline.store import subject_index
from pipeline.store.storage import LocalStorage
from tests.support.lifecycle_store import CLASSIFIER, KEYS, SUBJECT, parquet_file, sample_store
from tests.support.samples import call_at, decode_context


def test_subject_index_never_misses_and_rarely_lies() -> None:
    present = [secrets.token_hex(16) for _ in range(5_000)]
    index = subject_index.build(present)
    assert all(subject_index.might_contain(index, pseudonym) for pseudonym in present)
    absent = [secrets.token_hex(16) for _ in range(20_000)]
    false_positives = sum(subject_index.might_contain(index, pseudonym) for pseudonym in absent)
    assert false_positives < 0.01 * len(absent)


def test_finder_uses_footers_and_finds_rows_under_every_key(tmp_path: Path) -> None:
    storage = sample_store(tmp_path)
    subject = subject_from_number("0475 00 01 11", KEYS, CLASSIFIER)
    assert subject.key_ids == ("k1", "k2") and len(subject.pseudonyms) == 2
    assert search(storage, subject.pseudonyms).candidates == [
        "cdr/call_date=2026-11-01/t+0+0.parquet",
        "cdr/call_date=2026-11-01/t+1+0.parquet",
    ]


def test_the_finder_can_search_only_files_modified_since_an_instant(tmp_path: Path) -> None:
    storage = sample_store(tmp_path)
    subject = subject_from_number("+32475000111", KEYS, CLASSIFIER)
    a_day_ago = (datetime.now(UTC) - timedelta(days=1)).timestamp()
    os.utime(tmp_path / "cdr/call_date=2026-11-01/t+0+0.parquet", (a_day_ago, a_day_ago))
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    assert search(storage, subject.pseudonyms, modified_since=an_hour_ago).candidates == [
        "cdr/call_date=2026-11-01/t+1+0.parquet"
    ]
    assert len(search(storage, subject.pseudonyms).candidates) == 2


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
    keys = frozenset(subject.key_ids)
    verification = verify_erasure(storage, subject.pseudonyms, keys, requested_at, touched)
    assert verification.passed and (verification.files_in_store, verification.files_checked) == (2, 1)
    assert verification.key_ids_in_store == {"k1", "k2"}
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


def test_export_returns_exactly_the_subjects_rows(tmp_path: Path) -> None:
    storage = sample_store(tmp_path)
    table = subject_rows(storage, subject_from_number("0032475000111", KEYS, CLASSIFIER))
    assert table is not None
    assert sorted(table.column("cdr_id").to_pylist()) == ["a", "c"]
    assert set(table.column("call_date").to_pylist()) == {date(2026, 11, 1)}
    for export_format in ("jsonl", "csv", "parquet"):
        out = tmp_path / f"export.{export_format}"
        write_export(table, out, export_format)  # type: ignore[arg-type]
        assert out.stat().st_size > 0
    lines = (tmp_path / "export.jsonl").read_text().splitlines()
    assert {json.loads(line)["cdr_id"] for line in lines} == {"a", "c"}


def test_retention_deletes_only_partitions_past_the_horizon_and_audits_them(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    for day in ("2025-11-24", "2025-11-25", "2025-11-26"):
        storage.publish(
            f"cdr/call_date={day}/t+0+0.parquet",
            parquet_file(KEYS.keys[0], [("x", "0475999888", f"{day}T10:00:00+00:00")]),
        )
    now = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
    dry = apply_retention(storage, now, 365, dry_run=True)
    assert [day.isoformat() for day in dry.partitions] == ["2025-11-24"]
    assert len(storage.list("cdr")) == 3
    report = apply_retention(storage, now, 365)
    assert report.horizon == date(2025, 11, 25) and report.files == 1
    assert sorted(path.split("/")[1] for path in storage.list("cdr")) == [
        "call_date=2025-11-25",
        "call_date=2025-11-26",
    ]
    (entry,) = read_audit(storage)
    assert entry["kind"] == "retention" and entry["call_date"] == "2025-11-24"


def test_records_already_expired_at_ingest_are_dropped_and_counted() -> None:
    parties = PartyPseudonymizer(CLASSIFIER, Pseudonymizer(KEYS.active), 16)
    formats = FormatSelector(builtin_decoders({}), {"cdr.raw": "canonical-json"}, decode_context())
    ingestor = Ingestor(formats, parties, 100, 60.0, retention_days=365, today=lambda: date(2026, 11, 25))
    assert (
        ingestor.add(RawRecord("cdr.raw", 0, 0, call_at("2025-11-24T23:00:00+00:00", cdr_id="old"))) is None
    )
    assert (
        ingestor.add(RawRecord("cdr.raw", 0, 1, call_at("2025-11-25T00:10:00+00:00", cdr_id="kept"))) is None
    )
    assert ingestor.expired_dropped == 1
    flush = ingestor.take(("cdr.raw", 0))
    assert [pending.path.split("/")[1] for pending in flush.files] == ["call_date=2025-11-25"]
    assert flush.commit_offset == 2


def test_dpo_records_are_purged_after_their_period(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    old, recent = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
    append_audit(storage, "erasure", {"request_id": "r-old"}, old)
    append_audit(storage, "erasure", {"request_id": "r-new"}, recent)
    for request_id, finished in (("r-old", old), ("r-new", recent)):
        storage.publish(receipt_path(request_id), json.dumps({"finished_at": finished.isoformat()}).encode())
    today = datetime(2026, 11, 25, tzinfo=UTC)
    assert purge_audit(storage, 183, today.date()) == 1
    assert purge_receipts(storage, 183, today) == 1
    assert [entry["request_id"] for entry in read_audit(storage)] == ["r-new"]
    assert storage.list("_cdrpipe/receipts") == [receipt_path("r-new")]


def test_a_subject_must_be_a_number_or_extension() -> None:
    with pytest.raises(ConfigError, match="WITHHELD"):
        subject_from_number("anonymous", KEYS, CLASSIFIER)


def test_reapplying_the_ledger_erases_restored_rows_once_and_audits_it(tmp_path: Path) -> None:
    storage = sample_store(tmp_path)
    subject = subject_from_number("+32475000111", KEYS, CLASSIFIER)
    entry = LedgerEntry(request_id="r-1", subject=list(subject.pairs), requested_at=datetime.now(UTC))
    first = reapply_ledger(storage, [entry])
    assert first.rows_affected == 2 and first.verification_passed
    assert first.files_deleted == ["cdr/call_date=2026-11-01/t+1+0.parquet"]
    assert first.files_rewritten == ["cdr/call_date=2026-11-01/t+0+0.parquet"]
    assert subject_rows(storage, subject) is None
    kept = {path: (tmp_path / path).stat().st_mtime_ns for path in storage.list("cdr")}
    second = reapply_ledger(storage, [entry])
    assert (second.rows_affected, second.files_rewritten, second.files_deleted) == (0, [], [])
    assert {path: (tmp_path / path).stat().st_mtime_ns for path in storage.list("cdr")} == kept
    audits = [entry for entry in read_audit(storage) if entry["kind"] == "ledger-reapply"]
    assert [audit["rows_affected"] for audit in audits] == [2, 0]
    assert all(audit["request_ids"] == ["r-1"] for audit in audits)
