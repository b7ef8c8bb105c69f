"""Move a subject's rows between the dataset (``cdr/``) and the quarantine (``restricted/``).

A restriction (art. 18) takes rows out of use without deleting them: they
move to ``restricted/call_date=D/<name>``, the mirror of the file they came
from, which no query over ``cdr/`` sees. Lifting moves them back into
``cdr/call_date=D/<name>``. One function does both: :func:`move_subject_rows`.

Contract, per source file holding rows of the subject (found through the
footers' subject index; every row of the subject, whatever its call time):

1. The target file (same name in the other area) is published first, holding
   its own rows plus the moving rows it does not hold yet; then the source
   file is published without them (or deleted when it held nothing else).
   Each publish is atomic, so a crash leaves each file old or new, never
   partial: at worst a row is in both places, and running the move again
   finishes it.
2. A row counts as already in the target when an identical row is there
   (every column equal, counted with multiplicity): the mirror only ever
   receives rows from its source, so that identical row is the same row,
   copied by a move cut short. Moving twice therefore changes nothing, and
   lifting after a restriction gives back exactly the rows there were.
3. The store manifest is brought up to date for every file written or
   deleted, then the source files are re-read: the result says how many subject
   rows are left in them (0 when the move is complete).

:func:`release_unheld` keeps the same contract with "the rows no hold covers"
(:meth:`~pipeline.lifecycle.ledger.SubjectLedger.held_rows`) in place of "the
subject's rows", over every quarantine file: the quarantine holds only rows
of held subjects, so it stays small, and reading all of it also returns rows
that a restore or an earlier lift left behind. Its re-read counts the rows no
hold covers still there (0 when complete) and the subject's rows a hold keeps,
naming the holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.lifecycle.ledger import HOLDS, SubjectLedger
from pipeline.lifecycle.operations.finder import Survey, survey
from pipeline.lifecycle.operations.rewriter import count_subject_rows
from pipeline.lifecycle.rows import subject_row_mask
from pipeline.store import manifest
from pipeline.store.merge import merge_into, read_file
from pipeline.store.naming import AREAS, DATASET, QUARANTINE, in_area
from pipeline.store.parquet import StoredFile, encode
from pipeline.store.storage import Storage

END_OF_TIME = datetime.max.replace(tzinfo=UTC)
"""A call time later than any: the subject's rows of every call time."""


@dataclass(frozen=True, slots=True)
class MoveResult:
    """What a move did: rows moved, files written, and what re-reading the sources found."""

    rows_moved: int
    files_written: list[str]
    files_deleted: list[str]
    files_checked: int
    rows_left: int
    rows_kept: int = 0
    """:func:`release_unheld`: rows of the subject that a hold in force keeps in the quarantine."""
    kept_by: tuple[str, ...] = ()
    """:func:`release_unheld`: the request ids of the holds that keep them."""

    @property
    def verified(self) -> bool:
        """True when no row of the subject is left in the source area's files."""
        return self.rows_left == 0


def move_subject_rows(
    storage: Storage, pseudonyms: frozenset[str], source: str, target: str, read: Survey | None = None
) -> MoveResult:
    """Move every row of the subject from the ``source`` area to the ``target`` area.

    The candidates come from ``read`` (a survey of ``source``) if given, else a new survey;
    the re-read after the move refreshes that survey (it reads only the files that changed).
    """
    before = read if read is not None else survey(storage, (source,))
    moved, written, deleted = move_candidates(
        storage, before.search(pseudonyms).candidates, pseudonyms, source, target
    )
    after = survey(storage, (source,), previous=before).search(pseudonyms).candidates
    left = sum(count_subject_rows(storage, path, pseudonyms, END_OF_TIME) for path in after)
    return MoveResult(moved, written, deleted, len(after), left)


def move_candidates(
    storage: Storage, candidates: Iterable[str], pseudonyms: frozenset[str], source: str, target: str
) -> tuple[int, list[str], list[str]]:
    """Move the subject's rows of ``candidates`` (files of ``source``) to ``target`` (steps 1, 2, 3).

    Returns the rows moved, the files written and the files deleted.
    """
    if source not in AREAS or target not in AREAS or source == target:
        raise ValueError(f"a move goes between two of the areas {AREAS}")
    return _move(
        storage, candidates, lambda stored: subject_row_mask(stored.table, pseudonyms, END_OF_TIME), target
    )


def release_unheld(storage: Storage, view: SubjectLedger, pseudonyms: frozenset[str]) -> MoveResult:
    """Move every quarantined row no hold of ``view`` covers to the dataset; count the subject's kept rows."""
    moved, written, deleted = _move(
        storage,
        _readable(storage),
        lambda stored: pc.invert(view.held_rows(stored.table, stored.keys)),
        DATASET,
    )
    left = kept = 0
    kept_by: set[str] = set()
    checked = _readable(storage)
    for path in checked:
        stored = read_file(storage, path)
        if stored is None:
            continue
        table = stored.table
        held = view.held_rows(table, stored.keys)
        left += _count(pc.invert(held))
        own = table.filter(pc.and_(held, subject_row_mask(table, pseudonyms, END_OF_TIME)))
        kept += own.num_rows
        kept_by.update(entry.request_id for entry, _ in view.matches(own, {}) if entry.action in HOLDS)
        own_ids = frozenset(pc.unique(own.column("key_id").cast(pa.string())).to_pylist())
        own_keys = frozenset(key for key in stored.keys if key.key_id in own_ids)
        kept_by.update(*view.holds_blind_to(own_keys).values())
    return MoveResult(moved, written, deleted, len(checked), left, kept, tuple(sorted(kept_by)))


def _readable(storage: Storage) -> list[str]:
    """The quarantine's files whose footer can be read (the caller reports the others)."""
    return sorted(survey(storage, (QUARANTINE,)).entries)


def _count(mask: pa.Array) -> int:
    return int(pc.sum(pc.cast(mask, pa.int64())).as_py() or 0)


def _move(
    storage: Storage, paths: Iterable[str], select: Callable[[StoredFile], pa.Array], target: str
) -> tuple[int, list[str], list[str]]:
    """Move the rows ``select`` picks in each file of ``paths`` to its mirror in ``target`` (steps 1, 2)."""
    moved, written, deleted = 0, [], []
    for path in paths:
        stored = read_file(storage, path)
        if stored is None:
            continue
        table = stored.table
        mask = select(stored)
        moving = table.filter(mask)
        if moving.num_rows == 0:
            continue  # a false positive of the subject index, or nothing to release
        destination = in_area(path, target)
        if merge_into(storage, destination, moving, stored.keys):
            written.append(destination)
        staying = table.filter(pc.invert(mask))
        if staying.num_rows:
            storage.publish(path, encode(staying, stored.keys))
            written.append(path)
        else:
            storage.delete(path)
            deleted.append(path)
        moved += moving.num_rows
    manifest.record(storage, written=written, deleted=deleted)
    return moved, written, deleted
