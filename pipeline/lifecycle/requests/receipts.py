"""Receipts of every request kind: their typed forms, their one-line summaries, their copies in the store.

Contract: :class:`Receipt` is ``schemas/erasure-receipt.schema.json`` as a
type and :class:`SubjectReceipt` is ``schemas/subject-receipt.schema.json``;
both open with a one-line ``summary`` a DPO can read, use the same names for
the same things (``status``, ``rows_*``, ``files_*``, ``verification`` with
``checked`` in words, ``work_done`` when a request failed part-way,
``tenants_searched`` for an extension or agent) and hold request ids, counts,
paths, key ids, tenant names and plain-language text, never a number or a
pseudonym. On the receipts topic a receipt is :func:`receipt_message`: it
carries ``answers`` (the digest of the request message it answers) and is
signed (:mod:`pipeline.lifecycle.requests.signing`). A receipt is written once (``_cdrpipe/receipts/<request
id>.json``, see :func:`receipt_path`) and never rewritten;
:func:`purge_receipts` deletes those whose ``finished_at`` is more than
``keep_days`` ago, skipping (and reporting) a file that is not a receipt.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Literal

import msgspec

from pipeline.keys.fingerprint import KeyRef, sorted_refs
from pipeline.keys.keyring import Key
from pipeline.lifecycle.requests import skipped
from pipeline.lifecycle.requests.erasure_request import Mode
from pipeline.lifecycle.requests.ids import path_name
from pipeline.lifecycle.requests.signing import message_digest, sign_message
from pipeline.lifecycle.requests.subject_request import RequestKind
from pipeline.store.storage import Storage

Status = Literal["completed", "rejected", "failed"]
"""``completed``: carried out (its verification says whether it passed); ``rejected``: nothing was
done, for the reason given; ``failed``: it broke part-way, ``work_done`` says how far it got."""


class ResidualCopy(msgspec.Struct, kw_only=True, frozen=True):
    """A place that still holds raw data for a while, named in every erasure receipt.

    ``retention_days`` is None when the topic keeps data without a time
    limit; ``retention_source`` says whether the broker reported it or it
    comes from the settings (the broker could not be asked).
    """

    topic: str
    holds: str
    retention_days: float | None
    retention_source: Literal["broker", "settings"]


class ReceiptKey(msgspec.Struct, kw_only=True, frozen=True):
    """A key as a receipt names it: its id and its fingerprint (None: recorded by id only)."""

    key_id: str
    fingerprint: str | None


def receipt_keys(keys: Iterable[KeyRef]) -> list[ReceiptKey]:
    """``keys`` as receipts list them (by id)."""
    return [ReceiptKey(key_id=key.key_id, fingerprint=key.fingerprint) for key in sorted_refs(keys)]


class FileNotSearched(msgspec.Struct, kw_only=True, frozen=True):
    """A data file with rows under a key the subject was not searched under (it may hold the subject)."""

    path: str
    key_id: str
    fingerprint: str | None


class ReceiptVerification(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """What was re-read after the request changed the store, and whether it passed.

    ``files_checked`` counts files whose rows were decoded; a request that
    changed rows and decoded no file has checked nothing and does not pass.
    The key id lists are those of the files read (erasures and moves; a
    rectification names a call, not a subject, so it has none).
    ``files_not_searched`` names every file under a key (id and fingerprint)
    the subject was not searched under, which fails the verification;
    ``files_searched_by_key_id_only`` counts the files whose key could only be
    matched by id (no fingerprint recorded), under ``key_ids_searched_by_id_only``.
    """

    passed: bool
    checked: str
    files_in_store: int
    files_checked: int
    rows_remaining: int
    files_unreadable: list[str]
    key_ids_in_store: list[str] | None = None
    key_ids_not_searched: list[str] | None = None
    files_not_searched: list[FileNotSearched] | None = None
    files_searched_by_key_id_only: int | None = None
    key_ids_searched_by_id_only: list[str] | None = None


class WorkDone(msgspec.Struct, kw_only=True, frozen=True):
    """What a request that failed part-way had already changed (ledger entries by key, files by path)."""

    ledger_entries: list[str]
    files_written: list[str]
    files_deleted: list[str]

    def describe(self) -> str:
        """The work done, in words."""
        return (
            f"{len(self.ledger_entries)} ledger entries written, {len(self.files_written)} files written, "
            f"{len(self.files_deleted)} deleted"
        )


class Receipt(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """The receipt of one erasure request."""

    summary: str
    request_id: str
    status: Status
    finished_at: datetime
    pipeline_version: str
    reason: str | None = None
    mode: Mode | None = None
    requested_at: datetime | None = None
    started_at: datetime | None = None
    key_ids: list[str] | None = None
    keys: list[ReceiptKey] | None = None
    """The keys of ``key_ids`` with their fingerprints."""
    tenants_searched: list[str] | None = None
    """An extension or agent: the tenants whose pseudonyms were searched (a subscriber has none)."""
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
    work_done: WorkDone | None = None
    files_read: int | None = None
    """Data files the work opened, footers or rows, each counted once (store manifests spare the rest)."""
    seconds: float | None = None
    """How long the work on the store took."""
    answers: str | None = None
    """On the receipts topic: the SHA-256 of the request message this receipt answers."""

    @property
    def passed(self) -> bool:
        """True for a completed request whose verification passed."""
        return self.status == "completed" and self.verification is not None and self.verification.passed


class SubjectReceipt(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """The receipt of one restriction, lift, objection, withdrawal or rectification request."""

    summary: str
    request_id: str | None
    """None when the message carried no usable request id."""
    kind: RequestKind | None
    status: Status
    started_at: datetime
    finished_at: datetime
    pipeline_version: str
    reason: str | None = None
    requested_at: datetime | None = None
    request_digest: str | None = None
    """A digest of what the request asked (kind, subject, fields): a re-delivery matches, a reused id not."""
    existing: Literal["quarantine", "erase"] | None = None
    cdr_id: str | None = None
    party: Literal["caller", "callee"] | None = None
    rows_found: int | None = None
    rows_moved: int | None = None
    rows_removed: int | None = None
    rows_redacted: int | None = None
    files_rewritten: list[str] | None = None
    files_written: list[str] | None = None
    files_deleted: list[str] | None = None
    passes: int | None = None
    ended: list[str] | None = None
    still_in_force: list[str] | None = None
    rows_still_held: int | None = None
    """A lift or withdrawal: rows of the subject that another hold in force keeps in the quarantine."""
    parties_redacted: list[str] | None = None
    """A rectification: the roles redacted (the party, and ``connected`` when it was the same person)."""
    key_ids: list[str] | None = None
    keys: list[ReceiptKey] | None = None
    """The keys of ``key_ids`` with their fingerprints."""
    tenants_searched: list[str] | None = None
    """An extension or agent: the tenants whose pseudonyms were searched (a subscriber has none)."""
    pseudonyms_searched: int | None = None
    verification: ReceiptVerification | None = None
    work_done: WorkDone | None = None
    files_read: int | None = None
    """Data files the work opened, footers or rows, each counted once (store manifests spare the rest)."""
    seconds: float | None = None
    """How long the work on the store took."""
    answers: str | None = None
    """On the receipts topic: the SHA-256 of the request message this receipt answers."""

    @property
    def passed(self) -> bool:
        """True for a completed request whose verification, if it needed one, passed."""
        return self.status == "completed" and (self.verification is None or self.verification.passed)


AnyReceipt = Receipt | SubjectReceipt

_RECEIPT = msgspec.json.Decoder(Receipt)
_SUBJECT_RECEIPT = msgspec.json.Decoder(SubjectReceipt)


def encode_receipt(receipt: AnyReceipt) -> bytes:
    """The receipt as JSON, its summary first."""
    return msgspec.json.encode(receipt)


def receipt_message(receipt: AnyReceipt, request: bytes | None, key: Key) -> bytes:
    """The receipts topic's message of ``receipt``: it names the ``request`` message it answers
    (``answers``: its digest) and is signed under ``key``, so only that request's sender takes it."""
    answering = msgspec.structs.replace(receipt, answers=message_digest(request or b""))
    return sign_message(encode_receipt(answering), key)


def decode_stored(data: bytes) -> AnyReceipt | None:
    """A stored receipt of either kind, or None if it is not one this version reads."""
    try:
        parsed = json.loads(data)
        if not isinstance(parsed, dict):
            return None
        return _SUBJECT_RECEIPT.decode(data) if "kind" in parsed else _RECEIPT.decode(data)
    except (ValueError, msgspec.DecodeError):
        return None


RECEIPT_DIR = "_cdrpipe/receipts"


def receipt_path(request_id: str) -> str:
    """Where the receipt of ``request_id`` is kept in the store."""
    return f"{RECEIPT_DIR}/{path_name(request_id)}.json"


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
