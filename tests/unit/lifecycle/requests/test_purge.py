"""The DPO's records (audit entries, receipts) are purged after their period."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from pipeline.lifecycle.requests.audit import append_audit, purge_audit, read_audit
from pipeline.lifecycle.requests.receipts import purge_receipts, receipt_path
from pipeline.store.storage import LocalStorage


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


def test_a_receipt_that_cannot_be_read_is_skipped_not_raised(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    old = datetime(2026, 1, 1, tzinfo=UTC)
    storage.publish(receipt_path("r-old"), json.dumps({"finished_at": old.isoformat()}).encode())
    storage.publish(receipt_path("r-empty"), b"")  # left by an older version killed mid-write
    storage.publish(receipt_path("r-foreign"), b'{"note": "not a receipt"}')
    assert purge_receipts(storage, 183, datetime(2026, 11, 25, tzinfo=UTC)) == 1
    assert storage.list("_cdrpipe/receipts") == [receipt_path("r-empty"), receipt_path("r-foreign")]
