"""Restriction, lift, objection, withdrawal without a broker: quarantine moves, ledger routing, processor."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from pipeline.formats.selection import FormatSelector, builtin_decoders
from pipeline.ingest.ingestor import Ingestor
from pipeline.ingest.records import RawRecord
from pipeline.ingest.rows import build_rows
from pipeline.keys.keyring import Key, Keyring
from pipeline.keys.pseudonym import PartyPseudonymizer, Pseudonymizer
from pipeline.lifecycle.ledger import LedgerEntry, SubjectLedger
from pipeline.lifecycle.operations.export import subject_rows
from pipeline.lifecycle.operations.quarantine import merge_into, move_subject_rows
from pipeline.lifecycle.operations.reapply import reapply_ledger
from pipeline.lifecycle.operations.retention import apply_retention
from pipeline.lifecycle.operations.rewriter import rewrite_subject_files
from pipeline.lifecycle.requests.receipts import encode_receipt
from pipeline.lifecycle.requests.register import load_request, register_received
from pipeline.lifecycle.requests.subject_request import SubjectRequest
from pipeline.lifecycle.rights import RightsProcessor
from pipeline.lifecycle.subject import subject_from_number
from pipeline.sink.publisher import BatchPublisher
from pipeline.store.parquet import encode
from pipeline.store.storage import LocalStorage
from tests.support.lifecycle_store import (
    CLASSIFIER,
    KEYS,
    SUBJECT,
    parquet_file,
    rights_processor,
    sample_store,
)
from tests.support.samples import call_at, canonical_decode, decode_context
from tests.support.signed import signed

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
OLD_KEYS = Keyring("k1", (KEYS.keys[0],))
"""The keyring before the rotation to k2."""
SUBJECT_IDS = {"a", "c"}  # the rows of SUBJECT in sample_store (under k1 and k2)


def _ids(tmp_path: Path, area: str) -> list[str]:
    files = list(tmp_path.glob(f"{area}/*/*.parquet"))
    if not files:
        return []
    return sorted(
        row[0]
        for row in duckdb.sql(f"SELECT cdr_id FROM read_parquet('{tmp_path}/{area}/*/*.parquet')").fetchall()
    )


def _processor(storage: LocalStorage, view: SubjectLedger, written: list[LedgerEntry]) -> RightsProcessor:
    return rights_processor(storage, view, written, NOW)


def _request(request_id: str, kind: str, **fields: object) -> SubjectRequest:
    return SubjectRequest(request_id=request_id, kind=kind, requested_at=NOW, subject=SUBJECT, **fields)  # type: ignore[arg-type]


def _answer(processor: RightsProcessor, request: SubjectRequest) -> dict[str, Any]:
    """The receipt of one request, as the receipts topic carries it."""
    document: dict[str, Any] = json.loads(encode_receipt(processor.handle(signed(request, KEYS))))
    return document


def test_a_move_is_exactly_once_idempotent_and_reversible(tmp_path: Path) -> None:
    storage = sample_store(tmp_path)
    pseudonyms = subject_from_number(SUBJECT, KEYS, CLASSIFIER).pseudonyms
    before = {
        path.relative_to(tmp_path).as_posix(): pq.read_table(path).to_pylist()
        for path in tmp_path.glob("cdr/*/*.parquet")
    }
    moved = move_subject_rows(storage, pseudonyms, "cdr", "restricted")
    assert (moved.rows_moved, moved.verified) == (2, True)
    assert _ids(tmp_path, "cdr") == ["b", "d"] and _ids(tmp_path, "restricted") == ["a", "c"]
    assert moved.files_deleted == ["cdr/call_date=2026-11-01/t+1+0.parquet"]  # it held only the subject
    assert move_subject_rows(storage, pseudonyms, "cdr", "restricted").rows_moved == 0

    back = move_subject_rows(storage, pseudonyms, "restricted", "cdr")
    assert (back.rows_moved, back.verified) == (2, True)
    assert not list(tmp_path.glob("restricted/*/*.parquet"))
    after = {
        path.relative_to(tmp_path).as_posix(): pq.read_table(path).to_pylist()
        for path in tmp_path.glob("cdr/*/*.parquet")
    }
    assert {path: sorted(rows, key=lambda row: row["cdr_id"]) for path, rows in after.items()} == before
    assert move_subject_rows(storage, pseudonyms, "restricted", "cdr").rows_moved == 0


def test_a_move_cut_short_after_its_first_publish_finishes_exactly_once(tmp_path: Path) -> None:
    storage = sample_store(tmp_path)
    pseudonyms = subject_from_number(SUBJECT, KEYS, CLASSIFIER).pseudonyms
    source = "cdr/call_date=2026-11-01/t+0+0.parquet"
    table = pq.read_table(tmp_path / source)
    subject_row = table.filter(pc.equal(table.column("cdr_id"), "a"))
    assert merge_into(
        storage, "restricted/call_date=2026-11-01/t+0+0.parquet", subject_row, [KEYS.keys[0].ref]
    )  # the crash
    assert _ids(tmp_path, "restricted") == ["a"] and "a" in _ids(tmp_path, "cdr")  # in both places
    move_subject_rows(storage, pseudonyms, "cdr", "restricted")
    assert _ids(tmp_path, "cdr") == ["b", "d"] and _ids(tmp_path, "restricted") == ["a", "c"]


def test_the_ledger_routes_restricted_rows_to_the_quarantine_and_drops_objected_ones(tmp_path: Path) -> None:
    subject = subject_from_number(SUBJECT, OLD_KEYS, CLASSIFIER)  # the entry knows k1 only
    storage = LocalStorage(tmp_path)
    table = pq.read_table(_write(storage, KEYS.keys[1]))  # rows under k2, written after a rotation
    translations = _translations()
    view = SubjectLedger()
    view.add(LedgerEntry(request_id="r", requested_at=NOW, action="restrict", subject=list(subject.pairs)))
    routed = view.route(table, translations)
    assert routed.quarantined is not None and routed.quarantined.column("cdr_id").to_pylist() == ["late"]
    assert routed.kept.column("cdr_id").to_pylist() == ["other"] and routed.suppressed == 0
    view.add(LedgerEntry(request_id="o", requested_at=NOW, action="suppress", subject=list(subject.pairs)))
    routed = view.route(table, translations)
    assert (routed.quarantined, routed.suppressed, routed.kept.num_rows) == (None, 1, 1)
    view.add(LedgerEntry(request_id="o", requested_at=NOW, action="ended"))
    view.add(LedgerEntry(request_id="r", requested_at=NOW, action="ended"))
    assert view.route(table, translations).kept.num_rows == 2


def _write(storage: LocalStorage, key: Key) -> Path:
    storage.publish(
        "cdr/call_date=2026-11-21/t+0+0.parquet",
        parquet_file(
            key,
            [
                ("late", "0475000111", "2026-11-21T10:00:00+00:00"),
                ("other", "0475999888", "2026-11-21T10:00:00+00:00"),
            ],
        ),
    )
    return storage.root / "cdr/call_date=2026-11-21/t+0+0.parquet"


def _translations() -> dict[str, tuple[str, ...]]:
    """What the ingest side hands over: each k2 pseudonym with its k1 pseudonym."""
    new, old = (
        subject_from_number(number, keyring, CLASSIFIER)
        for number, keyring in ((SUBJECT, KEYS), (SUBJECT, OLD_KEYS))
    )
    (k2,) = [pair.pseudonym for pair in new.pairs if pair.key_id == "k2"]
    return {k2: tuple(old.pseudonyms)}


def test_the_publisher_merges_quarantined_rows_and_counts_dropped_ones(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    subject = subject_from_number(SUBJECT, KEYS, CLASSIFIER)
    view = SubjectLedger()
    view.add(LedgerEntry(request_id="r", requested_at=NOW, action="restrict", subject=list(subject.pairs)))
    formats = FormatSelector(builtin_decoders({}), {"cdr.raw": "canonical-json"}, decode_context())
    ingestor = Ingestor(formats, PartyPseudonymizer(CLASSIFIER, Pseudonymizer(KEYS.active), 16), 100, 60.0)
    for offset, (cdr_id, caller) in enumerate([("s1", "0475000111"), ("o1", "0475999888")]):
        ingestor.add(
            RawRecord(
                "cdr.raw", 0, offset, call_at("2026-11-21T10:00:00+00:00", cdr_id=cdr_id, caller=caller)
            )
        )
    publisher = BatchPublisher(storage, row_filter=view.route)
    flush = ingestor.take(("cdr.raw", 0))
    storage.publish(
        "restricted/call_date=2026-11-21/cdr.raw+0+00000000000000000000.parquet",
        parquet_file(KEYS.active, [("earlier", "0475000111", "2026-11-21T09:00:00+00:00")]),
    )
    publisher.publish(flush)
    publisher.publish(flush)  # a replay writes the same rows again: nothing doubles
    assert _ids(tmp_path, "cdr") == ["o1"] and _ids(tmp_path, "restricted") == ["earlier", "s1"]
    view.add(LedgerEntry(request_id="x", requested_at=NOW, action="suppress", subject=list(subject.pairs)))
    published = publisher.publish(flush)
    assert (published.rows, published.quarantined, published.suppressed) == (1, 0, 1)


def test_restriction_lift_and_their_receipts_and_register_entries(tmp_path: Path) -> None:
    storage = sample_store(tmp_path)
    view, written = SubjectLedger(), []
    processor = _processor(storage, view, written)
    receipt = _answer(processor, _request("res-1", "restriction"))
    assert (receipt["status"], receipt["rows_moved"], receipt["verification"]["passed"]) == (
        "completed",
        2,
        True,
    )
    assert receipt["key_ids"] == ["k1", "k2"] and receipt["passes"] == 2
    assert [(entry.request_id, entry.action) for entry in written] == [("res-1", "restrict")]
    assert _ids(tmp_path, "cdr") == ["b", "d"]
    table = subject_rows(storage, subject_from_number(SUBJECT, KEYS, CLASSIFIER)).table
    assert table is not None and table.column("restricted").to_pylist() == [True, True]
    record = load_request(storage, "res-1")
    assert record is not None and record.status == "closed" and "2 rows moved" in (record.outcome or "")

    lifted = _answer(processor, _request("lift-1", "lift"))
    assert (lifted["status"], lifted["ended"], lifted["rows_moved"]) == ("completed", ["res-1"], 2)
    assert written[-1].request_id == "res-1" and written[-1].action == "ended"
    assert _ids(tmp_path, "cdr") == ["a", "b", "c", "d"] and _ids(tmp_path, "restricted") == []
    again = _answer(processor, _request("lift-2", "lift"))
    assert (again["status"], again["reason"]) == ("rejected", "no restriction of this subject is in force")
    assert json.dumps([receipt, lifted, again]).count("475000111") == 0


def test_objection_with_erasure_and_its_withdrawal(tmp_path: Path) -> None:
    storage = sample_store(tmp_path)
    view, written = SubjectLedger(), []
    processor = _processor(storage, view, written)
    _answer(processor, _request("res-1", "restriction"))  # one row is in the quarantine by now
    receipt = _answer(processor, _request("obj-1", "objection", existing="erase"))
    assert (receipt["status"], receipt["rows_removed"], receipt["verification"]["passed"]) == (
        "completed",
        2,
        True,
    )
    assert [(entry.request_id, entry.action) for entry in written[1:]] == [
        ("obj-1", "suppress"),
        ("obj-1:objection-erase", "erase"),
    ]
    assert (
        _ids(tmp_path, "cdr") == ["b", "d"] and _ids(tmp_path, "restricted") == []
    )  # erased in the quarantine too
    withdrawn = _answer(processor, _request("wd-1", "withdrawal"))
    # The restriction still holds: nothing would move back (there is nothing left to move anyway).
    assert (withdrawn["ended"], withdrawn["still_in_force"]) == (["obj-1"], ["res-1"])


def test_objection_with_quarantine_comes_back_on_withdrawal(tmp_path: Path) -> None:
    storage = sample_store(tmp_path)
    processor = _processor(storage, SubjectLedger(), [])
    assert _answer(processor, _request("obj-2", "objection", existing="quarantine"))["rows_moved"] == 2
    assert _ids(tmp_path, "restricted") == ["a", "c"]
    assert _answer(processor, _request("wd-2", "withdrawal"))["rows_moved"] == 2
    assert _ids(tmp_path, "cdr") == ["a", "b", "c", "d"]


def test_retention_and_erasure_apply_inside_the_quarantine(tmp_path: Path) -> None:
    storage = sample_store(tmp_path)
    pseudonyms = subject_from_number(SUBJECT, KEYS, CLASSIFIER).pseudonyms
    move_subject_rows(storage, pseudonyms, "cdr", "restricted")
    results, _ = rewrite_subject_files(storage, pseudonyms, "delete", NOW)
    assert sum(result.rows_affected for result in results) == 2 and _ids(tmp_path, "restricted") == []
    storage.publish(
        "restricted/call_date=2025-11-01/t+0+0.parquet",
        parquet_file(KEYS.active, [("old", "0475000111", "2025-11-01T10:00:00+00:00")]),
    )
    report = apply_retention(storage, NOW, 365)
    assert report.partitions == {
        datetime(2025, 11, 1).date(): ["restricted/call_date=2025-11-01/t+0+0.parquet"]
    }
    assert not (tmp_path / "restricted/call_date=2025-11-01/t+0+0.parquet").exists()


def test_a_move_by_pseudonym_fails_verification_for_keys_it_could_not_search(tmp_path: Path) -> None:
    storage = sample_store(tmp_path)
    (k1,) = [
        pair.pseudonym for pair in subject_from_number(SUBJECT, KEYS, CLASSIFIER).pairs if pair.key_id == "k1"
    ]
    request = SubjectRequest(
        request_id="res-p", kind="restriction", requested_at=NOW, subject=k1, subject_kind="pseudonym"
    )
    receipt = _answer(_processor(storage, SubjectLedger(), []), request)
    assert receipt["rows_moved"] == 1 and _ids(tmp_path, "restricted") == [
        "a"
    ]  # the k2 row "c" was not found
    assert receipt["verification"]["key_ids_not_searched"] == [
        "k1",
        "k2",
    ]  # a given pseudonym's key is unknown
    assert receipt["verification"]["passed"] is False
    record = load_request(storage, "res-p")
    assert record is not None and record.status == "open" and "FAILED" in record.history[-1]["text"]


def test_reapplying_the_ledger_after_a_restore_quarantines_restricted_rows_again(tmp_path: Path) -> None:
    storage = sample_store(tmp_path)
    backup = {path: path.read_bytes() for path in tmp_path.glob("cdr/*/*.parquet")}
    view = SubjectLedger()
    processor = _processor(storage, view, [])
    _answer(processor, _request("res-1", "restriction"))
    for path, data in backup.items():  # the restore brings the subject's rows back into cdr/
        path.write_bytes(data)
    assert _ids(tmp_path, "cdr") == ["a", "b", "c", "d"]
    ended = LedgerEntry(request_id="old", requested_at=NOW, action="ended")
    erased_other = LedgerEntry(
        request_id="era",
        requested_at=NOW,
        subject=list(subject_from_number("0475999888", KEYS, CLASSIFIER).pairs),
    )
    report = reapply_ledger(storage, [*view.entries(), ended, erased_other])
    assert (report.requests, report.holds, report.rows_quarantined, report.verification_passed) == (
        1,
        1,
        2,
        True,
    )
    assert _ids(tmp_path, "cdr") == [] and _ids(tmp_path, "restricted") == ["a", "c"]
    assert reapply_ledger(storage, view.entries()).rows_quarantined == 0


def test_a_request_id_registered_for_another_kind_is_refused_not_crashing(tmp_path: Path) -> None:
    storage = sample_store(tmp_path)
    register_received(storage, "dpo-7", "objection", NOW)
    receipt = _answer(_processor(storage, SubjectLedger(), []), _request("dpo-7", "restriction"))
    assert receipt["status"] == "rejected" and "registered as objection, not restriction" in receipt["reason"]
    assert _ids(tmp_path, "restricted") == []
    bad_subject = SubjectRequest(request_id="dpo-8", kind="restriction", requested_at=NOW, subject="112")
    refused = _answer(_processor(storage, SubjectLedger(), []), bad_subject)
    # a subject is a person: short digits are an extension, only unique within a tenant
    assert refused["status"] == "rejected" and "only unique within its tenant" in refused["reason"]
    record = load_request(storage, "dpo-8")
    assert record is not None and record.status == "open" and "rejected" in record.history[-1]["text"]


class _DroppingStorage(LocalStorage):
    """A store that acknowledges writes to the quarantine but keeps none of them."""

    def publish(self, relative_path: str, data: bytes) -> None:
        if not relative_path.startswith("restricted/"):
            super().publish(relative_path, data)


def test_a_move_passes_only_when_it_checked_files_that_could_have_failed(tmp_path: Path) -> None:
    storage = sample_store(tmp_path)
    receipt = _answer(_processor(storage, SubjectLedger(), []), _request("res-1", "restriction"))
    verification = receipt["verification"]
    assert receipt["rows_moved"] == 2 and verification["passed"] is True
    assert verification["files_checked"] >= 2, "the files the rows moved to were decoded"
    assert "they hold 2 rows of the subject (2 moved)" in verification["checked"]

    dropping = _DroppingStorage(tmp_path / "other")
    for path in sample_store(tmp_path / "fresh").list("cdr"):
        dropping.publish(path, (tmp_path / "fresh" / path).read_bytes())
    lost = _answer(_processor(dropping, SubjectLedger(), []), _request("res-2", "restriction"))
    assert lost["rows_moved"] == 2 and lost["verification"]["passed"] is False
    assert "FAILED: 2 moved rows are not in restricted/" in lost["verification"]["checked"]
    assert lost["summary"].endswith("verification FAILED (see verification.checked)")
    record = load_request(dropping, "res-2")
    assert record is not None and record.status == "open"


# --- holds per person ----------------------------------------------------------------------------

A, B, C, D = "+32475000111", "+32475000222", "+32475000333", "+32475000444"
SHARED_DAY = "2026-11-01T10:00:00+00:00"
CALLS = [("ab", A, B), ("a1", A, C), ("b1", D, B), ("x", C, D)]
"""A calls B (the shared call), A calls C, D calls B, C calls D."""
HOLD_AND_END = {"restriction": "lift", "objection": "withdrawal"}


def _calls(key: Key, calls: list[tuple[str, str, str]], connected: dict[str, str] | None = None) -> pa.Table:
    parties = PartyPseudonymizer(CLASSIFIER, Pseudonymizer(key), 64)
    cdrs = [
        canonical_decode(
            call_at(
                SHARED_DAY,
                cdr_id=cdr_id,
                caller=caller,
                callee=callee,
                connected=(connected or {}).get(cdr_id),
            )
        )
        for cdr_id, caller, callee in calls
    ]
    return build_rows(cdrs, parties)


def _shared_store(tmp_path: Path) -> LocalStorage:
    storage = LocalStorage(tmp_path)
    storage.publish(
        "cdr/call_date=2026-11-01/t+0+0.parquet", encode(_calls(KEYS.active, CALLS), [KEYS.active.ref])
    )
    return storage


def _hold(processor: RightsProcessor, request_id: str, kind: str, number: str) -> dict[str, Any]:
    fields = {"existing": "quarantine"} if kind == "objection" else {}
    return _answer(
        processor,
        SubjectRequest(request_id=request_id, kind=kind, requested_at=NOW, subject=number, **fields),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("a_kind", "b_kind"),
    [("restriction", "restriction"), ("restriction", "objection"), ("objection", "restriction")],
)
def test_ending_one_party_s_hold_keeps_a_call_another_held_party_shares(
    tmp_path: Path, a_kind: str, b_kind: str
) -> None:
    storage = _shared_store(tmp_path)
    view = SubjectLedger()
    processor = _processor(storage, view, [])
    _hold(processor, "hold-a", a_kind, A)
    _hold(processor, "hold-b", b_kind, B)
    assert _ids(tmp_path, "restricted") == ["a1", "ab", "b1"] and _ids(tmp_path, "cdr") == ["x"]

    ended = _hold(processor, "end-a", HOLD_AND_END[a_kind], A)
    assert (ended["status"], ended["ended"], ended["rows_moved"]) == ("completed", ["hold-a"], 1)
    assert (ended["rows_still_held"], ended["still_in_force"]) == (1, ["hold-b"])
    assert ended["verification"]["passed"] is True and ended["verification"]["rows_remaining"] == 0
    # A's own call is back; the call A shares with B stays out of use while B's hold is in force.
    assert _ids(tmp_path, "cdr") == ["a1", "x"] and _ids(tmp_path, "restricted") == ["ab", "b1"]
    exported = subject_rows(storage, subject_from_number(A, KEYS, CLASSIFIER)).table
    assert exported is not None
    restricted = exported.column("restricted").to_pylist()
    assert dict(zip(exported.column("cdr_id").to_pylist(), restricted, strict=True)) == {
        "a1": False,
        "ab": True,
    }
    # A replayed or late copy of the shared call is still taken out of use by B's hold.
    routed = view.route(_calls(KEYS.active, CALLS))
    assert routed.kept.column("cdr_id").to_pylist() == ["a1", "x"]
    if b_kind == "restriction":
        assert routed.quarantined is not None and routed.quarantined.column("cdr_id").to_pylist() == [
            "ab",
            "b1",
        ]
    else:
        assert (routed.quarantined, routed.suppressed) == (None, 2)

    ended_b = _hold(processor, "end-b", HOLD_AND_END[b_kind], B)
    assert (ended_b["rows_moved"], ended_b["rows_still_held"], ended_b["verification"]["passed"]) == (
        2,
        0,
        True,
    )
    assert "still_in_force" not in ended_b
    assert _ids(tmp_path, "cdr") == ["a1", "ab", "b1", "x"] and _ids(tmp_path, "restricted") == []
    assert view.route(_calls(KEYS.active, CALLS)).kept.num_rows == 4


def test_a_hold_older_than_a_key_keeps_the_rows_under_that_key_until_it_is_renewed() -> None:
    # The store has no translation between keys: under k2, B's k1-only restriction cannot tell
    # whether C is B, so A's call with C stays held; restricting B under both keys settles it.
    view = SubjectLedger()
    old_b = subject_from_number(B, OLD_KEYS, CLASSIFIER)
    view.add(LedgerEntry(request_id="res-b", requested_at=NOW, action="restrict", subject=list(old_b.pairs)))
    under_k1, under_k2 = (_calls(key, [("a1", A, C)]) for key in KEYS.keys)
    k1, k2 = (key.ref for key in KEYS.keys)
    assert view.held_rows(under_k1, frozenset({k1})).to_pylist() == [False]
    assert view.held_rows(under_k2, frozenset({k2})).to_pylist() == [True]
    assert view.holds_blind_to(frozenset({k1, k2})) == {k2: frozenset({"res-b"})}
    both = subject_from_number(B, KEYS, CLASSIFIER)
    view.add(LedgerEntry(request_id="res-b2", requested_at=NOW, action="restrict", subject=list(both.pairs)))
    assert view.held_rows(under_k2, frozenset({k2})).to_pylist() == [False]
    assert view.holds_blind_to(frozenset({k1, k2})) == {}
    assert view.held_rows(_calls(KEYS.keys[1], [("ab", A, B)]), frozenset({k2})).to_pylist() == [True]


def test_a_lift_names_the_older_hold_that_keeps_rows_under_a_newer_key(tmp_path: Path) -> None:
    storage = _shared_store(tmp_path)  # every call under k2
    view = SubjectLedger()
    processor = _processor(storage, view, [])
    old_b = subject_from_number(B, OLD_KEYS, CLASSIFIER)  # B restricted before k2 existed
    view.add(LedgerEntry(request_id="res-b", requested_at=NOW, action="restrict", subject=list(old_b.pairs)))
    _hold(processor, "res-a", "restriction", A)
    lifted = _hold(processor, "lift-a", "lift", A)
    assert (lifted["rows_moved"], lifted["rows_still_held"], lifted["still_in_force"]) == (0, 2, ["res-b"])
    assert lifted["verification"]["passed"] is True and _ids(tmp_path, "restricted") == ["a1", "ab"]
    _hold(processor, "res-b2", "restriction", B)  # B again, under every current key
    report = reapply_ledger(storage, view.entries())
    assert report.rows_released == 1
    assert _ids(tmp_path, "cdr") == ["a1", "x"] and _ids(tmp_path, "restricted") == ["ab", "b1"]


def test_reapplying_the_ledger_after_restoring_a_backup_taken_before_a_lift_releases_the_rows(
    tmp_path: Path,
) -> None:
    storage = _shared_store(tmp_path)
    view = SubjectLedger()
    processor = _processor(storage, view, [])
    _hold(processor, "res-a", "restriction", A)
    _hold(processor, "res-b", "restriction", B)
    backup = {path: path.read_bytes() for path in tmp_path.glob("*/call_date=*/*.parquet")}
    _hold(processor, "lift-a", "lift", A)
    _hold(processor, "lift-b", "lift", B)
    _hold(processor, "res-b2", "restriction", B)  # B is restricted again: B's calls stay out of use
    for path in tmp_path.glob("*/call_date=*/*.parquet"):  # the restore: the store as it was
        path.unlink()
    for path, data in backup.items():
        path.write_bytes(data)
    assert _ids(tmp_path, "restricted") == ["a1", "ab", "b1"]
    refused = _hold(processor, "lift-a2", "lift", A)
    assert refused["status"] == "rejected"  # nothing of A is in force: only the re-apply can help

    report = reapply_ledger(storage, view.entries())
    assert (report.rows_released, report.verification_passed) == (1, True)
    assert _ids(tmp_path, "cdr") == ["a1", "x"] and _ids(tmp_path, "restricted") == ["ab", "b1"]
    again = reapply_ledger(storage, view.entries())
    assert (again.rows_released, again.rows_quarantined, again.files_rewritten, again.files_deleted) == (
        0,
        0,
        [],
        [],
    )
