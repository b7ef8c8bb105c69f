"""Add rows to a published file exactly once: a row the file already holds is not added again.

Contract: :func:`merge_into` publishes the file at a path with the given rows
added, except for rows identical to ones it already holds (counted with
multiplicity), so merging the same rows twice changes nothing. The publish
is atomic, like every publish of the storage. The merged file records the
keys of both: those of the file and those the added rows were written under.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import pyarrow as pa

from pipeline.keys.fingerprint import KeyRef
from pipeline.store.parquet import StoredFile, decode, encode
from pipeline.store.storage import Storage


def read_file(storage: Storage, path: str) -> StoredFile | None:
    """The rows and keys of the Parquet file at ``path``, or None if there is none."""
    data = storage.read(path)
    return decode(data) if data is not None else None


def read_table(storage: Storage, path: str) -> pa.Table | None:
    """The table of the Parquet file at ``path``, or None if there is none."""
    stored = read_file(storage, path)
    return stored.table if stored is not None else None


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


def merge_into(storage: Storage, path: str, rows: pa.Table, keys: Iterable[KeyRef]) -> bool:
    """Publish the file at ``path`` with ``rows`` (written under ``keys``) added, but for those it
    already holds; True if written."""
    existing = read_file(storage, path)
    new_rows = _not_yet_in(rows, existing.table if existing is not None else None)
    if new_rows.num_rows == 0:
        return False
    if existing is None:
        merged, merged_keys = new_rows, frozenset(keys)
    else:
        merged = pa.concat_tables([existing.table, new_rows.cast(existing.table.schema)])
        # Both sets are kept: rows of one key id under two secrets stay told apart (and unsearchable).
        merged_keys = existing.keys | frozenset(keys)
    storage.publish(path, encode(merged.combine_chunks(), merged_keys))
    return True
