"""Add rows to a published file exactly once: a row the file already holds is not added again.

Contract: :func:`merge_into` publishes the file at a path with the given rows
added, except for rows identical to ones it already holds (counted with
multiplicity), so merging the same rows twice changes nothing. The publish
is atomic, like every publish of the storage.
"""

from __future__ import annotations

import io
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.store.parquet import encode
from pipeline.store.storage import Storage


def read_table(storage: Storage, path: str) -> pa.Table | None:
    """The table of the Parquet file at ``path``, or None if there is none."""
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
    existing = read_table(storage, path)
    new_rows = _not_yet_in(rows, existing)
    if new_rows.num_rows == 0:
        return False
    merged = new_rows if existing is None else pa.concat_tables([existing, new_rows.cast(existing.schema)])
    storage.publish(path, encode(merged.combine_chunks()))
    return True
