"""Erasure receipts kept in the store, one per request id, purged after the DPO record period.

Contract: a receipt is written once (``_cdrpipe/receipts/<request id>.json``)
and never rewritten; :func:`purge_receipts` deletes those whose
``finished_at`` is more than ``keep_days`` ago.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from pipeline.sink.storage import Storage

RECEIPT_DIR = "_cdrpipe/receipts"


def receipt_path(request_id: str) -> str:
    """Where the receipt of ``request_id`` is kept in the store."""
    safe = "".join(
        character if character.isalnum() or character in "-_." else "_" for character in request_id
    )
    return f"{RECEIPT_DIR}/{safe}.json"


def purge_receipts(storage: Storage, keep_days: int, now: datetime) -> int:
    """Delete receipts finished more than ``keep_days`` before ``now``; return how many."""
    cutoff = now - timedelta(days=keep_days)
    purged = 0
    for path in storage.list(RECEIPT_DIR):
        data = storage.read(path)
        if data is not None and datetime.fromisoformat(json.loads(data)["finished_at"]) < cutoff:
            storage.delete(path)
            purged += 1
    return purged
