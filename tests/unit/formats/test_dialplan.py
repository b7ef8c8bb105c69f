"""Asterisk direction from the dialplan: a PBX that presents its DID or a mobile number as caller id."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import pytest

from pipeline.config.settings import IngestSettings
from pipeline.formats import DecodeContext, asterisk_csv
from pipeline.formats.dialplan import Dialplan, channel_endpoint, dial_target_endpoint
from pipeline.ingest.rows import build_rows
from pipeline.keys.keyring import Key
from pipeline.keys.pseudonym import PartyPseudonymizer, Pseudonymizer
from pipeline.numbers.msisdn import NumberClassifier
from tests.support.helpers import REPO

CLASSIFIER = NumberClassifier("BE", (2, 5))
DEFAULTS = IngestSettings()
FREEPBX = Dialplan(
    internal_contexts=frozenset(DEFAULTS.asterisk_internal_contexts),
    inbound_contexts=frozenset(DEFAULTS.asterisk_inbound_contexts),
    trunks=frozenset({"trunk-out", "trunk-be"}),
)
LINES = (REPO / "tests" / "data" / "asterisk" / "did-presented.csv").read_bytes().splitlines()


def _rows(dialplan: Dialplan) -> list[dict[str, Any]]:
    context = DecodeContext(ZoneInfo("Europe/Brussels"), CLASSIFIER, dialplan)
    cdrs = [asterisk_csv.decode(line, context) for line in LINES]
    parties = PartyPseudonymizer(CLASSIFIER, Pseudonymizer(Key("k1", bytes(range(32)), "2026")), 64)
    rows: list[dict[str, Any]] = build_rows(cdrs, parties).to_pylist()
    return rows


def test_the_dialplan_gives_the_direction_whatever_caller_id_the_pbx_presented() -> None:
    rows = _rows(FREEPBX)
    assert [row["direction"] for row in rows] == [
        "outbound",  # DID presented, dialled to the trunk
        "outbound",  # an emergency number dialled out with the DID presented
        "outbound",  # a mobile number presented
        "inbound",  # from the carrier's trunk to an extension
        "internal",  # extension to extension
        "outbound",  # a context the settings do not know, but a Dial() to a trunk
    ]


def test_an_emergency_number_dialled_out_is_a_service_number_not_an_extension() -> None:
    for row in (_rows(FREEPBX)[1], _rows(FREEPBX)[5]):
        assert (row["callee_number_type"], row["callee_shortcode"], row["callee_pseudonym"]) == (
            "SHORTCODE",
            "112",
            None,
        )


def test_freepbx_contexts_alone_tell_outbound_calls_without_any_trunk_configured() -> None:
    no_trunks = Dialplan(FREEPBX.internal_contexts, FREEPBX.inbound_contexts)
    directions = [row["direction"] for row in _rows(no_trunks)]
    assert directions[:5] == ["outbound", "outbound", "outbound", "inbound", "internal"]
    assert _rows(no_trunks)[1]["callee_number_type"] == "SHORTCODE"


def test_without_a_dialplan_the_shape_of_the_parties_decides_as_before() -> None:
    directions = [row["direction"] for row in _rows(Dialplan())]
    # the caller id is all there is: the DID-presenting PBX's calls read as inbound
    assert directions == ["inbound", "inbound", "inbound", "inbound", "internal", "inbound"]


@pytest.mark.parametrize(
    ("lastapp", "lastdata", "endpoint"),
    [
        ("Dial", "PJSIP/0475123456@trunk-out,60,tT", "trunk-out"),
        ("Dial", "SIP/trunk-out/0475123456,60", "trunk-out"),
        ("Dial", "IAX2/carrier/112", "carrier"),
        ("Dial", "PJSIP/2002,30", None),
        ("Dial", "PJSIP/2002&PJSIP/2003,30", None),
        ("Queue", "support,t,,,300", None),
        ("Dial", "", None),
    ],
)
def test_dial_targets(lastapp: str, lastdata: str, endpoint: str | None) -> None:
    assert dial_target_endpoint(lastapp, lastdata) == endpoint


@pytest.mark.parametrize(
    ("channel", "endpoint"),
    [("PJSIP/trunk-be-00000015", "trunk-be"), ("SIP/2001-0000ab12", "2001"), ("", None), ("DAHDI/1", "1")],
)
def test_channel_endpoints(channel: str, endpoint: str | None) -> None:
    assert channel_endpoint(channel) == endpoint
