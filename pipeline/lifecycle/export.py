"""Subject access and portability: all of one subject's rows, as JSON lines, CSV or Parquet.

Contract: :func:`subject_rows` returns exactly the rows in which any of the
subject's pseudonyms (under every key id) is the caller, callee or connected
party, from every partition, with their ``call_date``; nobody else's rows.
:func:`minimise` turns them into the copy a data subject receives (GDPR art.
15(4): the copy must not adversely affect the rights of others): the
subject's own side and the call facts stay; every other party's pseudonym
becomes a token ``party-1``, ``party-2``, ... numbered in order of first
appearance in this export only (stable within it, unlinkable across exports);
the other parties' country and line type and the agent pseudonym are left
out. The full rows are for the controller's internal use only.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipeline.lifecycle.finder import find_subject_files
from pipeline.lifecycle.rows import subject_row_mask
from pipeline.lifecycle.subject import Subject
from pipeline.sink.storage import Storage

ExportFormat = Literal["jsonl", "csv", "parquet"]
_END_OF_TIME = datetime.max.replace(tzinfo=UTC)


def subject_rows(
    storage: Storage, subject: Subject, progress: Callable[[int], None] | None = None
) -> pa.Table | None:
    """The subject's rows across the store with a ``call_date`` column, or None if there are none."""
    tables = []
    for path in find_subject_files(storage, subject.pseudonyms, progress):
        data = storage.read(path)
        if data is None:
            continue
        table = pq.read_table(io.BytesIO(data))
        table = table.filter(subject_row_mask(table, subject.pseudonyms, _END_OF_TIME))
        if table.num_rows:
            call_date = date.fromisoformat(path.split("/")[1].removeprefix("call_date="))
            decoded = table.cast(pa.schema([_plain(field) for field in table.schema]))
            tables.append(
                decoded.append_column("call_date", pa.array([call_date] * table.num_rows, pa.date32()))
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

    rows = table.drop_columns(["agent_pseudonym"]).to_pylist()
    for row in rows:
        for role in ("caller", "callee", "connected"):
            pseudonym = row[f"{role}_pseudonym"]
            if pseudonym is None or pseudonym in subject.pseudonyms:
                continue
            row[f"{role}_pseudonym"] = token(pseudonym)
            for detail in OTHER_PARTY_DETAILS:
                if f"{role}{detail}" in row:
                    row[f"{role}{detail}"] = None
    schema = table.schema.remove(table.schema.get_field_index("agent_pseudonym"))
    return pa.Table.from_pylist(rows, schema=schema)


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
