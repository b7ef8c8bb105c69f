"""Decoders against realistic sample files, and the format selection rules."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest

from pipeline.errors import ConfigError
from pipeline.formats import asterisk_csv, freeswitch_json
from pipeline.formats.mapped_csv import MappedCsvDecoder, load_mapping, load_mappings
from pipeline.formats.selection import FormatSelector, builtin_decoders, sniff
from pipeline.record import RecordRejectedError, RejectReason
from tests.support.helpers import REPO
from tests.support.samples import canonical_bytes, decode_context

DATA = REPO / "tests" / "data"
MAPPINGS = REPO / "schemas" / "mappings"


def _asterisk_lines() -> list[bytes]:
    return (DATA / "asterisk" / "Master.csv").read_bytes().splitlines()


def test_every_master_csv_line_decodes() -> None:
    records = [asterisk_csv.decode(line, decode_context()) for line in _asterisk_lines()]
    assert len(records) == 36
    assert Counter(record.disposition for record in records) == {
        "answered": 17, "no_answer": 6, "congestion": 5, "busy": 4, "failed": 4,
    }  # fmt: skip
    assert all(record.source == "asterisk" for record in records)
    assert len({record.cdr_id for record in records}) == 36


def test_master_csv_quoted_commas_queue_and_new_columns() -> None:
    first = asterisk_csv.decode(_asterisk_lines()[0], decode_context())
    assert first.cdr_id == "1795000000.0#0"  # uniqueid + sequence of the 21-column layout
    assert first.caller == "+33612345678" and first.callee == "2001"
    assert first.queue == "support"  # from lastdata "support,t,,,300" because lastapp is Queue
    assert first.start_time == datetime(2026, 11, 18, 8, 0, tzinfo=UTC)  # 09:00 Brussels winter time
    assert (first.duration_s, first.billsec_s, first.direction) == (595, 590, "inbound")


def test_master_csv_unanswered_call_has_no_answer_time() -> None:
    second = asterisk_csv.decode(_asterisk_lines()[1], decode_context())
    assert (second.disposition, second.answer_time, second.billsec_s) == ("no_answer", None, 0)


def test_master_csv_internal_and_withheld() -> None:
    lines = _asterisk_lines()
    assert asterisk_csv.decode(lines[5], decode_context()).direction == "internal"
    assert asterisk_csv.decode(lines[6], decode_context()).caller == ""


def test_master_csv_call_across_the_autumn_repeated_hour_keeps_its_length() -> None:
    record = asterisk_csv.decode(_asterisk_lines()[31], decode_context())
    # 02:45:30 (summer time) to 02:45:35 (winter time) on 25 October: one hour and five seconds.
    assert record.start_time == datetime(2026, 10, 25, 0, 45, 30, tzinfo=UTC)
    assert record.end_time == datetime(2026, 10, 25, 1, 45, 35, tzinfo=UTC)


def test_master_csv_call_across_the_spring_gap() -> None:
    record = asterisk_csv.decode(_asterisk_lines()[34], decode_context())
    assert record.start_time == datetime(2026, 3, 29, 0, 59, tzinfo=UTC)
    assert record.end_time == datetime(2026, 3, 29, 1, 0, 27, tzinfo=UTC)


def test_master_csv_time_in_the_spring_gap_is_rejected() -> None:
    line = _asterisk_lines()[35].replace(b"2026-03-29 03:01:00", b"2026-03-29 02:30:00")
    with pytest.raises(RecordRejectedError) as raised:
        asterisk_csv.decode(line, decode_context())
    assert raised.value.reason is RejectReason.INVALID_TIME


@pytest.mark.parametrize(
    ("mutation", "reason"),
    [
        (lambda line: line.replace(b'"ANSWERED"', b'"MAYBE"'), RejectReason.SCHEMA),
        (lambda line: line.rsplit(b",", 5)[0], RejectReason.SCHEMA),
        (lambda line: line.replace(b"2026-11-18 09:00:00", b"18/11/2026"), RejectReason.INVALID_TIME),
        (lambda line: line.replace(b",595,", b",-5,"), RejectReason.NEGATIVE_DURATION),
        (lambda line: b'"unterminated' + line, RejectReason.UNDECODABLE),
    ],
)
def test_master_csv_rejections(mutation, reason: RejectReason) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RecordRejectedError) as raised:
        asterisk_csv.decode(mutation(_asterisk_lines()[0]), decode_context())
    assert raised.value.reason is reason


def _freeswitch_files() -> list[Path]:
    return sorted((DATA / "freeswitch").glob("*.json"))


def test_every_freeswitch_cdr_decodes() -> None:
    records = [freeswitch_json.decode(path.read_bytes(), decode_context()) for path in _freeswitch_files()]
    assert len(records) == 31
    assert Counter(record.disposition for record in records) == {
        "answered": 13, "failed": 6, "busy": 4, "congestion": 4, "no_answer": 3, "cancelled": 1,
    }  # fmt: skip
    for record in records:
        assert record.source == "freeswitch"
        assert record.billsec_s <= record.duration_s
        assert (record.answer_time is not None) == (record.disposition == "answered")


def test_freeswitch_url_encoded_values_queue_and_agent() -> None:
    record = freeswitch_json.decode(_freeswitch_files()[0].read_bytes(), decode_context())
    assert record.caller == "+32475123456"  # "%2B32475123456" in the file
    assert (record.queue, record.agent, record.direction) == ("support", "agent1000@default", "outbound")
    assert record.start_time == datetime(2026, 11, 19, 7, 0, tzinfo=UTC)


def test_freeswitch_stamps_only_uses_the_source_time_zone() -> None:
    path = next(path for path in _freeswitch_files() if path.name.startswith("27-"))
    document = json.loads(path.read_text())
    assert "start_uepoch" not in document["variables"]
    record = freeswitch_json.decode(path.read_bytes(), decode_context())
    assert record.start_time == datetime(2026, 11, 20, 1, 27, tzinfo=UTC)


def test_freeswitch_second_pass_of_the_repeated_hour_from_epochs() -> None:
    path = next(path for path in _freeswitch_files() if path.name.startswith("29-"))
    record = freeswitch_json.decode(path.read_bytes(), decode_context())
    assert record.start_time == datetime(2026, 10, 25, 1, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"variables": {"uuid": "x"}}, RejectReason.MISSING_PARTY),
        ({"callflow": []}, RejectReason.SCHEMA),
        (
            {"variables": {"uuid": "x", "destination_number": "1", "duration": "a", "billsec": "0"}},
            RejectReason.SCHEMA,
        ),
        (
            {
                "variables": {
                    "uuid": "x",
                    "destination_number": "1",
                    "duration": "1",
                    "billsec": "0",
                    "direction": "inbound",
                }
            },
            RejectReason.INVALID_TIME,
        ),
    ],
)
def test_freeswitch_rejections(document: dict, reason: RejectReason) -> None:
    with pytest.raises(RecordRejectedError) as raised:
        freeswitch_json.decode(json.dumps(document).encode(), decode_context())
    assert raised.value.reason is reason


@pytest.mark.parametrize("mapping_path", sorted(MAPPINGS.glob("*.json")), ids=lambda path: path.stem)
def test_shipped_mappings_validate_and_decode_their_sample_file(mapping_path: Path) -> None:
    jsonschema.validate(
        json.loads(mapping_path.read_text()),
        json.loads((REPO / "schemas" / "mapping.schema.json").read_text()),
    )
    mapping = load_mapping(mapping_path)
    decoder = MappedCsvDecoder(mapping)
    lines = (DATA / "mapped" / f"{mapping.name}.csv").read_bytes().splitlines()
    if mapping.header:
        assert lines[0].decode().split(mapping.delimiter) == mapping.columns
        lines = lines[1:]
    records = [decoder.decode(line, decode_context()) for line in lines]
    assert len(records) >= 29
    assert len({record.cdr_id for record in records}) == len(records)
    assert {record.disposition for record in records} >= {"answered", "busy", "failed", "no_answer"}


def test_semicolon_mapping_reads_day_first_local_times_milliseconds_and_decimal_commas() -> None:
    decoder = MappedCsvDecoder(load_mapping(MAPPINGS / "carrier-eu-semicolon.json"))
    lines = (DATA / "mapped" / "carrier-eu-semicolon.csv").read_bytes().splitlines()
    first = decoder.decode(lines[1], decode_context())
    assert first.start_time == datetime(2026, 11, 17, 6, 30, tzinfo=UTC)
    assert (first.duration_s, first.direction, first.disposition) == (24, "outbound", "no_answer")
    assert (first.cost, first.currency, first.source) == (0.0085, "EUR", "carrier-eu")
    spring = decoder.decode(lines[-1], decode_context())  # 01:59:50 local, lasting past the skipped hour
    assert spring.start_time == datetime(2026, 3, 29, 0, 59, 50, tzinfo=UTC)


def test_epoch_mapping_derives_billable_seconds_from_answer_time() -> None:
    decoder = MappedCsvDecoder(load_mapping(MAPPINGS / "carrier-epoch.json"))
    records = [
        decoder.decode(line, decode_context())
        for line in (DATA / "mapped" / "carrier-epoch.csv").read_bytes().splitlines()
    ]
    answered = [record for record in records if record.disposition == "answered"]
    assert answered and all(record.answer_time is not None for record in answered)
    for record in answered:
        assert record.answer_time is not None
        assert record.billsec_s == round((record.end_time - record.answer_time).total_seconds())


def test_a_broken_mapping_stops_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"name": "bad", "columns": ["a"], "fields": {"cdr_id": {"column": "b"}}}))
    with pytest.raises(ConfigError, match=r"does not say where to find start_time"):
        load_mapping(path)
    document = json.loads((MAPPINGS / "carrier-epoch.json").read_text())
    document["fields"]["caller"] = {"column": "nope"}
    path.write_text(json.dumps(document))
    with pytest.raises(ConfigError, match=r"field caller names unknown column 'nope'"):
        load_mapping(path)


def _selector(topic_formats: dict[str, str] | None = None) -> FormatSelector:
    return FormatSelector(builtin_decoders(load_mappings(MAPPINGS)), topic_formats or {}, decode_context())


def test_header_wins_over_topic_and_sniffing() -> None:
    selector = _selector({"cdr.raw": "asterisk-csv"})
    headers = [("cdr-format", b"canonical-json")]
    assert selector.choose("cdr.raw", headers, canonical_bytes()) == "canonical-json"
    assert selector.choose("cdr.raw", [], canonical_bytes()) == "asterisk-csv"
    assert selector.choose("other", [], canonical_bytes()) == "canonical-json"


def test_sniffing_recognises_the_three_self_describing_formats() -> None:
    assert sniff(canonical_bytes()) == ["canonical-json"]
    assert sniff(_freeswitch_files()[0].read_bytes()) == ["freeswitch-json"]
    assert sniff(_asterisk_lines()[0]) == ["asterisk-csv"]
    carrier_line = (DATA / "mapped" / "carrier-epoch.csv").read_bytes().splitlines()[0]
    assert sniff(carrier_line) == []


def test_sniffing_never_guesses_between_two_formats() -> None:
    both = json.dumps({"cdr_id": "x", "variables": {}, "callflow": []}).encode()
    with pytest.raises(RecordRejectedError) as raised:
        _selector().decode("cdr.raw", [], both)
    assert raised.value.reason is RejectReason.UNKNOWN_FORMAT and raised.value.format_name == "unknown"
    assert "several" in raised.value.message


def test_unknown_header_and_unknown_configured_format() -> None:
    with pytest.raises(RecordRejectedError) as raised:
        _selector().decode("cdr.raw", [("cdr-format", b"cisco-cucm")], b"x")
    assert raised.value.reason is RejectReason.UNKNOWN_FORMAT
    with pytest.raises(ConfigError, match="unknown formats"):
        _selector({"cdr.raw": "cisco-cucm"})


def test_mapped_layout_selected_by_header() -> None:
    line = (DATA / "mapped" / "carrier-epoch.csv").read_bytes().splitlines()[0]
    record = _selector().decode("cdr.raw", [("cdr-format", b"mapped-csv/carrier-epoch")], line)
    assert record.source == "carrier-epoch"
