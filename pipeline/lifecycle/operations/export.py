"""Subject access and portability: all of one subject's rows, as JSON lines, CSV or Parquet.

Contract: :func:`export_subject` writes exactly the rows in which any of the
subject's pseudonyms (under every key id) is the caller, callee, connected
party or agent, from every partition, with their ``call_date``; nobody else's
rows. Files outside ``call_date=`` directories are never read (the caller
reports them with :func:`~pipeline.lifecycle.operations.finder.skip_strays`). Rows of the
quarantine (a restriction or objection took them out of use) are exported
too, with ``restricted`` true; the dataset's rows have it false. If a data
file cannot be read, it raises :class:`UnreadableFilesError` naming it rather
than return an export that may be incomplete.
:func:`minimise` turns the rows into the copy a data subject receives (GDPR
art. 15(4): the copy must not adversely affect the rights of others): the
subject's own side and the call facts stay; every other party's pseudonym
becomes a token ``party-1``, ``party-2``, ... numbered in order of first
appearance in this export only (stable within it, unlinkable across exports);
the other parties' country and line type and every agent pseudonym but the
subject's own are left out. The full rows are for the controller's internal
use only.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipeline.errors import RequestRefusedError
from pipeline.lifecycle.operations.finder import search
from pipeline.lifecycle.rows import subject_row_mask
from pipeline.lifecycle.subject import Subject
from pipeline.store.naming import QUARANTINE, partition_date
from pipeline.store.storage import Storage

ExportFormat = Literal["jsonl", "csv", "parquet"]
_END_OF_TIME = datetime.max.replace(tzinfo=UTC)


class UnreadableFilesError(RequestRefusedError):
    """Data files that cannot be read, so an export would be incomplete."""


def subject_rows(
    storage: Storage, subject: Subject, progress: Callable[[int], None] | None = None
) -> pa.Table | None:
    """The subject's rows across the store with a ``call_date`` column, or None if there are none."""
    tables = []
    found = search(storage, subject.pseudonyms, progress)
    if found.unreadable:
        raise UnreadableFilesError(
            f"cannot read {len(found.unreadable)} data files ({', '.join(found.unreadable)}), so the export "
            "would be incomplete: restore them from backup or remove them"
        )
    for path in found.candidates:
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
    return pa.concat_tables(tables).sort_by([("start_time", "ascending")]) if tables else None


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


def write_export(table: pa.Table, out: Path, export_format: ExportFormat) -> None:
    """Write the rows to ``out`` in ``export_format``."""
    if export_format == "parquet":
        pq.write_table(table, out, compression="zstd")
    elif export_format == "csv":
        pacsv.write_csv(table, out)
    else:
        with out.open("w", encoding="utf-8") as handle:
            for row in table.to_pylist():
                handle.write(json.dumps(row, default=str, sort_keys=True) + "\n")
