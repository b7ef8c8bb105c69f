"""Subject requests other than erasure, without Kafka: parsing, rejection, rectification, receipts."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.ingest.rows import build_rows
from pipeline.keys.keyring import init_keyring
from pipeline.keys.pseudonym import PartyPseudonymizer, Pseudonymizer
from pipeline.lifecycle.ledger import LedgerEntry, SubjectLedger, decode_entry, encode_entry
from pipeline.lifecycle.operations.export import subject_rows
from pipeline.lifecycle.operations.reapply import reapply_ledger
from pipeline.lifecycle.operations.rectify import rectify_call
from pipeline.lifecycle.operations.restriction import Ledger, Passes
from pipeline.lifecycle.requests.audit import read_audit
from pipeline.lifecycle.requests.receipts import encode_receipt, receipt_path
from pipeline.lifecycle.requests.register import load_request
from pipeline.lifecycle.requests.subject_request import Rejection, SubjectRequest, parse_request
from pipeline.lifecycle.rights import RightsProcessor
from pipeline.lifecycle.subject import subject_from_number
from pipeline.store.parquet import encode
from pipeline.store.storage import LocalStorage
from tests.support.helpers import REPO
from tests.support.lifecycle_store import (
    CLASSIFIER,
    KEYS,
    SUBJECT,
    parquet_file,
    rights_processor,
    sample_store,
)
from tests.support.samples import call_at, canonical_decode
from tests.support.signed import pseudonyms_of, signed

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
FILE = "cdr/call_date=2026-11-01/t+0+0.parquet"


def _processor(storage: LocalStorage) -> RightsProcessor:
    view = SubjectLedger()
    return RightsProcessor(
        storage,
        lambda: KEYS,
        CLASSIFIER,
        ledger=Ledger(view, view.add),
        passes=Passes(0, lambda _: None),
        clock=lambda: NOW,
    )


def _request(**fields: object) -> bytes:
    return json.dumps({"request_id": "r-1", "requested_at": NOW.isoformat(), **fields}).encode()


def _answer(processor: RightsProcessor, payload: bytes, key: bytes | None = None) -> dict[str, Any]:
    """The receipt of one message (signed as the CLI signs it, if it is a JSON object), as published."""
    try:
        signable = isinstance(json.loads(payload), dict)
    except ValueError:
        signable = False
    message = signed(payload, KEYS) if signable else payload
    document: dict[str, Any] = json.loads(encode_receipt(processor.handle(message, key)))
    return document


def test_bad_requests_are_rejected_with_a_reason_that_echoes_no_number() -> None:
    cases = {
        b"not json": "does not match schemas/subject-request.schema.json",
        _request(kind="restriction"): "a restriction request names its subject",
        _request(kind="objection", subject="+32475000111"): "existing is quarantine or erase",
        _request(kind="rectification", cdr_id="c-1"): "names the call (cdr_id) and the party",
        _request(kind="rectification", cdr_id="0475 00 01 11", party="caller"): "cdr_id must not contain",
        _request(kind="0475000111", subject="x"): "(at `$.kind`)",
        _request(kind="lift", subject="x", requested_at="2026-11-20T09:00:00"): "needs a UTC offset",
    }
    for payload, reason in cases.items():
        rejected = parse_request(b"r-1", payload, CLASSIFIER)
        assert isinstance(rejected, Rejection), payload
        assert reason in rejected.reason and "0475000111" not in rejected.reason
        assert rejected.request_id == "r-1"
    numbered = parse_request(b"0475000111", b"{}", CLASSIFIER)
    assert isinstance(numbered, Rejection) and numbered.request_id is None
    good = parse_request(None, _request(kind="rectification", cdr_id="c-1", party="callee"), CLASSIFIER)
    assert isinstance(good, SubjectRequest) and good.party == "callee"


def test_rectify_redacts_one_party_of_one_call_only_once(tmp_path: Path) -> None:
    storage = sample_store(tmp_path)
    before = pq.read_table(tmp_path / FILE).to_pylist()
    first = rectify_call(storage, "a", "caller")
    assert (first.rows_found, first.rows_redacted, first.files_rewritten, first.verified) == (
        1,
        1,
        [FILE],
        True,
    )
    after = pq.read_table(tmp_path / FILE).to_pylist()
    changed = {"caller_pseudonym": None, "caller_number_type": "REDACTED", "caller_country": None}
    changed |= {"caller_line_type": None, "caller_shortcode": None}
    assert after[0] == {**before[0], **changed}
    assert after[1] == before[1]
    again = rectify_call(storage, "a", "caller")
    assert (again.rows_found, again.rows_redacted, again.files_rewritten) == (1, 0, [])
    assert rectify_call(storage, "a", "caller", date(2026, 11, 2)).rows_found == 0


def test_a_rectification_gets_a_receipt_an_audit_entry_and_closes_its_register_entry(tmp_path: Path) -> None:
    storage = sample_store(tmp_path)
    processor = _processor(storage)
    request = _request(kind="rectification", cdr_id="b", party="caller")
    receipt = _answer(processor, request)
    assert receipt["status"] == "completed" and receipt["rows_redacted"] == 1
    verification = receipt["verification"]
    assert {name: verification[name] for name in ("files_checked", "files_unreadable", "passed")} == {
        "files_checked": 1,
        "files_unreadable": [],
        "passed": True,
    }
    assert json.loads(storage.read(receipt_path("r-1")) or b"") == receipt
    assert [entry["kind"] for entry in read_audit(storage)] == ["rectification"]
    record = load_request(storage, "r-1")
    assert record is not None and record.status == "closed" and "redacted in 1 rows" in (record.outcome or "")
    assert _answer(processor, request) == receipt  # re-delivery: the same receipt, nothing redone
    assert len(read_audit(storage)) == 1


def test_a_rectification_of_an_unknown_call_and_a_malformed_message_are_rejected(tmp_path: Path) -> None:
    storage = sample_store(tmp_path)
    processor = _processor(storage)
    unknown = _answer(processor, _request(kind="rectification", cdr_id="zz", party="callee"))
    assert (unknown["status"], unknown["reason"]) == ("rejected", "no row of call zz")
    record = load_request(storage, "r-1")
    assert record is not None and record.status == "rejected"
    assert (record.outcome or "").startswith("rejected: no row of call zz")
    malformed = _answer(processor, b'{"kind": "rectification"}', b"r-2")
    assert (malformed["request_id"], malformed["kind"], malformed["status"]) == (
        "r-2",
        "rectification",
        "rejected",
    )
    anonymous = _answer(processor, signed({"kind": "rectification"}, KEYS))  # no usable id anywhere
    assert (anonymous["request_id"], anonymous["status"]) == (None, "rejected")
    unsigned = _answer(processor, b"\xff")  # not signed: rejected unread, never audited
    assert (unsigned["request_id"], unsigned["status"], unsigned["reason"]) == (
        None,
        "rejected",
        "unauthenticated",
    )
    assert [entry["kind"] for entry in read_audit(storage)] == [
        "rectification",
        "rectification",
        "rectification",
    ]


def test_a_rectification_searches_the_whole_store_when_no_date_is_given(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.publish(
        "cdr/call_date=2026-10-01/t+0+0.parquet",
        parquet_file(KEYS.active, [("x", "0475000111", "2026-10-01T10:00:00+00:00")]),
    )
    request = SubjectRequest(
        request_id="r-9", kind="rectification", requested_at=NOW, cdr_id="x", party="callee"
    )
    assert parse_request(None, msgspec.json.encode(request), CLASSIFIER) == request
    receipt = _answer(_processor(storage), msgspec.json.encode(request))
    assert receipt["files_rewritten"] == ["cdr/call_date=2026-10-01/t+0+0.parquet"]
    (row,) = pq.read_table(tmp_path / receipt["files_rewritten"][0]).to_pylist()
    assert row["callee_number_type"] == "REDACTED" and row["caller_number_type"] == "E164"


def _check(document: object, schema: str) -> None:
    loaded = json.loads((REPO / "schemas" / schema).read_text())
    jsonschema.validate(document, loaded, format_checker=jsonschema.FormatChecker())


def test_requests_and_receipts_match_their_schemas(tmp_path: Path) -> None:
    storage = sample_store(tmp_path)
    processor = _processor(storage)
    request = SubjectRequest(
        request_id="r-5",
        kind="rectification",
        requested_at=NOW,
        cdr_id="a",
        party="caller",
        call_date=date(2026, 11, 1),
    )
    _check(json.loads(signed(request, KEYS)), "subject-request.schema.json")
    by_pseudonyms = SubjectRequest(
        request_id="r-6",
        kind="restriction",
        requested_at=NOW,
        subject_kind="pseudonyms",
        pseudonyms=pseudonyms_of(subject_from_number(SUBJECT, KEYS, CLASSIFIER)),
    )
    _check(json.loads(signed(by_pseudonyms, KEYS)), "subject-request.schema.json")
    _check(_answer(processor, msgspec.json.encode(request)), "subject-receipt.schema.json")
    _check(_answer(processor, b"[]"), "subject-receipt.schema.json")
    try:
        _check(
            {"request_id": "r-6", "kind": "objection", "requested_at": NOW.isoformat(), "subject": "x"},
            "subject-request.schema.json",
        )
    except jsonschema.ValidationError as exc:
        assert "existing" in exc.message
    else:
        raise AssertionError("an objection without existing passed the schema")


def test_a_file_that_cannot_be_read_fails_the_rectification_s_verification(tmp_path: Path) -> None:
    storage = sample_store(tmp_path)
    storage.publish("cdr/call_date=2026-11-01/broken.parquet", b"not parquet")
    done = rectify_call(storage, "a", "caller")
    assert (done.rows_redacted, done.verified) == (1, False)
    assert done.files_unreadable == ["cdr/call_date=2026-11-01/broken.parquet"]


def test_the_commands_refuse_bad_requests_before_sending_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keyring_path = tmp_path / "keyring.json"
    init_keyring(keyring_path)
    monkeypatch.setenv("CDRPIPE_KEYRING", str(keyring_path))
    monkeypatch.setenv(
        "CDRPIPE_BROKER", "kafka://127.0.0.1:9"
    )  # nothing listens: a send would fail differently
    runner = CliRunner()
    cases = [
        (["restrict"], "give exactly one of --number, --agent or --pseudonym"),
        (["object", "--number", "112", "--existing", "erase"], "only unique within its tenant"),
        (["unrestrict", "--pseudonym", "xyz"], "a pseudonym is 32 hexadecimal characters"),
        (["rectify", "--cdr-id", "c-1", "--party", "caller", "--request-id", "0475123456"], "phone number"),
        (
            ["rectify", "--cdr-id", "0475 12 34 56", "--party", "callee"],
            "cdr_id must not contain a phone number",
        ),
    ]
    for args, message in cases:
        result = runner.invoke(cli, args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output


def test_a_call_id_shared_by_two_sources_is_rectified_only_where_the_source_is_named(tmp_path: Path) -> None:
    # Found by the attacker review: cdr_id is unique per source only; rectifying one call
    # redacted another person's call with the same id.
    storage = LocalStorage(tmp_path)
    parties = PartyPseudonymizer(CLASSIFIER, Pseudonymizer(KEYS.active), 16)
    calls = [
        canonical_decode(call_at("2026-11-01T10:00:00+00:00", cdr_id="call-0001", source=source))
        for source in ("pbx-a", "pbx-b")
    ]
    storage.publish(
        "cdr/call_date=2026-11-01/t+0+0.parquet", encode(build_rows(calls, parties), [parties.key_ref])
    )
    processor = _processor(storage)
    ambiguous = _answer(processor, _request(kind="rectification", cdr_id="call-0001", party="caller"))
    assert ambiguous["status"] == "rejected" and "2 sources" in ambiguous["reason"]
    request = _request(
        request_id="r-2", kind="rectification", cdr_id="call-0001", party="caller", source="pbx-b"
    )
    done = _answer(processor, request)
    assert done["status"] == "completed" and done["rows_redacted"] == 1
    rows = pq.read_table(tmp_path / "cdr/call_date=2026-11-01/t+0+0.parquet").to_pylist()
    assert [(row["source"], row["caller_number_type"]) for row in rows] == [
        ("pbx-a", "E164"),
        ("pbx-b", "REDACTED"),
    ]


# --- rectification of the answering party, the ledger, replays and restores ------------------------

CALLER, WRONG, OTHER = "+32475000111", "+32475000555", "+32475000666"
DAY = "2026-11-01T10:00:00+00:00"
CALL_FILE = "cdr/call_date=2026-11-01/t+0+0.parquet"


def _call_rows(key_index: int = 1) -> pa.Table:
    """``w1``: WRONG was wrongly taken to be the callee and the answering party; ``w2``: a call of
    WRONG's own; ``o1``: the callee is WRONG but another line answered."""
    parties = PartyPseudonymizer(CLASSIFIER, Pseudonymizer(KEYS.keys[key_index]), 16)
    calls = [
        ("w1", CALLER, WRONG, WRONG),
        ("w2", OTHER, WRONG, WRONG),
        ("o1", OTHER, WRONG, CALLER),
    ]
    return build_rows(
        [
            canonical_decode(call_at(DAY, cdr_id=cdr_id, caller=caller, callee=callee, connected=connected))
            for cdr_id, caller, callee, connected in calls
        ],
        parties,
    )


def _rectifying(tmp_path: Path) -> tuple[LocalStorage, SubjectLedger, list[LedgerEntry], RightsProcessor]:
    storage = LocalStorage(tmp_path)
    storage.publish(CALL_FILE, encode(_call_rows(), [KEYS.active.ref]))
    view, written = SubjectLedger(), []
    return storage, view, written, rights_processor(storage, view, written, NOW)


def _rectify(processor: RightsProcessor, request_id: str, cdr_id: str) -> dict[str, Any]:
    request = SubjectRequest(
        request_id=request_id, kind="rectification", requested_at=NOW, cdr_id=cdr_id, party="callee"
    )
    return _answer(processor, msgspec.json.encode(request))


def _parties(table: pa.Table) -> dict[str, tuple[object, object]]:
    rows = table.to_pylist()
    return {row["cdr_id"]: (row["callee_number_type"], row["connected_pseudonym"] is None) for row in rows}


def test_redacting_the_callee_redacts_the_same_answering_party_and_the_export_no_longer_has_the_call(
    tmp_path: Path,
) -> None:
    storage, _, written, processor = _rectifying(tmp_path)
    wrong = subject_from_number(WRONG, KEYS, CLASSIFIER)
    before = subject_rows(storage, wrong).table
    assert before is not None and before.column("cdr_id").to_pylist() == ["w1", "w2", "o1"]
    receipt = _rectify(processor, "r-w1", "w1")
    assert (receipt["status"], receipt["parties_redacted"], receipt["rows_redacted"]) == (
        "completed",
        ["callee", "connected"],
        1,
    )
    assert receipt["verification"]["passed"] is True
    after = subject_rows(storage, wrong).table
    assert after is not None and after.column("cdr_id").to_pylist() == ["w2", "o1"]
    assert _parties(pq.read_table(tmp_path / CALL_FILE)) == {
        "w1": ("REDACTED", True),
        "w2": ("E164", False),
        "o1": ("E164", False),
    }
    # The answering party of o1 is another person: redacting o1's callee leaves it.
    other = _rectify(processor, "r-o1", "o1")
    assert other["parties_redacted"] == ["callee"]
    assert _parties(pq.read_table(tmp_path / CALL_FILE))["o1"] == ("REDACTED", False)
    # Each rectification is a ledger entry keyed by its call and party, holding the redacted
    # pseudonym with its key id, never a number.
    (k2,) = [pair for pair in wrong.pairs if pair.key_id == "k2"]
    assert [(entry.action, entry.key, entry.subject) for entry in written] == [
        ("rectify", 'rectify:["contact-centre", "w1", "callee"]', [k2]),
        ("rectify", 'rectify:["contact-centre", "o1", "callee"]', [k2]),
    ]
    assert b"475000555" not in b"".join(encode_entry(entry) for entry in written)
    again = _rectify(processor, "r-w1-again", "w1")
    assert (again["rows_redacted"], again["parties_redacted"]) == (0, []) and len(written) == 2


def test_a_replayed_copy_of_a_rectified_call_is_redacted_under_any_key(tmp_path: Path) -> None:
    _, view, _, processor = _rectifying(tmp_path)
    _rectify(processor, "r-w1", "w1")
    replay = view.route(_call_rows()).kept
    assert _parties(replay) == {"w1": ("REDACTED", True), "w2": ("E164", False), "o1": ("E164", False)}
    # A late copy pseudonymised under k1 carries the translations ingest computes (k1 -> k2).
    late = _call_rows(key_index=0)
    translations = {
        old.pseudonym: (new.pseudonym,)
        for number in (CALLER, WRONG, OTHER)
        for old, new in [subject_from_number(number, KEYS, CLASSIFIER).pairs]
    }
    assert _parties(view.route(late, translations).kept)["w1"] == ("REDACTED", True)
    assert _parties(view.route(late).kept)["w1"] == ("E164", False)  # without them, k1 is unknown


def test_reapplying_the_ledger_after_a_restore_redacts_a_rectified_call_again(tmp_path: Path) -> None:
    storage, view, _, processor = _rectifying(tmp_path)
    backup = (tmp_path / CALL_FILE).read_bytes()
    _rectify(processor, "r-w1", "w1")
    (tmp_path / CALL_FILE).write_bytes(backup)
    assert _parties(pq.read_table(tmp_path / CALL_FILE))["w1"] == ("E164", False)
    report = reapply_ledger(storage, view.entries())
    assert (report.rectifications, report.files_rewritten, report.verification_passed) == (
        1,
        [CALL_FILE],
        True,
    )
    assert _parties(pq.read_table(tmp_path / CALL_FILE)) == {
        "w1": ("REDACTED", True),
        "w2": ("E164", False),
        "o1": ("E164", False),
    }
    assert reapply_ledger(storage, view.entries()).files_rewritten == []


def test_ledger_entries_written_before_rectify_existed_decode_with_their_keys() -> None:
    erase = decode_entry(
        b'{"request_id": "e-1", "requested_at": "2026-11-01T00:00:00Z", "pseudonyms": ["p"]}'
    )
    ended = decode_entry(b'{"request_id": "h-1", "requested_at": "2026-11-01T00:00:00Z", "action": "ended"}')
    assert (erase.key, erase.action, erase.cdr_id, erase.party) == ("erase:e-1", "erase", None, None)
    assert (ended.key, ended.source) == ("hold:h-1", None)
    rectify = LedgerEntry(
        request_id="r-1", requested_at=NOW, action="rectify", source="s", cdr_id="c:1", party="callee"
    )
    assert decode_entry(encode_entry(rectify)) == rectify
