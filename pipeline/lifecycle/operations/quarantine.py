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
   deleted, then the source files are re-read: the result says how many subject rows are
   left in them (0 when the move is complete), the key ids of every file of the source
   area and the files whose footer could not be read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow.compute as pc

from pipeline.lifecycle.operations.finder import search
from pipeline.lifecycle.operations.rewriter import count_subject_rows
from pipeline.lifecycle.rows import subject_row_mask
from pipeline.store import manifest
from pipeline.store.merge import merge_into, read_table
from pipeline.store.naming import AREAS, in_area
from pipeline.store.parquet import encode
from pipeline.store.storage import Storage

_END_OF_TIME = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class MoveResult:
    """What a move did: rows moved, files written, and what re-reading the sources found."""

    rows_moved: int
    files_written: list[str]
    files_deleted: list[str]
    files_checked: int
    rows_left: int
    key_ids_in_source: frozenset[str]
    files_unreadable: list[str]

    @property
    def verified(self) -> bool:
        """True when no row of the subject is left in the source area's files."""
        return self.rows_left == 0


def move_subject_rows(storage: Storage, pseudonyms: frozenset[str], source: str, target: str) -> MoveResult:
    """Move every row of the subject from the ``source`` area to the ``target`` area."""
    if source not in AREAS or target not in AREAS or source == target:
        raise ValueError(f"a move goes between two of the areas {AREAS}")
    moved, written, deleted = 0, [], []
    for path in search(storage, pseudonyms, areas=(source,)).candidates:
        table = read_table(storage, path)
        if table is None:
            continue
        mask = subject_row_mask(table, pseudonyms, _END_OF_TIME)
        moving = table.filter(mask)
        if moving.num_rows == 0:
            continue  # a false positive of the subject index
        destination = in_area(path, target)
        if merge_into(storage, destination, moving):
            written.append(destination)
        staying = table.filter(pc.invert(mask))
        if staying.num_rows:
            storage.publish(path, encode(staying))
            written.append(path)
        else:
            storage.delete(path)
            deleted.append(path)
        moved += moving.num_rows
    manifest.record(storage, written=written, deleted=deleted)
    after = search(storage, pseudonyms, areas=(source,))
    left = sum(count_subject_rows(storage, path, pseudonyms, _END_OF_TIME) for path in after.candidates)
    return MoveResult(
        moved, written, deleted, len(after.candidates), left, after.all_key_ids(), after.unreadable
    )
