"""Re-apply the ledger to the store, e.g. after restoring files from a backup.

Contract: :func:`reapply_ledger` finds, for every erasure of the ledger, the files that
may hold its pseudonyms, rewrites them without the erased rows (or parties),
verifies them; then redacts every rectified call again (a backup taken before
the rectification holds the wrong attribution); then, for every restriction
and objection in force, moves the subject's rows that are back in the dataset
to the quarantine (a backup taken before the restriction holds them in
``cdr/``); last, moves back into the dataset every quarantined row that no
restriction or objection in force covers (a backup taken before a lift or
withdrawal holds them in ``restricted/``, and the ``ended`` entry names no
subject: the ledger's holds in force say what may stay). Its verification
fails, and names the files, when an erasure's or a hold's pseudonyms were not
computed under the key (id and fingerprint) of a data file that may hold the
subject's rows: the dataset's files for a hold, the store's for an erasure.
It appends one ``ledger-reapply`` audit entry with the request ids, files rewritten, rows
affected and the verification result. Applying it to a store that already
reflects every entry changes no file; the audit entry also says how many footers
were read (the rest came from the store manifest) and how long it took. It must not
run while a worker erases (run it with the workers stopped, like ``cdrpipe
retention``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pipeline.lifecycle.ledger import HOLDS, LedgerEntry, SubjectLedger
from pipeline.lifecycle.operations.finder import Survey, skip_strays, survey
from pipeline.lifecycle.operations.key_coverage import UnsearchedFile, key_coverage
from pipeline.lifecycle.operations.quarantine import move_subject_rows, release_unheld
from pipeline.lifecycle.operations.rectify import reapply_rectification
from pipeline.lifecycle.operations.rewriter import (
    Verification,
    rewrite_subject_files,
    searched_keys,
    verify_erasure,
)
from pipeline.lifecycle.requests.audit import append_audit
from pipeline.observability.progress import NO_PROGRESS, Progress
from pipeline.store.naming import DATASET, QUARANTINE
from pipeline.store.storage import Storage


@dataclass(frozen=True, slots=True)
class ReapplyReport:
    """What re-applying the ledger did."""

    requests: int
    files_rewritten: list[str]
    files_deleted: list[str]
    rows_affected: int
    verification_passed: bool
    holds: int = 0
    """Restrictions and objections in force whose rows were checked."""
    rows_quarantined: int = 0
    rectifications: int = 0
    """Rectified calls redacted again."""
    rows_released: int = 0
    """Quarantined rows no hold in force covers, moved back into the dataset."""
    files_not_searched: tuple[UnsearchedFile, ...] = ()
    """Files under a key an erasure's or a hold's pseudonyms were not computed under (failing)."""


def reapply_ledger(
    storage: Storage,
    entries: list[LedgerEntry],
    progress: Progress = NO_PROGRESS,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> ReapplyReport:
    """Apply every entry of ``entries`` to the files of ``storage``; audit and return the outcome.

    The store is read once: each erasure re-lists it and reads only the files changed since the
    previous one (the ones it rewrote), so many erasures cost one reading of every file, not one each.
    """
    began = time.monotonic()
    rewritten: set[str] = set()
    deleted: set[str] = set()
    affected = 0
    passed = True
    strays: list[str] = []
    verifications: list[Verification] = []
    view = SubjectLedger()
    for entry in entries:
        view.add(entry)
    holds = [entry for entry in entries if entry.action in HOLDS]
    rectified = [entry for entry in entries if entry.action == "rectify"]
    entries = [entry for entry in entries if entry.action == "erase"]
    read = survey(storage, progress=progress)
    footers = read.footers_read
    progress.start(len(entries) + len(rectified) + len(holds), "ledger entries")
    for entry in entries:
        pseudonyms = entry.subject_pseudonyms()
        requested_at = entry.requested_at.astimezone(UTC)
        results, found = rewrite_subject_files(storage, pseudonyms, entry.mode, requested_at, read=read)
        strays = found.strays
        for result in results:
            affected += result.rows_affected
            if result.rows_affected:
                (deleted if result.deleted else rewritten).add(result.path)
        searched = searched_keys(entry.keys(), results)
        touched = [result.path for result in results]
        read = survey(storage, previous=read)
        footers += read.footers_read
        verifications.append(verify_erasure(storage, pseudonyms, searched, requested_at, touched, read=read))
        progress.advance()
    for entry in rectified:  # before the holds: a wrongly attributed call is not the subject's to hold
        rewritten.update(reapply_rectification(storage, entry))
        progress.advance()
    dataset = survey(storage, (DATASET,))
    footers += dataset.footers_read
    quarantined = 0
    for entry in holds:  # after the erasures: erased rows never reach the quarantine
        moved = move_subject_rows(storage, entry.subject_pseudonyms(), DATASET, QUARANTINE, dataset)
        dataset = survey(storage, (DATASET,), previous=dataset)
        quarantined += moved.rows_moved
        rewritten.update(moved.files_written)
        deleted.update(moved.files_deleted)
        passed = passed and moved.verified
        progress.advance()
    # every file under a key an erasure or a hold could not search, which fails the verification
    not_searched = {
        *(item for verification in verifications for item in verification.coverage.not_searched),
        *(item for entry in holds for item in _dataset_files_not_searched(dataset, entry)),
    }
    released = release_unheld(storage, view, frozenset())
    rewritten.update(released.files_written)
    deleted.difference_update(released.files_written)  # a mirror deleted by a move may be written again
    deleted.update(released.files_deleted)
    passed = passed and released.verified
    skip_strays(storage, strays, "ledger re-apply", now())
    report = ReapplyReport(
        len(entries),
        sorted(rewritten - deleted),
        sorted(deleted),
        affected,
        passed and all(verification.passed for verification in verifications) and not not_searched,
        len(holds),
        quarantined,
        len(rectified),
        released.rows_moved,
        tuple(
            sorted(not_searched, key=lambda item: (item.path, item.key.key_id, item.key.fingerprint or ""))
        ),
    )
    append_audit(
        storage,
        "ledger-reapply",
        {
            "request_ids": [entry.request_id for entry in entries + rectified + holds],
            "rows_quarantined": quarantined,
            "rows_released": released.rows_moved,
            "files_rewritten": report.files_rewritten,
            "files_deleted": report.files_deleted,
            "rows_affected": report.rows_affected,
            "verification_passed": report.verification_passed,
            "files_not_searched": [
                {"path": item.path, "key_id": item.key.key_id} for item in report.files_not_searched
            ],
            "footers_read": footers,
            "seconds": round(time.monotonic() - began, 3),
        },
        now(),
    )
    return report


def _dataset_files_not_searched(dataset: Survey, hold: LedgerEntry) -> tuple[UnsearchedFile, ...]:
    """The files of the ``dataset`` survey under keys the ``hold``'s pseudonyms were not computed under.

    The subject's rows there cannot be found, so they may still be in use. A hold given as a
    pseudonym names no key: its own receipt said what it could not search, and it is not judged here.
    """
    if hold.key_ids() is None:
        return ()
    return key_coverage(dataset.search(()).keys, hold.keys()).not_searched
