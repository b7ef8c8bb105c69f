"""Carry out subject requests other than erasure: rectification, restriction, lift, objection, withdrawal.

Contract of :meth:`RightsProcessor.handle` (one message of the subject request
topic at a time, on the serial lifecycle path; the same entry point, injected
ledger, passes and clock as the erasure processor's, and the same paperwork,
:class:`~pipeline.lifecycle.desk.Desk`):

0. A message whose MAC does not hold under the keyring (:mod:`pipeline.lifecycle.requests.signing`),
   or that cannot be checked because the keyring cannot be loaded, is not read: its receipt is
   ``rejected`` (reason ``unauthenticated``, no kind, the id it claims if usable) and nothing is
   registered, stored, audited or changed; the refusal is counted and logged.
1. A message that is not a usable request (malformed, an id or ``cdr_id``
   the one rule of ids refuses, a subject that cannot be searched for) gets
   a receipt with ``status: rejected`` and the reason. It is audited and
   noted on the request's register entry if there is one, but not stored as
   the id's receipt, so a corrected request may use the same id.
2. A request id that already has a stored receipt must mean this request: a
   re-delivery (same kind, subject under the keys of the first delivery, and
   fields: ``request_digest``) gets that receipt again, and its register
   entry is closed if an earlier run left it open. An id used by another
   request (an erasure, another kind, subject or content) gets a rejected
   receipt of its own, of this topic's schema, and nothing is done.
3. A usable request is registered (``received``), carried out, and its
   receipt (opening with a one-line summary) is stored under
   ``_cdrpipe/receipts/<request id>.json``, appended to the audit log and
   answers the register entry: ``closed`` when done and verified (a failed
   verification adds a note and leaves it open), ``rejected`` when there
   was nothing to act on (no such call, no restriction in force).
4. Whatever breaks, before or after the work began, the request gets a ``failed``
   receipt saying what failed and what had been done; it is audited and
   noted, not kept, so a re-delivery carries the request out again.

Receipts and audit entries hold request ids, counts, paths, key ids, the
tenants searched (checked at the door by the rule of a stored source) and
verification results, never a number or a pseudonym.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Literal

import msgspec

from pipeline import __version__
from pipeline.errors import KeyringError, RequestRefusedError
from pipeline.keys.keyring import Keyring
from pipeline.lifecycle.desk import Desk, failure_summary, verdict
from pipeline.lifecycle.operations.rectify import LedgerRecord, rectify_call
from pipeline.lifecycle.operations.restriction import (
    HoldOutcome,
    Ledger,
    Passes,
    Refusal,
    put_back_in_use,
    take_out_of_use,
)
from pipeline.lifecycle.requests.erasure_request import claimed_request_id
from pipeline.lifecycle.requests.receipts import ReceiptVerification, SubjectReceipt, WorkDone, receipt_keys
from pipeline.lifecycle.requests.signing import UNAUTHENTICATED, verified_message
from pipeline.lifecycle.requests.subject_request import Rejection, RequestKind, SubjectRequest, parse_request
from pipeline.lifecycle.subject import RequestSubjects, Subject
from pipeline.numbers.msisdn import NumberClassifier
from pipeline.store.storage import Storage

log = logging.getLogger(__name__)

_ENDS = {"lift": "restriction", "withdrawal": "objection"}


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
        tenants: Mapping[str, str] | None = None,
    ) -> None:
        self._subjects = RequestSubjects(keyring, classifier, dict(tenants or {}))
        self._classifier = classifier
        self._passes = passes
        self._clock = clock
        self._desk = Desk(storage, ledger, clock)

    def handle(self, payload: bytes | None, key: bytes | None = None) -> SubjectReceipt:
        """Carry out the request in one message (its key the fallback id) or reject it; its receipt."""
        started = self._clock()
        try:
            checked = verified_message(
                payload, self._subjects.keyring(), "request", "the subject request topic"
            )
        except KeyringError as exc:  # nothing can be checked, so nothing is done, and nothing filed
            return self._unread(payload, key, f"the worker cannot use its keyring: {exc}", started)
        if checked is None:
            return self._unread(payload, key, UNAUTHENTICATED, started)
        request = parse_request(key, checked, self._classifier)
        if isinstance(request, Rejection):
            return self._reject(request.request_id, request.kind, request.reason, started)
        return self._desk.guard(
            request.request_id,
            lambda: self._process(request, started),
            lambda what, done: self._failed(request, None, started, what, done),
            request.kind,
        )

    def _process(self, request: SubjectRequest, started: datetime) -> SubjectReceipt:
        earlier = self._desk.earlier(request.request_id)
        if earlier.registered_as not in (None, request.kind):
            why = f"by a request registered as {earlier.registered_as}, not {request.kind}"
            return self._reused(request, why, started)
        self._desk.open(request.request_id, request.kind, request.requested_at)
        try:
            subject = self._subject(request)
        except RequestRefusedError as exc:  # the subject cannot be searched for
            return self._reject(request.request_id, request.kind, str(exc), started)
        except KeyringError as exc:  # nothing was done; the operator fixes the file and sends it again
            reason = f"the worker cannot use its keyring: {exc}"
            return self._reject(request.request_id, request.kind, reason, started)
        stored = earlier.receipt
        if stored is not None:
            if not isinstance(stored, SubjectReceipt):
                return self._reused(request, "by an erasure", started)
            # under the keys and within the tenants of the first delivery, as an erasure's
            first_keys = stored.key_ids if stored.key_ids is not None else ()
            first = self._first_searched(request, subject, stored.tenants_searched)
            if stored.kind != request.kind or stored.request_digest != _digest(request, first, first_keys):
                return self._reused(
                    request, f"by a {stored.kind} request with another subject or details", started
                )
            log.info("request %s was already answered; re-issuing its receipt", request.request_id)
            self._desk.reissue(stored)
            return stored
        receipt = self._desk.carry_out(
            request.request_id,
            lambda storage, ledger: self._carry_out(storage, ledger, request, subject, started),
            lambda what, done: self._failed(request, subject, started, what, done),
        )
        self._desk.file(receipt, request.kind, keep=receipt.status != "failed")
        log.info("%s request %s %s: %s", request.kind, request.request_id, receipt.status, receipt.summary)
        return receipt

    def _subject(self, request: SubjectRequest) -> Subject | None:
        """The pseudonyms of the request's subject under every key of the keyring as it is now.

        Found as an erasure finds them (:meth:`~pipeline.lifecycle.subject.RequestSubjects.of`):
        an extension or agent within every tenant its rows may carry.
        """
        if request.kind == "rectification":
            return None  # a rectification names a call, not a subject
        if request.pseudonyms is not None:
            named = ((pair.key_id, pair.pseudonym, pair.tenant) for pair in request.pseudonyms)
            return self._subjects.of_pseudonyms(named, request.tenant)
        assert request.subject is not None  # checked by parse_request
        return self._subjects.of(request.subject_kind, request.subject, request.tenant)

    def _first_searched(
        self, request: SubjectRequest, subject: Subject | None, searched: list[str] | None
    ) -> Subject | None:
        """The request's subject within the tenants a first delivery ``searched`` (see RequestSubjects)."""
        if subject is None or request.subject is None:
            return subject  # a rectification names a call
        return self._subjects.as_first_searched(
            subject, request.subject_kind, request.subject, request.tenant, searched
        )

    def _carry_out(
        self,
        storage: Storage,
        ledger: Ledger,
        request: SubjectRequest,
        subject: Subject | None,
        started: datetime,
    ) -> SubjectReceipt:
        if subject is None:
            return self._rectify(storage, ledger, request, started)
        requested_at = request.requested_at.astimezone(UTC)
        done: HoldOutcome | Refusal
        if request.kind in ("restriction", "objection"):
            existing = request.existing or "quarantine"  # parse_request makes an objection say which
            action: Literal["restrict", "suppress"] = (
                "restrict" if request.kind == "restriction" else "suppress"
            )
            done = take_out_of_use(
                storage,
                ledger,
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
                storage,
                ledger,
                subject=subject,
                requested_at=requested_at,
                ending=ending,
                passes=self._passes,
            )
        if isinstance(done, Refusal):
            return self._rejected(request, subject, done.reason, started)
        return msgspec.structs.replace(
            self._receipt(request, subject, started, _hold_summary(request, done)),
            key_ids=list(subject.key_ids),
            keys=receipt_keys(subject.keys),
            tenants_searched=list(subject.tenants_searched) or None,
            pseudonyms_searched=len(subject.pseudonyms),
            existing=done.existing,
            rows_moved=done.rows_moved,
            rows_removed=done.rows_removed,
            files_written=done.files_written,
            files_rewritten=done.files_rewritten,
            files_deleted=done.files_deleted,
            passes=done.passes,
            ended=done.ended,
            still_in_force=done.still_in_force,
            rows_still_held=done.rows_still_held,
            verification=done.verification,
        )

    def _rectify(
        self, storage: Storage, ledger: Ledger, request: SubjectRequest, started: datetime
    ) -> SubjectReceipt:
        assert request.cdr_id is not None and request.party is not None  # checked by parse_request
        record = LedgerRecord(ledger, request.request_id, request.requested_at.astimezone(UTC))
        done = rectify_call(
            storage, request.cdr_id, request.party, request.call_date, request.source, record=record
        )
        if done.sources > 1:  # call ids are unique per source only: another person's call shares it
            reason = f"call {request.cdr_id} is held by {done.sources} sources: name the source"
            return self._rejected(request, None, reason, started)
        if done.rows_found == 0:
            where = f" on {request.call_date.isoformat()}" if request.call_date else ""
            return self._rejected(request, None, f"no row of call {request.cdr_id}{where}", started)
        text = (
            f"Read the cdr_id and source of all {done.files_in_store} data files searched; re-read "
            f"the {done.files_checked} files holding call {request.cdr_id} and found "
            f"{done.rows_remaining} of its {done.rows_found} rows with the {request.party} not redacted."
        )
        if done.files_unreadable:
            unreadable = len(done.files_unreadable)
            text += f" FAILED: {unreadable} data files could not be read, so they may hold the call."
        verification = ReceiptVerification(
            passed=done.verified,
            checked=text,
            files_in_store=done.files_in_store,
            files_checked=done.files_checked,
            rows_remaining=done.rows_remaining,
            files_unreadable=done.files_unreadable,
        )
        summary = (
            f"rectified call {request.cdr_id}: the {request.party} redacted in {done.rows_redacted} rows "
            f"({done.rows_found} found) in {len(done.files_rewritten)} files; {verdict(verification)}"
        )
        return msgspec.structs.replace(
            self._receipt(request, None, started, summary),
            cdr_id=request.cdr_id,
            party=request.party,
            parties_redacted=done.parties_redacted,
            rows_found=done.rows_found,
            rows_redacted=done.rows_redacted,
            files_rewritten=done.files_rewritten,
            verification=verification,
        )

    def _receipt(
        self, request: SubjectRequest, subject: Subject | None, started: datetime, summary: str
    ) -> SubjectReceipt:
        """A completed receipt without the fields of its kind."""
        keys = subject.key_ids if subject is not None else ()
        return SubjectReceipt(
            summary=summary,
            request_id=request.request_id,
            kind=request.kind,
            status="completed",
            requested_at=request.requested_at.astimezone(UTC),
            request_digest=_digest(request, subject, keys),
            started_at=started,
            finished_at=self._clock(),
            pipeline_version=__version__,
        )

    def _rejected(
        self, request: SubjectRequest, subject: Subject | None, reason: str, started: datetime
    ) -> SubjectReceipt:
        """The receipt of a request there was nothing to act on: kept, and it closes the entry."""
        return msgspec.structs.replace(
            self._receipt(request, subject, started, f"rejected: {reason}"),
            status="rejected",
            reason=reason,
            key_ids=list(subject.key_ids) if subject is not None else None,
        )

    def _failed(
        self, request: SubjectRequest, subject: Subject | None, started: datetime, what: str, done: WorkDone
    ) -> SubjectReceipt:
        return SubjectReceipt(
            summary=failure_summary(what, done),
            request_id=request.request_id,
            kind=request.kind,
            status="failed",
            reason=what,
            requested_at=request.requested_at.astimezone(UTC),
            key_ids=list(subject.key_ids) if subject is not None else None,
            started_at=started,
            finished_at=self._clock(),
            work_done=done,
            pipeline_version=__version__,
        )

    def _reject(
        self,
        request_id: str | None,
        kind: RequestKind | None,
        reason: str,
        started: datetime,
        *,
        answers_register: bool = True,
    ) -> SubjectReceipt:
        """The receipt of a message that cannot be carried out as sent: audited, noted, not kept."""
        receipt = self._rejection(request_id, kind, reason, started)
        audit_kind = kind or "unknown-request"  # a message too malformed to name its kind
        self._desk.file(receipt, audit_kind, keep=False, answers_register=answers_register)
        log.info("%s request %s rejected", audit_kind, request_id or "(no usable id)")
        return receipt

    def _unread(
        self, payload: bytes | None, key: bytes | None, reason: str, started: datetime
    ) -> SubjectReceipt:
        """The receipt of a message that was not read (its MAC does not hold, or cannot be checked).

        Nothing is registered, stored or audited: a forger could otherwise fill the register or
        take a genuine request's id before it arrives.
        """
        claimed = claimed_request_id(payload, key, self._classifier)
        log.warning("subject request %s rejected unread: %s", claimed or "(no usable id)", reason)
        return self._rejection(claimed, None, reason, started)

    def _rejection(
        self, request_id: str | None, kind: RequestKind | None, reason: str, started: datetime
    ) -> SubjectReceipt:
        return SubjectReceipt(
            summary=f"rejected: {reason}",
            request_id=request_id,
            kind=kind,
            status="rejected",
            reason=reason,
            started_at=started,
            finished_at=self._clock(),
            pipeline_version=__version__,
        )

    def _reused(self, request: SubjectRequest, used_by: str, started: datetime) -> SubjectReceipt:
        # The register entry is another request's: this rejection leaves it alone.
        reason = f"the request id is already used {used_by}"
        return self._reject(request.request_id, request.kind, reason, started, answers_register=False)


def _digest(request: SubjectRequest, subject: Subject | None, key_ids: tuple[str, ...] | list[str]) -> str:
    """What the request asks, as 128 bits of SHA-256: the subject under ``key_ids`` and every field.

    Under the keys of the first delivery, so a rotation in between changes
    nothing; it reveals neither pseudonym nor number.
    """
    fields = [
        request.kind,
        subject.digest(key_ids or None) if subject is not None else None,
        request.existing,
        request.cdr_id,
        request.party,
        request.call_date.isoformat() if request.call_date else None,
        request.source,
    ]
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:32]


def _hold_summary(request: SubjectRequest, done: HoldOutcome) -> str:
    """One line: what a restriction, objection, lift or withdrawal did, and its verification."""
    checked = verdict(done.verification)
    written, deleted = len(done.files_written or ()), len(done.files_deleted or ())
    moved = f"{done.rows_moved} rows moved ({written} files written, {deleted} deleted)"
    if request.kind == "restriction":
        return f"restricted: later records are quarantined; {moved} to the quarantine; {checked}"
    if request.kind == "objection":
        if done.existing == "erase":
            erased = (
                f"{done.rows_removed} stored rows erased in {len(done.files_rewritten or ()) + deleted} files"
            )
            return f"objection recorded: later records are dropped; {erased}; {checked}"
        return f"objection recorded: later records are dropped; {moved} to the quarantine; {checked}"
    what = _ENDS[request.kind]
    ended = f"{what} {', '.join(done.ended or ())} ended"
    if done.still_in_force:
        return f"{ended}; the rows stay in the quarantine: {', '.join(done.still_in_force)} still in force"
    return f"{ended}: {moved} back into the dataset; {checked}"
