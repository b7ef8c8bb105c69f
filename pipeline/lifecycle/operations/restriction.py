"""Restriction, lift, objection and withdrawal against the store and the ledger.

Contract (each function returns the kind-specific part of a receipt, or a
:class:`Refusal` when there is nothing to act on):

* :func:`take_out_of_use` writes a ``restrict`` (restriction) or ``suppress``
  (objection) ledger entry first, so every worker quarantines or drops the
  subject's later records, then handles the rows already stored: moved to the
  quarantine, erased (objection with ``existing: erase``, which also writes an
  ``erase`` entry keyed ``<request id>:objection-erase``), or left (``none``). Moves and
  erasures run twice, ``settle_seconds`` apart, to catch batches that were
  being published when the entry was written.
* :func:`put_back_in_use` ends the subject's entries of one action
  (``restrict`` for a lift, ``suppress`` for a withdrawal) with ``ended``
  entries under the same keys, then moves the subject's quarantined rows back
  into the dataset, unless another restriction or objection of the subject is
  still in force.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pipeline.lifecycle.ledger import UNKNOWN_KEY, KeyedPseudonym, LedgerEntry, SubjectLedger
from pipeline.lifecycle.operations.quarantine import move_subject_rows
from pipeline.lifecycle.operations.rewriter import rewrite_subject_files, searched_key_ids, verify_erasure
from pipeline.lifecycle.subject import Subject
from pipeline.store.naming import DATASET, QUARANTINE
from pipeline.store.storage import Storage


@dataclass(frozen=True, slots=True)
class Ledger:
    """The ledger as the lifecycle path uses it: its in-memory view and an acknowledged write."""

    view: SubjectLedger
    write: Callable[[LedgerEntry], None]


@dataclass(frozen=True, slots=True)
class Passes:
    """How long to wait before the second pass, and how to wait (injected by tests)."""

    settle_seconds: float
    sleep: Callable[[float], None]


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request could not be carried out (its receipt is ``rejected``)."""

    reason: str


def _move_twice(
    storage: Storage,
    pseudonyms: frozenset[str],
    key_ids: frozenset[str],
    areas: tuple[str, str],
    passes: Passes,
) -> dict[str, Any]:
    """Move twice, then check that every file of the source area was read and every key searched.

    A subject given as a pseudonym (or a restriction older than a key) has no
    pseudonym under some key: rows under that key cannot be found, so the
    verification fails and names the key instead of claiming the move is complete.
    """
    source, target = areas
    first = move_subject_rows(storage, pseudonyms, source, target)
    passes.sleep(passes.settle_seconds)
    second = move_subject_rows(storage, pseudonyms, source, target)
    unsearched = sorted(second.key_ids_in_source - key_ids)
    return {
        "rows_moved": first.rows_moved + second.rows_moved,
        "files_written": sorted({*first.files_written, *second.files_written}),
        "files_deleted": sorted({*first.files_deleted, *second.files_deleted}),
        "passes": 2,
        "verification": {
            "files_checked": second.files_checked,
            "rows_left": second.rows_left,
            "key_ids_not_searched": unsearched,
            "files_unreadable": sorted(second.files_unreadable),
            "passed": second.verified and not unsearched and not second.files_unreadable,
        },
    }


def _erase_twice(
    storage: Storage, subject: Subject, requested_at: datetime, passes: Passes
) -> dict[str, Any]:
    first, _ = rewrite_subject_files(storage, subject.pseudonyms, "delete", requested_at)
    passes.sleep(passes.settle_seconds)
    second, _ = rewrite_subject_files(storage, subject.pseudonyms, "delete", requested_at)
    results = [result for result in first + second if result.rows_affected]
    searched = searched_key_ids(subject.key_ids, results)
    touched = [result.path for result in first + second]
    verification = verify_erasure(storage, subject.pseudonyms, searched, requested_at, touched)
    return {
        "rows_removed": sum(result.rows_affected for result in results),
        "files_written": sorted({result.path for result in results if not result.deleted}),
        "files_deleted": sorted({result.path for result in results if result.deleted}),
        "passes": 2,
        "verification": {"files_checked": verification.files_checked, "passed": verification.passed},
    }


def take_out_of_use(
    storage: Storage,
    ledger: Ledger,
    *,
    request_id: str,
    subject: Subject,
    requested_at: datetime,
    existing: Literal["quarantine", "erase"],
    action: Literal["restrict", "suppress"],
    passes: Passes,
) -> dict[str, Any]:
    """Record the restriction or objection in the ledger, then quarantine or erase the stored rows."""
    pairs = list(subject.pairs)
    ledger.write(LedgerEntry(request_id=request_id, requested_at=requested_at, action=action, subject=pairs))
    if existing == "erase":
        # ':' never occurs in a request id (request_ids.check_request_id): no erasure can reuse it
        erase_id = f"{request_id}:objection-erase"
        ledger.write(LedgerEntry(request_id=erase_id, requested_at=requested_at, subject=pairs))
        return {"existing": existing, **_erase_twice(storage, subject, requested_at, passes)}
    moved = _move_twice(storage, subject.pseudonyms, _keys(subject.pairs), (DATASET, QUARANTINE), passes)
    return {"existing": existing, **moved}


def put_back_in_use(
    storage: Storage,
    ledger: Ledger,
    *,
    subject: Subject,
    requested_at: datetime,
    ending: Literal["restrict", "suppress"],
    passes: Passes,
) -> dict[str, Any] | Refusal:
    """End the subject's restrictions (or objections); move the rows back if nothing else holds them."""
    ended = ledger.view.in_force(ending, subject.pseudonyms)
    if not ended:
        what = "restriction" if ending == "restrict" else "objection"
        return Refusal(f"no {what} of this subject is in force")
    pseudonyms = subject.pseudonyms.union(*(entry.subject_pseudonyms() for entry in ended))
    key_ids = _keys([*subject.pairs, *(pair for entry in ended for pair in entry.subject)])
    for entry in ended:
        ledger.write(LedgerEntry(request_id=entry.request_id, requested_at=requested_at, action="ended"))
    still = [
        entry.request_id
        for action in ("restrict", "suppress")
        for entry in ledger.view.in_force(action, pseudonyms)
    ]
    details: dict[str, Any] = {"ended": sorted(entry.request_id for entry in ended)}
    if still:
        # Another restriction or objection still takes the rows out of use: they stay quarantined.
        return {**details, "still_in_force": sorted(still), "rows_moved": 0}
    return {**details, **_move_twice(storage, pseudonyms, key_ids, (QUARANTINE, DATASET), passes)}


def _keys(pairs: Iterable[KeyedPseudonym]) -> frozenset[str]:
    return frozenset(pair.key_id for pair in pairs if pair.key_id != UNKNOWN_KEY)
