"""erase/export: resolution on the terminal only, --region, --yes, --tenant; minimised access exports."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.cli import subjects as cli_module
from pipeline.errors import RequestRefusedError
from pipeline.ingest.rows import build_rows
from pipeline.keys.keyring import init_keyring, load_keyring
from pipeline.keys.pseudonym import PartyPseudonymizer, Pseudonymizer
from pipeline.lifecycle.erasure import ErasureProcessor
from pipeline.lifecycle.ledger import SubjectLedger
from pipeline.lifecycle.operations.export import minimise, subject_rows
from pipeline.lifecycle.operations.restriction import Ledger, Passes
from pipeline.lifecycle.requests.erasure_request import ErasureRequest
from pipeline.lifecycle.subject import subject_from_number
from pipeline.numbers.msisdn import NumberClassifier, NumberKind
from pipeline.numbers.resolution import resolve_number
from pipeline.store.parquet import encode
from pipeline.store.storage import LocalStorage
from tests.support.samples import call_at, canonical_decode
from tests.support.signed import signed

CLASSIFIER = NumberClassifier("BE", (2, 5))
DAY = "2026-11-01T10:00:00+00:00"


def test_a_national_number_that_is_also_international_is_ambiguous() -> None:
    resolution = resolve_number("468123456", "BE", (2, 5))
    assert resolution.party.value == "+32468123456" and resolution.party.region == "BE"
    assert resolution.ambiguous and [other.value for other in resolution.alternatives] == ["+468123456"]
    assert resolution.alternatives[0].region == "SE"
    for spelling in ("0468 12 34 56", "+32468123456", "0032468123456", "32475123456"):
        assert not resolve_number(spelling, "BE", (2, 5)).ambiguous, spelling
    assert resolve_number("101", "BE", (2, 5)).party.kind is NumberKind.EXTENSION


def _store(root: Path, keyring_path: Path) -> LocalStorage:
    """Two tenants with extension 1001 each, a subscriber who calls both, and an agent."""
    storage = LocalStorage(root)
    parties = PartyPseudonymizer(CLASSIFIER, Pseudonymizer(load_keyring(keyring_path).active), 64)
    calls = [
        ("a1", "pbx-a", "+32468123456", "1001", "agent-7"),
        ("a2", "pbx-a", "0470 99 88 77", "1001", "agent-7"),
        ("b1", "pbx-b", "+32468123456", "1001", "agent-7"),
        ("b2", "pbx-b", "+46812345678", "1002", None),
    ]
    cdrs = [
        canonical_decode(
            call_at(DAY, cdr_id=cdr_id, source=source, caller=caller, callee=callee, agent=agent)
        )
        for cdr_id, source, caller, callee, agent in calls
    ]
    storage.publish(
        "cdr/call_date=2026-11-01/t+0+0.parquet", encode(build_rows(cdrs, parties), [parties.key_ref])
    )
    return storage


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    keyring_path = tmp_path / "secrets" / "keyring.json"
    init_keyring(keyring_path)
    _store(tmp_path / "store", keyring_path)
    settings = {"CDRPIPE_KEYRING": str(keyring_path), "CDRPIPE_STORE": str(tmp_path / "store")}
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("pipeline.cli.naming.on_terminal", lambda: True)  # the DPO's terminal
    return settings


def _export(tmp_path: Path, *args: str) -> tuple[Any, list[dict[str, Any]]]:
    out = tmp_path / "export.jsonl"
    out.unlink(missing_ok=True)
    result = CliRunner().invoke(cli, ["export", *args, "--out", str(out)])
    rows = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return result, rows


@pytest.mark.usefixtures("env")
def test_export_refuses_an_ambiguous_number_until_confirmed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        refused, rows = _export(tmp_path, "--number", "468123456")
        assert refused.exit_code == 2 and rows == []
        assert "ambiguous" in refused.output and "+32468123456 (region BE" in refused.output
        assert "+468123456 (region SE" in refused.output and "--yes" in refused.output
        confirmed, rows = _export(tmp_path, "--number", "468123456", "--yes")
    assert confirmed.exit_code == 0, confirmed.output
    assert "subject: +32468123456 (region BE, MOBILE)" in confirmed.output
    assert sorted(row["cdr_id"] for row in rows) == ["a1", "b1"]
    assert not any("468" in record.getMessage() for record in caplog.records)


@pytest.mark.usefixtures("env")
def test_region_reads_a_national_number_of_another_country(tmp_path: Path) -> None:
    result, rows = _export(tmp_path, "--number", "08 123 456 78", "--region", "SE")
    assert result.exit_code == 0, result.output
    assert "subject: +46812345678 (region SE" in result.output
    assert [row["cdr_id"] for row in rows] == ["b2"]
    bad = CliRunner().invoke(cli, ["export", "--number", "0812345678", "--region", "XX", "--out", "x"])
    assert bad.exit_code == 2 and "--region" in bad.output


@pytest.mark.usefixtures("env")
def test_an_extension_needs_its_tenant_and_finds_only_that_tenants_person(tmp_path: Path) -> None:
    refused, rows = _export(tmp_path, "--number", "1001")
    assert refused.exit_code == 2 and "--tenant" in refused.output and rows == []
    result, rows = _export(tmp_path, "--number", "1001", "--tenant", "pbx-a")
    assert result.exit_code == 0 and "subject: extension 1001 at tenant pbx-a" in result.output
    assert sorted(row["cdr_id"] for row in rows) == ["a1", "a2"]
    _, rows = _export(tmp_path, "--number", "1001", "--tenant", "pbx-b")
    assert [row["cdr_id"] for row in rows] == ["b1"]


@pytest.mark.usefixtures("env")
def test_the_default_export_is_minimised_and_full_is_not(tmp_path: Path) -> None:
    _, minimised = _export(tmp_path, "--number", "+32468123456")
    _, full = _export(tmp_path, "--number", "+32468123456", "--full")
    assert [row["cdr_id"] for row in minimised] == [row["cdr_id"] for row in full] == ["a1", "b1"]
    for small, whole in zip(minimised, full, strict=True):
        assert small["caller_pseudonym"] == whole["caller_pseudonym"]  # the subject's own side
        assert small["caller_country"] == "BE" and small["caller_line_type"] == "MOBILE"
        assert small["agent_pseudonym"] is None and whole["agent_pseudonym"]
        assert small["callee_country"] is None and small["callee_line_type"] is None
    # 1001 at pbx-a and 1001 at pbx-b are two people: two tokens, in order of appearance
    assert [row["callee_pseudonym"] for row in minimised] == ["party-1", "party-2"]
    assert len({row["callee_pseudonym"] for row in full}) == 2


def test_tokens_are_stable_within_one_export_and_unlinkable_across_exports(env: dict[str, str]) -> None:
    storage = LocalStorage(Path(env["CDRPIPE_STORE"]))
    keyring = load_keyring(Path(env["CDRPIPE_KEYRING"]))
    agent_side = subject_from_number("1001", keyring, CLASSIFIER, "pbx-a")
    rows = subject_rows(storage, agent_side).table
    assert rows is not None
    callers = minimise(rows, agent_side).column("caller_pseudonym").to_pylist()
    assert callers == ["party-1", "party-2"]
    other = subject_from_number("+32468123456", keyring, CLASSIFIER)
    other_rows = subject_rows(storage, other).table
    assert other_rows is not None
    exported = minimise(other_rows, other).to_pylist()
    assert {row["callee_pseudonym"] for row in exported} == {"party-1", "party-2"}


def test_an_extension_subject_is_per_tenant_and_a_subscriber_is_global(env: dict[str, str]) -> None:
    keyring = load_keyring(Path(env["CDRPIPE_KEYRING"]))
    with pytest.raises(RequestRefusedError, match="tenant"):
        subject_from_number("1001", keyring, CLASSIFIER)
    at_a = subject_from_number("1001", keyring, CLASSIFIER, "pbx-a")
    assert at_a != subject_from_number("1001", keyring, CLASSIFIER, "pbx-b")
    subscriber = subject_from_number("+32468123456", keyring, CLASSIFIER)
    assert subscriber == subject_from_number("0468 12 34 56", keyring, CLASSIFIER, "pbx-a")


@pytest.mark.usefixtures("env")
def test_erase_sends_the_pseudonyms_of_the_resolved_number_never_the_number(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[ErasureRequest] = []

    async def capture(settings: object, request: ErasureRequest, keyring: object, wait_s: float) -> None:
        del settings, keyring, wait_s
        sent.append(request)

    monkeypatch.setattr(cli_module, "_request_erasure", capture)
    runner = CliRunner()
    refused = runner.invoke(cli, ["erase", "--number", "468123456"])
    assert refused.exit_code == 2 and sent == []
    national = runner.invoke(cli, ["erase", "--number", "08 123 456 78", "--region", "SE"])
    assert national.exit_code == 0 and "subject: +46812345678 (region SE" in national.output
    extension = runner.invoke(cli, ["erase", "--number", "1001", "--tenant", "pbx-b"])
    assert extension.exit_code == 0, extension.output
    keyring = load_keyring(Path(env["CDRPIPE_KEYRING"]))
    expected = [
        (subject_from_number("+46812345678", keyring, CLASSIFIER), None),
        (subject_from_number("1001", keyring, CLASSIFIER, "pbx-b"), "pbx-b"),
    ]
    for request, (subject, tenant) in zip(sent, expected, strict=True):
        assert (request.subject, request.subject_kind, request.tenant) == (None, "pseudonyms", tenant)
        assert request.pseudonyms is not None
        assert {(pair.key_id, pair.pseudonym) for pair in request.pseudonyms} == {
            (pair.key_id, pair.pseudonym) for pair in subject.pairs
        }
        payload = msgspec.json.encode(request)
        assert b"812345678" not in payload and b"1001" not in payload


def test_the_worker_reads_an_extension_request_within_its_tenant(env: dict[str, str]) -> None:
    storage = LocalStorage(Path(env["CDRPIPE_STORE"]))
    keyring = load_keyring(Path(env["CDRPIPE_KEYRING"]))
    processor = ErasureProcessor(
        storage,
        lambda: keyring,
        CLASSIFIER,
        ledger=Ledger(SubjectLedger(), lambda entry: None),
        passes=Passes(0, lambda seconds: None),
        residual_copies=list,
    )
    at = datetime(2026, 11, 2, tzinfo=UTC)
    request = ErasureRequest(request_id="r-1", subject="1001", tenant="pbx-b", requested_at=at)
    assert processor.subject_of(request) == subject_from_number("1001", keyring, CLASSIFIER, "pbx-b")
    receipt = processor.handle(signed(request, keyring))
    assert receipt.status == "completed" and receipt.passed and receipt.rows_removed == 1
    remaining = subject_rows(storage, subject_from_number("1001", keyring, CLASSIFIER, "pbx-a")).table
    assert remaining is not None and sorted(remaining.column("cdr_id").to_pylist()) == ["a1", "a2"]
