"""Erasure of one data subject: ledger, rewrite, second pass, verification, receipt.

Contract of :meth:`ErasureProcessor.handle` (synchronous; the worker calls it
in one thread hand-off per request, tests call it directly with injected
storage, clock, ledger and passes, the same as the rights processor's):

0. A message whose MAC does not hold under the keyring (:mod:`pipeline.lifecycle.requests.signing`) is
   not read: its receipt is ``rejected`` with the reason ``unauthenticated`` and names the id it
   claims (one that holds no number), or a new ``unidentified-<uuid>``. Nothing is registered,
   stored, audited or changed; the refusal is counted and logged. A keyring that cannot be
   loaded rejects every message the same way, with the reason naming the file and the fix.
1. A payload that is not a valid request, or whose subject cannot be searched
   for (an invalid number, a short code, a malformed pseudonym), gets a
   receipt with ``status: "rejected"`` and a reason that quotes no input
   value. It is never raised: the caller moves on to the next request. It is
   audited and noted on the request's register entry, but not kept as the
   request id's receipt (a corrected request may use the same id). A keyring
   file that cannot be loaded rejects the request too, naming the file and
   the fix: nothing is erased with stale keys. Without a usable id in the
   payload, the message key names the receipt if it is a usable id (so a
   command waiting for that id gets it), else a new ``unidentified-<uuid>``.
2. If a receipt for the request id exists, the request id must mean this
   request: a re-delivery (same subject under the keys of the first
   delivery, same mode) gets the stored receipt again, and its register
   entry is closed if an earlier run left it open; an id used by another
   request (another subject or mode, or a subject request's receipt) gets a
   rejected receipt of its own and nothing is done.
3. Otherwise the request is registered (``received``), then the keyring is
   loaded again (keys added by a rotation while the worker runs are
   searched). The subject's pseudonyms under every key are recorded in the
   ledger (so every worker drops them before publishing, under later keys
   too) and the write is acknowledged.
4. Files holding the subject are found through their subject index (from the
   store manifest, else the footer) and rewritten copy-on-write (emptied files
   are deleted). One survey of the store serves both passes and the
   verification: the later ones re-list the store and read only what changed. Files under
   ``cdr/`` outside ``call_date=`` directories are skipped and audited.
5. After the passes' ``settle_seconds`` (longer than a flush period) the
   files modified since the first pass began (less :data:`CLOCK_MARGIN`) are
   searched again, closing the race with batches published during the first
   pass.
6. Verification (:func:`~pipeline.lifecycle.operations.rewriter.verify_erasure`) decodes
   the pseudonym columns of every touched file and every file the index
   cannot rule out, and fails, naming each file and key, when files carry
   keys (id and fingerprint) the subject's pseudonyms were not computed
   under: a key id reused for another secret is another key. The receipt
   lists the keys searched with their fingerprints. The receipt opens with a
   one-line summary, says in words what was checked, is stored under
   ``_cdrpipe/receipts/<request id>.json``, appended to the audit log and
   closes the register entry when its verification passed (a failed one
   leaves a note and the entry open).
7. Whatever breaks (a store or broker failure, before or after the work
   began), the request gets a ``failed`` receipt that says what failed and
   what had been done; it is audited and noted on the register, not kept, so a re-delivery
   carries the erasure out again.

A request names its subject by the pseudonyms the CLI computed (``subject_kind``
``pseudonyms``: the topic holds no number), or by a number, agent id or
pseudonym (``subject``). A raw number is used only to compute pseudonyms; it is
in no output.
A crash at any point leaves old or new files (never partial ones); the request
is processed again after restart.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from pipeline import __version__
from pipeline.errors import KeyringError
from pipeline.keys.keyring import Keyring
from pipeline.lifecycle.desk import Desk, Earlier, failure_summary, verdict
from pipeline.lifecycle.ledger import LedgerEntry
from pipeline.lifecycle.operations.finder import skip_strays, survey
from pipeline.lifecycle.operations.restriction import Ledger, Passes
from pipeline.lifecycle.operations.rewriter import rewrite_subject_files, searched_keys, verify_erasure
from pipeline.lifecycle.requests.erasure_request import (
    ErasureRequest,
    InvalidRequest,
    claimed_request_id,
    decode_request,
)
from pipeline.lifecycle.requests.receipts import (
    Receipt,
    ResidualCopy,
    WorkDone,
    receipt_keys,
)
from pipeline.lifecycle.requests.signing import UNAUTHENTICATED, verified_message
from pipeline.lifecycle.subject import RequestSubjects, Subject, SubjectError
from pipeline.numbers.msisdn import NumberClassifier
from pipeline.observability.progress import NO_PROGRESS, Progress
from pipeline.store.naming import AREAS
from pipeline.store.storage import Storage

log = logging.getLogger(__name__)

CLOCK_MARGIN = timedelta(minutes=15)
"""How far before the first pass the second one looks back.

It covers a publish that was writing when the first pass listed the store (a
local file keeps the time its temporary file was written) and the clock of an
object store (S3 refuses requests whose clock is more than 15 minutes off).
"""


class ErasureProcessor:
    """Runs erasure requests against one store, one at a time, synchronously."""

    def __init__(
        self,
        storage: Storage,
        keyring: Callable[[], Keyring],
        classifier: NumberClassifier,
        *,
        ledger: Ledger,
        passes: Passes,
        residual_copies: Callable[[], list[ResidualCopy]],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        tenants: Mapping[str, str] | None = None,
        progress: Progress = NO_PROGRESS,
    ) -> None:
        self._progress = progress
        self._storage = storage
        self._subjects = RequestSubjects(keyring, classifier, dict(tenants or {}))
        self._classifier = classifier
        self._passes = passes
        self._residual = residual_copies
        self._clock = clock
        self._desk = Desk(storage, ledger, clock)

    def handle(self, payload: bytes | None, key: bytes | None = None) -> Receipt:
        """Carry out the request in one message of the erasure topic, or reject it; return its receipt."""
        started = self._clock()
        try:
            checked = verified_message(
                payload, self._subjects.keyring(), "request", "the erasure request topic"
            )
        except KeyringError as exc:  # nothing can be checked, so nothing is done, and nothing filed
            return self._unread(payload, key, f"the worker cannot use its keyring: {exc}")
        if checked is None:
            return self._unread(payload, key, UNAUTHENTICATED)
        request = decode_request(checked, self._classifier)
        if isinstance(request, InvalidRequest):
            request_id = claimed_request_id(checked, key, self._classifier) or request.request_id
            return self._reject(request_id, request.reason)
        return self._desk.guard(
            request.request_id,
            lambda: self._process(request, started),
            lambda what, done: self._failed(request, started, what, done),
            "erasure",
        )

    def subject_of(self, request: ErasureRequest) -> Subject:
        """The pseudonyms the request is about, under every key of the keyring as it is now.

        An extension or agent is searched within every tenant its rows may carry: the one its
        tenant or source stands for now, and the sources mapped to it, as they were before.
        A request the CLI sent names the pseudonyms it computed that way (no number).
        """
        if request.pseudonyms is not None:
            named = ((pair.key_id, pair.pseudonym, pair.tenant) for pair in request.pseudonyms)
            return self._subjects.of_pseudonyms(named, request.tenant)
        assert request.subject is not None  # checked by decode_request
        return self._subjects.of(request.subject_kind, request.subject, request.tenant)

    def _process(self, request: ErasureRequest, started: datetime) -> Receipt:
        earlier = self._desk.earlier(request.request_id)
        if earlier.registered_as not in (None, "erasure"):
            return self._reused(
                request.request_id, f"by a request registered as {earlier.registered_as}, not erasure"
            )
        self._desk.open(request.request_id, "erasure", request.requested_at)
        try:
            subject = self.subject_of(request)
        except SubjectError as exc:
            return self._reject(request.request_id, str(exc))
        except KeyringError as exc:  # nothing was erased; the operator fixes the file and sends it again
            return self._reject(request.request_id, f"the worker cannot use its keyring: {exc}")
        again = self._earlier_outcome(request, earlier, subject)
        if again is not None:
            return again
        receipt = self._desk.carry_out(
            request.request_id,
            lambda storage, ledger: self._erase(storage, ledger, request, subject, started),
            lambda what, done: self._failed(request, started, what, done),
        )
        self._desk.file(receipt, "erasure", keep=receipt.status == "completed")
        log.info(
            "erasure %s %s: %s",
            request.request_id,
            receipt.status,
            receipt.summary,
            extra={"request_id": request.request_id, "verification_passed": receipt.passed},
        )
        return receipt

    def _erase(
        self, storage: Storage, ledger: Ledger, request: ErasureRequest, subject: Subject, started: datetime
    ) -> Receipt:
        log.info(
            "erasure %s started: %d pseudonyms under keys %s",
            request.request_id,
            len(subject.pseudonyms),
            ",".join(subject.key_ids) or "(given pseudonym)",
            extra={"request_id": request.request_id, "key_ids": ",".join(subject.key_ids)},
        )
        requested_at = request.requested_at.astimezone(UTC)
        entry = LedgerEntry(
            request_id=request.request_id,
            subject=list(subject.pairs),
            key_fingerprints=subject.key_fingerprints,
            requested_at=requested_at,
            mode=request.mode,
        )
        ledger.write(entry)
        # A publish killed mid-write leaves a temporary file that no scan lists; it may hold the
        # subject's rows. Every one goes (a publish in flight whose file goes retries).
        for area in AREAS:
            storage.sweep_temporaries(area)
        first_pass_began = datetime.now(UTC)  # compared with file times, so never an injected clock
        pseudonyms = subject.pseudonyms
        # One reading of the store serves both passes and the verification: the first pass takes
        # its own rewrites into it and publishes each date's base once, after them; the second
        # pass and the verification re-list the store and read only what others changed since.
        first_read = survey(storage, progress=self._progress, save_manifests=False)
        first, found = rewrite_subject_files(storage, pseudonyms, request.mode, requested_at, read=first_read)
        skip_strays(storage, found.strays, f"erasure {request.request_id}", self._clock())
        self._passes.sleep(self._passes.settle_seconds)
        second_read = survey(storage, previous=first_read, progress=self._progress)
        second, _ = rewrite_subject_files(
            storage, pseudonyms, request.mode, requested_at, first_pass_began - CLOCK_MARGIN, read=second_read
        )
        results = first + second
        verification = verify_erasure(
            storage,
            pseudonyms,
            searched_keys(subject.keys, results),
            requested_at,
            (result.path for result in results),
            read=second_read.without(storage, (result.path for result in second if result.deleted)),
        )
        affected = [result for result in results if result.rows_affected]
        rows = sum(result.rows_affected for result in affected)
        residual = self._residual()
        checked = verification.for_receipt(requested_at)
        files = {result.path for result in affected}
        done = "erased" if request.mode == "delete" else "redacted"
        summary = f"{done} {rows} rows in {len(files)} files; {verdict(checked)}; {_residual_words(residual)}"
        return Receipt(
            summary=summary,
            request_id=request.request_id,
            status="completed",
            mode=request.mode,
            requested_at=requested_at,
            key_ids=list(subject.key_ids),
            keys=receipt_keys(subject.keys),
            tenants_searched=list(subject.tenants_searched) or None,
            pseudonyms_searched=len(pseudonyms),
            subject_digest=subject.digest(subject.key_ids or None),
            files_rewritten=sorted({result.path for result in affected if not result.deleted}),
            files_deleted=sorted({result.path for result in affected if result.deleted}),
            files_skipped=found.strays,
            rows_removed=rows if request.mode == "delete" else None,
            rows_redacted=rows if request.mode == "redact" else None,
            passes=2,
            started_at=started,
            finished_at=self._clock(),
            verification=checked,
            residual_copies=residual,
            pipeline_version=__version__,
        )

    def _failed(self, request: ErasureRequest, started: datetime, what: str, done: WorkDone) -> Receipt:
        return Receipt(
            summary=failure_summary(what, done),
            request_id=request.request_id,
            status="failed",
            reason=what,
            mode=request.mode,
            requested_at=request.requested_at.astimezone(UTC),
            started_at=started,
            finished_at=self._clock(),
            work_done=done,
            pipeline_version=__version__,
        )

    def _unread(self, payload: bytes | None, key: bytes | None, reason: str) -> Receipt:
        """The receipt of a message that was not read (its MAC does not hold, or cannot be checked).

        Nothing is registered, stored or audited: a forger could otherwise fill the register or
        take a genuine request's id before it arrives.
        """
        claimed = claimed_request_id(payload, key, self._classifier) or f"unidentified-{uuid.uuid4()}"
        log.warning("erasure request %s rejected unread: %s", claimed, reason, extra={"request_id": claimed})
        return self._rejection(claimed, reason)

    def _rejection(self, request_id: str, reason: str) -> Receipt:
        return Receipt(
            summary=f"rejected: {reason}",
            request_id=request_id,
            status="rejected",
            reason=reason,
            finished_at=self._clock(),
            pipeline_version=__version__,
        )

    def _reject(self, request_id: str, reason: str, *, answers_register: bool = True) -> Receipt:
        """The receipt of a request that cannot be carried out, audited but not kept."""
        receipt = self._rejection(request_id, reason)
        log.warning("erasure request %s rejected: %s", request_id, reason, extra={"request_id": request_id})
        # audited but not kept as the request id's receipt: a corrected request may reuse the id
        self._desk.file(receipt, "erasure-rejected", keep=False, answers_register=answers_register)
        return receipt

    def _earlier_outcome(self, request: ErasureRequest, earlier: Earlier, subject: Subject) -> Receipt | None:
        """The receipt of a re-delivered request, a rejection of a reused request id, or None."""
        request_id, stored = request.request_id, earlier.receipt
        if stored is None:
            if earlier.unreadable:
                log.info("erasure %s has a receipt of an earlier version; erasing again", request_id)
            return None
        if not isinstance(stored, Receipt):
            return self._reused(request_id, f"by a {stored.kind} request")
        # Compared under the keys and within the tenants of the first delivery: a rotation or a
        # CDRPIPE_TENANTS change since changes nothing.
        first_keys = stored.key_ids if stored.key_ids is not None else subject.key_ids
        first = (
            subject  # named by pseudonyms: the request fixes them, whatever the mapping now
            if request.subject is None
            else self._subjects.as_first_searched(
                subject, request.subject_kind, request.subject, request.tenant, stored.tenants_searched
            )
        )
        if stored.subject_digest not in (None, first.digest(first_keys or None)):
            return self._reused(request_id, "for another subject")
        if stored.mode not in (None, request.mode):
            return self._reused(request_id, f"for an erasure in {stored.mode} mode")
        log.info("erasure %s was already completed; re-issuing its receipt", request_id)
        self._desk.reissue(stored)
        return stored

    def _reused(self, request_id: str, why: str) -> Receipt:
        # Another request's register entry: this rejection leaves it alone.
        reason = f"the request id is already used {why}"
        return self._reject(request_id, reason, answers_register=False)


def _residual_words(residual: list[ResidualCopy]) -> str:
    if not residual:
        return "no raw copies remain in Kafka"
    topics = [copy.topic for copy in residual]
    names = ", ".join(topics[:-1]) + f" and {topics[-1]}" if len(topics) > 1 else topics[0]
    retentions = [copy.retention_days for copy in residual]
    if None in retentions:
        return f"raw copies remain in {names}, some without a time limit"
    longest = max(value for value in retentions if value is not None)
    return f"raw copies remain in {names} for up to {longest:g} days"
