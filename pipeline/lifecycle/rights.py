"""Carry out subject requests other than erasure: rectification, restriction, lift, objection, withdrawal.

Contract of :meth:`RightsProcessor.process` (one request at a time, on the
serial lifecycle path):

1. A request id that already has a stored receipt gets that receipt again
   (re-delivery is idempotent) and nothing else happens.
2. A usable request is registered (``received``), carried out, and its
   receipt is stored under ``_cdrpipe/receipts/<request id>.json``, appended
   to the audit log and closes the register entry: ``closed`` when done (a
   failed verification adds a note and leaves it open), ``rejected`` when
   there was nothing to act on (no such call, no restriction in force).
3. A message that is not a usable request (malformed, a subject that cannot
   be searched for, an id registered for another kind) gets a receipt with
   ``status: rejected`` and the reason. It is audited and noted on the
   request's register entry if there is one, but not stored as the id's
   receipt, so a corrected request may use the same id.

Receipts and audit entries hold request ids, counts, paths, key ids and
verification results, never a number or a pseudonym.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from pipeline import __version__
from pipeline.errors import RequestRefusedError
from pipeline.keys.keyring import Keyring
from pipeline.lifecycle.operations.rectify import LedgerRecord, rectify_call
from pipeline.lifecycle.operations.restriction import (
    Ledger,
    Passes,
    Refusal,
    put_back_in_use,
    take_out_of_use,
)
from pipeline.lifecycle.requests.audit import append_audit
from pipeline.lifecycle.requests.receipts import receipt_path
from pipeline.lifecycle.requests.register import close, load_request, note, register_received
from pipeline.lifecycle.requests.subject_request import Rejection, SubjectRequest
from pipeline.lifecycle.subject import Subject, subject_from_number, subject_from_pseudonym
from pipeline.numbers.msisdn import NumberClassifier
from pipeline.store.storage import Storage

log = logging.getLogger(__name__)


class RightsProcessor:
    """Runs subject requests against one store."""

    def __init__(
        self,
        storage: Storage,
        keyring: Callable[[], Keyring],
        classifier: NumberClassifier,
        *,
        ledger: Ledger,
        passes: Passes,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._storage = storage
        self._keyring = keyring
        self._classifier = classifier
        self._ledger = ledger
        self._passes = passes
        self._clock = clock

    def process(self, request: SubjectRequest | Rejection) -> dict[str, Any]:
        """Carry out ``request`` (or record its rejection) and return its receipt."""
        started = self._clock()
        if isinstance(request, Rejection):
            return self._refuse(request.request_id, request.kind, request.reason, started)
        existing = self._storage.read(receipt_path(request.request_id))
        if existing is not None:
            log.info("request %s was already answered; re-issuing its receipt", request.request_id)
            stored: dict[str, Any] = json.loads(existing)
            return stored
        try:
            register_received(self._storage, request.request_id, request.kind, request.requested_at)
            receipt = self._carry_out(request, started)
        except RequestRefusedError as exc:  # the subject cannot be searched for, or the id names another kind
            return self._refuse(request.request_id, request.kind, str(exc), started)
        self._record(receipt)
        log.info("%s request %s: %s", receipt["kind"], receipt["request_id"], receipt["status"])
        return receipt

    def _refuse(
        self, request_id: str | None, kind: str | None, reason: str, started: datetime
    ) -> dict[str, Any]:
        """The receipt of a request that cannot be carried out as sent.

        It is audited, and noted on the request's register entry if there is
        one, but not kept as the request id's receipt: a corrected request may
        use the same id (as with erasure).
        """
        receipt = self._rejected(request_id, kind, reason, started)
        now = self._clock()
        audit_kind = kind or "unknown-request"  # a message too malformed to name its kind
        append_audit(self._storage, audit_kind, {**receipt, "kind": audit_kind}, now)
        if request_id is not None and load_request(self._storage, request_id) is not None:
            note(self._storage, request_id, now, f"rejected: {reason}; the request stays open")
        log.info("%s request %s rejected", audit_kind, request_id or "(no usable id)")
        return receipt

    def _carry_out(self, request: SubjectRequest, started: datetime) -> dict[str, Any]:
        if request.kind == "rectification":
            return self._rectify(request, started)
        subject = self._subject(request)
        requested_at = request.requested_at.astimezone(UTC)
        searched = {"key_ids": list(subject.key_ids), "pseudonyms_searched": len(subject.pseudonyms)}
        done: dict[str, Any] | Refusal
        if request.kind in ("restriction", "objection"):
            existing = request.existing or "quarantine"  # parse_request makes an objection say which
            action: Literal["restrict", "suppress"] = (
                "restrict" if request.kind == "restriction" else "suppress"
            )
            done = take_out_of_use(
                self._storage,
                self._ledger,
                request_id=request.request_id,
                subject=subject,
                requested_at=requested_at,
                existing=existing,
                action=action,
                passes=self._passes,
            )
        else:
            ending: Literal["restrict", "suppress"] = "restrict" if request.kind == "lift" else "suppress"
            done = put_back_in_use(
                self._storage,
                self._ledger,
                subject=subject,
                requested_at=requested_at,
                ending=ending,
                passes=self._passes,
            )
        if isinstance(done, Refusal):
            return self._rejected(request.request_id, request.kind, done.reason, started)
        return self._receipt(request, started, **searched, **done)

    def _subject(self, request: SubjectRequest) -> Subject:
        """The pseudonyms of the request's subject under every key of the keyring as it is now."""
        assert request.subject is not None  # checked by parse_request
        if request.subject_kind == "pseudonym":
            return subject_from_pseudonym(request.subject)
        return subject_from_number(request.subject, self._keyring(), self._classifier)

    def _rectify(self, request: SubjectRequest, started: datetime) -> dict[str, Any]:
        assert request.cdr_id is not None and request.party is not None  # checked by parse_request
        record = LedgerRecord(self._ledger, request.request_id, request.requested_at.astimezone(UTC))
        done = rectify_call(
            self._storage, request.cdr_id, request.party, request.call_date, request.source, record=record
        )
        if done.sources > 1:  # call ids are unique per source only: another person's call shares it
            reason = f"call {request.cdr_id} is held by {done.sources} sources: name the source"
            return self._rejected(request.request_id, request.kind, reason, started)
        if done.rows_found == 0:
            where = f" on {request.call_date.isoformat()}" if request.call_date else ""
            return self._rejected(
                request.request_id, request.kind, f"no row of call {request.cdr_id}{where}", started
            )
        return self._receipt(
            request,
            started,
            cdr_id=request.cdr_id,
            party=request.party,
            parties_redacted=done.parties_redacted,
            rows_found=done.rows_found,
            rows_redacted=done.rows_redacted,
            files_rewritten=done.files_rewritten,
            verification={
                "files_checked": done.files_checked,
                "files_unreadable": done.files_unreadable,
                "passed": done.verified,
            },
        )

    def _receipt(self, request: SubjectRequest, started: datetime, **details: Any) -> dict[str, Any]:
        return {
            "request_id": request.request_id,
            "kind": request.kind,
            "status": "done",
            "requested_at": request.requested_at.astimezone(UTC).isoformat(),
            "started_at": started.isoformat(),
            "finished_at": self._clock().isoformat(),
            **details,
            "pipeline_version": __version__,
        }

    def _rejected(
        self, request_id: str | None, kind: str | None, reason: str, started: datetime
    ) -> dict[str, Any]:
        return {
            "request_id": request_id,
            "kind": kind,
            "status": "rejected",
            "reason": reason,
            "started_at": started.isoformat(),
            "finished_at": self._clock().isoformat(),
            "pipeline_version": __version__,
        }

    def _record(self, receipt: dict[str, Any]) -> None:
        """Keep the receipt of a request that was carried out, audit it and close or annotate its entry."""
        request_id, now = receipt["request_id"], self._clock()
        append_audit(self._storage, receipt["kind"], receipt, now)
        self._storage.create_exclusive(receipt_path(request_id), json.dumps(receipt, sort_keys=True).encode())
        if receipt["status"] == "rejected":
            close(self._storage, request_id, now, receipt["reason"], status="rejected")
        elif receipt.get("verification", {}).get("passed", True):
            close(self._storage, request_id, now, _outcome(receipt))
        else:
            note(self._storage, request_id, now, f"{_outcome(receipt)}; verification FAILED, still open")


def _outcome(receipt: dict[str, Any]) -> str:
    counts = ", ".join(f"{name} {value}" for name, value in receipt.items() if name.startswith("rows_"))
    return f"receipt {receipt_path(receipt['request_id'])}: {counts or 'done'}"
