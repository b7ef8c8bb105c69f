"""Rows built a chunk at a time are the rows each record gets on its own, party by party."""

from __future__ import annotations

import random

import msgspec

from pipeline.ingest.rows import build_rows
from pipeline.keys.keyring import Key
from pipeline.keys.pseudonym import PartyPseudonymizer, Pseudonymizer
from pipeline.numbers.msisdn import NumberClassifier, can_reach_service
from pipeline.record import CanonicalCdr, Direction
from pipeline.store.schema import CDR_SCHEMA
from tests.support.text_fields import base_cdr

# Extensions, emergency and service numbers, spellings of one subscriber, other
# subscribers, withheld parties: every kind a party column can hold.
NUMBERS = [
    "2001", "101", "112", "1207", "+32475123456", "0475 12 34 56", "sip:0032475123456@pbx",
    "+32 2 123 45 67", "+447911123456", "anonymous", "", "+1 202 555 0101", "0470.99.88.77",
]  # fmt: skip
SOURCES = ["pbx-a", "pbx-a2", "pbx-b", "carrier"]
TENANTS = {"pbx-a2": "pbx-a"}  # two sources of one customer share extensions and agents
DIRECTIONS: list[Direction] = ["inbound", "outbound", "internal"]


def _parties() -> PartyPseudonymizer:
    key = Key("k1", bytes(range(32)), "2026-01-01")
    return PartyPseudonymizer(NumberClassifier("BE", (2, 5)), Pseudonymizer(key), 64, TENANTS)


def _mixed_chunk(count: int) -> list[CanonicalCdr]:
    pick = random.Random(7).choice
    return [
        msgspec.structs.replace(
            base_cdr(f"rows-{index}"),
            source=pick(SOURCES),
            caller=pick(NUMBERS),
            callee=pick([number for number in NUMBERS if number]),
            direction=pick(DIRECTIONS),
            connected=pick([None, "", *NUMBERS]),
            agent=pick([None, "", "  ", "agent-7", " agent-7 ", "agent-9"]),
        )
        for index in range(count)
    ]


def test_a_chunk_gives_each_record_the_row_it_gets_alone() -> None:
    cdrs = _mixed_chunk(600)
    parties = _parties()
    chunk = build_rows(cdrs, parties)
    assert chunk.schema == CDR_SCHEMA
    alone = [build_rows([cdr], _parties()).to_pylist()[0] for cdr in cdrs]
    assert chunk.to_pylist() == alone


def test_each_party_column_holds_what_the_pseudonymiser_says_for_its_role_and_tenant() -> None:
    cdrs = _mixed_chunk(600)
    parties = _parties()
    rows = build_rows(cdrs, parties).to_pylist()
    for cdr, row in zip(cdrs, rows, strict=True):
        tenant = parties.tenant_of(cdr.source)
        for role in ("caller", "callee"):
            expected = parties.columns(getattr(cdr, role), tenant, can_reach_service(role, cdr.direction))
            assert row[f"{role}_pseudonym"] == expected.pseudonym
            assert row[f"{role}_number_type"] == expected.number_type
            assert row[f"{role}_country"] == expected.country
            assert row[f"{role}_line_type"] == expected.line_type
            assert row[f"{role}_shortcode"] == expected.shortcode
        connected = parties.columns(cdr.connected, tenant).pseudonym if cdr.connected else None
        assert row["connected_pseudonym"] == connected
        assert row["agent_pseudonym"] == (
            parties.agent(cdr.agent, tenant) if (cdr.agent or "").strip() else None
        )
    # the chunk holds extensions in two tenants, and an emergency callee both dialled out and not
    kinds = {(row["callee_number_type"], row["direction"]) for row in rows}
    assert ("SHORTCODE", "outbound") in kinds and ("EXTENSION", "inbound") in kinds
    extension_pseudonyms = {
        (parties.tenant_of(cdr.source), row["caller_pseudonym"])
        for cdr, row in zip(cdrs, rows, strict=True)
        if cdr.caller == "2001"
    }
    assert len({tenant for tenant, _ in extension_pseudonyms}) == 3
    assert len({pseudonym for _, pseudonym in extension_pseudonyms}) == 3


def test_a_blank_agent_id_is_no_agent() -> None:
    cdrs = [
        msgspec.structs.replace(base_cdr(f"blank-{index}"), agent=agent)
        for index, agent in enumerate(["", " ", "\t"])
    ]
    assert build_rows(cdrs, _parties()).column("agent_pseudonym").to_pylist() == [None, None, None]
