"""Copy-on-write erasure of one file, and the check that the subject is gone.

Contract: :func:`rewrite_file` leaves either the old file or the complete new
one (the storage publishes atomically): a file that loses rows is replaced
under the same name, a file that loses all rows is deleted, a file without
the subject's rows is left untouched; :func:`rewrite_subject_files` brings
the store manifest up to date for the files it changed, and searches the
:class:`~pipeline.lifecycle.operations.finder.Survey` it is given (one reading
of the store shared by the passes of a request) or a new one.
:func:`verify_erasure` takes the subject index of every file of the store
(from a survey taken after the last pass, or a new one), then *decodes* every pseudonym column of every
file the erasure touched and of every file whose subject index cannot rule
the subject out, and counts the subject's rows left (up to
``requested_at``). It also compares the keys (ids and fingerprints) of all
files read with the keys the subject's pseudonyms were computed under
(:mod:`~pipeline.lifecycle.operations.key_coverage`): a file under a key the
erasure could not search fails the verification, by name and key, and so does
a data file whose footer cannot be read; files whose keys are known by id only
are counted and said so. A rewritten file keeps the keys its footer recorded.
Nothing is inferred from raw file bytes (compression hides them).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.keys.fingerprint import KeyRef
from pipeline.lifecycle.operations.finder import Search, Survey, survey
from pipeline.lifecycle.operations.key_coverage import KeyCoverage, key_coverage
from pipeline.lifecycle.requests.erasure_request import Mode
from pipeline.lifecycle.requests.receipts import FileNotSearched, ReceiptVerification
from pipeline.lifecycle.rows import SUBJECT_COLUMNS, erase_rows, subject_row_mask
from pipeline.store import manifest
from pipeline.store.merge import read_file
from pipeline.store.parquet import encode
from pipeline.store.storage import Storage


@dataclass(frozen=True, slots=True)
class RewriteResult:
    """What happened to one file, and the keys (as its footer recorded them) of the subject rows it held."""

    path: str
    rows_affected: int
    deleted: bool
    keys: frozenset[KeyRef] = frozenset()


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of decoding the files that could still hold the subject."""

    files_in_store: int
    files_checked: int
    rows_remaining: int
    searched: frozenset[KeyRef]
    coverage: KeyCoverage
    files_unreadable: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        """True when no subject row is left, every file's keys were searched and every file read."""
        return self.rows_remaining == 0 and not self.coverage.not_searched and not self.files_unreadable

    def for_receipt(self, requested_at: datetime) -> ReceiptVerification:
        """The verification as receipts state it, with what was checked in words."""
        return ReceiptVerification(
            passed=self.passed,
            checked=self.describe(requested_at),
            files_in_store=self.files_in_store,
            files_checked=self.files_checked,
            rows_remaining=self.rows_remaining,
            files_unreadable=list(self.files_unreadable),
            key_ids_in_store=sorted({key.key_id for key in self.coverage.keys_in_store}),
            key_ids_not_searched=self.coverage.key_ids_not_searched,
            files_not_searched=not_searched_files(self.coverage),
            files_searched_by_key_id_only=len(self.coverage.by_id_only),
            key_ids_searched_by_id_only=sorted(self.coverage.ids_by_id_only),
        )

    def describe(self, requested_at: datetime) -> str:
        """What was checked, in plain words."""
        ruled_out = self.files_in_store - self.files_checked
        text = (
            f"Checked the subject index of all {self.files_in_store} data files the store listed at the "
            f"start of the last pass (from the store manifest, or the file's footer where the manifest "
            f"did not describe it). Decoded the "
            f"{', '.join(SUBJECT_COLUMNS)} columns of {self.files_checked} files (every file this "
            f"erasure changed and every file whose subject index could not rule the subject out; "
            f"the indexes of the other {ruled_out} files rule it out) and found "
            f"{self.rows_remaining} rows of the subject with a call time up to "
            f"{requested_at.isoformat()}. The files carry rows pseudonymised under keys "
            f"{_names(key.key_id for key in self.coverage.keys_in_store)}; the subject was searched "
            f"under {_names(key.describe() for key in self.searched)}."
        )
        text += self.coverage.caveat()
        if self.files_unreadable:
            text += (
                f" FAILED: {len(self.files_unreadable)} data files could not be read "
                f"({', '.join(self.files_unreadable)}), so they may still hold the subject; "
                "repair or remove them and request the erasure again."
            )
        return text + self.coverage.failure(self.searched)


def not_searched_files(coverage: KeyCoverage) -> list[FileNotSearched]:
    """The files under keys not searched, as receipts name them."""
    return [
        FileNotSearched(path=item.path, key_id=item.key.key_id, fingerprint=item.key.fingerprint)
        for item in coverage.not_searched
    ]


def _names(names: Iterable[str]) -> str:
    return ", ".join(sorted(set(names))) or "(none)"


def rewrite_file(
    storage: Storage, path: str, pseudonyms: frozenset[str], mode: Mode, requested_at: datetime
) -> RewriteResult:
    """Erase the subject's rows from the file at ``path``."""
    stored = read_file(storage, path)
    if stored is None:
        return RewriteResult(path, 0, deleted=False)
    table = stored.table
    mask = subject_row_mask(table, pseudonyms, requested_at)
    key_ids = frozenset(pc.unique(table.column("key_id").filter(mask)).drop_null().to_pylist())
    keys = frozenset(key for key in stored.keys if key.key_id in key_ids)
    erased, affected = erase_rows(table, pseudonyms, mode, requested_at)
    if affected == 0:
        return RewriteResult(path, 0, deleted=False)
    if erased.num_rows == 0:
        storage.delete(path)
        return RewriteResult(path, affected, deleted=True, keys=keys)
    storage.publish(path, encode(erased, stored.keys))
    return RewriteResult(path, affected, deleted=False, keys=keys)


def rewrite_subject_files(
    storage: Storage,
    pseudonyms: frozenset[str],
    mode: Mode,
    requested_at: datetime,
    modified_since: datetime | None = None,
    *,
    read: Survey | None = None,
) -> tuple[list[RewriteResult], Search]:
    """Find the files that may hold the subject (modified since ``modified_since``) and rewrite each.

    The files are found in the survey ``read`` if given (taken by the caller, maybe for several passes),
    else in a new survey of the store.
    """
    found = (read or survey(storage)).search(pseudonyms, modified_since)
    results = [rewrite_file(storage, path, pseudonyms, mode, requested_at) for path in found.candidates]
    changed = [result for result in results if result.rows_affected]
    manifest.record(
        storage,
        written=[result.path for result in changed if not result.deleted],
        deleted=[result.path for result in changed if result.deleted],
    )
    return results, found


def searched_keys(keys: Iterable[KeyRef], results: list[RewriteResult]) -> frozenset[KeyRef]:
    """The keys a subject was searched under: ``keys``, those its pseudonyms were computed under.

    A pseudonym given as such has no known key (``keys`` is empty): it counts as
    searched under the keys of the rows it was found in, and under no other key.
    """
    return frozenset(keys) or frozenset().union(*(result.keys for result in results))


def count_subject_rows(
    storage: Storage, path: str, pseudonyms: frozenset[str], requested_at: datetime
) -> int:
    """Decode the subject columns of the file at ``path``: the subject's rows up to ``requested_at``."""
    with storage.open_input(path) as handle:
        table = pq.read_table(handle, columns=[*SUBJECT_COLUMNS, "start_time"])
    return int(pc.sum(pc.cast(subject_row_mask(table, pseudonyms, requested_at), "int64")).as_py() or 0)


def verify_erasure(
    storage: Storage,
    pseudonyms: frozenset[str],
    searched: frozenset[KeyRef],
    requested_at: datetime,
    touched: Iterable[str],
    *,
    read: Survey | None = None,
) -> Verification:
    """Check the whole store for the subject's rows and for files under keys the erasure could not search.

    ``read`` is a survey taken after the erasure's last pass (its files deleted since left out);
    without it the store is surveyed now.
    """
    found = (read or survey(storage)).search(pseudonyms)
    present = set(found.keys)
    checked = sorted({*found.candidates, *(path for path in touched if path in present)})
    remaining = sum(count_subject_rows(storage, path, pseudonyms, requested_at) for path in checked)
    return Verification(
        len(present) + len(found.unreadable),
        len(checked),
        remaining,
        searched,
        key_coverage(found.keys, searched),
        tuple(found.unreadable),
    )
