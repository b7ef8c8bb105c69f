"""Subjects named by number across a CDRPIPE_TENANTS mapping, and numbers the worker must not guess.

Rows of a source written before the mapping carry pseudonyms derived within the
source's own name; rows written after, within the tenant it maps to. An erasure,
restriction or objection by extension or agent finds both, and says which
tenants it searched.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pyarrow.parquet as pq
import pytest

from pipeline.ingest.rows import build_rows
from pipeline.keys.pseudonym import PartyPseudonymizer, Pseudonymizer, tenants_under
from pipeline.lifecycle.erasure import ErasureProcessor
from pipeline.lifecycle.ledger import SubjectLedger
from pipeline.lifecycle.operations.export import subject_rows
from pipeline.lifecycle.operations.restriction import Ledger, Passes
from pipeline.lifecycle.requests.erasure_request import ErasureRequest
from pipeline.lifecycle.requests.subject_request import SubjectRequest
from pipeline.lifecycle.rights import RightsProcessor
from pipeline.lifecycle.subject import RequestSubjects, SubjectError, subject_from_number
from pipeline.store.parquet import encode
from pipeline.store.storage import LocalStorage
from tests.support.lifecycle_store import CLASSIFIER, KEYS, valid_receipt
from tests.support.samples import call_at, canonical_decode
from tests.support.signed import pseudonyms_of, signed

TENANTS = {"pbx-a1": "acme", "pbx-a2": "acme"}
DAY = "2026-11-01T10:00:00+00:00"
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
BEFORE = "cdr/call_date=2026-11-01/t+0+0.parquet"
AFTER = "cdr/call_date=2026-11-01/t+0+100.parquet"

# (cdr_id, source, callee, agent): extension 1001 and agent-7 of pbx-a1 are acme's people
CALLS_BEFORE = [
    ("before-1001", "pbx-a1", "1001", "agent-7"),
    ("before-1002", "pbx-a1", "1002", None),
    ("elsewhere-1001", "pbx-b", "1001", "agent-7"),  # another customer's 1001 and agent-7
]
CALLS_AFTER = [
    ("after-1001", "pbx-a1", "1001", "agent-7"),
    ("after-a2-1001", "pbx-a2", "1001", None),
    ("after-1002", "pbx-a2", "1002", None),
]


def _file(calls: list[tuple[str, str, str, str | None]], tenants: dict[str, str]) -> bytes:
    parties = PartyPseudonymizer(CLASSIFIER, Pseudonymizer(KEYS.active), 64, tenants)
    cdrs = [
        canonical_decode(
            call_at(DAY, cdr_id=cdr_id, source=source, caller="+32475000111", callee=callee, agent=agent)
        )
        for cdr_id, source, callee, agent in calls
    ]
    return encode(build_rows(cdrs, parties), [parties.key_ref])


def _store(root: Path) -> LocalStorage:
    """One file written before ``CDRPIPE_TENANTS`` mapped pbx-a1 and pbx-a2 to acme, one after."""
    storage = LocalStorage(root)
    storage.publish(BEFORE, _file(CALLS_BEFORE, {}))
    storage.publish(AFTER, _file(CALLS_AFTER, TENANTS))
    return storage


def _call_ids(root: Path) -> list[str]:
    """The calls left in the dataset, read back with pyarrow."""
    files = sorted((root / "cdr").rglob("*.parquet"))
    return sorted(cdr_id for path in files for cdr_id in pq.read_table(path).column("cdr_id").to_pylist())


def _processors(storage: LocalStorage) -> tuple[ErasureProcessor, RightsProcessor]:
    """The erasure and rights processors of a worker run with ``TENANTS``, sharing one ledger."""
    view = SubjectLedger()
    ledger, passes = Ledger(view, view.add), Passes(0, lambda _: None)
    erasures = ErasureProcessor(
        storage, lambda: KEYS, CLASSIFIER, ledger=ledger, passes=passes, residual_copies=list, tenants=TENANTS
    )
    rights = RightsProcessor(storage, lambda: KEYS, CLASSIFIER, ledger=ledger, passes=passes, tenants=TENANTS)
    return erasures, rights


def _erasures(storage: LocalStorage) -> ErasureProcessor:
    return _processors(storage)[0]


def _rights(storage: LocalStorage) -> RightsProcessor:
    return _processors(storage)[1]


def test_a_tenant_is_searched_with_the_sources_it_was_before_the_mapping() -> None:
    assert tenants_under("acme", TENANTS) == ("acme", "pbx-a1", "pbx-a2")
    assert tenants_under("pbx-a2", TENANTS) == ("acme", "pbx-a1", "pbx-a2")
    assert tenants_under("oldco", TENANTS) == ("oldco",)  # a tenant nobody maps to any more
    assert tenants_under("pbx-b", TENANTS) == ("pbx-b",)
    assert tenants_under("acme", {}) == ("acme",)


@pytest.mark.parametrize("named", ["acme", "pbx-a1"])
def test_an_erasure_by_number_removes_rows_from_before_and_after_the_mapping(
    tmp_path: Path, named: str
) -> None:
    storage = _store(tmp_path)
    request = ErasureRequest(request_id="r-1", subject="1001", tenant=named, requested_at=NOW)
    receipt = _erasures(storage).handle(signed(request, KEYS))
    document = valid_receipt(receipt)
    assert receipt.status == "completed" and receipt.passed, receipt.summary
    assert document["tenants_searched"] == ["acme", "pbx-a1", "pbx-a2"]
    assert receipt.rows_removed == 3
    # acme's 1001 is gone before and after the mapping; 1002 and the other customer's 1001 stay
    assert _call_ids(tmp_path) == ["after-1002", "before-1002", "elsewhere-1001"]


def test_an_extension_named_by_the_cli_s_pseudonyms_is_erased_before_and_after_the_mapping(
    tmp_path: Path,
) -> None:
    storage = _store(tmp_path)
    subject = subject_from_number("1001", KEYS, CLASSIFIER, "acme", TENANTS)  # as the CLI computes it
    request = ErasureRequest(
        request_id="r-1",
        subject_kind="pseudonyms",
        pseudonyms=pseudonyms_of(subject),
        tenant="acme",
        requested_at=NOW,
    )
    assert b"1001" not in msgspec.json.encode(request)
    receipt = _erasures(storage).handle(signed(request, KEYS))
    assert receipt.passed and receipt.rows_removed == 3, receipt.summary
    assert valid_receipt(receipt)["tenants_searched"] == ["acme", "pbx-a1", "pbx-a2"]
    assert _call_ids(tmp_path) == ["after-1002", "before-1002", "elsewhere-1001"]


def test_an_agent_is_erased_before_and_after_the_mapping_and_a_subscriber_names_no_tenant(
    tmp_path: Path,
) -> None:
    storage = _store(tmp_path)
    agent = ErasureRequest(
        request_id="r-agent",
        subject="agent-7",
        subject_kind="agent",
        tenant="acme",
        requested_at=NOW,
        mode="redact",
    )
    receipt = _erasures(storage).handle(signed(agent, KEYS))
    assert (
        receipt.passed
        and receipt.rows_redacted == 2
        and receipt.tenants_searched == ["acme", "pbx-a1", "pbx-a2"]
    )
    agents = {
        cdr_id: agent_pseudonym
        for path in sorted((tmp_path / "cdr").rglob("*.parquet"))
        for cdr_id, agent_pseudonym in zip(
            *pq.read_table(path, columns=["cdr_id", "agent_pseudonym"]).to_pydict().values(), strict=True
        )
    }
    assert agents["before-1001"] is None and agents["after-1001"] is None
    assert agents["elsewhere-1001"] is not None  # pbx-b's agent-7 is somebody else
    subscriber = ErasureRequest(request_id="r-sub", subject="+32475000111", tenant="acme", requested_at=NOW)
    document = valid_receipt(_erasures(storage).handle(signed(subscriber, KEYS)))
    assert document["status"] == "completed" and "tenants_searched" not in document
    assert _call_ids(tmp_path) == []  # the caller of every call: the same person at every tenant


def test_a_restriction_by_number_quarantines_rows_from_before_and_after_the_mapping(tmp_path: Path) -> None:
    storage = _store(tmp_path)
    request = SubjectRequest(
        request_id="q-1", kind="restriction", requested_at=NOW, subject="1001", tenant="pbx-a2"
    )
    receipt = _rights(storage).handle(signed(request, KEYS))
    document = valid_receipt(receipt)
    assert receipt.status == "completed" and receipt.passed, receipt.summary
    assert document["tenants_searched"] == ["acme", "pbx-a1", "pbx-a2"] and receipt.rows_moved == 3
    assert _call_ids(tmp_path) == ["after-1002", "before-1002", "elsewhere-1001"]
    quarantined = subject_rows(storage, subject_from_number("1001", KEYS, CLASSIFIER, "acme", TENANTS))
    assert quarantined is not None
    assert sorted(quarantined.column("cdr_id").to_pylist()) == ["after-1001", "after-a2-1001", "before-1001"]


def test_the_worker_refuses_an_ambiguous_number_rather_than_act_on_one_reading(tmp_path: Path) -> None:
    # The attacker review: `object --number 468123456 --existing erase` sent the raw digits, and
    # the worker erased the Belgian subscriber though they may name the Swedish one.
    storage = LocalStorage(tmp_path)
    storage.publish(BEFORE, _file([("belgian", "pbx-b", "+32468123456", None)], {}))
    objection = SubjectRequest(
        request_id="o-1", kind="objection", requested_at=NOW, subject="468123456", existing="erase"
    )
    receipt = _rights(storage).handle(signed(objection, KEYS))
    assert receipt.status == "rejected" and receipt.reason is not None and "ambiguous" in receipt.reason
    assert "468" not in receipt.reason
    erasure = ErasureRequest(request_id="r-1", subject="468123456", requested_at=NOW)
    rejected = _erasures(storage).handle(signed(erasure, KEYS))
    assert rejected.status == "rejected" and rejected.reason is not None and "E.164" in rejected.reason
    assert _call_ids(tmp_path) == ["belgian"]
    subjects = RequestSubjects(lambda: KEYS, CLASSIFIER, {})
    with pytest.raises(SubjectError, match="ambiguous"):
        subjects.of("number", "468123456", None)
    # the resolved form is one person
    assert subjects.of("number", "+32468123456", None) == subject_from_number(
        "+32468123456", KEYS, CLASSIFIER
    )


def test_a_tenant_that_could_not_be_a_source_is_rejected_without_quoting_it(tmp_path: Path) -> None:
    storage = _store(tmp_path)
    for tenant in ("pbx-0475123456", "acme corp"):
        erasure = ErasureRequest(request_id="r-1", subject="1001", tenant=tenant, requested_at=NOW)
        receipt = _erasures(storage).handle(signed(erasure, KEYS))
        assert receipt.status == "rejected" and receipt.reason is not None
        assert receipt.reason.startswith("the tenant ") and tenant not in receipt.reason
        lift = SubjectRequest(request_id="l-1", kind="lift", requested_at=NOW, subject="1001", tenant=tenant)
        answered = _rights(storage).handle(signed(lift, KEYS))
        assert answered.status == "rejected" and answered.reason is not None
        assert answered.reason.startswith("the tenant ") and tenant not in answered.reason
    assert len(_call_ids(tmp_path)) == len(CALLS_BEFORE) + len(CALLS_AFTER)
