"""Attacks on the Asterisk direction from the dialplan: can a party be kept in clear as a short code?"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import pytest

from pipeline.config.settings import IngestSettings
from pipeline.formats import DecodeContext, asterisk_csv
from pipeline.formats.dialplan import Dialplan
from pipeline.ingest.rows import build_rows
from pipeline.keys.keyring import Key
from pipeline.keys.pseudonym import PartyPseudonymizer, Pseudonymizer
from pipeline.numbers.msisdn import NumberClassifier

CLASSIFIER = NumberClassifier("BE", (2, 5))
DEFAULTS = IngestSettings()
FREEPBX = Dialplan(
    internal_contexts=frozenset(DEFAULTS.asterisk_internal_contexts),
    inbound_contexts=frozenset(DEFAULTS.asterisk_inbound_contexts),
    trunks=frozenset({"trunk-out", "trunk-be"}),
)


def _row(
    dialplan: Dialplan, src: str, dst: str, dcontext: str, channel: str, *, lastdata: str
) -> dict[str, Any]:
    line = (
        f'"","{src}","{dst}","{dcontext}","","{channel}","","Dial","{lastdata}",'
        '"2026-11-18 09:40:00","2026-11-18 09:40:03","2026-11-18 09:41:03",63,60,"ANSWERED",'
        '"DOCUMENTATION","1795102400.17",""'
    ).encode()
    cdr = asterisk_csv.decode(line, DecodeContext(ZoneInfo("Europe/Brussels"), CLASSIFIER, dialplan))
    parties = PartyPseudonymizer(CLASSIFIER, Pseudonymizer(Key("k1", bytes(range(32)), "2026")), 64)
    rows: list[dict[str, Any]] = build_rows([cdr], parties).to_pylist()
    return rows[0]


@pytest.mark.parametrize("extension", ["100", "101", "112"])
@pytest.mark.parametrize("lastdata", ["PJSIP/{}|30|tT", "PJSIP/{},30,tT", "SIP/{}&PJSIP/2003,30"])
def test_an_extension_numbered_like_an_emergency_number_is_never_kept_in_clear(
    extension: str, lastdata: str
) -> None:
    # FreePBX numbers its first extensions 100, 101: Dial(PJSIP/101) rang a phone, not the police
    row = _row(
        FREEPBX,
        "2001",
        extension,
        "from-internal",
        "PJSIP/2001-00000017",
        lastdata=lastdata.format(extension),
    )
    assert (row["direction"], row["callee_number_type"], row["callee_shortcode"]) == (
        "internal",
        "EXTENSION",
        None,
    )
    assert row["callee_pseudonym"] is not None


@pytest.mark.parametrize(
    ("dcontext", "channel", "lastdata"),
    [
        ("from-internal", "PJSIP/2001-00000017", "PJSIP/112@trunk-out,60"),  # dialled out: a service
        ("from-internal", "PJSIP/2001-00000017", "Local/112@from-internal-0001;1"),  # back into the dialplan
        ("custom-ctx", "SIP/2004-00000019", "SIP/trunk-out/112,60"),
    ],
)
def test_an_emergency_number_dialled_out_stays_a_service_number(
    dcontext: str, channel: str, lastdata: str
) -> None:
    row = _row(FREEPBX, "2001", "112", dcontext, channel, lastdata=lastdata)
    assert (row["direction"], row["callee_shortcode"]) == ("outbound", "112")


@pytest.mark.parametrize(
    ("src", "dst", "dcontext", "channel", "lastdata"),
    [
        ("+32499887766", "112", "from-internal", "PJSIP/trunk-be-00000015", "PJSIP/2001,30"),  # inbound
        ("+32499887766", "0475123456", "from-internal", "PJSIP/2001-1", "PJSIP/0475123456@trunk-out"),
        ("0475123456", "0475123456", " from-internal ", "Local/0475123456@from-internal-1;2", "PJSIP/101"),
        ("+32499887766", "0475123456", "from-trunk", "PJSIP/101-00000003", "PJSIP/0475123456@101"),
    ],
)
def test_a_subscriber_number_is_always_pseudonymised_whatever_the_direction(
    src: str, dst: str, dcontext: str, channel: str, lastdata: str
) -> None:
    for dialplan in (FREEPBX, Dialplan(trunks=frozenset({"101"})), Dialplan()):
        row = _row(dialplan, src, dst, dcontext, channel, lastdata=lastdata)
        for party in ("caller", "callee"):
            if row[f"{party}_number_type"] == "SHORTCODE":
                assert row[f"{party}_shortcode"] == "112" and row["direction"] == "outbound"
            else:
                assert row[f"{party}_shortcode"] is None and row[f"{party}_pseudonym"] is not None


@pytest.mark.xfail(
    strict=True,
    reason="by design without a dialplan: 101 dialled by an extension reads as the police (SHORTCODE in "
    "clear), though FreePBX's first extensions are 100 and 101; configure the contexts or trunks",
)
def test_without_a_dialplan_extension_101_is_not_kept_in_clear() -> None:
    row = _row(Dialplan(), "2001", "101", "from-internal", "PJSIP/2001-00000017", lastdata="PJSIP/101,30")
    assert row["callee_shortcode"] is None
