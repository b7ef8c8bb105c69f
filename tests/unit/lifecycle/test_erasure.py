"""Erasure without a broker: the ledger across key rotation, the processor, receipts, agents, strays."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.formats.selection import FormatSelector, builtin_decoders
from pipeline.ingest.ingestor import Ingestor
from pipeline.ingest.records import RawRecord
from pipeline.ingest.rows import build_rows
from pipeline.ingest.translation import KeyTranslator
from pipeline.kafka.topics import TopicPlan, retention_warnings
from pipeline.keys.keyring import Key, Keyring, init_keyring, load_keyring, rotate_keyring
from pipeline.keys.keyring_file import KeyringFile
from pipeline.keys.pseudonym import PartyPseudonymizer, Pseudonymizer
from pipeline.lifecycle.erasure import ErasureProcessor
from pipeline.lifecycle.ledger import (
    KeyedPseudonym,
    LedgerEntry,
    SubjectLedger,
    decode_entry,
    distinct_pseudonyms,
)
from pipeline.lifecycle.operations.export import UnreadableFilesError, subject_rows
from pipeline.lifecycle.operations.restriction import Ledger, Passes
from pipeline.lifecycle.operations.retention import apply_retention
from pipeline.lifecycle.requests.audit import read_audit
from pipeline.lifecycle.requests.erasure_request import ErasureRequest
from pipeline.lifecycle.requests.receipts import Receipt, ResidualCopy, encode_receipt, receipt_path
from pipeline.lifecycle.rows import SUBJECT_COLUMNS
from pipeline.lifecycle.subject import subject_from_agent, subject_from_number
from pipeline.numbers.msisdn import NumberClassifier
from pipeline.sink.publisher import BatchPublisher
from pipeline.store.parquet import INDEXED_COLUMNS, encode
from pipeline.store.schema import PSEUDONYM_COLUMNS
from pipeline.store.storage import LocalStorage
from tests.support.helpers import REPO, find_raw_numbers, raw_number_needles
from tests.support.samples import call_at, canonical_decode, decode_context
from tests.support.signed import signed

CLASSIFIER = NumberClassifier("BE", (2, 5))
K1, K2 = Key("k1", b"a" * 32, "t"), Key("k2", b"b" * 32, "t")
ONLY_K1 = Keyring("k1", (K1,))
ROTATED = Keyring("k2", (K1, K2))
SUBJECT = "+32475000111"
SPELLINGS = ["0475 00 01 11", "+32475000111", "tel:+32-475-000111", "sip:+32475000111@sbc.example"]
OTHER = "0475999888"
DAY = "2026-11-01T10:00:00+00:00"
REQUESTED_AT = datetime(2026, 11, 2, tzinfo=UTC)
TENANT = "contact-centre"  # the source of tests.support.samples' CDRs: agents are pseudonymised per tenant
RESIDUAL = ResidualCopy(topic="cdr.raw", holds="raw CDRs", retention_days=None, retention_source="broker")
RECEIPT_SCHEMA = json.loads((REPO / "schemas/erasure-receipt.schema.json").read_text())


def _parties(keyring: Keyring) -> tuple[PartyPseudonymizer, KeyTranslator]:
    parties = PartyPseudonymizer(CLASSIFIER, Pseudonymizer(keyring.active), 64)
    return parties, KeyTranslator.for_keyring(parties, keyring, CLASSIFIER, 64)


def _ingestor(keyring: Keyring) -> Ingestor:
    parties, translator = _parties(keyring)
    formats = FormatSelector(builtin_decoders({}), {"cdr.raw": "canonical-json"}, decode_context())
    return Ingestor(formats, parties, 10_000, 60.0, translator=translator)


def _publish(ingestor: Ingestor, ledger: SubjectLedger, storage: LocalStorage) -> None:
    BatchPublisher(storage, row_filter=ledger.route).publish(ingestor.take(("cdr.raw", 0)))


def _stored(storage: LocalStorage) -> pa.Table:
    paths = [storage.root / path for path in storage.list("cdr")]
    return pa.concat_tables([pq.read_table(path) for path in paths])


def _erased(keyring: Keyring, number: str = SUBJECT) -> LedgerEntry:
    subject = subject_from_number(number, keyring, CLASSIFIER)
    return LedgerEntry(request_id="r-1", subject=list(subject.pairs), requested_at=REQUESTED_AT)


def _add(ingestor: Ingestor, offset: int, cdr_id: str, caller: str, agent: str = "agent-1") -> None:
    assert (
        ingestor.add(RawRecord("cdr.raw", 0, offset, call_at(DAY, cdr_id=cdr_id, caller=caller, agent=agent)))
        is None
    )


# --- 1. the ledger holds under every future key ------------------------------------------------


def test_erased_under_k1_then_rotated_a_late_record_under_k2_is_never_stored(tmp_path: Path) -> None:
    storage, ledger = LocalStorage(tmp_path), SubjectLedger()
    ledger.add(_erased(ONLY_K1))  # (a) the entry is known before the record arrives
    ingestor = _ingestor(ROTATED)
    for offset, spelling in enumerate(SPELLINGS):
        _add(ingestor, offset, f"late-{offset}", spelling)
    _add(ingestor, 9, "other", OTHER)
    _publish(ingestor, ledger, storage)
    stored = _stored(storage)
    assert stored.column("cdr_id").to_pylist() == ["other"]
    assert set(stored.column("key_id").to_pylist()) == {"k2"}


def test_an_entry_arriving_while_the_record_is_buffered_still_applies(tmp_path: Path) -> None:
    storage, ledger = LocalStorage(tmp_path), SubjectLedger()
    ingestor = _ingestor(ROTATED)
    _add(ingestor, 0, "buffered", SPELLINGS[0])
    _add(ingestor, 1, "other", OTHER)
    ledger.add(_erased(ONLY_K1))  # (b) computed by an erasure that knew only k1, after buffering
    _publish(ingestor, ledger, storage)
    assert _stored(storage).column("cdr_id").to_pylist() == ["other"]


def test_an_entry_added_after_the_ledger_checked_a_batch_applies_to_the_next(tmp_path: Path) -> None:
    ledger = SubjectLedger()
    ledger.add(_erased(ONLY_K1, OTHER))  # the ledger is in use (its index built) before the entry
    ingestor = _ingestor(ONLY_K1)  # one key: the match is the pseudonym itself, not a translation
    _add(ingestor, 0, "first", SPELLINGS[1])
    first = ingestor.take(("cdr.raw", 0)).files[0]
    assert ledger.route(first.table, first.translations).kept.num_rows == 1
    ledger.add(_erased(ONLY_K1))
    _add(ingestor, 1, "second", SPELLINGS[2])
    _add(ingestor, 2, "third", "0475 123 456")
    second = ingestor.take(("cdr.raw", 0)).files[0]
    assert ledger.route(second.table, second.translations).kept.column("cdr_id").to_pylist() == ["third"]


def test_a_rotation_between_the_entry_and_the_record_inside_one_batch(tmp_path: Path) -> None:
    storage, ledger = LocalStorage(tmp_path), SubjectLedger()
    ingestor = _ingestor(ONLY_K1)
    _add(ingestor, 0, "before", SPELLINGS[1])
    ledger.add(_erased(ONLY_K1))
    ingestor.rekey(*_parties(ROTATED))  # (c) the worker notices the rotated keyring mid-batch
    _add(ingestor, 1, "after", SPELLINGS[2])
    _add(ingestor, 2, "other", OTHER)
    _publish(ingestor, ledger, storage)
    stored = _stored(storage)
    assert stored.column("cdr_id").to_pylist() == ["other"]


def test_the_ledger_check_costs_rows_not_entries_times_rows() -> None:
    class CountingIndex(dict[str, frozenset[str]]):
        lookups = 0

        def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
            CountingIndex.lookups += 1
            return super().get(key, default)

    ledger = SubjectLedger()
    for index in range(50_000):
        pairs = [KeyedPseudonym("k1", f"{index:032x}"), KeyedPseudonym("k2", f"{index + 10**9:032x}")]
        ledger.add(LedgerEntry(request_id=f"r-{index}", subject=pairs, requested_at=REQUESTED_AT))
    ledger.add(_erased(ROTATED))
    ledger._index = CountingIndex(ledger._index)
    ingestor = _ingestor(ROTATED)
    records = [
        RawRecord("cdr.raw", 0, offset, call_at(DAY, cdr_id=f"c{offset}",
                  caller=SPELLINGS[0] if offset % 1000 == 0 else f"047599{offset:04d}"))
        for offset in range(20_000)
    ]  # fmt: skip
    ingestor.add_batch(records)
    flush = ingestor.take(("cdr.raw", 0))
    (pending,) = flush.files
    kept = ledger.route(pending.table, pending.translations).kept
    assert kept.num_rows == 20_000 - 20
    # One lookup per distinct pseudonym of the batch and per translation of it, whatever the
    # number of entries: applying 50,001 entries one by one would be a billion comparisons.
    distinct = len(distinct_pseudonyms(pending.table))
    translations = sum(
        len(pending.translations.get(value, ())) for value in distinct_pseudonyms(pending.table)
    )
    assert 0 < CountingIndex.lookups <= distinct + translations


def test_ledger_entries_of_the_earlier_format_still_apply() -> None:
    subject = subject_from_number(SUBJECT, ONLY_K1, CLASSIFIER)
    old = json.dumps(
        {
            "request_id": "r-old",
            "pseudonyms": sorted(subject.pseudonyms),
            "requested_at": REQUESTED_AT.isoformat(),
        }
    ).encode()
    ledger = SubjectLedger()
    ledger.add(decode_entry(old))
    ingestor = _ingestor(ROTATED)
    _add(ingestor, 0, "late", SPELLINGS[0])
    (pending,) = ingestor.take(("cdr.raw", 0)).files
    assert ledger.route(pending.table, pending.translations).kept.num_rows == 0


# --- the processor, in process -------------------------------------------------------------------


class _Harness:
    """A processor on a local store with a fixed clock, recorded sleeps and ledger writes."""

    def __init__(
        self,
        tmp_path: Path,
        keyring: Callable[[], Keyring],
        storage: LocalStorage | None = None,
        tenants: dict[str, str] | None = None,
        cli_keyring: Keyring | None = None,
    ) -> None:
        self.storage = storage or LocalStorage(tmp_path / "store")
        self.ledger: list[LedgerEntry] = []
        self.sleeps: list[float] = []
        # the DPO's CLI signs with its own copy of the keyring (by default the worker's)
        self.cli_keyring = cli_keyring if cli_keyring is not None else keyring()
        self.processor = ErasureProcessor(
            self.storage,
            keyring,
            CLASSIFIER,
            ledger=Ledger(SubjectLedger(), self.ledger.append),
            passes=Passes(7.0, self.sleeps.append),
            residual_copies=lambda: [
                ResidualCopy(
                    topic="cdr.raw", holds="raw CDRs", retention_days=None, retention_source="broker"
                )
            ],
            clock=lambda: datetime(2026, 11, 3, 12, tzinfo=UTC),
            tenants=tenants,
        )

    def put(self, name: str, key: Key, calls: list[tuple[str, str, str]]) -> str:
        parties = PartyPseudonymizer(CLASSIFIER, Pseudonymizer(key), 64)
        cdrs = [
            canonical_decode(call_at(DAY, cdr_id=i, caller=caller, agent=agent)) for i, caller, agent in calls
        ]
        path = f"cdr/call_date=2026-11-01/{name}.parquet"
        self.storage.publish(path, encode(build_rows(cdrs, parties), [parties.key_ref]))
        return path

    def erase(
        self,
        subject: str,
        kind: str = "number",
        mode: str = "delete",
        request_id: str = "r-1",
        tenant: str | None = None,
    ) -> Receipt:
        document = {"request_id": request_id, "subject": subject, "subject_kind": kind, "mode": mode,
                    "requested_at": REQUESTED_AT.isoformat(), "tenant": tenant}  # fmt: skip
        return self.processor.handle(signed(document, self.cli_keyring))

    def rows(self) -> pa.Table:
        return _stored(self.storage)


def _validate(receipt: Receipt) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(encode_receipt(receipt))
    jsonschema.validate(document, RECEIPT_SCHEMA, format_checker=jsonschema.FormatChecker())
    return document


def test_a_completed_receipt_matches_its_schema_and_says_what_was_checked(tmp_path: Path) -> None:
    harness = _Harness(tmp_path, lambda: ROTATED)
    harness.put("a", K1, [("a1", SPELLINGS[0], "x"), ("a2", OTHER, "x")])
    harness.put("b", K2, [("b1", SPELLINGS[1], "x")])
    harness.put("c", K2, [("c1", OTHER, "x")])
    receipt = harness.erase(SUBJECT)
    document = _validate(receipt)
    assert receipt.status == "completed" and receipt.passed and receipt.rows_removed == 2
    assert harness.sleeps == [7.0] and len(harness.ledger) == 1
    assert {pair.key_id for pair in harness.ledger[0].subject} == {"k1", "k2"}
    verification = document["verification"]
    assert verification["key_ids_in_store"] == ["k1", "k2"] and verification["key_ids_not_searched"] == []
    assert verification["files_in_store"] == 2 and verification["rows_remaining"] == 0
    assert (
        "Decoded the caller_pseudonym, callee_pseudonym, connected_pseudonym, agent_pseudonym"
        in (verification["checked"])
    )
    assert "raw_occurrences" not in json.dumps(document)
    assert sorted(harness.rows().column("cdr_id").to_pylist()) == ["a2", "c1"]
    stored = json.loads(harness.storage.read(receipt_path("r-1")) or b"{}")
    assert stored == document
    assert harness.erase(SUBJECT) == receipt  # re-delivery re-issues the stored receipt
    leaks = raw_number_needles([SUBJECT], SPELLINGS)
    audit = json.dumps(read_audit(harness.storage)).encode()
    assert find_raw_numbers(encode_receipt(receipt) + audit, leaks) == []
    subject = subject_from_number(SUBJECT, ROTATED, CLASSIFIER)
    assert not [
        pseudonym for pseudonym in subject.pseudonyms if pseudonym in encode_receipt(receipt).decode()
    ]


def test_a_file_under_a_key_the_erasure_does_not_know_fails_verification_by_name(tmp_path: Path) -> None:
    harness = _Harness(tmp_path, lambda: ONLY_K1)  # a lifecycle owner with a stale keyring
    harness.put("a", K1, [("a1", SPELLINGS[0], "x")])
    harness.put("b", K2, [("b1", SPELLINGS[1], "x")])  # written by a worker that already rotated
    receipt = harness.erase(SUBJECT)
    assert receipt.status == "completed" and not receipt.passed
    assert receipt.verification is not None and receipt.verification.key_ids_not_searched == ["k2"]
    assert "FAILED" in receipt.verification.checked and "k2" in receipt.verification.checked
    _validate(receipt)


def test_the_erasure_reloads_a_rotated_keyring_and_completes(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "keyring.json"
    init_keyring(path)
    harness = _Harness(tmp_path, KeyringFile(path).current)
    old = load_keyring(path).keys[0]
    harness.put("a", old, [("a1", SPELLINGS[0], "x")])
    assert harness.erase(SUBJECT, request_id="before").passed
    rotated = rotate_keyring(path)  # while the worker runs
    harness.put("b", rotated.active, [("b1", SPELLINGS[1], "x"), ("b2", OTHER, "x")])
    receipt = harness.erase(SUBJECT, request_id="after")
    assert receipt.passed and receipt.key_ids == [old.key_id, rotated.active_id]
    assert receipt.rows_removed == 1 and harness.rows().column("cdr_id").to_pylist() == ["b2"]


class _IgnoringStorage(LocalStorage):
    """A store that acknowledges rewrites and deletions but keeps the old files."""

    def publish(self, relative_path: str, data: bytes) -> None:
        if not (self.root / relative_path).exists():
            super().publish(relative_path, data)

    def delete(self, relative_path: str) -> None:
        if not relative_path.startswith("cdr/"):
            super().delete(relative_path)


def _strip_index(storage: LocalStorage, path: str) -> None:
    table = pq.read_table(storage.root / path)
    pq.write_table(table.replace_schema_metadata(None), storage.root / path)


@pytest.mark.parametrize("attack", ["storage ignores rewrites", "file without an index", "agent column"])
def test_a_receipt_cannot_pass_while_a_subject_row_remains(tmp_path: Path, attack: str) -> None:
    if attack == "storage ignores rewrites":
        harness = _Harness(tmp_path, lambda: ROTATED, _IgnoringStorage(tmp_path / "store"))
        others = [(f"o{index}", f"04759{index:05d}", "x") for index in range(3_000)]
        path = harness.put("a", K2, [("a1", SPELLINGS[0], "x"), *others])
        harness.put("b", K2, [("b1", SPELLINGS[1], "x")])
        # the subject is in the file, but compression hides its bytes: a byte scan would see nothing
        content = (harness.storage.root / path).read_bytes()
        pseudonym = subject_from_number(SUBJECT, ROTATED, CLASSIFIER).pairs[1].pseudonym
        assert pseudonym.encode() not in content
        receipt = harness.erase(SUBJECT)
        assert receipt.verification is not None and receipt.verification.rows_remaining == 2
        assert not receipt.passed
        return
    harness = _Harness(tmp_path, lambda: ROTATED)
    if attack == "file without an index":
        path = harness.put("legacy", K1, [("l1", SPELLINGS[0], "x"), ("l2", OTHER, "x")])
        _strip_index(harness.storage, path)  # written before footers carried an index and key ids
        receipt = harness.erase(SUBJECT)
    else:
        harness.put("a", K2, [("a1", OTHER, "agent-42"), ("a2", OTHER, "agent-7")])
        receipt = harness.erase("agent-42", kind="agent", tenant=TENANT)
    assert receipt.passed and receipt.rows_removed == 1
    assert len(harness.rows()) == 1


def _request(**fields: str) -> bytes:
    document = {"request_id": "r-2", "subject": SUBJECT, "requested_at": "2026-11-02T00:00:00Z", **fields}
    return signed(document, ROTATED)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (signed({"request_id": ["r-2"]}, ROTATED), "does not match schemas/erasure-request.schema.json"),
        (signed({"request_id": "r-2", "subject": SUBJECT}, ROTATED), "missing field `requested_at`"),
        (_request(requested_at="2026-11-02T00:00:00"), "$.requested_at"),
        (_request(subject_kind=SUBJECT), "$.subject_kind"),
        (_request(mode=SUBJECT), "$.mode"),
        # a subject is a person: short digits are an extension, which needs its tenant
        (_request(subject="112"), "only unique within its tenant"),
        (_request(subject="+3247"), "INVALID"),
        (_request(subject_kind="pseudonym"), "32 hexadecimal"),
        (_request(subject="  ", subject_kind="agent"), "agent id is empty"),
        # found by the attacker review: the id names the receipt, audit entry and ledger key
        (_request(request_id=SUBJECT), "request id is not usable"),
        (_request(request_id="0475..00..01..11"), "request id is not usable"),
    ],
)
def test_every_bad_request_gets_a_rejected_receipt_without_the_number(
    tmp_path: Path, payload: bytes, reason: str
) -> None:
    harness = _Harness(tmp_path, lambda: ROTATED)
    receipt = harness.processor.handle(payload)
    document = _validate(receipt)
    assert receipt.status == "rejected" and reason in (receipt.reason or "")
    assert receipt.request_id == "r-2" or receipt.request_id.startswith("unidentified-")
    assert find_raw_numbers(encode_receipt(receipt), raw_number_needles([SUBJECT])) == []
    assert "+3247" not in json.dumps(document) and "0475" not in json.dumps(document)
    assert not any(SUBJECT[1:] in path for path in harness.storage.list("_cdrpipe"))
    assert harness.ledger == [] and harness.storage.read(receipt_path("r-2")) is None
    assert [entry["kind"] for entry in read_audit(harness.storage)] == ["erasure-rejected"]


def test_a_rejected_request_id_can_be_used_again_once_corrected(tmp_path: Path) -> None:
    harness = _Harness(tmp_path, lambda: ROTATED)
    harness.put("a", K2, [("a1", SPELLINGS[0], "x")])
    assert harness.erase("112").status == "rejected"
    assert harness.erase(SUBJECT).passed


# --- 5. agents ----------------------------------------------------------------------------------


def test_an_agent_is_erased_or_redacted_and_exported(tmp_path: Path) -> None:
    harness = _Harness(tmp_path, lambda: ROTATED)
    harness.put("a", K1, [("a1", OTHER, "agent-42"), ("a2", OTHER, "agent-7")])
    harness.put("b", K2, [("b1", OTHER, " agent-42"), ("b2", OTHER, "agent-7")])
    agent = subject_from_agent("agent-42", ROTATED, TENANT)
    exported = subject_rows(harness.storage, agent).table
    assert exported is not None and sorted(exported.column("cdr_id").to_pylist()) == ["a1", "b1"]
    without_tenant = harness.erase("agent-42", kind="agent", request_id="r-no-tenant")
    assert without_tenant.status == "rejected" and "tenant" in str(without_tenant.reason)
    redacted = harness.erase("agent-42", kind="agent", mode="redact", request_id="r-redact", tenant=TENANT)
    assert redacted.passed and redacted.rows_redacted == 2
    rows = {row["cdr_id"]: row for row in harness.rows().to_pylist()}
    assert sorted(rows) == ["a1", "a2", "b1", "b2"]
    assert rows["a1"]["agent_pseudonym"] is None and rows["b1"]["agent_pseudonym"] is None
    assert rows["a1"]["caller_pseudonym"] is not None and rows["a2"]["agent_pseudonym"] is not None
    deleted = harness.erase("agent-7", kind="agent", request_id="r-delete", tenant=TENANT)
    assert deleted.passed and deleted.rows_removed == 2
    assert sorted(harness.rows().column("cdr_id").to_pylist()) == ["a1", "b1"]


def test_the_ledger_drops_an_erased_agents_late_calls(tmp_path: Path) -> None:
    storage, ledger = LocalStorage(tmp_path), SubjectLedger()
    agent = subject_from_agent("agent-42", ONLY_K1, TENANT)
    ledger.add(LedgerEntry(request_id="r-a", subject=list(agent.pairs), requested_at=REQUESTED_AT))
    ingestor = _ingestor(ROTATED)
    _add(ingestor, 0, "agent-call", OTHER, agent="agent-42")
    _add(ingestor, 1, "other", OTHER, agent="agent-7")
    _publish(ingestor, ledger, storage)
    assert _stored(storage).column("cdr_id").to_pylist() == ["other"]


# --- 6. stray files ---------------------------------------------------------------------------


def test_stray_files_never_stop_retention_erasure_or_export(tmp_path: Path) -> None:
    harness = _Harness(tmp_path, lambda: ROTATED)
    harness.put("a", K2, [("a1", SPELLINGS[0], "x"), ("a2", OTHER, "x")])
    for stray in (
        "cdr/notes.txt",
        "cdr/stray.parquet",
        "cdr/call_date=garbage/x.parquet",
        "cdr/a/b/c.parquet",
    ):
        harness.storage.publish(stray, b"not a data file")
    receipt = harness.erase(SUBJECT)
    assert receipt.passed and len(receipt.files_skipped or ()) == 4
    assert subject_rows(harness.storage, subject_from_number(SUBJECT, ROTATED, CLASSIFIER)).table is None
    report = apply_retention(harness.storage, datetime(2027, 12, 1, tzinfo=UTC), 365)
    assert report.files == 1 and not harness.storage.list("cdr/call_date=2026-11-01")
    skipped = [entry for entry in read_audit(harness.storage) if entry["kind"] == "stray-files"]
    assert [entry["operation"] for entry in skipped] == ["erasure r-1", "retention"]
    assert len(skipped[1]["files_skipped"]) == 4


# --- 2. keyring reload, 7. retention warnings -------------------------------------------------------


def test_a_keyring_file_is_loaded_again_only_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    init_keyring(path)
    watched = KeyringFile(path)
    first = watched.changed()
    assert first is not None and watched.changed() is None and watched.current() is first
    rotated = rotate_keyring(path)
    assert (reloaded := watched.changed()) is not None and reloaded.active_id == rotated.active_id


def test_topics_that_keep_raw_data_too_long_are_named() -> None:
    plans = [
        TopicPlan("raw", 4, {"retention.ms": str(7 * 86_400_000)}),
        TopicPlan("dlq", 1, {"retention.ms": str(7 * 86_400_000)}),
        TopicPlan("requests", 1, {"retention.ms": str(7 * 86_400_000)}),
        TopicPlan("ledger", 1, {"cleanup.policy": "compact"}),
    ]
    warnings = retention_warnings(plans, {"raw": 30.0, "dlq": None, "requests": 7.0, "ledger": None})
    assert len(warnings) == 2
    assert warnings[0].startswith("topic raw keeps data 30 days, longer than its setting of 7 days")
    assert warnings[1].startswith("topic dlq keeps data without a time limit")


def test_the_request_struct_refuses_times_without_an_offset() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(
            b'{"request_id": "r", "subject": "x", "requested_at": "2026-11-02T00:00:00"}', type=ErasureRequest
        )


def test_a_keyring_that_cannot_be_loaded_rejects_the_request_and_erases_nothing(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "keyring.json"
    init_keyring(path)
    harness = _Harness(tmp_path, KeyringFile(path).current, cli_keyring=load_keyring(path))
    harness.put("a", load_keyring(path).active, [("a1", SPELLINGS[0], "x")])
    path.chmod(0o644)
    receipt = harness.erase(SUBJECT)
    assert receipt.status == "rejected" and "chmod 600" in (receipt.reason or "")
    assert harness.ledger == [] and harness.rows().column("cdr_id").to_pylist() == ["a1"]
    path.chmod(0o600)
    assert harness.erase(SUBJECT).passed


def test_a_stored_receipt_of_an_earlier_version_gets_the_erasure_run_again(tmp_path: Path) -> None:
    harness = _Harness(tmp_path, lambda: ROTATED)
    harness.put("a", K2, [("a1", SPELLINGS[0], "x"), ("a2", OTHER, "x")])
    earlier = {"request_id": "r-1", "verification": {"raw_occurrences": 0, "passed": True}}
    harness.storage.publish(receipt_path("r-1"), json.dumps(earlier).encode())
    receipt = harness.erase(SUBJECT)
    assert receipt.passed and receipt.rows_removed == 1


def test_every_pseudonym_column_identifies_a_subject() -> None:
    """A new pseudonym column must be matched, erased, indexed and verified like the others."""
    assert set(SUBJECT_COLUMNS) == set(PSEUDONYM_COLUMNS) == set(INDEXED_COLUMNS)


def test_an_unreadable_data_file_fails_verification_by_name_and_stops_nothing(tmp_path: Path) -> None:
    harness = _Harness(tmp_path, lambda: ROTATED)
    harness.put("a", K2, [("a1", SPELLINGS[0], "x"), ("a2", OTHER, "x")])
    broken = "cdr/call_date=2026-11-01/truncated.parquet"
    harness.storage.publish(broken, b"PAR1 cut short")
    receipt = harness.erase(SUBJECT)
    assert receipt.status == "completed" and receipt.rows_removed == 1 and not receipt.passed
    assert receipt.verification is not None and receipt.verification.files_unreadable == [broken]
    assert broken in receipt.verification.checked and "FAILED" in receipt.verification.checked
    _validate(receipt)


def test_an_export_that_cannot_read_a_file_says_so_instead_of_being_incomplete(tmp_path: Path) -> None:
    harness = _Harness(tmp_path, lambda: ROTATED)
    harness.put("a", K2, [("a1", SPELLINGS[0], "x")])
    harness.storage.publish("cdr/call_date=2026-11-01/truncated.parquet", b"PAR1 cut short")
    with pytest.raises(UnreadableFilesError, match=r"truncated\.parquet"):
        subject_rows(harness.storage, subject_from_number(SUBJECT, ROTATED, CLASSIFIER))


def test_an_extension_named_by_a_mapped_source_is_erased_at_its_tenant(tmp_path: Path) -> None:
    # Found by the attacker review: the rows were written at tenant "acme" (CDRPIPE_TENANTS maps
    # the source east.acme to it), and the runbook lets a DPO name the source.
    harness = _Harness(tmp_path, lambda: ONLY_K1, tenants={"east.acme": "acme"})
    parties = PartyPseudonymizer(CLASSIFIER, Pseudonymizer(K1), 64, tenants={"east.acme": "acme"})
    cdrs = [canonical_decode(call_at(DAY, cdr_id="c1", caller="1001", source="east.acme"))]
    harness.storage.publish(
        "cdr/call_date=2026-11-01/x.parquet", encode(build_rows(cdrs, parties), [parties.key_ref])
    )
    receipt = harness.erase("1001", tenant="east.acme")
    assert receipt.passed and receipt.rows_removed == 1
    assert harness.storage.list("cdr") == [], "the file held only the subject's call: it is deleted"


def test_an_erasure_removes_the_temporary_files_of_publishes_cut_short(tmp_path: Path) -> None:
    harness = _Harness(tmp_path, lambda: ONLY_K1)
    harness.put("a", K1, [("a1", SPELLINGS[0], "x"), ("a2", OTHER, "x")])
    orphan = tmp_path / "store" / "cdr" / "call_date=2026-11-01" / ".b.parquet.89abcdef.tmp"
    orphan.write_bytes(harness.storage.read("cdr/call_date=2026-11-01/a.parquet") or b"")
    assert harness.erase(SUBJECT).passed
    assert not orphan.exists()


def test_a_request_id_used_for_another_subject_is_rejected_and_erases_nothing(tmp_path: Path) -> None:
    # Found by the attacker review: the second request used to get the first one's receipt back.
    harness = _Harness(tmp_path, lambda: ONLY_K1)
    harness.put("a", K1, [("a1", SPELLINGS[0], "x"), ("a2", OTHER, "x")])
    assert harness.erase(SUBJECT, request_id="DPO-7").passed
    again = harness.erase(SUBJECT, request_id="DPO-7")
    assert again.status == "completed" and again.passed, "a re-delivered request gets its receipt again"
    reused = harness.erase(OTHER, request_id="DPO-7")
    assert reused.status == "rejected" and "already used for another subject" in (reused.reason or "")
    assert harness.rows().column("cdr_id").to_pylist() == ["a2"]
    assert len(harness.ledger) == 1


def test_an_erasure_never_replaces_a_restriction_with_the_same_request_id() -> None:
    view = SubjectLedger()
    hold = [KeyedPseudonym("k1", "a" * 32)]
    view.add(LedgerEntry(request_id="DPO-9", requested_at=REQUESTED_AT, action="restrict", subject=hold))
    view.add(
        LedgerEntry(request_id="DPO-9", requested_at=REQUESTED_AT, subject=[KeyedPseudonym("k1", "b" * 32)])
    )
    assert sorted(entry.action for entry in view.entries()) == ["erase", "restrict"]
    view.add(LedgerEntry(request_id="DPO-9", requested_at=REQUESTED_AT, action="ended", subject=hold))
    assert sorted(entry.action for entry in view.entries()) == ["ended", "erase"]
