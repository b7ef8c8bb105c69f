"""Remove or redact a subject's rows in an Arrow table (shared by the sink and the rewriter).

Contract: :func:`erase_rows` affects exactly the rows in which any of the
subject's pseudonyms appears in a subject column (caller, callee, connected
party or agent, :data:`SUBJECT_COLUMNS`) and whose ``start_time`` is at or
before ``requested_at``. ``delete`` drops those rows; ``redact`` keeps them
but removes the subject's side: its pseudonym becomes null, a party's number
type ``REDACTED`` and its country, line type and short code null. Other rows
are returned unchanged. Pseudonym domains are separate (an agent id and a
number never share a pseudonym), so one set of pseudonyms serves every column.

:func:`call_party_masks` selects what a rectification redacts in the rows of
one call: the party (where not redacted yet), and the connected party where
it holds the same pseudonym as that party, i.e. the same person answered.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.lifecycle.requests.erasure_request import Mode
from pipeline.store.schema import CDR_SCHEMA

REDACTED = "REDACTED"
Party = Literal["caller", "callee"]
"""A party a rectification can redact."""
_PARTY_COLUMNS = {
    "caller": (
        "caller_pseudonym",
        "caller_number_type",
        "caller_country",
        "caller_line_type",
        "caller_shortcode",
    ),
    "callee": (
        "callee_pseudonym",
        "callee_number_type",
        "callee_country",
        "callee_line_type",
        "callee_shortcode",
    ),
    "connected": ("connected_pseudonym",),
    "agent": ("agent_pseudonym",),
}
SUBJECT_COLUMNS = tuple(columns[0] for columns in _PARTY_COLUMNS.values())
"""The columns that identify a data subject (every pseudonym column of the schema)."""


def _party_masks(table: pa.Table, pseudonyms: pa.Array, requested_at: datetime) -> dict[str, pa.Array]:
    in_time = pc.less_equal(
        table.column("start_time"), pa.scalar(requested_at, type=CDR_SCHEMA.field("start_time").type)
    )
    return {
        role: pc.fill_null(pc.and_(pc.is_in(table.column(columns[0]), value_set=pseudonyms), in_time), False)
        for role, columns in _PARTY_COLUMNS.items()
    }


def subject_row_mask(table: pa.Table, pseudonyms: Iterable[str], requested_at: datetime) -> pa.Array:
    """True for the rows that involve the subject up to ``requested_at``."""
    return _any(_party_masks(table, pa.array(sorted(pseudonyms), pa.string()), requested_at))


def _any(masks: dict[str, pa.Array]) -> pa.Array:
    combined, *rest = masks.values()
    for mask in rest:
        combined = pc.or_(combined, mask)
    return combined


def erase_rows(
    table: pa.Table, pseudonyms: Iterable[str], mode: Mode, requested_at: datetime
) -> tuple[pa.Table, int]:
    """The table without (or with redacted) subject rows, and how many rows were affected."""
    value_set = pa.array(sorted(pseudonyms), pa.string())
    masks = _party_masks(table, value_set, requested_at)
    any_party = _any(masks)
    affected = pc.sum(pc.cast(any_party, pa.int64())).as_py() or 0
    if affected == 0:
        return table, 0
    if mode == "delete":
        return table.filter(pc.invert(any_party)), affected
    return redact_parties(table, masks), affected


def redact_parties(table: pa.Table, masks: dict[str, pa.Array]) -> pa.Table:
    """``table`` with the party of each role redacted in the rows its mask selects.

    ``masks`` maps ``caller``, ``callee`` or ``connected`` to a boolean mask;
    a role left out is not touched.
    """
    for role, mask in masks.items():
        for name in _PARTY_COLUMNS[role]:
            field = CDR_SCHEMA.field(name)
            column = table.column(name).cast(
                field.type.value_type if pa.types.is_dictionary(field.type) else field.type
            )
            replacement = pa.scalar(REDACTED if name.endswith("_number_type") else None, column.type)
            redacted = pc.if_else(mask, replacement, column)
            if pa.types.is_dictionary(field.type):
                redacted = redacted.dictionary_encode()
            table = table.set_column(table.schema.get_field_index(name), field, redacted)
    return table


def call_mask(table: pa.Table, cdr_id: str, source: str | None) -> pa.Array:
    """True for the rows of call ``cdr_id`` (of ``source``, if given)."""
    mask = pc.equal(table.column("cdr_id"), pa.scalar(cdr_id, pa.string()))
    if source is not None:
        mask = pc.and_(
            mask, pc.equal(table.column("source").cast(pa.string()), pa.scalar(source, pa.string()))
        )
    return pc.fill_null(mask, False)


def call_party_masks(
    table: pa.Table,
    cdr_id: str,
    source: str | None,
    party: Party,
    pseudonyms: Iterable[str] | None = None,
) -> dict[str, pa.Array]:
    """The masks of :func:`redact_parties` that remove ``party`` from call ``cdr_id`` (of ``source``).

    ``party`` where it is not redacted yet (and, with ``pseudonyms``, where it is one of
    them), and ``connected`` in the same rows where it is the same pseudonym as ``party``.
    A role with nothing to redact is left out, so the keys say which parties change.
    """
    rows = call_mask(table, cdr_id, source)
    types = table.column(f"{party}_number_type").cast(pa.string())
    rows = pc.and_(rows, pc.fill_null(pc.not_equal(types, pa.scalar(REDACTED)), True))
    own = table.column(f"{party}_pseudonym")
    if pseudonyms is not None:
        rows = pc.and_(
            rows, pc.fill_null(pc.is_in(own, value_set=pa.array(sorted(pseudonyms), pa.string())), False)
        )
    same = pc.fill_null(pc.and_(rows, pc.equal(table.column("connected_pseudonym"), own)), False)
    masks = {party: rows, "connected": same}
    return {role: mask for role, mask in masks.items() if pc.any(mask).as_py()}
