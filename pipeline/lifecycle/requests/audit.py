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
    breaks = list(report.breaks)
    # Old-style entries are unsealed, but they all predate the chain, and the first purge of
    # the chain (which leaves a checkpoint) has removed them all: one dated later was inserted.
    began = min((_day_of(document) for document in report.documents), default=None)
    for path in report.foreign:
        day = _legacy_day(path)
        if day is not None and (report.purged_through or (began is not None and day > began)):
            breaks.append(f"{path} is an unsealed old-style entry newer than the chain: it was inserted")
    return replace(
        report, breaks=breaks, foreign=[path for path in report.foreign if _legacy_day(path) is None]
    )


def _day_of(document: dict[str, Any]) -> date:
    try:
        return datetime.fromisoformat(str(document["recorded_at"])).date()
    except (KeyError, ValueError):
        return date.max
