"""Turn canonical CDRs into pseudonymised rows, buffered column by column.

Contract: :meth:`ColumnBuffer.append` stores only what the data dictionary
allows (pseudonyms, coarse attributes, service short codes); the raw party
strings of the record are never kept. Extensions and agents are pseudonymised
within the record's tenant; only the callee of an outbound call can be a
service short code. :meth:`ColumnBuffer.to_table` builds an
Arrow table with the exact :data:`~pipeline.sink.schema.CDR_SCHEMA`.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from pipeline.msisdn import can_reach_service
from pipeline.pseudonym import PartyColumns, PartyPseudonymizer
from pipeline.record import CanonicalCdr
from pipeline.sink.schema import CDR_SCHEMA


class ColumnBuffer:
    """Rows of one output file, held as Python lists per column."""

    def __init__(self) -> None:
        self._columns: dict[str, list[Any]] = {name: [] for name in CDR_SCHEMA.names}

    def __len__(self) -> int:
        return len(self._columns["cdr_id"])

    def append(self, cdr: CanonicalCdr, parties: PartyPseudonymizer) -> None:
        """Append the pseudonymised row of ``cdr``."""
        columns = self._columns
        columns["cdr_id"].append(cdr.cdr_id)
        columns["source"].append(cdr.source)
        columns["start_time"].append(cdr.start_time)
        columns["answer_time"].append(cdr.answer_time)
        columns["end_time"].append(cdr.end_time)
        columns["duration_s"].append(cdr.duration_s)
        columns["billsec_s"].append(cdr.billsec_s)
        columns["direction"].append(cdr.direction)
        columns["disposition"].append(cdr.disposition)
        tenant = parties.tenant_of(cdr.source)
        self._append_party("caller", parties.columns(cdr.caller, tenant, False))
        callee_service = can_reach_service("callee", cdr.direction)
        self._append_party("callee", parties.columns(cdr.callee, tenant, callee_service))
        connected = parties.columns(cdr.connected, tenant, False) if cdr.connected else None
        columns["connected_pseudonym"].append(connected.pseudonym if connected else None)
        columns["agent_pseudonym"].append(parties.agent(cdr.agent, tenant) if cdr.agent else None)
        columns["queue"].append(cdr.queue)
        columns["hangup_cause"].append(cdr.hangup_cause)
        columns["cost"].append(cdr.cost)
        columns["currency"].append(cdr.currency)
        columns["key_id"].append(parties.key_id)

    def _append_party(self, role: str, party: PartyColumns) -> None:
        columns = self._columns
        columns[f"{role}_pseudonym"].append(party.pseudonym)
        columns[f"{role}_number_type"].append(party.number_type)
        columns[f"{role}_country"].append(party.country)
        columns[f"{role}_line_type"].append(party.line_type)
        columns[f"{role}_shortcode"].append(party.shortcode)

    def to_table(self) -> pa.Table:
        """The buffered rows as an Arrow table with the store's schema."""
        arrays = [_array(self._columns[field.name], field.type) for field in CDR_SCHEMA]
        return pa.Table.from_arrays(arrays, schema=CDR_SCHEMA)


def _array(values: list[Any], arrow_type: pa.DataType) -> pa.Array:
    if pa.types.is_dictionary(arrow_type):
        return pa.array(values, type=arrow_type.value_type).dictionary_encode()
    return pa.array(values, type=arrow_type)
