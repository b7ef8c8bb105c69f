"""The one rule of ids: call ids at ingest, request ids and a rectification's cdr_id at the door."""

from __future__ import annotations

import json

import pytest

from pipeline.formats.text_policy import enforce_text_policies
from pipeline.lifecycle.requests.subject_request import SubjectRequest, parse_request
from pipeline.numbers.identifiers import identifier_holds_number
from pipeline.numbers.msisdn import NumberClassifier
from pipeline.numbers.text import contains_number
from pipeline.record import RecordRejectedError
from tests.support.text_fields import base_cdr

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
        ("07e34c9c-4929-4c04-8653-592381d13183", False),  # a UUID is random hex, whatever its digits
        ("CA086821166861d7f6", False),  # so is a carrier's hex reference
        ("INV-0000042", False),
        ("CR-0012345678", True),
        ("sip:0475123456@pbx", True),
    ],
)
def test_identifiers_are_read_narrower_than_free_text(identifier: str, holds: bool) -> None:
    assert identifier_holds_number(identifier, BELGIAN) is holds
    if holds:
        assert contains_number(identifier)  # never wider than the free-text detector


@pytest.mark.parametrize(
    "cdr_id",
    ["CR-0012345678", "CR202611170000", "20261125000123", "0475123456", "1732530102.42#3", "cb-0470123456"],
)
def test_ingest_stores_exactly_the_call_ids_a_rectification_may_name(cdr_id: str) -> None:
    try:
        enforce_text_policies(base_cdr(cdr_id), BELGIAN)
    except RecordRejectedError:
        stored = False
    else:
        stored = True
    request = {"request_id": "r-1", "kind": "rectification", "requested_at": "2026-11-20T09:00:00Z"}
    parsed = parse_request(
        None, json.dumps({**request, "cdr_id": cdr_id, "party": "caller"}).encode(), BELGIAN
    )
    assert isinstance(parsed, SubjectRequest) is stored
