"""Subject access and portability: all of one subject's rows, as JSON lines, CSV or Parquet.

Contract: :func:`export_subject` writes exactly the rows in which any of the
subject's pseudonyms (under every key id) is the caller, callee, connected
party or agent, from every partition, with their ``call_date``; nobody else's
rows. Files outside ``call_date=`` directories are never read (the caller
reports them with :func:`~pipeline.lifecycle.operations.finder.skip_strays`). Rows of the
quarantine (a restriction or objection took them out of use) are exported
too, with ``restricted`` true; the dataset's rows have it false. If a data
file cannot be read, it raises :class:`UnreadableFilesError` naming it rather
than return an export that may be incomplete. The rows come with the key
coverage of the store's files (:mod:`~pipeline.lifecycle.operations.key_coverage`)
for a subject computed from a keyring: rows under a key (id and fingerprint)
the subject's pseudonyms were not computed under cannot be found, so the
export names those files (:attr:`SubjectRows.complete` is False) instead of
passing for complete. A subject given as a pseudonym has no known key and gets
no coverage: it matches only rows of the key it was computed with.
:func:`minimise` turns the rows into the copy a data subject receives (GDPR
art. 15(4): the copy must not adversely affect the rights of others): the
subject's own side and the call facts stay; every other party's pseudonym
becomes a token ``party-1``, ``party-2``, ... numbered in order of first
appearance in this export only (stable within it, unlinkable across exports);
the other parties' country and line type and every agent pseudonym but the
subject's own are left out. The full rows are for the controller's internal
use only.
:func:`write_export` never writes through a symlink and never leaves a
partial file: the export is written to an owner-only (``0600``) temporary file
in the target's directory, fsynced, then linked to the target, which must not
exist (:class:`ExportTargetError` otherwise), or with ``force`` renamed over
it atomically (a reader sees the old file or the new one, never a mix).
"""

from __future__ import annotations

import io
import json
import os
import secrets
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipeline.errors import RequestRefusedError
from pipeline.lifecycle.operations.finder import search
from pipeline.lifecycle.operations.key_coverage import KeyCoverage, key_coverage
from pipeline.lifecycle.rows import subject_row_mask
from pipeline.lifecycle.subject import Subject
from pipeline.observability.progress import NO_PROGRESS, Progress
from pipeline.store.naming import QUARANTINE, partition_date
from pipeline.store.storage import Storage

ExportFormat = Literal["jsonl", "csv", "parquet"]
_END_OF_TIME = datetime.max.replace(tzinfo=UTC)


class UnreadableFilesError(RequestRefusedError):
    """Data files that cannot be read, so an export would be incomplete."""


@dataclass(frozen=True, slots=True)
class SubjectRows:
    """The subject's rows (None when none were found) and what the search could cover."""

    table: pa.Table | None
    coverage: KeyCoverage | None
    """The keys of the store's files against the subject's keys; None for a given pseudonym."""

    @property
    def complete(self) -> bool:
        """False when some file holds rows under a key the subject was not searched under."""
        return self.coverage is None or not self.coverage.not_searched

    def incomplete(self, *, fingerprints: bool) -> str:
        """The ``INCOMPLETE:`` sentence naming the files not searched ("" when complete).

        Without ``fingerprints`` the keys are named by id only: the register holds
        nothing shaped like a pseudonym, and a fingerprint is 32 hex characters too.
        """
        if self.coverage is None or not self.coverage.not_searched:
            return ""
        files = "; ".join(
            f"{item.path} under key {item.key.describe() if fingerprints else item.key.key_id}"
            for item in self.coverage.not_searched
        )
        return (
            f"INCOMPLETE: {len(self.coverage.not_searched)} data files hold rows under keys this keyring "
            f"could not search ({files}): any rows of the subject there are not in the export; load the "
            "keyring that holds those keys and export again"
        )


def subject_rows(storage: Storage, subject: Subject, progress: Progress = NO_PROGRESS) -> SubjectRows:
    """The subject's rows across the store with a ``call_date`` column, and the key coverage."""
    tables = []
    found = search(storage, subject.pseudonyms, progress)
    if found.unreadable:
        raise UnreadableFilesError(
            f"cannot read {len(found.unreadable)} data files ({', '.join(found.unreadable)}), so the export "
            "would be incomplete: restore them from backup or remove them"
        )
    progress.start(len(found.candidates), "reading the subject's files")
    for path in found.candidates:
        progress.advance()
        data = storage.read(path)
        if data is None:
            continue
        table = pq.read_table(io.BytesIO(data))
        table = table.filter(subject_row_mask(table, subject.pseudonyms, _END_OF_TIME))
        if table.num_rows:
            call_date = partition_date(path)
            decoded = table.cast(pa.schema([_plain(field) for field in table.schema]))
            restricted = path.startswith(QUARANTINE + "/")
            tables.append(
                decoded.append_column(
                    "call_date", pa.array([call_date] * table.num_rows, pa.date32())
                ).append_column("restricted", pa.array([restricted] * table.num_rows, pa.bool_()))
            )
    rows = pa.concat_tables(tables).sort_by([("start_time", "ascending")]) if tables else None
    coverage = key_coverage(found.keys, subject.keys) if subject.keys else None
    return SubjectRows(rows, coverage)


def _plain(field: pa.Field) -> pa.Field:
    return field.with_type(field.type.value_type) if pa.types.is_dictionary(field.type) else field


OTHER_PARTY_DETAILS = ("_country", "_line_type")


def minimise(table: pa.Table, subject: Subject) -> pa.Table:
    """The subject's copy of ``table`` (rows from :func:`subject_rows`): see the module contract."""
    tokens: dict[str, str] = {}

    def token(pseudonym: str) -> str:
        return tokens.setdefault(pseudonym, f"party-{len(tokens) + 1}")

    rows = table.to_pylist()
    for row in rows:
        for role in ("caller", "callee", "connected"):
            pseudonym = row[f"{role}_pseudonym"]
            if pseudonym is None or pseudonym in subject.pseudonyms:
                continue
            row[f"{role}_pseudonym"] = token(pseudonym)
            for detail in OTHER_PARTY_DETAILS:
                if f"{role}{detail}" in row:
                    row[f"{role}{detail}"] = None
        if row["agent_pseudonym"] not in subject.pseudonyms:  # an agent's own export keeps theirs
            row["agent_pseudonym"] = None
    return pa.Table.from_pylist(rows, schema=table.schema)


class ExportTargetError(RequestRefusedError):
    """The export's target exists (without ``force``) or is a symlink: nothing was written."""


EXPORT_MODE = 0o600


def check_export_target(out: Path, force: bool, store_root: Path | None = None) -> None:
    """Refuse a target that is a symlink, or that exists when ``force`` is not given (one line).

    Also refused: a target whose directory does not exist, and one inside the local store at
    ``store_root``, where it would be read back as the store's data or kept with its records.
    """
    if not out.parent.is_dir():
        raise ExportTargetError(f"{out.parent} is not a directory: create it first")
    if store_root is not None and out.parent.resolve().is_relative_to(store_root.resolve()):
        raise ExportTargetError(f"{out} is inside the store {store_root}: write exports outside it")
    try:
        status = out.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(status.st_mode):
        raise ExportTargetError(f"{out} is a symbolic link: exports are never written through one")
    if not force:
        raise _exists(out)
    if not stat.S_ISREG(status.st_mode):
        raise ExportTargetError(f"{out} is not a regular file: exports only replace regular files")


def _exists(out: Path) -> ExportTargetError:
    return ExportTargetError(f"{out} exists: choose another file, or give --force to replace it")


def write_export(table: pa.Table, out: Path, export_format: ExportFormat, force: bool = False) -> None:
    """Write the rows to ``out`` in ``export_format``, owner-only and atomically (module contract)."""
    check_export_target(out, force)
    temp = out.with_name(f".{out.name}.{secrets.token_hex(6)}.tmp")
    descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, EXPORT_MODE)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(handle.fileno(), EXPORT_MODE)
            if export_format == "parquet":
                pq.write_table(table, handle, compression="zstd")
            elif export_format == "csv":
                pacsv.write_csv(table, handle)
            else:
                for row in table.to_pylist():
                    handle.write((json.dumps(row, default=str, sort_keys=True) + "\n").encode())
            handle.flush()
            os.fsync(handle.fileno())
        check_export_target(out, force)  # again: the target may have appeared while rows were written
        if force:
            os.replace(temp, out)  # replaces a symlink itself, never its target
        else:
            try:
                os.link(temp, out, follow_symlinks=False)
            except FileExistsError:
                raise _exists(out) from None
    finally:
        temp.unlink(missing_ok=True)
