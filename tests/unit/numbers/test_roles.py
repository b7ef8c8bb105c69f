"""Role-aware short numbers: Belgian 100, 101, 112 and 1207 in every role and every input format.

A caller, the answering party and either party of an internal call are never
public service numbers; only the callee of an outbound call can be one.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest

from pipeline.formats import DecodeContext
from pipeline.formats.mapped_csv import load_mappings
from pipeline.formats.selection import FormatSelector, builtin_decoders
from pipeline.ingest.rows import build_rows
from pipeline.keys.keyring import Key
from pipeline.keys.pseudonym import PartyPseudonymizer, Pseudonymizer
from pipeline.numbers.msisdn import NumberClassifier
from pipeline.record import CanonicalCdr, Direction
from tests.support.helpers import REPO
from tests.support.text_fields import base_cdr
from tests.support.wire_formats import asterisk_line, freeswitch_document

SHORT = ["100", "101", "112", "1207"]
EMERGENCY = {"100", "101", "112"}

CLASSIFIER = NumberClassifier("BE", (2, 5))
SELECTOR = FormatSelector(
    builtin_decoders(load_mappings(REPO / "schemas" / "mappings")),
    {},
    DecodeContext(ZoneInfo("Europe/Brussels"), CLASSIFIER),
)


def _cdr(caller: str, callee: str, direction: Direction, connected: str | None = None) -> CanonicalCdr:
    return msgspec.structs.replace(
        base_cdr(f"roles-{direction}"), caller=caller, callee=callee, direction=direction, connected=connected
    )


def _mapped_line(cdr: CanonicalCdr) -> bytes:
    epoch = int(cdr.start_time.timestamp())
    direction = {"inbound": "inbound", "outbound": "outbound-dial"}[cdr.direction]
    times = [epoch, epoch + 5, epoch + 65]
    fields = [cdr.cdr_id, *times, cdr.caller, cdr.callee, 65, "completed", direction, ""]
    return ",".join(str(field) for field in fields).encode()


ENCODERS = {
    "canonical-json": msgspec.json.encode,
    "freeswitch-json": freeswitch_document,
    "mapped-csv/carrier-epoch": _mapped_line,
}


def _row(format_name: str, payload: bytes) -> dict[str, Any]:
    cdr = SELECTOR.decode("cdr.raw", [("cdr-format", format_name.encode())], payload)
    parties = PartyPseudonymizer(CLASSIFIER, Pseudonymizer(Key("k1", bytes(range(32)), "2026")), 64)
    row: dict[str, Any] = build_rows([cdr], parties).to_pylist()[0]
    return row


def _is_extension(row: dict[str, Any], role: str) -> bool:
    return (
        row[f"{role}_number_type"] == "EXTENSION"
        and row[f"{role}_shortcode"] is None
        and row[f"{role}_pseudonym"] is not None
    )


@pytest.mark.parametrize("format_name", sorted(ENCODERS))
@pytest.mark.parametrize("number", SHORT)
def test_a_calling_party_is_an_extension(format_name: str, number: str) -> None:
    directions: tuple[Direction, ...] = ("outbound", "inbound")
    if not format_name.startswith("mapped"):  # the shipped carrier mapping has no internal calls
        directions += ("internal",)
    for direction in directions:
        row = _row(format_name, ENCODERS[format_name](_cdr(number, "+32475123456", direction)))
        assert _is_extension(row, "caller"), (direction, row)


@pytest.mark.parametrize("format_name", ["canonical-json", "freeswitch-json"])
@pytest.mark.parametrize("number", SHORT)
def test_both_parties_of_an_internal_call_are_extensions(format_name: str, number: str) -> None:
    for caller, callee in ((number, "2001"), ("2001", number), (number, number)):
        row = _row(format_name, ENCODERS[format_name](_cdr(caller, callee, "internal")))
        assert _is_extension(row, "caller") and _is_extension(row, "callee"), row


@pytest.mark.parametrize("format_name", sorted(ENCODERS))
@pytest.mark.parametrize("number", SHORT)
def test_the_callee_of_an_inbound_call_is_an_extension(format_name: str, number: str) -> None:
    row = _row(format_name, ENCODERS[format_name](_cdr("+32475123456", number, "inbound")))
    assert _is_extension(row, "callee"), row


@pytest.mark.parametrize("format_name", sorted(ENCODERS))
@pytest.mark.parametrize("number", SHORT)
def test_the_callee_of_an_outbound_call_can_be_an_emergency_number(format_name: str, number: str) -> None:
    row = _row(format_name, ENCODERS[format_name](_cdr("2001", number, "outbound")))
    if number in EMERGENCY:
        assert (row["callee_number_type"], row["callee_shortcode"], row["callee_pseudonym"]) == (
            "SHORTCODE",
            number,
            None,
        )
    else:  # 1207 is a Belgian service number, but of extension length (2-5): privacy wins
        assert _is_extension(row, "callee"), row


@pytest.mark.parametrize("number", SHORT)
def test_the_connected_party_is_an_extension(number: str) -> None:
    row = _row("canonical-json", msgspec.json.encode(_cdr("+32475123456", "2001", "inbound", number)))
    expected = PartyPseudonymizer(CLASSIFIER, Pseudonymizer(Key("k1", bytes(range(32)), "2026")), 4)
    extension = expected.columns(number, "pbx-a", False)
    assert extension.number_type == "EXTENSION" and extension.pseudonym is not None
    assert row["connected_pseudonym"] == extension.pseudonym


@pytest.mark.parametrize("number", SHORT)
def test_asterisk_short_numbers_by_role(number: str) -> None:
    """Master.csv has no direction: a short src is an extension; a dialled emergency dst is outbound."""
    as_caller = _row("asterisk-csv", asterisk_line(_cdr(number, "2001", "internal")))
    assert as_caller["direction"] == "internal"
    assert _is_extension(as_caller, "caller") and _is_extension(as_caller, "callee")
    as_callee = _row("asterisk-csv", asterisk_line(_cdr("2001", number, "internal")))
    assert _is_extension(as_callee, "caller")
    if number in EMERGENCY:
        assert as_callee["direction"] == "outbound"
        assert (as_callee["callee_number_type"], as_callee["callee_shortcode"]) == ("SHORTCODE", number)
    else:
        assert as_callee["direction"] == "internal" and _is_extension(as_callee, "callee")
    from_outside = _row("asterisk-csv", asterisk_line(_cdr("+32475123456", number, "inbound")))
    assert from_outside["direction"] == "inbound" and _is_extension(from_outside, "callee")
