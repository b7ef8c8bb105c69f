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
3. The source files are re-read: the result says how many subject rows are
   left in them (0 when the move is complete).
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.lifecycle.finder import search
from pipeline.lifecycle.rewriter import count_subject_rows
from pipeline.lifecycle.rows import subject_row_mask
from pipeline.sink.naming import AREAS, in_area
from pipeline.sink.parquet import encode
from pipeline.sink.storage import Storage

_END_OF_TIME = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class MoveResult:
    """What a move did: rows moved, files written, and what re-reading the sources found."""

    rows_moved: int
    files_written: list[str]
    files_deleted: list[str]
    files_checked: int
    rows_left: int

    @property
    def verified(self) -> bool:
        """True when no row of the subject is left in the source area's files."""
        return self.rows_left == 0


def _read(storage: Storage, path: str) -> pa.Table | None:
    data = storage.read(path)
    return pq.read_table(io.BytesIO(data)) if data is not None else None


def _not_yet_in(moving: pa.Table, target: pa.Table | None) -> pa.Table:
    """The rows of ``moving`` that ``target`` does not hold yet (identical rows, with multiplicity)."""
    if target is None or target.num_rows == 0:
        return moving
    present = Counter(tuple(sorted(row.items())) for row in target.to_pylist())
    keep = []
    for row in moving.to_pylist():
        signature = tuple(sorted(row.items()))
        keep.append(present[signature] == 0)
        if present[signature]:
            present[signature] -= 1  # one copy in the target stands for one moving row
    return moving.filter(pa.array(keep, pa.bool_()))


def merge_into(storage: Storage, path: str, rows: pa.Table) -> bool:
    """Publish the file at ``path`` with ``rows`` added, but for those it already holds; True if written."""
    existing = _read(storage, path)
    new_rows = _not_yet_in(rows, existing)
    if new_rows.num_rows == 0:
        return False
    merged = new_rows if existing is None else pa.concat_tables([existing, new_rows.cast(existing.schema)])
    storage.publish(path, encode(merged.combine_chunks()))
    return True


def move_subject_rows(storage: Storage, pseudonyms: frozenset[str], source: str, target: str) -> MoveResult:
    """Move every row of the subject from the ``source`` area to the ``target`` area."""
    if source not in AREAS or target not in AREAS or source == target:
        raise ValueError(f"a move goes between two of the areas {AREAS}")
    moved, written, deleted = 0, [], []
    for path in search(storage, pseudonyms, areas=(source,)).candidates:
        table = _read(storage, path)
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
    after = search(storage, pseudonyms, areas=(source,)).candidates
    left = sum(count_subject_rows(storage, path, pseudonyms, _END_OF_TIME) for path in after)
    return MoveResult(moved, written, deleted, len(after), left)
