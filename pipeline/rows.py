"""Turn canonical CDRs into pseudonymised rows, buffered column by column.

Contract: :meth:`ColumnBuffer.append` stores only what the data dictionary
allows (pseudonyms, coarse attributes, service short codes); the raw party
strings of the record are never kept. :meth:`ColumnBuffer.to_table` builds an
Arrow table with the exact :data:`~pipeline.sink.schema.CDR_SCHEMA`; when it
cannot, :meth:`ColumnBuffer.unstorable_offsets` names the source offsets of
the rows to blame, so that those records, and only those, are dead-lettered.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from pipeline.pseudonym import PartyColumns, PartyPseudonymizer
from pipeline.record import CanonicalCdr
from pipeline.sink.schema import CDR_SCHEMA


class ColumnBuffer:
    """Rows of one output file, held as Python lists per column, with each row's source offset."""

    def __init__(self) -> None:
        self._columns: dict[str, list[Any]] = {name: [] for name in CDR_SCHEMA.names}
        self._offsets: list[int] = []

    def __len__(self) -> int:
        return len(self._offsets)

    def append(self, cdr: CanonicalCdr, parties: PartyPseudonymizer, offset: int) -> None:
        """Append the pseudonymised row of ``cdr`` (consumed at ``offset``).

        All-or-nothing: every value is computed before any column grows, so a
        failure leaves the buffer as it was.
        """
        caller = parties.columns(cdr.caller)
        callee = parties.columns(cdr.callee)
        connected = parties.columns(cdr.connected).pseudonym if cdr.connected else None
        agent = parties.agent(cdr.agent) if cdr.agent else None
        row = (  # in the order of CDR_SCHEMA's columns
            cdr.cdr_id,
            cdr.source,
            cdr.start_time,
            cdr.answer_time,
            cdr.end_time,
            cdr.duration_s,
            cdr.billsec_s,
            cdr.direction,
            cdr.disposition,
            *_party_values(caller),
            *_party_values(callee),
            connected,
            agent,
            cdr.queue,
            cdr.hangup_cause,
            cdr.cost,
            cdr.currency,
            parties.key_id,
        )
        for values, value in zip(self._columns.values(), row, strict=True):
            values.append(value)
        self._offsets.append(offset)

    def to_table(self) -> pa.Table:
        """The buffered rows as an Arrow table with the store's schema."""
        arrays = [_array(self._columns[field.name], field.type) for field in CDR_SCHEMA]
        return pa.Table.from_arrays(arrays, schema=CDR_SCHEMA)

    def unstorable_offsets(self) -> list[int]:
        """The source offsets of the rows that cannot be converted to the store's schema.

        Called only after :meth:`to_table` failed. Each column is converted on
        its own, and a failing column value by value; if no single row is to
        blame, every row is (the failure cannot be pinned on fewer records).
        """
        bad: set[int] = set()
        for field in CDR_SCHEMA:
            values = self._columns[field.name]
            if _converts(values, field.type):
                continue
            bad.update(index for index, value in enumerate(values) if not _converts([value], field.type))
        rows = sorted(bad) if bad else range(len(self._offsets))
        return [self._offsets[index] for index in rows]


def _party_values(party: PartyColumns) -> tuple[str | None, str, str | None, str | None, str | None]:
    """A party's values in the order of the schema's party columns."""
    return party.pseudonym, party.number_type, party.country, party.line_type, party.shortcode


def _converts(values: list[Any], arrow_type: pa.DataType) -> bool:
    try:
        _array(values, arrow_type)
    except (pa.ArrowException, ValueError, TypeError, OverflowError, UnicodeError):
        return False
    return True


def _array(values: list[Any], arrow_type: pa.DataType) -> pa.Array:
    if pa.types.is_dictionary(arrow_type):
        return pa.array(values, type=arrow_type.value_type).dictionary_encode()
    return pa.array(values, type=arrow_type)
