"""The append-only audit log in the store: one immutable JSON object per event.

Entries live under ``_cdrpipe/audit/<completion date>/<timestamp>-<kind>-<id>.json``
and are created exclusively, never rewritten. Contract: entries hold no raw
phone number (callers pass pseudonyms, counts and paths only);
:func:`purge_audit` deletes whole days older than the DPO record period.
"""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime, timedelta
from typing import Any

from pipeline.store.storage import Storage

AUDIT_DIR = "_cdrpipe/audit"


def append_audit(storage: Storage, kind: str, entry: dict[str, Any], now: datetime) -> str:
    """Append one entry; return its store-relative path."""
    name = f"{now.strftime('%Y%m%dT%H%M%S%f')}-{kind}-{uuid.uuid4().hex[:8]}.json"
    path = f"{AUDIT_DIR}/{now.date().isoformat()}/{name}"
    document = {"kind": kind, "recorded_at": now.isoformat(), **entry}
    storage.create_exclusive(path, json.dumps(document, sort_keys=True, default=str).encode())
    return path


def read_audit(storage: Storage) -> list[dict[str, Any]]:
    """Every audit entry, oldest first."""
    entries = []
    for path in storage.list(AUDIT_DIR):
        data = storage.read(path)
        if data is not None:
            entries.append(json.loads(data))
    return entries


def purge_audit(storage: Storage, keep_days: int, today: date) -> int:
    """Delete entries of days more than ``keep_days`` before ``today``; return how many."""
    cutoff = today - timedelta(days=keep_days)
    purged = 0
    for path in storage.list(AUDIT_DIR):
        day = path.removeprefix(AUDIT_DIR + "/").split("/", 1)[0]
        if date.fromisoformat(day) < cutoff:
            storage.delete(path)
            purged += 1
    return purged
