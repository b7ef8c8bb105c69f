"""Copy-on-write erasure of one file, and the check that the subject is gone.

Contract: :func:`rewrite_file` leaves either the old file or the complete new
one (the storage publishes atomically): a file that loses rows is replaced
under the same name, a file that loses all rows is deleted, a file without
the subject's rows is left untouched. :func:`verify_files` re-reads files and
reports any subject row still present (up to ``requested_at``) and any raw
occurrence of a pseudonym in a file that legitimately holds none.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime

import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.lifecycle.finder import find_subject_files
from pipeline.lifecycle.rows import Mode, erase_rows, subject_row_mask
from pipeline.sink.parquet import encode
from pipeline.sink.storage import Storage


@dataclass(frozen=True, slots=True)
class RewriteResult:
    """What happened to one file."""

    path: str
    rows_affected: int
    deleted: bool


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of re-reading files after an erasure."""

    files_checked: int
    rows_remaining: int
    raw_occurrences: int

    @property
    def passed(self) -> bool:
        """True when no subject row and no stray raw pseudonym remains."""
        return self.rows_remaining == 0 and self.raw_occurrences == 0


def rewrite_file(
    storage: Storage, path: str, pseudonyms: frozenset[str], mode: Mode, requested_at: datetime
) -> RewriteResult:
    """Erase the subject's rows from the file at ``path``."""
    data = storage.read(path)
    if data is None:
        return RewriteResult(path, 0, deleted=False)
    table = pq.read_table(io.BytesIO(data))
    erased, affected = erase_rows(table, pseudonyms, mode, requested_at)
    if affected == 0:
        return RewriteResult(path, 0, deleted=False)
    if erased.num_rows == 0:
        storage.delete(path)
        return RewriteResult(path, affected, deleted=True)
    storage.publish(path, encode(erased))
    return RewriteResult(path, affected, deleted=False)


def rewrite_subject_files(
    storage: Storage,
    pseudonyms: frozenset[str],
    mode: Mode,
    requested_at: datetime,
    modified_since: datetime | None = None,
) -> list[RewriteResult]:
    """Find the files that may hold the subject (modified since ``modified_since``) and rewrite each."""
    paths = find_subject_files(storage, pseudonyms, modified_since=modified_since)
    return [rewrite_file(storage, path, pseudonyms, mode, requested_at) for path in paths]


def verify_files(
    storage: Storage, paths: list[str], pseudonyms: frozenset[str], requested_at: datetime
) -> Verification:
    """Re-read ``paths``: subject rows left, and raw pseudonym bytes in files that should hold none."""
    checked = remaining = raw = 0
    needles = [pseudonym.encode("ascii") for pseudonym in pseudonyms]
    for path in paths:
        data = storage.read(path)
        if data is None:
            continue
        checked += 1
        table = pq.read_table(io.BytesIO(data))
        remaining += pc.sum(pc.cast(subject_row_mask(table, pseudonyms, requested_at), "int64")).as_py() or 0
        later = subject_row_mask(table, pseudonyms, datetime.max.replace(tzinfo=requested_at.tzinfo))
        if not pc.any(later).as_py():
            raw += sum(data.count(needle) for needle in needles)
    return Verification(checked, remaining, raw)
