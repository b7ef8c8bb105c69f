"""One bad record costs one dead letter, never the worker or the partition."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from pipeline.formats import freeswitch_json
from pipeline.formats.mapped_csv import load_mappings
from pipeline.formats.numerals import decimal_number, strict_strptime, whole_number
from pipeline.formats.selection import FormatSelector, builtin_decoders
from pipeline.ingest.ingestor import Ingestor
from pipeline.ingest.records import RawRecord
from pipeline.ingest.rows import build_rows, unstorable_rows
from pipeline.keys.keyring import Key
from pipeline.keys.pseudonym import PartyPseudonymizer, Pseudonymizer
from pipeline.numbers.msisdn import NumberClassifier
from pipeline.record import CanonicalCdr, RecordRejectedError, RejectReason
from pipeline.sink.batch import Routed
from pipeline.sink.publisher import BatchPublisher, UnstorableRowsError
from pipeline.store.schema import CDR_SCHEMA
from pipeline.store.storage import LocalStorage
from tests.support.helpers import REPO
from tests.support.samples import call_at, canonical_bytes, canonical_decode, decode_context

NON_ASCII_DIGITS = ["\u00b9", "\u0663", "\uff11\uff12", "1\u00b2", "\u0967\u0966", "\U0001d7ce"]


def _parties() -> PartyPseudonymizer:
    return PartyPseudonymizer(
        NumberClassifier("BE", (2, 5)), Pseudonymizer(Key("k1", b"s" * 32, "2026-01-01")), 64
    )


@pytest.mark.parametrize("text", NON_ASCII_DIGITS)
def test_numerals_accept_ascii_digits_only(text: str) -> None:
    with pytest.raises(RecordRejectedError) as whole:
        whole_number(text, "duration")
    assert whole.value.reason is RejectReason.SCHEMA and text not in whole.value.message
    with pytest.raises(RecordRejectedError):
        decimal_number(text, "cost")
    with pytest.raises(ValueError, match="not ASCII"):
        strict_strptime(f"{text}026-01-01 00:00:00", "%Y-%m-%d %H:%M:%S")


def test_numerals_read_what_machines_write() -> None:
    assert whole_number(" 150 ", "duration") == 150
    assert whole_number("-3", "duration") == -3
    assert decimal_number("1.25", "cost") == 1.25
    assert decimal_number("2e3", "cost") == 2000.0
    for text in ("inf", "nan", "1_000", "0x10", "", "12 3"):
        with pytest.raises(RecordRejectedError):
            decimal_number(text, "cost")
    with pytest.raises(RecordRejectedError):
        whole_number("1234567890", "duration")


def _freeswitch(**variables: str) -> bytes:
    base = {
        "uuid": "fs-1", "direction": "inbound", "caller_id_number": "0475123456",
        "destination_number": "+3225550100", "duration": "30", "billsec": "20",
        "start_uepoch": "1774745970000000", "answer_uepoch": "1774745980000000",
        "end_uepoch": "1774746000000000",
    }  # fmt: skip
    return json.dumps({"variables": {**base, **variables}, "callflow": [{}]}).encode()


@pytest.mark.parametrize("field", ["duration", "billsec", "start_uepoch"])
@pytest.mark.parametrize("text", NON_ASCII_DIGITS)
def test_freeswitch_rejects_unicode_digits(field: str, text: str) -> None:
    with pytest.raises(RecordRejectedError) as rejected:
        freeswitch_json.decode(_freeswitch(**{field: text}), decode_context())
    assert rejected.value.reason in (RejectReason.SCHEMA, RejectReason.INVALID_TIME)


def test_a_decoder_bug_becomes_a_decoder_error_without_the_exception_text() -> None:
    def buggy(payload: bytes, context: object) -> CanonicalCdr:
        raise ValueError(f"unexpected caller {payload.decode()}")

    selector = FormatSelector({"buggy": buggy}, {"cdr.raw": "buggy"}, decode_context())
    with pytest.raises(RecordRejectedError) as rejected:
        selector.decode("cdr.raw", [], b"0470 12 34 56")
    assert rejected.value.reason is RejectReason.DECODER_ERROR
    assert rejected.value.format_name == "buggy"
    assert "ValueError" in rejected.value.message and "test_poison_records.py" in rejected.value.message
    assert "0470" not in rejected.value.message


@pytest.mark.parametrize(
    "overrides",
    [
        {"duration_s": 3_000_000_000, "billsec_s": 0},
        {"duration_s": 7 * 24 * 3600 + 1, "billsec_s": 0},
        {"cost": 1e300, "currency": "EUR"},
        {"start_time": "9999-12-31T23:00:00-05:00", "end_time": "9999-12-31T23:30:00-05:00"},
        {"start_time": "0001-01-01T00:00:00+05:00", "end_time": "0001-01-01T00:30:00+05:00"},
    ],
)
def test_values_the_store_cannot_hold_are_rejected_at_decode(overrides: dict[str, object]) -> None:
    with pytest.raises(RecordRejectedError) as rejected:
        canonical_decode(canonical_bytes(**{"answer_time": None, **overrides}))
    assert rejected.value.reason is RejectReason.OUT_OF_RANGE


def test_a_week_long_call_is_still_valid() -> None:
    cdr = canonical_decode(canonical_bytes(duration_s=7 * 24 * 3600, billsec_s=10))
    assert cdr.duration_s == 7 * 24 * 3600


def _unvalidated(cdr_id: str, **changes: object) -> CanonicalCdr:
    """A record as a buggy decoder could hand it over (validation skipped)."""
    return CanonicalCdr(
        **{**json.loads(canonical_bytes(cdr_id=cdr_id)), "start_time": datetime(2026, 3, 29, 1, tzinfo=UTC),
           "end_time": datetime(2026, 3, 29, 2, tzinfo=UTC), "answer_time": None, **changes}
    )  # fmt: skip


def test_built_rows_keep_each_value_in_its_schema_column() -> None:
    cdr = canonical_decode(canonical_bytes(cost=1.5, currency="EUR", hangup_cause="NORMAL"))
    row = build_rows([cdr], _parties()).to_pylist()[0]
    assert row["cdr_id"] == cdr.cdr_id and row["source"] == cdr.source and row["queue"] == cdr.queue
    assert row["duration_s"] == cdr.duration_s and row["billsec_s"] == cdr.billsec_s
    assert row["start_time"] == cdr.start_time and row["end_time"] == cdr.end_time
    assert row["caller_number_type"] == "E164" and row["caller_country"] == "BE"
    assert row["callee_line_type"] == "FIXED_LINE" and row["agent_pseudonym"] is not None
    assert (row["hangup_cause"], row["cost"], row["currency"], row["key_id"]) == ("NORMAL", 1.5, "EUR", "k1")


def test_unstorable_rows_are_named_by_their_position() -> None:
    parties = _parties()
    cdrs = [_unvalidated("ok-1"), _unvalidated("poison", duration_s=3_000_000_000), _unvalidated("ok-2")]
    with pytest.raises(pa.ArrowInvalid):
        build_rows(cdrs, parties)
    assert unstorable_rows(cdrs, parties) == [1]


def test_the_publisher_writes_nothing_of_a_batch_whose_file_cannot_be_encoded(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    selector = FormatSelector(builtin_decoders({}), {"cdr.raw": "canonical-json"}, decode_context())
    ingestor = Ingestor(selector, _parties(), 100, 5)
    days = ["2026-03-28T10:00:00+00:00", "2026-03-29T10:00:00+00:00"]
    for offset in range(4):
        record = RawRecord("cdr.raw", 0, offset, call_at(days[offset % 2], cdr_id=f"c{offset}"))
        assert ingestor.add(record) is None
    flush = ingestor.take(("cdr.raw", 0))

    def failing_filter(table: pa.Table, translations: object) -> Routed:
        if "c1" in table.column("cdr_id").to_pylist():
            raise ValueError("0470 12 34 56")
        return Routed(table, None, 0)

    with pytest.raises(UnstorableRowsError) as unstorable:
        BatchPublisher(storage, row_filter=failing_filter).publish(flush)
    assert sorted(unstorable.value.offsets) == [1, 3], "the records of the file that failed"
    assert all(
        "ValueError" in message and "0470" not in message for message in unstorable.value.offsets.values()
    )
    assert storage.list("cdr") == [], "nothing of the batch is published"


def test_a_replayed_batch_dead_letters_the_unstorable_records_and_keeps_the_rest() -> None:
    selector = FormatSelector(builtin_decoders({}), {"cdr.raw": "canonical-json"}, decode_context())
    ingestor = Ingestor(selector, _parties(), 100, 5)
    records = [RawRecord("cdr.raw", 0, offset, canonical_bytes(cdr_id=f"c{offset}")) for offset in range(5)]
    for record in records:
        assert ingestor.add(record) is None
    ingestor.rewind(("cdr.raw", 0), 0, 5, {2: "the row could not be written to Parquet (ArrowInvalid)"})
    letters = [ingestor.add(record) for record in records]
    assert [letter.record.offset for letter in letters if letter is not None] == [2]
    letter = letters[2]
    assert letter is not None and letter.reason is RejectReason.UNSTORABLE
    flush = ingestor.take(("cdr.raw", 0))
    assert flush.commit_offset == 5 and flush.rows == 4
    assert ingestor.add(records[2]) is None, "only the replay of the recorded batch dead-letters it"


def test_a_record_that_cannot_become_a_row_is_a_dead_letter_and_the_partition_goes_on() -> None:
    class BrokenAgents(PartyPseudonymizer):
        def _agent(self, agent_id: str, tenant: str) -> str:
            if agent_id == "agent-boom":
                raise RuntimeError("agent-boom 0470123456")
            return super()._agent(agent_id, tenant)

    parties = BrokenAgents(NumberClassifier("BE", (2, 5)), Pseudonymizer(Key("k1", b"s" * 32, "x")), 8)
    selector = FormatSelector(builtin_decoders({}), {"cdr.raw": "canonical-json"}, decode_context())
    ingestor = Ingestor(selector, parties, 100, 5)
    payloads = [
        canonical_bytes(cdr_id="a"),
        canonical_bytes(cdr_id="b", agent="agent-boom"),
        canonical_bytes(cdr_id="c"),
    ]
    letters = ingestor.add_batch(
        [RawRecord("cdr.raw", 0, offset, payload) for offset, payload in enumerate(payloads)]
    )
    assert [(letter.record.offset, letter.reason) for letter in letters] == [(1, RejectReason.UNSTORABLE)]
    assert letters[0].message == "the record could not be stored (RuntimeError)"
    flush = ingestor.take(("cdr.raw", 0))
    assert flush.rows == 2 and flush.commit_offset == 3
    assert flush.files[0].table.column("cdr_id").to_pylist() == ["a", "c"]
    assert flush.files[0].table.schema == CDR_SCHEMA


def test_a_chunk_whose_every_row_is_unstorable_dead_letters_them_all() -> None:
    class BrokenAgents(PartyPseudonymizer):
        def _agent(self, agent_id: str, tenant: str) -> str:
            raise RuntimeError(f"{agent_id} at {tenant}")

    parties = BrokenAgents(NumberClassifier("BE", (2, 5)), Pseudonymizer(Key("k1", b"s" * 32, "x")), 8)
    selector = FormatSelector(builtin_decoders({}), {"cdr.raw": "canonical-json"}, decode_context())
    ingestor = Ingestor(selector, parties, 100, 5)
    payloads = [canonical_bytes(cdr_id="a"), canonical_bytes(cdr_id="b")]
    letters = ingestor.add_batch(
        [RawRecord("cdr.raw", 0, offset, payload) for offset, payload in enumerate(payloads)]
    )
    assert [(letter.record.offset, letter.reason) for letter in letters] == [
        (0, RejectReason.UNSTORABLE),
        (1, RejectReason.UNSTORABLE),
    ]


ASTERISK_LINE = (REPO / "tests" / "data" / "asterisk" / "Master.csv").read_bytes().splitlines()[1]
CARRIER_LINE = (REPO / "tests" / "data" / "mapped" / "carrier-eu-semicolon.csv").read_bytes().splitlines()[1]


@pytest.mark.parametrize(
    ("decoder", "payload"),
    [
        ("asterisk-csv", ASTERISK_LINE.replace(b"2026-11-18 09:37:00", b"0001-01-01 00:30:00")),
        ("asterisk-csv", ASTERISK_LINE.replace(b"2026-11-18 09:37:17", b"9999-12-31 23:59:59")),
        ("asterisk-csv", ASTERISK_LINE.replace(b",17,0,", b",999999999,0,")),
        ("mapped-csv/carrier-eu-semicolon", CARRIER_LINE.replace(b"17/11/2026", b"31/12/9999")),
        ("mapped-csv/carrier-eu-semicolon", CARRIER_LINE.replace(b";24306;", b";999999999999;")),
    ],
)
def test_times_and_durations_that_would_overflow_are_out_of_range_not_decoder_errors(
    decoder: str, payload: bytes
) -> None:
    mappings = load_mappings(REPO / "schemas" / "mappings")
    selector = FormatSelector(builtin_decoders(mappings), {"t": decoder}, decode_context())
    with pytest.raises(RecordRejectedError) as rejected:
        selector.decode("t", [], payload)
    assert rejected.value.reason is RejectReason.OUT_OF_RANGE, rejected.value.message
