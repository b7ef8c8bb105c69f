"""Erasure of one data subject: ledger, rewrite, second pass, verification, receipt.

Contract of :meth:`ErasureProcessor.process`:

1. If a receipt for the request id exists, it is returned again (re-delivery
   is idempotent) and nothing else happens.
2. The subject's pseudonyms under every key id are computed and recorded in
   the ledger (so every worker drops them before publishing) and the ledger
   write is acknowledged.
3. Files holding the subject are found through their footers' subject index
   and rewritten copy-on-write (emptied files are deleted).
4. After ``settle_seconds`` (longer than a flush period) the files modified
   since the first pass began (less :data:`CLOCK_MARGIN`) are searched again,
   closing the race with batches published during the first pass.
5. Every touched file is re-read: no subject row and no raw pseudonym byte may
   remain. The receipt records the result, is stored under
   ``_cdrpipe/receipts/<request id>.json`` and appended to the audit log.

The raw number is used only to compute pseudonyms; it is in no output.
A crash at any point leaves old or new files (never partial ones); the request
is processed again after restart.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import msgspec

from pipeline import __version__
from pipeline.keyring import Keyring
from pipeline.lifecycle.audit import append_audit
from pipeline.lifecycle.ledger import LedgerEntry
from pipeline.lifecycle.receipts import receipt_path
from pipeline.lifecycle.rewriter import rewrite_subject_files, verify_files
from pipeline.lifecycle.rows import Mode
from pipeline.lifecycle.subject import Subject, subject_from_number, subject_from_pseudonym
from pipeline.msisdn import NumberClassifier
from pipeline.sink.storage import Storage

log = logging.getLogger(__name__)

CLOCK_MARGIN = timedelta(minutes=15)
"""How far before the first pass the second one looks back.

It covers a publish that was writing when the first pass listed the store (a
local file keeps the time its temporary file was written) and the clock of an
object store (S3 refuses requests whose clock is more than 15 minutes off).
"""


class ErasureRequest(msgspec.Struct, kw_only=True, frozen=True):
    """A message of the erasure request topic (``schemas/erasure-request.schema.json``)."""

    request_id: str
    subject: str
    subject_kind: Literal["number", "pseudonym"] = "number"
    tenant: str | None = None
    requested_at: datetime
    mode: Mode = "delete"


@dataclass(frozen=True, slots=True)
class ResidualCopy:
    """A place that still holds raw data for a while, named in every receipt."""

    topic: str
    holds: str
    retention_days: float


class ErasureProcessor:
    """Runs erasure requests against one store (one at a time)."""

    def __init__(
        self,
        storage: Storage,
        keyring: Keyring,
        classifier: NumberClassifier,
        *,
        publish_ledger: Callable[[LedgerEntry], Awaitable[None]],
        settle_seconds: float,
        residual_copies: list[ResidualCopy],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._storage = storage
        self._keyring = keyring
        self._classifier = classifier
        self._publish_ledger = publish_ledger
        self._settle_seconds = settle_seconds
        self._residual = residual_copies
        self._clock = clock

    def subject_of(self, request: ErasureRequest) -> Subject:
        """The pseudonyms the request is about."""
        if request.subject_kind == "pseudonym":
            return subject_from_pseudonym(request.subject)
        return subject_from_number(request.subject, self._keyring, self._classifier, request.tenant)

    async def process(self, request: ErasureRequest) -> dict[str, Any]:
        """Carry out ``request`` and return its receipt."""
        existing = await asyncio.to_thread(self._storage.read, receipt_path(request.request_id))
        if existing is not None:
            log.info("erasure %s was already completed; re-issuing its receipt", request.request_id)
            receipt: dict[str, Any] = json.loads(existing)
            return receipt
        started = self._clock()
        subject = self.subject_of(request)
        log.info(
            "erasure %s started: %d pseudonyms under keys %s",
            request.request_id,
            len(subject.pseudonyms),
            ",".join(subject.key_ids) or "(given pseudonym)",
        )
        requested_at = request.requested_at.astimezone(UTC)
        await self._publish_ledger(
            LedgerEntry(
                request_id=request.request_id,
                pseudonyms=sorted(subject.pseudonyms),
                requested_at=requested_at,
                mode=request.mode,
            )
        )
        first_pass_began = datetime.now(UTC)  # compared with file times, so never an injected clock
        first = await asyncio.to_thread(
            rewrite_subject_files, self._storage, subject.pseudonyms, request.mode, requested_at
        )
        await asyncio.sleep(self._settle_seconds)
        second = await asyncio.to_thread(
            rewrite_subject_files,
            self._storage,
            subject.pseudonyms,
            request.mode,
            requested_at,
            first_pass_began - CLOCK_MARGIN,
        )
        touched = sorted({result.path for result in first + second})
        verification = await asyncio.to_thread(
            verify_files, self._storage, touched, subject.pseudonyms, requested_at
        )
        results = [result for result in first + second if result.rows_affected]
        receipt = {
            "request_id": request.request_id,
            "mode": request.mode,
            "requested_at": requested_at.isoformat(),
            "key_ids": list(subject.key_ids),
            "pseudonyms_searched": len(subject.pseudonyms),
            "files_rewritten": sorted({result.path for result in results if not result.deleted}),
            "files_deleted": sorted({result.path for result in results if result.deleted}),
            "rows_removed" if request.mode == "delete" else "rows_redacted": sum(
                result.rows_affected for result in results
            ),
            "passes": 2,
            "started_at": started.isoformat(),
            "finished_at": self._clock().isoformat(),
            "verification": {
                "files_checked": verification.files_checked,
                "rows_remaining": verification.rows_remaining,
                "raw_occurrences": verification.raw_occurrences,
                "passed": verification.passed,
            },
            "residual_copies": [
                {"topic": copy.topic, "holds": copy.holds, "retention_days": copy.retention_days}
                for copy in self._residual
            ],
            "pipeline_version": __version__,
        }
        await asyncio.to_thread(self._record, receipt)
        log.info(
            "erasure %s done: %d files rewritten, %d deleted, verification %s",
            request.request_id,
            len(receipt["files_rewritten"]),
            len(receipt["files_deleted"]),
            "passed" if verification.passed else "FAILED",
        )
        return receipt

    def _record(self, receipt: dict[str, Any]) -> None:
        document = json.dumps(receipt, sort_keys=True).encode()
        self._storage.create_exclusive(receipt_path(receipt["request_id"]), document)
        append_audit(self._storage, "erasure", receipt, self._clock())
