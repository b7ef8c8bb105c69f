"""The paperwork both request processors share: register, stored receipts, audit, and failures.

Contract of :class:`Desk` (used by the erasure and the rights processor, on
the serial lifecycle path):

* :meth:`Desk.earlier` finds what the store already holds under a request
  id: the stored receipt (an earlier delivery, or another request that used
  the id) and the kind the register knows the id by.
* :meth:`Desk.open` registers the request (``received``; idempotent).
* :meth:`Desk.carry_out` runs a request's work against a store and a ledger
  that record what they change. Whatever the work raises after it began, the
  request gets a ``failed`` receipt from the processor that says what failed
  and what had been done (:class:`~pipeline.lifecycle.requests.receipts.WorkDone`).
  :meth:`Desk.guard` does the same for whatever breaks before the work (a
  store whose register cannot be read): a ``failed`` receipt, filed.
* :meth:`Desk.file` keeps a receipt (``keep``: the id's receipt, returned on
  re-delivery), appends it to the audit log and answers the register entry:
  closed by a completed receipt that passed (``rejected`` by a kept
  rejection), noted otherwise (a failed verification, a failure, a rejection
  of the message as sent), never touched for a rejection of a reused id,
  which is another request's entry. Each step is tried on its own and none
  raises: a receipt is always returned, and a register entry that cannot be
  answered is logged, then noted with the reason if the note can be written.
* The one exception that passes through all of these is
  :class:`~pipeline.store.fence.OwnershipLostError`: the worker lost the
  lifecycle to another, which carries the request out and answers it; this
  one writes nothing more and sends no receipt.
* :meth:`Desk.reissue` answers the register entry of a re-delivered request
  that an earlier run left open, so re-running a request closes it.

The texts written to the register are receipts' summaries: composed from
checked ids, counts and fixed words, so the register never refuses them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

import msgspec
import pyarrow as pa

from pipeline.lifecycle.ledger import LedgerEntry
from pipeline.lifecycle.operations.restriction import Ledger
from pipeline.lifecycle.requests.audit import append_audit
from pipeline.lifecycle.requests.receipts import (
    AnyReceipt,
    ReceiptVerification,
    WorkDone,
    decode_stored,
    encode_receipt,
    receipt_path,
)
from pipeline.lifecycle.requests.register import Kind, load_request, record_answer, register_received
from pipeline.observability.log_scrub import scrub
from pipeline.store.fence import OwnershipLostError
from pipeline.store.storage import ForwardingStorage, Stamp, Storage

log = logging.getLogger(__name__)

R = TypeVar("R", bound=AnyReceipt)

PAPERWORK = "_cdrpipe/"
"""Files under this prefix are the paperwork (register, receipts, audit), not work done on data."""


@dataclass(slots=True)
class _Changes:
    ledger_entries: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    opened: set[str] = field(default_factory=set)

    def any(self) -> bool:
        return bool(self.ledger_entries or self.written or self.deleted)

    def done(self) -> WorkDone:
        return WorkDone(
            ledger_entries=list(self.ledger_entries),
            files_written=sorted(set(self.written)),
            files_deleted=sorted(set(self.deleted)),
        )


class _RecordingStorage(ForwardingStorage):
    """A :class:`~pipeline.store.storage.Storage` that notes which data files a request changed."""

    def __init__(self, storage: Storage, changes: _Changes) -> None:
        super().__init__(storage)
        self._changes = changes

    def publish(self, relative_path: str, data: bytes) -> Stamp | None:
        stamp = super().publish(relative_path, data)
        if not relative_path.startswith(PAPERWORK):
            self._changes.written.append(relative_path)
        return stamp

    def read(self, relative_path: str) -> bytes | None:
        self._note_opened(relative_path)
        return super().read(relative_path)

    def open_input(self, relative_path: str) -> pa.NativeFile:
        self._note_opened(relative_path)
        return super().open_input(relative_path)

    def _note_opened(self, relative_path: str) -> None:
        if not relative_path.startswith(PAPERWORK):
            self._changes.opened.add(relative_path)

    def delete(self, relative_path: str) -> None:
        super().delete(relative_path)
        if not relative_path.startswith(PAPERWORK):
            self._changes.deleted.append(relative_path)


@dataclass(frozen=True, slots=True)
class Earlier:
    """What the store holds under a request id before the request is carried out."""

    receipt: AnyReceipt | None
    """The stored receipt (None if there is none, or it is of a version this one does not read)."""
    unreadable: bool
    """A receipt is stored but this version cannot read it (an earlier version's)."""
    registered_as: Kind | None
    """The kind the register knows the id by (None when it is not registered)."""


class Desk:
    """The paperwork of one store's requests (see the module contract)."""

    def __init__(self, storage: Storage, ledger: Ledger, clock: Callable[[], datetime]) -> None:
        self._storage = storage
        self._ledger = ledger
        self._clock = clock

    def earlier(self, request_id: str) -> Earlier:
        """The stored receipt and the registered kind of ``request_id``."""
        existing = self._storage.read(receipt_path(request_id))
        record = load_request(self._storage, request_id)
        stored = decode_stored(existing) if existing is not None else None
        return Earlier(
            receipt=stored,
            unreadable=existing is not None and stored is None,
            registered_as=record.kind if record is not None else None,
        )

    def open(self, request_id: str, kind: Kind, requested_at: datetime) -> None:
        """Register the request as received at ``requested_at`` (an existing registration is kept)."""
        register_received(self._storage, request_id, kind, requested_at)

    def carry_out(
        self, request_id: str, work: Callable[[Storage, Ledger], R], failed: Callable[[str, WorkDone], R]
    ) -> R:
        """Run ``work`` and return its receipt, or ``failed``'s with the work done if it broke part-way.

        The receipt is not filed: the processor files it, kept or not. It records how
        many data files the work opened and how long it took (``files_read``, ``seconds``).
        """
        changes = _Changes()
        began = time.monotonic()

        def write(entry: LedgerEntry) -> None:
            self._ledger.write(entry)
            changes.ledger_entries.append(entry.key)

        try:
            receipt = work(_RecordingStorage(self._storage, changes), Ledger(self._ledger.view, write))
        except OwnershipLostError:
            raise  # another worker owns the request now: it answers it, not this one
        except Exception as exc:  # the request still gets a receipt saying what broke and what was done
            receipt = self._failed(request_id, exc, changes, failed)
        seconds = round(time.monotonic() - began, 3)
        return msgspec.structs.replace(receipt, files_read=len(changes.opened), seconds=seconds)

    def guard(
        self, request_id: str, attempt: Callable[[], R], failed: Callable[[str, WorkDone], R], audit_kind: str
    ) -> R:
        """``attempt()`` (which files its own receipt), or a filed ``failed`` receipt if it raised.

        It catches what breaks before the work begins (reading the register or
        a stored receipt, the keyring): such a request changed nothing.
        """
        try:
            return attempt()
        except OwnershipLostError:
            raise
        except Exception as exc:  # a store that cannot be read: the receipt still comes, and says so
            receipt = self._failed(request_id, exc, _Changes(), failed)
            self.file(receipt, audit_kind, keep=False)
            return receipt

    @staticmethod
    def _failed(
        request_id: str, error: Exception, changes: _Changes, failed: Callable[[str, WorkDone], R]
    ) -> R:
        log.exception("request %s failed part-way", request_id, extra={"request_id": request_id})
        # An exception's text may quote anything it was given: what it says is scrubbed first.
        return failed(f"{type(error).__name__}: {scrub(str(error))}", changes.done())

    def file(
        self, receipt: AnyReceipt, audit_kind: str, *, keep: bool, answers_register: bool = True
    ) -> None:
        """Keep (if ``keep``), audit and answer ``receipt``; log whatever fails, never raise."""
        now, request_id = self._clock(), receipt.request_id
        if keep and request_id is not None:
            path, document = receipt_path(request_id), encode_receipt(receipt)
            self._attempt(
                request_id, "storing the receipt", lambda: self._storage.create_exclusive(path, document)
            )
        self._attempt(
            request_id,
            "auditing the receipt",
            lambda: append_audit(
                self._storage, audit_kind, {**msgspec.to_builtins(receipt), "kind": audit_kind}, now
            ),
        )
        if answers_register and request_id is not None:
            self._answer(receipt, request_id, now, keep=keep, first=True)

    def reissue(self, receipt: AnyReceipt) -> None:
        """Close the register entry of a re-delivered request if an earlier run left it open."""
        if receipt.request_id is not None:
            self._answer(receipt, receipt.request_id, self._clock(), keep=True, first=False)

    def _answer(
        self, receipt: AnyReceipt, request_id: str, now: datetime, *, keep: bool, first: bool
    ) -> None:
        def answer() -> None:
            record = load_request(self._storage, request_id)
            if record is None or record.status != "open":
                return
            where = f" (receipt {receipt_path(request_id)})" if keep else ""
            if receipt.passed:
                record_answer(self._storage, request_id, now, receipt.summary + where, closes=True)
            elif keep and receipt.status == "rejected":
                record_answer(
                    self._storage, request_id, now, receipt.summary + where, closes=True, status="rejected"
                )
            elif first:  # a failure or a failed verification: the entry stays open, and says why
                text = f"{receipt.summary}{where}; the request stays open"
                record_answer(self._storage, request_id, now, text, closes=False)

        if not self._attempt(request_id, "answering the register entry", answer):
            reason = "the register entry could not be answered; see the worker log"
            self._attempt(
                request_id,
                "noting why the register entry was not answered",
                lambda: record_answer(
                    self._storage, request_id, now, f"{receipt.summary}; {reason}", closes=False
                ),
            )

    @staticmethod
    def _attempt(request_id: str | None, step: str, action: Callable[[], object]) -> bool:
        try:
            action()
        except OwnershipLostError:
            raise  # no receipt of a request another worker has taken over: it sends its own
        except Exception:  # the receipt still goes out; the log says which step failed
            log.exception("request %s: %s failed", request_id, step, extra={"request_id": request_id})
            return False
        return True


def verdict(verification: ReceiptVerification | None) -> str:
    """``verification passed`` or ``verification FAILED (...)``, for a summary."""
    if verification is None:
        return "nothing to verify"
    if verification.passed:
        return "verification passed"
    problems = [
        f"{verification.rows_remaining} rows remaining" if verification.rows_remaining else "",
        f"{len(verification.files_unreadable)} files unreadable" if verification.files_unreadable else "",
        f"keys {', '.join(verification.key_ids_not_searched)} not searched"
        if verification.key_ids_not_searched
        else "",
    ]
    found = "; ".join(problem for problem in problems if problem) or "see verification.checked"
    return f"verification FAILED ({found})"


def failure_summary(what: str, done: WorkDone) -> str:
    """The summary of a request that broke part-way."""
    return f"FAILED part-way ({what}); done before that: {done.describe()}; send the request again"
