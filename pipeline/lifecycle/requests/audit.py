"""The append-only audit log in the store: a sealed hash chain of JSON entries.

Entries are the links of a :class:`~pipeline.lifecycle.requests.chain.Chain`
under ``_cdrpipe/audit/<seq>.json``: each is created exclusively (whole or not
at all), carries its sequence number, the hash of the entry before it and a
MAC under a key derived from the keyring, and is never rewritten, so an entry
rewritten, deleted, inserted or reordered is found by :func:`verify_audit`.
Contract: entries hold no raw phone number (callers pass pseudonyms, counts
and paths only); :func:`purge_audit` deletes the entries older than the DPO
record period behind a sealed checkpoint, so the rest still verifies. Entries
of stores older than the chain (``_cdrpipe/audit/<date>/<name>.json``) are
read and purged by their day; other files are skipped and reported, never
raised on.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pipeline.keys.keyring import Keyring
from pipeline.lifecycle.requests import skipped
from pipeline.lifecycle.requests.chain import CHECKPOINT, Chain, ChainReport
from pipeline.store.storage import Storage

AUDIT_DIR = "_cdrpipe/audit"
AUDIT_CHAIN = Chain(AUDIT_DIR)


def append_audit(storage: Storage, kind: str, entry: dict[str, Any], now: datetime) -> str:
    """Append one entry; return its store-relative path."""
    return AUDIT_CHAIN.append(storage, {**entry, "kind": kind, "recorded_at": now.isoformat()})


def _legacy_day(path: str) -> date | None:
    """The day of an entry written before the chain (``<AUDIT_DIR>/<day>/<name>.json``), else None."""
    parts = path.removeprefix(AUDIT_DIR + "/").split("/")
    try:
        return date.fromisoformat(parts[0]) if len(parts) == 2 else None
    except ValueError:
        return None


def read_audit(storage: Storage) -> list[dict[str, Any]]:
    """Every audit entry, oldest first (the chain's checkpoints are bookkeeping, not entries)."""
    legacy: list[dict[str, Any]] = []
    chained: list[dict[str, Any]] = []
    for path in storage.list(AUDIT_DIR):
        if AUDIT_CHAIN.seq_of(path) is None and _legacy_day(path) is None:
            skipped.skip("audit", path, "not an audit entry")
            continue
        document = skipped.json_object("audit", path, storage.read(path))
        if document is not None and document.get("kind") != CHECKPOINT:
            (legacy if AUDIT_CHAIN.seq_of(path) is None else chained).append(document)
    return legacy + chained


def purge_audit(storage: Storage, keep_days: int, today: date) -> int:
    """Delete entries of days more than ``keep_days`` before ``today``; return how many."""
    cutoff = today - timedelta(days=keep_days)
    purged = 0
    for path in storage.list(AUDIT_DIR):
        day = _legacy_day(path)
        if day is not None and day < cutoff:
            storage.delete(path)
            purged += 1

    def expired(entry: dict[str, Any]) -> bool:
        try:
            return datetime.fromisoformat(str(entry["recorded_at"])).date() < cutoff
        except (KeyError, ValueError):
            return False  # kept, and reported by verification

    now_text = datetime.combine(today, time(), UTC).isoformat()
    return purged + AUDIT_CHAIN.purge(storage, expired, now_text)


def verify_audit(storage: Storage, keyring: Keyring) -> ChainReport:
    """Verify the audit chain (see :meth:`~pipeline.lifecycle.requests.chain.Chain.verify`)."""
    report = AUDIT_CHAIN.verify(storage, keyring)
    return replace(report, foreign=[path for path in report.foreign if _legacy_day(path) is None])
