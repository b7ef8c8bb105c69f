"""Requests that name their subject by pseudonyms: what the CLI sends, so request topics hold no number."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.keys.keyring import Keyring
from pipeline.lifecycle.erasure import ErasureProcessor
from pipeline.lifecycle.ledger import LedgerEntry, SubjectLedger
from pipeline.lifecycle.requests.erasure_request import ErasureRequest
from pipeline.lifecycle.requests.subject_request import SubjectRequest
from pipeline.lifecycle.subject import subject_from_number
from pipeline.store.storage import LocalStorage
from tests.support.lifecycle_store import (
    CLASSIFIER,
    KEYS,
    SUBJECT,
    erasure_processor,
    rights_processor,
    sample_store,
)
from tests.support.signed import pseudonyms_of, signed

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def _erasures(storage: LocalStorage, written: list[LedgerEntry]) -> ErasureProcessor:
    return erasure_processor(storage, written, NOW)


def _by_pseudonyms(keyring: Keyring = KEYS, request_id: str = "era-1") -> ErasureRequest:
    subject = subject_from_number(SUBJECT, keyring, CLASSIFIER)
    return ErasureRequest(
        request_id=request_id,
        subject_kind="pseudonyms",
        pseudonyms=pseudonyms_of(subject),
        requested_at=NOW,
    )


def test_an_erasure_by_pseudonyms_does_what_the_number_does(tmp_path: Path) -> None:
    by_number, by_pseudonyms = sample_store(tmp_path / "a"), sample_store(tmp_path / "b")
    written_a: list[LedgerEntry] = []
    written_b: list[LedgerEntry] = []
    number = ErasureRequest(request_id="era-1", subject=SUBJECT, requested_at=NOW)
    expected = _erasures(by_number, written_a).handle(signed(number, KEYS))
    receipt = _erasures(by_pseudonyms, written_b).handle(signed(_by_pseudonyms(), KEYS))
    assert receipt.passed and (receipt.rows_removed, receipt.key_ids) == (expected.rows_removed, ["k1", "k2"])
    assert receipt.rows_removed == 2 and receipt.subject_digest == expected.subject_digest
    assert written_a == written_b  # the same ledger entry: every later publish drops the same rows
    # a re-delivery of the number form is the same request: its receipt comes again
    again = _erasures(by_pseudonyms, written_b).handle(signed(number, KEYS))
    assert again == receipt


def test_pseudonyms_computed_before_a_rotation_fail_verification_naming_the_newer_key(tmp_path: Path) -> None:
    storage, written = sample_store(tmp_path), []
    stale = Keyring("k1", (KEYS.keys[0],))  # the DPO's copy of the keyring before k2 was added
    receipt = _erasures(storage, written).handle(signed(_by_pseudonyms(stale), KEYS))
    assert receipt.status == "completed" and not receipt.passed
    assert receipt.verification is not None and receipt.verification.key_ids_not_searched == ["k2"]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"pseudonyms": [{"key_id": "k1", "pseudonym": "0475000111"}]}, "32 lowercase hexadecimal"),
        ({"pseudonyms": [{"key_id": "k 1", "pseudonym": "a" * 32}]}, "alphanumeric"),
        ({"pseudonyms": []}, "names no pseudonym"),
        ({"pseudonyms": [{"key_id": "k1", "pseudonym": "a" * 32}], "subject": SUBJECT}, "not both"),
        ({"subject": SUBJECT}, "not both"),  # subject_kind pseudonyms without them
    ],
)
def test_a_malformed_pseudonym_list_is_rejected_and_erases_nothing(
    tmp_path: Path, fields: dict[str, object], reason: str
) -> None:
    storage, written = sample_store(tmp_path), []
    request = {"request_id": "era-2", "subject_kind": "pseudonyms", "requested_at": NOW.isoformat(), **fields}
    receipt = _erasures(storage, written).handle(signed(request, KEYS))
    assert receipt.status == "rejected" and reason in (receipt.reason or "") and written == []
    assert "0475000111" not in (receipt.reason or "")


def test_a_restriction_and_its_lift_by_pseudonyms(tmp_path: Path) -> None:
    storage, view, written = sample_store(tmp_path), SubjectLedger(), []
    processor = rights_processor(storage, view, written, NOW)
    pseudonyms = pseudonyms_of(subject_from_number(SUBJECT, KEYS, CLASSIFIER))

    def ask(request_id: str, kind: str) -> SubjectRequest:
        return SubjectRequest(
            request_id=request_id,
            kind=kind,  # type: ignore[arg-type]
            requested_at=NOW,
            subject_kind="pseudonyms",
            pseudonyms=pseudonyms,
        )

    restricted = processor.handle(signed(ask("res-1", "restriction"), KEYS))
    assert restricted.passed and restricted.rows_moved == 2 and restricted.key_ids == ["k1", "k2"]
    lifted = processor.handle(signed(ask("lift-1", "lift"), KEYS))
    assert lifted.passed and lifted.ended == ["res-1"] and view.holds() == []
