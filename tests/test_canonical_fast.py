"""Differential test: the columnar canonical path stores and rejects exactly what the exact decoder does."""

from __future__ import annotations

import json
import random

import msgspec
import pyarrow as pa
import pytest

from pipeline import demo
from pipeline.formats.canonical_fast import CanonicalRow
from pipeline.formats.selection import FormatSelector, builtin_decoders
from pipeline.ingest import Ingestor, RawRecord
from pipeline.keyring import Key
from pipeline.msisdn import NumberClassifier
from pipeline.pseudonym import PartyPseudonymizer, Pseudonymizer
from pipeline.record import TIME_FIELDS, CanonicalCdr, RecordRejectedError
from pipeline.rows import build_rows
from tests.fuzzing import examples, mutation_seed
from tests.samples import canonical, decode_context
from tests.test_fuzz_decoders import _mutate

TIMES = [
    "2026-03-29T01:59:30+01:00", "2026-03-29T01:59:30Z", "2026-03-29T01:59:30.5+01:00",
    "2026-03-29T01:59:30.123456-09:30", "2026-03-29T01:59:30.1234567Z", "2026-03-29 01:59:30+01:00",
    "2026-03-29t01:59:30z", "2026-03-29T01:59:30", "2026-02-30T10:00:00Z", "2026-03-29T24:00:00Z",
    "2026-03-29T23:59:60Z", "1969-12-31T23:00:00Z", "1970-01-01T00:30:00+01:00", "2099-12-31T23:30:00-01:00",
    "2100-01-01T00:00:00Z", "0001-01-01T00:00:00+05:00", "9999-12-31T23:00:00-05:00",
    "2026-03-29T01:59:30+24:00", "2026-03-29T01:59:30+01", "20260329T015930Z", "\uff12026-03-29T01:59:30Z",
    "", "2026-03-29",
]  # fmt: skip
VALUES = {
    "cdr_id": ["x", " ", "\x1c", "\u2003", "", " a ", "\u00e9"],
    "callee": ["+3225550100", " ", "\x1f", "\u3000", "", "1001", "tel:+32-2-555-01-00"],
    "caller": ["0475 12 34 56", "", "anonymous", "101", "+1 202 555 0143"],
    "duration_s": [0, 150, -1, 604800, 604801, 2**31, 2**63 - 1, 2**64],
    "billsec_s": [0, 140, -1, 151, 604800],
    "cost": [None, 0.0, 1.5, -3.25, 1e9, -1e9, 1.0000001e9, 1e300],
    "schema_version": [1, 0, -5, 2, 2**63 + 5],
    "direction": ["inbound", "outbound", "internal", "sideways"],
}


def _parties() -> PartyPseudonymizer:
    return PartyPseudonymizer(NumberClassifier("BE", (2, 5)), Pseudonymizer(Key("k1", b"q" * 32, "t")), 4096)


def _both_paths(payloads: list[bytes]) -> None:
    """The ingestor (fast path where it applies) against the exact decoder, record by record."""
    selector = FormatSelector(builtin_decoders({}), {"cdr.raw": "canonical-json"}, decode_context())
    parties = _parties()
    expected_rows, expected_letters = [], {}
    for offset, payload in enumerate(payloads):
        try:
            expected_rows.append(selector.decode("cdr.raw", [], payload))
        except RecordRejectedError as rejected:
            expected_letters[offset] = (rejected.reason.value, rejected.message)
    ingestor = Ingestor(selector, parties, 10**9, 3600.0)
    letters = ingestor.add_batch([RawRecord("cdr.raw", 0, offset, p) for offset, p in enumerate(payloads)])
    assert {
        letter.record.offset: (letter.reason.value, letter.message) for letter in letters
    } == expected_letters
    flush = ingestor.take(("cdr.raw", 0))
    stored = pa.concat_tables([pending.table for pending in flush.files]) if flush.files else None
    expected = build_rows(expected_rows, parties) if expected_rows else None
    if expected is None:
        assert stored is None
        return
    assert stored is not None
    key = [("start_time", "ascending"), ("cdr_id", "ascending")]
    assert stored.sort_by(key).to_pylist() == expected.sort_by(key).to_pylist()


@pytest.mark.parametrize("field", ["start_time", "answer_time", "end_time"])
def test_every_time_spelling_is_decided_as_the_exact_decoder_decides(field: str) -> None:
    payloads = []
    for text in TIMES:
        document = canonical(answer_time=None) if field != "answer_time" else canonical()
        document[field] = text
        if field == "start_time":
            document["end_time"] = text
        payloads.append(json.dumps(document).encode())
    _both_paths(payloads)


@pytest.mark.parametrize("field", sorted(VALUES))
def test_every_edge_value_is_decided_as_the_exact_decoder_decides(field: str) -> None:
    _both_paths([json.dumps(canonical(**{field: value})).encode() for value in VALUES[field]])


def test_demo_traffic_and_its_mutations_match_the_exact_decoder() -> None:
    rng = random.Random(mutation_seed(11))
    seeds = [demo.encode(cdr) for cdr in demo.generate(2_000, seed=3)]
    payloads = seeds + [_mutate(rng, seeds) for _ in range(examples(100_000))]
    rng.shuffle(payloads)
    _both_paths(payloads)


def test_a_chunk_with_an_impossible_date_still_stores_its_valid_rows() -> None:
    bad = json.dumps(canonical(start_time="2026-02-30T10:00:00Z", answer_time=None)).encode()
    good = [json.dumps(canonical(cdr_id=f"ok-{index}")).encode() for index in range(5)]
    _both_paths([*good[:2], bad, *good[2:]])


def test_duplicated_and_escaped_keys_are_decided_as_the_exact_decoder_decides() -> None:
    # Found by the mutation fuzzer: msgspec keeps the last of two equal keys, but parses every
    # occurrence of a datetime, so an invalid earlier time rejects the record.
    base = canonical(answer_time=None)
    body = json.dumps(base)[1:-1]
    variants = [
        '{"start_time": "garbage", ' + body + "}",
        '{"end_time": "2026-02-30T00:00:00Z", ' + body + "}",
        "{" + body + ', "answer_time": null}',
        "{" + body.replace('"start_time"', '"start\\u005ftime"') + "}",
        "{" + body.replace('"cdr_id": "call-0001"', '"cdr_id": "x_time"') + "}",
        '{"answer_time": "nonsense", ' + json.dumps(canonical())[1:],
    ]
    _both_paths([variant.encode() for variant in variants])


def test_the_fast_row_has_the_canonical_fields_with_times_as_text() -> None:
    exact = {field.name: field for field in msgspec.structs.fields(CanonicalCdr)}
    fast = {field.name: field for field in msgspec.structs.fields(CanonicalRow)}
    assert list(fast) == list(exact)
    for name, field in fast.items():
        expected = (str if exact[name].required else str | None) if name in TIME_FIELDS else exact[name].type
        assert field.type == expected, name
        assert field.default == exact[name].default, name
