"""Retention by call date, with an injected clock."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from pipeline.formats.selection import FormatSelector, builtin_decoders
from pipeline.ingest.ingestor import Ingestor
from pipeline.ingest.records import RawRecord
from pipeline.keys.pseudonym import PartyPseudonymizer, Pseudonymizer
from pipeline.lifecycle.operations.retention import apply_retention
from pipeline.lifecycle.requests.audit import read_audit
from pipeline.store.storage import LocalStorage
from tests.support.lifecycle_store import CLASSIFIER, KEYS, parquet_file
from tests.support.samples import call_at, decode_context


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
