"""Pseudonymised rows, built a chunk at a time straight into Arrow columns.

Contract: :func:`build_rows` turns a sequence of decoded CDRs into a table
with the exact :data:`~pipeline.store.schema.CDR_SCHEMA`, one row per CDR, in
order. It keeps only what the data dictionary allows (pseudonyms, coarse
attributes, service short codes); the raw party strings are never stored.
Extensions and agents are pseudonymised within the record's tenant; only the
callee of an outbound call can be a service short code. Each distinct
(party string, tenant, service) of a column is resolved once: the strings
are dictionary-encoded by Arrow, and each row's value is taken from the
distinct ones, so no Python work is done per row beyond reading the fields.

When a chunk cannot be built, :func:`unstorable_rows` names the rows to blame,
so that those records, and only those, are dead-lettered.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.keys.pseudonym import PartyPseudonymizer
from pipeline.numbers.msisdn import can_reach_service
from pipeline.record import TIME_FIELDS, CanonicalCdr
from pipeline.store.schema import CDR_SCHEMA, TIMESTAMP

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
    tenants = _tenants(_Codes.of(values["source"]), parties)
    directions = _Codes.of(values["direction"])
    for role in ("caller", "callee"):
        raws = _Codes.of(list(map(attrgetter(role), cdrs)))
        service = _per_row(directions, functools.partial(can_reach_service, role))
        columns = _resolve(raws, tenants, service, parties.columns)
        for field in _PARTY_FIELDS:
            values[f"{role}_{field}"] = _expand(columns, attrgetter(field))
    never = pa.repeat(pa.scalar(False), len(cdrs))
    connected = _Codes.of(list(map(attrgetter("connected"), cdrs)))
    values["connected_pseudonym"] = _expand(_resolve(connected, tenants, never, _pseudonym(parties)), _itself)
    agents = _Codes.of(list(map(attrgetter("agent"), cdrs)))
    values["agent_pseudonym"] = _expand(_resolve(agents, tenants, never, _agent(parties)), _itself)
    values["key_id"] = [parties.key_id] * len(cdrs)
    arrays = [_array(values[field.name], field.type) for field in CDR_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=CDR_SCHEMA)


@dataclass(frozen=True, slots=True)
class _Codes:
    """A column of strings as each row's index among the column's distinct values (null stays null)."""

    indices: pa.Array
    distinct: list[str]

    @classmethod
    def of(cls, strings: list[str | None]) -> _Codes:
        encoded = pa.array(strings, pa.string()).dictionary_encode()
        return cls(pc.cast(encoded.indices, pa.int64()), encoded.dictionary.to_pylist())


def _tenants(sources: _Codes, parties: PartyPseudonymizer) -> _Codes:
    """Each row's tenant, looked up once per distinct source."""
    tenant_names = [parties.tenant_of(source) for source in sources.distinct]
    distinct = sorted(set(tenant_names))
    position = {name: index for index, name in enumerate(distinct)}
    tenant_of_source = pa.array([position[name] for name in tenant_names], pa.int64())
    return _Codes(tenant_of_source.take(sources.indices), distinct)


def _per_row(codes: _Codes, rule: Callable[[str], bool]) -> pa.Array:
    """``rule`` of each row's value, decided once per distinct value."""
    return pa.array([rule(value) for value in codes.distinct], pa.bool_()).take(codes.indices)


@dataclass(frozen=True, slots=True)
class _Resolved:
    """The value of each distinct (party, tenant, service) of a column, and which one each row has."""

    distinct: list[Any]
    rows: pa.Array


def _resolve(
    raws: _Codes, tenants: _Codes, service: pa.Array, lookup: Callable[[str, str, bool], Any]
) -> _Resolved:
    """``lookup`` called once per distinct (raw string, tenant, service) of the rows.

    The three are combined as one integer per row (Arrow arithmetic, no
    strings joined, so no separator can be forged), and the distinct
    combinations are found by dictionary-encoding those integers.
    """
    combined = pc.add(
        pc.multiply(pc.add(pc.multiply(raws.indices, len(tenants.distinct)), tenants.indices), 2),
        pc.cast(service, pa.int64()),
    )
    encoded = combined.dictionary_encode()
    distinct = []
    for key in encoded.dictionary.to_pylist():
        party_and_tenant, service_flag = divmod(key, 2)
        raw, tenant = divmod(party_and_tenant, len(tenants.distinct))
        distinct.append(lookup(raws.distinct[raw], tenants.distinct[tenant], bool(service_flag)))
    return _Resolved(distinct, encoded.indices)


def _expand(resolved: _Resolved, field: Callable[[Any], str | None]) -> pa.Array:
    """One string per row: ``field`` of each distinct resolution, taken by the rows' indices."""
    return pa.array([field(value) for value in resolved.distinct], pa.string()).take(resolved.rows)


def _pseudonym(parties: PartyPseudonymizer) -> Callable[[str, str, bool], str | None]:
    def pseudonym(raw: str, tenant: str, service: bool) -> str | None:
        return parties.columns(raw, tenant, service).pseudonym if raw else None

    return pseudonym


def _agent(parties: PartyPseudonymizer) -> Callable[[str, str, bool], str | None]:
    def agent(agent_id: str, tenant: str, service: bool) -> str | None:
        del service  # an agent id is never a number
        return parties.agent(agent_id, tenant) if agent_id.strip() else None  # a blank id names nobody

    return agent


def _itself(value: Any) -> Any:
    return value


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


def _array(values: list[Any] | pa.Array, arrow_type: pa.DataType) -> pa.Array:
    if isinstance(values, pa.Array):
        return values.dictionary_encode() if pa.types.is_dictionary(arrow_type) else values
    if pa.types.is_dictionary(arrow_type):
        return pa.array(values, type=arrow_type.value_type).dictionary_encode()
    return pa.array(values, type=arrow_type)
