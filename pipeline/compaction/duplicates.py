"""Copies of one CDR that an at-least-once producer sent more than once, found by the call they describe.

Contract: two rows are copies of one CDR when they have the same
:data:`IDENTITY`: the same source, the same ``cdr_id`` and the same start
time (an id a source uses again for a later call is another call). Whatever
else differs (a producer that re-sends after a key rotation gives other
pseudonyms) the first copy is kept. :func:`first_copies` keeps, of each
identity, the first row of the table, and none of an identity already stored
elsewhere (``stored``); it is vectorised (one Arrow group-by), so a date's
rows cost a few hundred nanoseconds each.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

IDENTITY = ("source", "cdr_id", "start_time")
_POSITION = "__position"


def identities(table: pa.Table) -> pa.Table:
    """The :data:`IDENTITY` columns of ``table``, in plain (not dictionary) types."""
    return pa.table({name: _plain(table.column(name)) for name in IDENTITY})


def _plain(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_dictionary(column.type):
        return column.cast(column.type.value_type)
    return column


def first_copies(table: pa.Table, stored: pa.Table | None = None) -> pa.Array:
    """True for the rows of ``table`` that are the first copy of their CDR and not in ``stored``.

    ``stored`` holds the :func:`identities` of rows kept elsewhere.
    """
    rows = identities(table).append_column(_POSITION, pa.array(range(table.num_rows), pa.int64()))
    if stored is not None and stored.num_rows:
        # Stored rows take negative positions: a group holding one has a negative first position.
        known = stored.append_column(_POSITION, pa.array(range(-stored.num_rows, 0), pa.int64()))
        rows = pa.concat_tables([known, rows.cast(known.schema)])
    firsts = rows.group_by(list(IDENTITY), use_threads=False).aggregate([(_POSITION, "min")])
    kept = pc.filter(firsts[f"{_POSITION}_min"], pc.greater_equal(firsts[f"{_POSITION}_min"], 0))
    return pc.is_in(pa.array(range(table.num_rows), pa.int64()), value_set=kept.combine_chunks())
