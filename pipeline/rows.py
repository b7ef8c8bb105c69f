"""Pseudonymised rows, built a chunk at a time straight into Arrow columns.

Contract: :func:`build_rows` turns a sequence of decoded CDRs (anything with
the fields of :class:`~pipeline.record.CanonicalCdr`) into a table with the
exact :data:`~pipeline.sink.schema.CDR_SCHEMA`, one row per CDR, in order.
It keeps only what the data dictionary allows (pseudonyms, coarse attributes,
service short codes); the raw party strings are never stored. Extensions and
agents are pseudonymised within the record's tenant; only the callee of an
outbound call can be a service short code. Each distinct
party string of the chunk is resolved once. Times come either from the CDRs'
aware ``datetime`` values or, for rows decoded with their times as text,
from UTC arrays the caller parsed already (``times``).

When a chunk cannot be built, :func:`unstorable_rows` names the rows to blame,
so that those records, and only those, are dead-lettered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from operator import attrgetter
from typing import Any, Protocol

import pyarrow as pa

from pipeline.msisdn import can_reach_service
from pipeline.pseudonym import PartyColumns, PartyPseudonymizer
from pipeline.record import TIME_FIELDS
from pipeline.sink.schema import CDR_SCHEMA, TIMESTAMP

_PARTY_FIELDS = ("pseudonym", "number_type", "country", "line_type", "shortcode")
_PLAIN_COLUMNS = (
    "cdr_id", "source", "duration_s", "billsec_s", "direction", "disposition", "queue", "hangup_cause",
    "cost", "currency",
)  # fmt: skip


class CdrFields(Protocol):
    """The fields rows are built from (a :class:`~pipeline.record.CanonicalCdr` has them)."""

    @property
    def cdr_id(self) -> str: ...
    @property
    def caller(self) -> str: ...
    @property
    def callee(self) -> str: ...
    @property
    def connected(self) -> str | None: ...
    @property
    def agent(self) -> str | None: ...
    @property
    def source(self) -> str: ...
    @property
    def direction(self) -> str: ...


def build_rows(
    cdrs: Sequence[CdrFields],
    parties: PartyPseudonymizer,
    times: Mapping[str, pa.Array] | None = None,
) -> pa.Table:
    """The store's rows of ``cdrs`` (times from ``times`` where given, else from the CDRs)."""
    values: dict[str, Any] = {name: list(map(attrgetter(name), cdrs)) for name in _PLAIN_COLUMNS}
    for name in TIME_FIELDS:
        values[name] = times[name] if times is not None else _timestamps(list(map(attrgetter(name), cdrs)))
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


def unstorable_rows(
    cdrs: Sequence[CdrFields], parties: PartyPseudonymizer, times: Mapping[str, pa.Array] | None = None
) -> list[int]:
    """The positions of the CDRs that cannot become rows (called after :func:`build_rows` failed).

    Each row is built on its own; if no single row is to blame, every row is.
    """
    bad = []
    for index in range(len(cdrs)):
        row_times = {name: array.slice(index, 1) for name, array in times.items()} if times else None
        try:
            build_rows([cdrs[index]], parties, row_times)
        except Exception:  # whatever fails here is the row's fault
            bad.append(index)
    return bad or list(range(len(cdrs)))


def _add_party(values: dict[str, Any], role: str, parties: list[PartyColumns]) -> None:
    for field in _PARTY_FIELDS:
        values[f"{role}_{field}"] = list(map(attrgetter(field), parties))


def _timestamps(moments: list[datetime | None]) -> pa.Array:
    return pa.array(moments, TIMESTAMP)


def _array(values: list[Any] | pa.Array, arrow_type: pa.DataType) -> pa.Array:
    if isinstance(values, pa.Array):
        return values
    if pa.types.is_dictionary(arrow_type):
        return pa.array(values, type=arrow_type.value_type).dictionary_encode()
    return pa.array(values, type=arrow_type)
