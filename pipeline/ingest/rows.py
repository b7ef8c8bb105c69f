"""Pseudonymised rows, built a chunk at a time straight into Arrow columns.

Contract: :func:`build_rows` turns a sequence of decoded CDRs into a table
with the exact :data:`~pipeline.sink.schema.CDR_SCHEMA`, one row per CDR, in
order. It keeps only what the data dictionary allows (pseudonyms, coarse
attributes, service short codes); the raw party strings are never stored.
Extensions and agents are pseudonymised within the record's tenant; only the
callee of an outbound call can be a service short code. Each distinct party
(string, tenant, role) of the chunk is resolved once.

When a chunk cannot be built, :func:`unstorable_rows` names the rows to blame,
so that those records, and only those, are dead-lettered.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter
from typing import Any

import pyarrow as pa

from pipeline.msisdn import can_reach_service
from pipeline.pseudonym import PartyColumns, PartyPseudonymizer
from pipeline.record import TIME_FIELDS, CanonicalCdr
from pipeline.sink.schema import CDR_SCHEMA, TIMESTAMP

_PARTY_FIELDS = ("pseudonym", "number_type", "country", "line_type", "shortcode")
_PLAIN_COLUMNS = (
    "cdr_id", "source", "duration_s", "billsec_s", "direction", "disposition", "queue", "hangup_cause",
    "cost", "currency",
)  # fmt: skip


def build_rows(cdrs: Sequence[CanonicalCdr], parties: PartyPseudonymizer) -> pa.Table:
    """The store's rows of ``cdrs``."""
    values: dict[str, Any] = {name: list(map(attrgetter(name), cdrs)) for name in _PLAIN_COLUMNS}
    for name in TIME_FIELDS:
        values[name] = pa.array(list(map(attrgetter(name), cdrs)), TIMESTAMP)
    columns = parties.columns
    tenants = [parties.tenant_of(cdr.source) for cdr in cdrs]
    # a party is (raw string, tenant, can it be a service number); only an outbound callee can
    callers = [(cdr.caller, tenant, False) for cdr, tenant in zip(cdrs, tenants, strict=True)]
    callees = [
        (cdr.callee, tenant, can_reach_service("callee", cdr.direction))
        for cdr, tenant in zip(cdrs, tenants, strict=True)
    ]
    resolved = {party: columns(*party) for party in {*callers, *callees}}
    _add_party(values, "caller", [resolved[party] for party in callers])
    _add_party(values, "callee", [resolved[party] for party in callees])
    values["connected_pseudonym"] = [
        columns(cdr.connected, tenant, False).pseudonym if cdr.connected else None
        for cdr, tenant in zip(cdrs, tenants, strict=True)
    ]
    agent_keys = [(cdr.agent, tenant) for cdr, tenant in zip(cdrs, tenants, strict=True)]
    agents = {key: parties.agent(*key) for key in set(agent_keys) if key[0]}
    values["agent_pseudonym"] = [agents.get(key) for key in agent_keys]
    values["key_id"] = [parties.key_id] * len(cdrs)
    arrays = [_array(values[field.name], field.type) for field in CDR_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=CDR_SCHEMA)


def unstorable_rows(cdrs: Sequence[CanonicalCdr], parties: PartyPseudonymizer) -> list[int]:
    """The positions of the CDRs that cannot become rows (called after :func:`build_rows` failed).

    Each row is built on its own; if no single row is to blame, every row is.
    """
    bad = []
    for index in range(len(cdrs)):
        try:
            build_rows([cdrs[index]], parties)
        except Exception:  # whatever fails here is the row's fault
            bad.append(index)
    return bad or list(range(len(cdrs)))


def _add_party(values: dict[str, Any], role: str, parties: list[PartyColumns]) -> None:
    for field in _PARTY_FIELDS:
        values[f"{role}_{field}"] = list(map(attrgetter(field), parties))


def _array(values: list[Any] | pa.Array, arrow_type: pa.DataType) -> pa.Array:
    if isinstance(values, pa.Array):
        return values
    if pa.types.is_dictionary(arrow_type):
        return pa.array(values, type=arrow_type.value_type).dictionary_encode()
    return pa.array(values, type=arrow_type)
