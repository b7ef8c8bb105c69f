"""Erasure receipts: their typed form, and their copies in the store, purged after the DPO record period.

Contract: :class:`Receipt` is ``schemas/erasure-receipt.schema.json`` as a
type; a receipt holds request ids, counts, paths, key ids and plain-language
text, never a number or pseudonym. A receipt is written once
(``_cdrpipe/receipts/<request id>.json``) and never rewritten;
:func:`purge_receipts` deletes those whose ``finished_at`` is more than
``keep_days`` ago, skipping (and reporting) a file that is not a receipt.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Literal

import msgspec

from pipeline.lifecycle.requests import skipped
from pipeline.lifecycle.requests.erasure_request import Mode
from pipeline.store.storage import Storage


class ResidualCopy(msgspec.Struct, kw_only=True, frozen=True):
    """A place that still holds raw data for a while, named in every receipt.

    ``retention_days`` is None when the topic keeps data without a time
    limit; ``retention_source`` says whether the broker reported it or it
    comes from the settings (the broker could not be asked).
    """

    topic: str
    holds: str
    retention_days: float | None
    retention_source: Literal["broker", "settings"]


class ReceiptVerification(msgspec.Struct, kw_only=True, frozen=True):
    """What the erasure checked after rewriting, and whether it passed."""

    passed: bool
    checked: str
    files_in_store: int
    files_checked: int
    rows_remaining: int
    key_ids_in_store: list[str]
    key_ids_not_searched: list[str]
    files_unreadable: list[str]


class Receipt(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """The receipt of one request: ``completed`` (with its verification) or ``rejected`` (with a reason)."""

    request_id: str
    status: Literal["completed", "rejected"]
    finished_at: datetime
    pipeline_version: str
    reason: str | None = None
    mode: Mode | None = None
    requested_at: datetime | None = None
    started_at: datetime | None = None
    key_ids: list[str] | None = None
    pseudonyms_searched: int | None = None
    subject_digest: str | None = None
    """A digest of the subject's pseudonyms: a re-delivered request matches it, a reused id does not."""
    files_rewritten: list[str] | None = None
    files_deleted: list[str] | None = None
    files_skipped: list[str] | None = None
    rows_removed: int | None = None
    rows_redacted: int | None = None
    passes: int | None = None
    verification: ReceiptVerification | None = None
    residual_copies: list[ResidualCopy] | None = None

    @property
    def passed(self) -> bool:
        """True for a completed erasure whose verification passed."""
        return self.verification is not None and self.verification.passed


_RECEIPT = msgspec.json.Decoder(Receipt)


def encode_receipt(receipt: Receipt) -> bytes:
    """The receipt as JSON (keys sorted)."""
    return msgspec.json.encode(receipt, order="sorted")


def decode_receipt(data: bytes) -> Receipt:
    """A stored or published receipt."""
    return _RECEIPT.decode(data)


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
        document = skipped.json_object("receipts", path, storage.read(path))
        try:
            finished = datetime.fromisoformat(str(document["finished_at"])) if document else None
        except (KeyError, ValueError):
            skipped.skip("receipts", path, "a receipt without its finished_at instant")
            continue
        if finished is not None and finished < cutoff:
            storage.delete(path)
            purged += 1
    return purged


def is_subject_request_receipt(document: bytes) -> bool:
    """Whether a stored receipt is a subject request's (restriction, objection, rectification...)."""
    try:
        parsed = json.loads(document)
    except ValueError:
        return False
    return isinstance(parsed, dict) and "kind" in parsed
