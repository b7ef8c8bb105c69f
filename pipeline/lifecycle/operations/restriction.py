"""Restriction, lift, objection and withdrawal against the store and the ledger.

Contract (each function returns a :class:`HoldOutcome`, the kind-specific part
of a receipt, or a :class:`Refusal` when there is nothing to act on):

* :func:`take_out_of_use` writes a ``restrict`` (restriction) or ``suppress``
  (objection) ledger entry first, so every worker quarantines or drops the
  subject's later records, then handles the rows already stored: moved to the
  quarantine, erased (objection with ``existing: erase``, which also writes an
  ``erase`` entry keyed ``<request id>:objection-erase``), or left (``none``). Moves and
  erasures run twice, ``settle_seconds`` apart, to catch batches that were
  being published when the entry was written.
* :func:`put_back_in_use` ends the subject's entries of one action
  (``restrict`` for a lift, ``suppress`` for a withdrawal) with ``ended``
  entries under the same keys, then moves back into the dataset every
  quarantined row that no restriction or objection still in force covers,
  whichever party it names (:func:`~pipeline.lifecycle.operations.quarantine.release_unheld`):
  a call of the subject and of another held person stays, and the receipt
  counts such rows (``rows_still_held``) and names the holds in force
  (``still_in_force``). Releases run twice too.

A move's verification passes only when it checked something that could have
failed: after both passes it decodes the subject columns of every file the
moves rewrote in the area the rows left and of every file there whose index
cannot rule the subject out (none of the subject's rows may remain), and of
every file the rows moved to (they must hold at least the rows moved). A move
that changed rows and could decode no file fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from pipeline.keys.fingerprint import KeyRef
from pipeline.lifecycle.ledger import HOLDS, LedgerEntry, SubjectLedger
from pipeline.lifecycle.operations.finder import survey
from pipeline.lifecycle.operations.key_coverage import key_coverage
from pipeline.lifecycle.operations.quarantine import END_OF_TIME, move_candidates, release_unheld
from pipeline.lifecycle.operations.rewriter import (
    count_subject_rows,
    not_searched_files,
    rewrite_subject_files,
    searched_keys,
    verify_erasure,
)
from pipeline.lifecycle.requests.receipts import ReceiptVerification
from pipeline.lifecycle.subject import Subject
from pipeline.store.errors import StorageError
from pipeline.store.merge import read_table
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


@dataclass(frozen=True, slots=True)
class HoldOutcome:
    """What a restriction, objection, lift or withdrawal did: the receipt's fields of its kind."""

    existing: Literal["quarantine", "erase"] | None = None
    rows_moved: int | None = None
    rows_removed: int | None = None
    files_written: list[str] | None = None
    files_rewritten: list[str] | None = None
    files_deleted: list[str] | None = None
    passes: int | None = None
    ended: list[str] | None = None
    still_in_force: list[str] | None = None
    rows_still_held: int | None = None
    verification: ReceiptVerification | None = None


def _rows_in(
    storage: Storage, paths: Iterable[str], pseudonyms: frozenset[str]
) -> tuple[int, int, list[str]]:
    """The subject's rows in ``paths`` (gone ones skipped): rows, files decoded, files unreadable."""
    rows, decoded, unreadable = 0, 0, []
    for path in sorted(set(paths)):
        if storage.read(path) is None:
            continue
        try:
            rows += count_subject_rows(storage, path, pseudonyms, END_OF_TIME)
        except (StorageError, OSError, ValueError):  # not Parquet (pyarrow raises ValueErrors) or unreadable
            unreadable.append(path)
            continue
        decoded += 1
    return rows, decoded, unreadable


def _move_twice(
    storage: Storage,
    pseudonyms: frozenset[str],
    keys: frozenset[KeyRef],
    areas: tuple[str, str],
    passes: Passes,
) -> HoldOutcome:
    """Move twice, then check both areas, every file of the source area read and every key searched.

    A subject given as a pseudonym (or a restriction older than a key, or a key id
    reused for another secret) has no pseudonym under some file's key: rows under
    that key cannot be found, so the verification fails and names the files and
    keys instead of claiming the move is complete.
    """
    source, target = areas
    # One reading of the source area: the second pass re-lists it and reads what changed, and the
    # check takes the second pass's reading (the files it changed are decoded anyway).
    first_read = survey(storage, (source,))
    first = move_candidates(storage, first_read.search(pseudonyms).candidates, pseudonyms, source, target)
    passes.sleep(passes.settle_seconds)
    second_read = survey(storage, (source,), previous=first_read)
    second = move_candidates(storage, second_read.search(pseudonyms).candidates, pseudonyms, source, target)
    moved = first[0] + second[0]
    written = sorted({*first[1], *second[1]})
    footers = second_read.without(storage, second[2]).search(pseudonyms)
    coverage = key_coverage(footers.keys, keys)
    left_behind = [path for path in written if path.startswith(f"{source}/")]
    remaining, source_decoded, source_unreadable = _rows_in(
        storage, [*footers.candidates, *left_behind], pseudonyms
    )
    arrived, target_decoded, target_unreadable = _rows_in(
        storage, [path for path in written if path.startswith(f"{target}/")], pseudonyms
    )
    unreadable = sorted({*footers.unreadable, *source_unreadable, *target_unreadable})
    checked = source_decoded + target_decoded
    in_store = len(footers.keys) + len(footers.unreadable)
    text = (
        f"Checked the subject index of all {in_store} data files in {source}/ (from the store manifest, "
        f"or the file's footer where the manifest did not describe it) and decoded the subject columns of "
        f"{source_decoded} files there (every file the move rewrote and every file whose subject index "
        f"could not rule the subject out): {remaining} rows of the subject remain. Decoded the "
        f"{target_decoded} files in {target}/ the rows moved to: they hold {arrived} rows of the subject "
        f"({moved} moved)."
    ) + coverage.caveat()
    failures = _move_failures(moved, checked, arrived, target, unreadable) + coverage.failure(keys)
    verification = ReceiptVerification(
        passed=remaining == 0 and not failures,
        checked=text + failures,
        files_in_store=in_store,
        files_checked=checked,
        rows_remaining=remaining,
        files_unreadable=unreadable,
        key_ids_in_store=sorted({key.key_id for key in footers.all_keys()}),
        key_ids_not_searched=coverage.key_ids_not_searched,
        files_not_searched=not_searched_files(coverage),
        files_searched_by_key_id_only=len(coverage.by_id_only),
        key_ids_searched_by_id_only=sorted(coverage.ids_by_id_only),
    )
    return HoldOutcome(
        rows_moved=moved,
        files_written=written,
        files_deleted=sorted({*first[2], *second[2]}),
        passes=2,
        verification=verification,
    )


def _release_twice(
    storage: Storage, view: SubjectLedger, pseudonyms: frozenset[str], passes: Passes
) -> tuple[HoldOutcome, tuple[str, ...]]:
    """Release twice, then check the whole quarantine and the files the rows went to.

    Returns the outcome and the request ids of the holds that keep rows of the subject.
    """
    first = release_unheld(storage, view, pseudonyms)
    passes.sleep(passes.settle_seconds)
    second = release_unheld(storage, view, pseudonyms)
    footers = survey(storage, (QUARANTINE,)).search(())
    moved = first.rows_moved + second.rows_moved
    written = sorted({*first.files_written, *second.files_written})
    arrived, decoded, target_unreadable = _all_rows_in(
        storage, [path for path in written if path.startswith(f"{DATASET}/")]
    )
    unreadable = sorted({*footers.unreadable, *target_unreadable})
    checked = second.files_checked + decoded
    text = (
        f"Decoded all {second.files_checked} readable files of {QUARANTINE}/ after both passes: "
        f"{second.rows_left} rows that no restriction or objection in force covers remain, and "
        f"{second.rows_kept} rows of the subject stay held. Decoded the {decoded} files in {DATASET}/ "
        f"the rows moved to: they hold {arrived} rows ({moved} moved)."
    )
    failures = _move_failures(moved, checked, arrived, DATASET, unreadable)
    verification = ReceiptVerification(
        passed=second.verified and not failures,
        checked=text + failures,
        files_in_store=len(footers.keys) + len(footers.unreadable),
        files_checked=checked,
        rows_remaining=second.rows_left,
        files_unreadable=unreadable,
    )
    outcome = HoldOutcome(
        rows_moved=moved,
        rows_still_held=second.rows_kept,
        files_written=written,
        files_deleted=sorted({*first.files_deleted, *second.files_deleted}),
        passes=2,
        verification=verification,
    )
    return outcome, second.kept_by


def _all_rows_in(storage: Storage, paths: Iterable[str]) -> tuple[int, int, list[str]]:
    """Every row in ``paths`` (gone ones skipped): rows, files decoded, files unreadable."""
    rows, decoded, unreadable = 0, 0, []
    for path in sorted(set(paths)):
        try:
            table = read_table(storage, path)
        except (StorageError, OSError, ValueError):  # not Parquet (pyarrow raises ValueErrors) or unreadable
            unreadable.append(path)
            continue
        if table is not None:
            rows += table.num_rows
            decoded += 1
    return rows, decoded, unreadable


def _move_failures(moved: int, checked: int, arrived: int, target: str, unreadable: list[str]) -> str:
    """What a move's check found wrong, as ``FAILED:`` sentences of its receipt ("" when nothing)."""
    failures = ""
    if moved > 0 and checked == 0:
        failures += " FAILED: rows were moved but no file could be decoded, so nothing was verified."
    if arrived < moved:
        failures += f" FAILED: {moved - arrived} moved rows are not in {target}/."
    if unreadable:
        failures += f" FAILED: {len(unreadable)} data files could not be read ({', '.join(unreadable)})."
    return failures


def _erase_twice(storage: Storage, subject: Subject, requested_at: datetime, passes: Passes) -> HoldOutcome:
    first_read = survey(storage)
    first, _ = rewrite_subject_files(storage, subject.pseudonyms, "delete", requested_at, read=first_read)
    passes.sleep(passes.settle_seconds)
    second_read = survey(storage, previous=first_read)
    second, _ = rewrite_subject_files(storage, subject.pseudonyms, "delete", requested_at, read=second_read)
    results = [result for result in first + second if result.rows_affected]
    searched = searched_keys(subject.keys, results)
    touched = [result.path for result in first + second]
    after = second_read.without(storage, (result.path for result in second if result.deleted))
    verification = verify_erasure(storage, subject.pseudonyms, searched, requested_at, touched, read=after)
    return HoldOutcome(
        existing="erase",
        rows_removed=sum(result.rows_affected for result in results),
        files_rewritten=sorted({result.path for result in results if not result.deleted}),
        files_deleted=sorted({result.path for result in results if result.deleted}),
        passes=2,
        verification=verification.for_receipt(requested_at),
    )


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
) -> HoldOutcome:
    """Record the restriction or objection in the ledger, then quarantine or erase the stored rows."""
    pairs, fingerprints = list(subject.pairs), subject.key_fingerprints
    ledger.write(
        LedgerEntry(
            request_id=request_id,
            requested_at=requested_at,
            action=action,
            subject=pairs,
            key_fingerprints=fingerprints,
        )
    )
    if existing == "erase":
        # ':' never occurs in a request id (request_ids.check_request_id): no erasure can reuse it
        erase_id = f"{request_id}:objection-erase"
        ledger.write(
            LedgerEntry(
                request_id=erase_id, requested_at=requested_at, subject=pairs, key_fingerprints=fingerprints
            )
        )
        return _erase_twice(storage, subject, requested_at, passes)
    moved = _move_twice(storage, subject.pseudonyms, subject.keys, (DATASET, QUARANTINE), passes)
    return replace(moved, existing=existing)


def put_back_in_use(
    storage: Storage,
    ledger: Ledger,
    *,
    subject: Subject,
    requested_at: datetime,
    ending: Literal["restrict", "suppress"],
    passes: Passes,
) -> HoldOutcome | Refusal:
    """End the subject's restrictions (or objections); move the rows back if nothing else holds them."""
    ended = ledger.view.in_force(ending, subject.pseudonyms)
    if not ended:
        what = "restriction" if ending == "restrict" else "objection"
        return Refusal(f"no {what} of this subject is in force")
    pseudonyms = subject.pseudonyms.union(*(entry.subject_pseudonyms() for entry in ended))
    for entry in ended:
        ledger.write(LedgerEntry(request_id=entry.request_id, requested_at=requested_at, action="ended"))
    released, kept_by = _release_twice(storage, ledger.view, pseudonyms, passes)
    # The holds that keep the subject's rows, and the subject's other holds (which may hold no row).
    still = sorted({*kept_by, *(entry.request_id for entry in _holds_of(ledger.view, pseudonyms))})
    return replace(released, ended=sorted(entry.request_id for entry in ended), still_in_force=still or None)


def _holds_of(view: SubjectLedger, pseudonyms: frozenset[str]) -> list[LedgerEntry]:
    return [entry for action in HOLDS for entry in view.in_force(action, pseudonyms)]
