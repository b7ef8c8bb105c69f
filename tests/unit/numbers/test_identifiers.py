"""The one rule of ids: call ids at ingest, request ids and a rectification's cdr_id at the door."""

from __future__ import annotations

import pytest

from pipeline.numbers.identifiers import identifier_holds_number
from pipeline.numbers.msisdn import NumberClassifier
from pipeline.numbers.text import contains_number

BELGIAN = NumberClassifier("BE", (2, 5))


@pytest.mark.parametrize(
    ("identifier", "holds"),
    [
        ("DPO-2026-0042", False),
        ("1732530102.42#3", False),
        ("CR202611170000", False),
        ("3f2a1b4c-1234-5678-9abc-def9a2345678", False),
        ("0475123456", True),
        ("32475123456", True),
        ("+32475123456", True),
        ("0475 12 34 56", True),
        ("cb-0470123456", True),
        ("%2B32475123456", True),
        # the one rule of ids: ingest stores what requests may name, nothing more
        ("20261125000123", False),
        ("INV-0000042", False),
        ("CR-0012345678", True),
        ("sip:0475123456@pbx", True),
    ],
)
def test_identifiers_are_read_narrower_than_free_text(identifier: str, holds: bool) -> None:
    assert identifier_holds_number(identifier, BELGIAN) is holds
    if holds:
        assert contains_number(identifier)  # never wider than the free-text detector
