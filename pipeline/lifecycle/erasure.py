"""Erasure of one data subject: ledger, rewrite, second pass, verification, receipt.

Contract of :meth:`ErasureProcessor.handle` (synchronous; the worker calls it
in a thread, tests call it directly with injected storage, clock, sleep and
ledger writer):

1. A payload that is not a valid request, or whose subject cannot be searched
   for (an invalid number, a short code, a malformed pseudonym), gets a
   receipt with ``status: "rejected"`` and a reason that quotes no input
   value. It is never raised: the caller moves on to the next request. It is
   audited, but not kept as the request id's receipt (a corrected request
   may use the same id). A keyring file that cannot be loaded rejects the
   request too, naming the file and the fix: nothing is erased with stale keys.
2. If a receipt for the request id exists, it is returned again (re-delivery
   is idempotent) and nothing else happens.
3. The keyring is loaded again for every request, so keys added by a
   rotation while the worker runs are searched. The subject's pseudonyms
   under every key are recorded in the ledger (so every worker drops them
   before publishing, under later keys too) and the write is acknowledged.
4. Files holding the subject are found through their footers' subject index
   and rewritten copy-on-write (emptied files are deleted). Files under
   ``cdr/`` outside ``call_date=`` directories are skipped and audited.
5. After ``settle_seconds`` (longer than a flush period) the files modified
   since the first pass began (less :data:`CLOCK_MARGIN`) are searched again,
   closing the race with batches published during the first pass.
6. Verification (:func:`~pipeline.lifecycle.operations.rewriter.verify_erasure`) decodes
   the pseudonym columns of every touched file and every file the index
   cannot rule out, and fails, naming them, when files carry keys the
   subject's pseudonyms were not computed under. The receipt says in words
   what was checked, is stored under ``_cdrpipe/receipts/<request id>.json``
   and appended to the audit log.

The raw number is used only to compute pseudonyms; it is in no output.
A crash at any point leaves old or new files (never partial ones); the request
is processed again after restart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

import msgspec

from pipeline import __version__
from pipeline.errors import KeyringError
from pipeline.keys.keyring import Keyring
from pipeline.keys.pseudonym import tenant_for
from pipeline.lifecycle.ledger import LedgerEntry
from pipeline.lifecycle.operations.finder import skip_strays
from pipeline.lifecycle.operations.rewriter import rewrite_subject_files, searched_key_ids, verify_erasure
from pipeline.lifecycle.requests.audit import append_audit
from pipeline.lifecycle.requests.erasure_request import ErasureRequest, InvalidRequest, decode_request
from pipeline.lifecycle.requests.receipts import (
    Receipt,
    ReceiptVerification,
    ResidualCopy,
    decode_receipt,
    encode_receipt,
    is_subject_request_receipt,
    receipt_path,
)
from pipeline.lifecycle.subject import (
    Subject,
    SubjectError,
    subject_from_agent,
    subject_from_number,
    subject_from_pseudonym,
)
from pipeline.numbers.msisdn import NumberClassifier
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
        write_ledger: Callable[[LedgerEntry], None],
        settle_seconds: float,
        residual_copies: Callable[[], list[ResidualCopy]],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
        tenants: Mapping[str, str] | None = None,
    ) -> None:
        self._tenants = dict(tenants or {})
        self._storage = storage
        self._keyring = keyring
        self._classifier = classifier
        self._write_ledger = write_ledger
        self._settle_seconds = settle_seconds
        self._residual = residual_copies
        self._clock = clock
        self._sleep = sleep

    def handle(self, payload: bytes) -> Receipt:
        """Decode one message of the request topic and carry it out, or reject it with a receipt."""
        request = decode_request(payload)
        if isinstance(request, InvalidRequest):
            return self.reject(request.request_id, request.reason)
        return self.process(request)

    def subject_of(self, request: ErasureRequest) -> Subject:
        """The pseudonyms the request is about, under every key of the keyring as it is now."""
        if request.subject_kind == "pseudonym":
            return subject_from_pseudonym(request.subject)
        # A source mapped to a tenant (CDRPIPE_TENANTS) names that tenant, as the rows were written.
        tenant = tenant_for(request.tenant, self._tenants) if request.tenant else None
        if request.subject_kind == "agent":
            return subject_from_agent(request.subject, self._keyring(), tenant)
        return subject_from_number(request.subject, self._keyring(), self._classifier, tenant)

    def process(self, request: ErasureRequest) -> Receipt:
        """Carry out ``request`` and return its receipt (a rejected one if its subject is unusable)."""
        started = self._clock()
        try:
            subject = self.subject_of(request)
        except SubjectError as exc:
            return self.reject(request.request_id, str(exc))
        except KeyringError as exc:  # nothing was erased; the operator fixes the file and sends it again
            return self.reject(request.request_id, f"the worker cannot use its keyring: {exc}")
        earlier = self._earlier_outcome(request.request_id, subject)
        if earlier is not None:
            return earlier
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
            requested_at=requested_at,
            mode=request.mode,
        )
        self._write_ledger(entry)
        # A publish killed mid-write leaves a temporary file that no scan lists; it may hold the
        # subject's rows. Every one goes (a publish in flight whose file goes retries).
        for area in AREAS:
            self._storage.sweep_temporaries(area)
        first_pass_began = datetime.now(UTC)  # compared with file times, so never an injected clock
        pseudonyms = subject.pseudonyms
        first, found = rewrite_subject_files(self._storage, pseudonyms, request.mode, requested_at)
        skip_strays(self._storage, found.strays, f"erasure {request.request_id}", self._clock())
        self._sleep(self._settle_seconds)
        second, _ = rewrite_subject_files(
            self._storage, pseudonyms, request.mode, requested_at, first_pass_began - CLOCK_MARGIN
        )
        results = first + second
        verification = verify_erasure(
            self._storage,
            pseudonyms,
            searched_key_ids(subject.key_ids, results),
            requested_at,
            (result.path for result in results),
        )
        affected = [result for result in results if result.rows_affected]
        rows = sum(result.rows_affected for result in affected)
        receipt = Receipt(
            request_id=request.request_id,
            status="completed",
            mode=request.mode,
            requested_at=requested_at,
            key_ids=list(subject.key_ids),
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
            verification=ReceiptVerification(
                passed=verification.passed,
                checked=verification.describe(requested_at),
                files_in_store=verification.files_in_store,
                files_checked=verification.files_checked,
                rows_remaining=verification.rows_remaining,
                key_ids_in_store=sorted(verification.key_ids_in_store),
                key_ids_not_searched=sorted(verification.key_ids_not_searched),
                files_unreadable=list(verification.files_unreadable),
            ),
            residual_copies=self._residual(),
            pipeline_version=__version__,
        )
        self._record(receipt)
        log.info(
            "erasure %s done: %d files rewritten, %d deleted, verification %s",
            request.request_id,
            len(receipt.files_rewritten or ()),
            len(receipt.files_deleted or ()),
            "passed" if verification.passed else "FAILED",
            extra={"request_id": request.request_id, "verification_passed": verification.passed},
        )
        return receipt

    def reject(self, request_id: str, reason: str) -> Receipt:
        """The receipt of a request that cannot be carried out, recorded like any other."""
        receipt = Receipt(
            request_id=request_id,
            status="rejected",
            reason=reason,
            finished_at=self._clock(),
            pipeline_version=__version__,
        )
        log.warning("erasure request %s rejected: %s", request_id, reason, extra={"request_id": request_id})
        # audited but not kept as the request id's receipt: a corrected request may reuse the id
        append_audit(self._storage, "erasure-rejected", msgspec.to_builtins(receipt), self._clock())
        return receipt

    def _earlier_outcome(self, request_id: str, subject: Subject) -> Receipt | None:
        """The receipt of a re-delivered request, a rejection of a reused request id, or None."""
        existing = self._storage.read(receipt_path(request_id))
        if existing is None:
            return None
        try:
            stored = decode_receipt(existing)
        except msgspec.DecodeError:
            if is_subject_request_receipt(existing):
                # A restriction's or rectification's receipt: reusing its id would let one
                # request stand for another.
                return self.reject(request_id, "the request id is already used by another request")
            log.info("erasure %s has a receipt of an earlier version; erasing again", request_id)
            return None
        # Compared under the keys of the first delivery: a rotation since changes nothing.
        first_keys = stored.key_ids if stored.key_ids is not None else subject.key_ids
        if stored.subject_digest not in (None, subject.digest(first_keys or None)):
            return self.reject(request_id, "the request id is already used for another subject")
        log.info("erasure %s was already completed; re-issuing its receipt", request_id)
        return stored

    def _record(self, receipt: Receipt) -> None:
        self._storage.create_exclusive(receipt_path(receipt.request_id), encode_receipt(receipt))
        append_audit(self._storage, "erasure", msgspec.to_builtins(receipt), self._clock())
