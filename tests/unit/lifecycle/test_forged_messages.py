"""Forged lifecycle messages change nothing: requests, ledger entries and receipts without a valid MAC.

Each test plays a producer that may write the lifecycle topics but does not hold the keyring: it
sends what the old findings showed (an erasure's request id with an empty subject, an ``ended``
for a restriction, a "verification passed" receipt, anybody's erasure) and checks that the store,
the ledger and the DPO's command are unmoved.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from pipeline.cli.client import accepted_receipt
from pipeline.kafka.connection import KafkaConnection
from pipeline.kafka.ledger_reader import LedgerReader
from pipeline.keys.keyring import Key, Keyring
from pipeline.lifecycle.erasure import ErasureProcessor
from pipeline.lifecycle.ledger import LedgerEntry, SubjectLedger, encode_entry
from pipeline.lifecycle.requests.audit import AUDIT_DIR
from pipeline.lifecycle.requests.receipts import Receipt, receipt_message
from pipeline.lifecycle.requests.register import REGISTER_DIR
from pipeline.lifecycle.requests.signing import message_digest, sign_message
from pipeline.lifecycle.subject import subject_from_number
from pipeline.observability.metrics import REGISTRY
from pipeline.store.storage import LocalStorage
from tests.support.lifecycle_store import (
    CLASSIFIER,
    KEYS,
    SUBJECT,
    erasure_processor,
    rights_processor,
    sample_store,
)
from tests.support.signed import signed

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
FORGER = Keyring("k2", (Key("k2", bytes(range(60, 92)), "t"),))
"""A keyring of the forger's own, under the same key id as the genuine active key."""
LEDGER_TOPIC = "cdr.erasure.ledger"


def _refused(message: str, reason: str) -> float:
    labels = {"message": message, "reason": reason}
    return REGISTRY.get_sample_value("cdrpipe_lifecycle_messages_refused_total", labels) or 0.0


def _tree(storage: LocalStorage) -> dict[str, bytes | None]:
    return {path: storage.read(path) for path in sorted(storage.list(""))}


def _erasures(storage: LocalStorage, written: list[LedgerEntry]) -> ErasureProcessor:
    return erasure_processor(storage, written, NOW)


ERASURE = {"request_id": "era-1", "subject": SUBJECT, "requested_at": NOW.isoformat()}


@pytest.mark.parametrize(
    "payload",
    [
        json.dumps(ERASURE).encode(),  # unsigned: any producer could erase anyone
        signed(ERASURE, FORGER),  # signed under a key the workers do not hold
        json.dumps({**json.loads(signed(ERASURE, KEYS)), "subject": "+32475999888"}).encode(),  # changed
    ],
    ids=["unsigned", "foreign key", "tampered"],
)
def test_a_forged_erasure_request_is_rejected_unread_and_changes_nothing(
    tmp_path: Path, payload: bytes
) -> None:
    storage, written = sample_store(tmp_path), []
    before = _tree(storage)
    counted = sum(_refused("request", reason) for reason in ("unsigned", "unknown-key", "mismatch"))
    receipt = _erasures(storage, written).handle(payload, b"era-1")
    assert (receipt.status, receipt.reason, receipt.request_id) == ("rejected", "unauthenticated", "era-1")
    assert receipt.summary == "rejected: unauthenticated" and receipt.key_ids is None
    assert "475" not in msgspec.json.encode(receipt).decode()
    assert written == [] and _tree(storage) == before  # no ledger entry, register, receipt or audit
    assert not storage.list(REGISTER_DIR) and not storage.list(AUDIT_DIR)
    assert (
        sum(_refused("request", reason) for reason in ("unsigned", "unknown-key", "mismatch")) == counted + 1
    )
    # the genuine request with the same id is then carried out: the forgery took nothing from it
    assert _erasures(storage, written).handle(signed(ERASURE, KEYS), b"era-1").passed


def test_a_forged_restriction_lift_or_rectification_is_rejected_unread(tmp_path: Path) -> None:
    storage, view, written = sample_store(tmp_path), SubjectLedger(), []
    processor = rights_processor(storage, view, written, NOW)
    restriction = {
        "request_id": "res-1",
        "kind": "restriction",
        "requested_at": NOW.isoformat(),
        "subject": SUBJECT,
    }
    assert processor.handle(signed(restriction, KEYS)).passed
    before, entries = _tree(storage), len(written)
    for forged in (
        {**restriction, "request_id": "lift-1", "kind": "lift"},
        {
            "request_id": "rect-1",
            "kind": "rectification",
            "requested_at": NOW.isoformat(),
            "cdr_id": "b",
            "party": "caller",
        },
    ):
        for payload in (json.dumps(forged).encode(), signed(forged, FORGER)):
            receipt = processor.handle(payload)
            assert (receipt.status, receipt.reason, receipt.kind) == ("rejected", "unauthenticated", None)
    assert len(written) == entries and _tree(storage) == before
    assert [entry.action for entry in view.holds()] == ["restrict"]


class _Topic:
    """The ledger topic as a reader sees it: messages in offset order, read through a real reader."""

    def __init__(self, keyring: Keyring = KEYS) -> None:
        self.ledger = SubjectLedger()
        self.offset = 0

        async def build() -> LedgerReader:  # aiokafka builds its consumer on a running loop
            return LedgerReader(
                KafkaConnection("localhost:9", "PLAINTEXT"), LEDGER_TOPIC, self.ledger, lambda: keyring
            )

        self.reader = asyncio.run(build())

    def publish(self, key: str | None, value: bytes | None) -> None:
        self.reader.take(key.encode() if key is not None else None, value, self.offset)
        self.offset += 1

    def genuine(self, entry: LedgerEntry) -> None:
        self.publish(entry.key, sign_message(encode_entry(entry), KEYS.active))


def _erase_entry(request_id: str = "era-1") -> LedgerEntry:
    subject = subject_from_number(SUBJECT, KEYS, CLASSIFIER)
    return LedgerEntry(request_id=request_id, requested_at=NOW, subject=list(subject.pairs))


def _restrict_entry() -> LedgerEntry:
    subject = subject_from_number(SUBJECT, KEYS, CLASSIFIER)
    return LedgerEntry(request_id="res-1", requested_at=NOW, subject=list(subject.pairs), action="restrict")


def test_a_forged_entry_with_an_erasure_s_request_id_and_an_empty_subject_never_replaces_it() -> None:
    topic, genuine = _Topic(), _erase_entry()
    topic.genuine(genuine)
    forged = LedgerEntry(request_id="era-1", requested_at=NOW, subject=[])
    refused = _refused("ledger", "unsigned") + _refused("ledger", "mismatch")
    topic.publish(forged.key, encode_entry(forged))  # unsigned
    topic.publish(forged.key, sign_message(encode_entry(forged), FORGER.active))  # under the forger's key
    assert topic.ledger.entries() == [genuine]
    assert _refused("ledger", "unsigned") + _refused("ledger", "mismatch") == refused + 2
    # the compacted topic now ends with a forgery under the erasure's key: the owner writes it again
    assert topic.ledger.take_overshadowed() == [genuine] and topic.ledger.take_overshadowed() == []


def test_a_forged_ended_never_lifts_a_restriction_and_a_tombstone_never_removes_it() -> None:
    topic, genuine = _Topic(), _restrict_entry()
    topic.genuine(genuine)
    ended = LedgerEntry(request_id="res-1", requested_at=NOW, action="ended")
    topic.publish(ended.key, encode_entry(ended))
    topic.publish(ended.key, sign_message(encode_entry(ended), FORGER.active))
    topic.publish(ended.key, None)  # a tombstone: compaction would drop the key
    assert topic.ledger.holds() == [genuine]
    assert topic.ledger.take_overshadowed() == [genuine]
    topic.genuine(ended)  # a lift the DPO asked for, signed by the worker
    assert topic.ledger.holds() == [] and topic.ledger.take_overshadowed() == []


def test_a_genuine_entry_published_under_another_entry_s_key_is_refused() -> None:
    topic, erasure, restriction = _Topic(), _erase_entry(), _restrict_entry()
    topic.genuine(restriction)
    lift = sign_message(
        encode_entry(LedgerEntry(request_id="old", requested_at=NOW, action="ended")), KEYS.active
    )
    misplaced = _refused("ledger", "misplaced")
    topic.publish(restriction.key, lift)  # a genuine ``ended`` of another request, replayed over it
    topic.publish(erasure.key, sign_message(encode_entry(restriction), KEYS.active))
    assert topic.ledger.holds() == [restriction] and len(topic.ledger) == 1
    assert _refused("ledger", "misplaced") == misplaced + 2


def test_entries_signed_before_a_rotation_stay_in_force() -> None:
    genuine = _erase_entry("era-old")
    topic = _Topic()
    topic.publish(genuine.key, sign_message(encode_entry(genuine), KEYS.keys[0]))  # k1, before k2 was active
    assert topic.ledger.entries() == [genuine]


def _answering(request: bytes, keyring: Keyring = KEYS, **fields: object) -> bytes:
    receipt = Receipt(
        summary="erased 3 rows in 1 files; verification passed",
        request_id="era-1",
        status="completed",
        finished_at=NOW,
        pipeline_version="test",
    )
    return receipt_message(msgspec.structs.replace(receipt, **fields), request, keyring.active)


def test_the_cli_takes_only_a_signed_receipt_that_answers_its_own_request(
    capsys: pytest.CaptureFixture[str],
) -> None:
    sent = signed(ERASURE, KEYS)
    answers = message_digest(sent)
    genuine = _answering(sent)
    assert json.loads(genuine)["answers"] == answers
    taken = accepted_receipt(genuine, KEYS, answers, "receipts offset 1")
    assert taken is not None and taken["summary"].startswith("erased 3 rows")  # type: ignore[union-attr]
    forged = json.dumps({**json.loads(genuine), "status": "completed", "summary": "verification passed"})
    unsigned = json.dumps(
        {k: v for k, v in json.loads(genuine).items() if k not in ("mac", "signing_key_id")}
    )
    for receipt in (forged.encode(), unsigned.encode(), _answering(sent, FORGER), b"{}", None):
        assert accepted_receipt(receipt, KEYS, answers, "receipts offset 2") is None
    # a genuine receipt of another request that used the same id (a forged request's rejection)
    other = _answering(json.dumps(ERASURE).encode(), status="rejected", reason="unauthenticated")
    assert accepted_receipt(other, KEYS, answers, "receipts offset 3") is None
    assert "answers another request (receipts offset 3)" in capsys.readouterr().err
