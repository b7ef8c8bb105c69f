"""Every command that takes --number names its subject the same way, and sends what it resolved."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.ingest.rows import build_rows
from pipeline.keys.keyring import init_keyring, load_keyring
from pipeline.keys.pseudonym import PartyPseudonymizer, Pseudonymizer
from pipeline.lifecycle.erasure import ErasureProcessor
from pipeline.lifecycle.ledger import SubjectLedger
from pipeline.lifecycle.operations.restriction import Ledger, Passes
from pipeline.lifecycle.subject import Subject, subject_from_agent, subject_from_number
from pipeline.numbers.msisdn import NumberClassifier
from pipeline.store.parquet import encode
from pipeline.store.storage import LocalStorage
from tests.support.samples import call_at, canonical_decode
from tests.support.signed import signed

SENDING = {
    "erase": [],
    "restrict": [],
    "unrestrict": [],
    "object": ["--existing", "erase"],
    "withdraw-objection": [],
}
NAMING = {"number", "agent", "pseudonym", "region", "tenant", "yes"}
BELGIAN, SWEDISH = "+32468123456", "+46812345678"
CLASSIFIER = NumberClassifier("BE", (2, 5))


@pytest.fixture
def sent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The requests the commands publish (decoded), with a store holding a Belgian and a Swedish call."""
    keyring_path = tmp_path / "keyring.json"
    init_keyring(keyring_path)
    parties = PartyPseudonymizer(
        NumberClassifier("BE", (2, 5)), Pseudonymizer(load_keyring(keyring_path).active), 8
    )
    calls = [("belgian", BELGIAN), ("swedish", SWEDISH)]
    cdrs = [canonical_decode(call_at("2026-11-01T10:00:00+00:00", cdr_id=i, caller=n)) for i, n in calls]
    LocalStorage(tmp_path / "store").publish(
        "cdr/call_date=2026-11-01/t+0+0.parquet", encode(build_rows(cdrs, parties), [parties.key_ref])
    )
    monkeypatch.setenv("CDRPIPE_KEYRING", str(keyring_path))
    monkeypatch.setenv("CDRPIPE_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("CDRPIPE_TENANTS", "pbx-a1=acme,pbx-a2=acme")
    monkeypatch.setattr("pipeline.cli.naming.on_terminal", lambda: True)  # the DPO's terminal
    published: list[dict[str, Any]] = []

    async def publish(
        settings: object, topics: object, request_id: str, payload: bytes, *, keyring: object, wait_s: float
    ) -> None:
        del settings, topics, request_id, keyring, wait_s  # the broker round trip: tests/integration
        published.append(json.loads(payload))

    monkeypatch.setattr("pipeline.cli.subjects.request_and_wait", publish)
    monkeypatch.setattr("pipeline.cli.rights.request_and_wait", publish)
    return published


def _pseudonyms(request: dict[str, Any]) -> set[tuple[str, str]]:
    assert request["subject_kind"] == "pseudonyms", request
    return {(pair["key_id"], pair["pseudonym"]) for pair in request["pseudonyms"]}


def _pairs(subject: Subject) -> set[tuple[str, str]]:
    return {(pair.key_id, pair.pseudonym) for pair in subject.pairs}


def _command(name: str) -> click.Command:
    command = cli.commands[name]
    assert isinstance(command, click.Command)
    return command


def test_every_command_that_names_a_subject_has_the_same_options() -> None:
    def naming(name: str) -> list[tuple[str | None, str | None]]:
        params = [param for param in _command(name).params if param.name in NAMING]
        return sorted((param.name, getattr(param, "help", None)) for param in params)

    expected = naming("erase")
    assert {name for name, _ in expected} == NAMING
    for name in [*SENDING, "export"]:
        assert naming(name) == expected, name
    assert naming("rectify") == []  # a rectification names a call, not a subject


@pytest.mark.parametrize("command", list(SENDING))
def test_an_ambiguous_number_is_refused_and_the_resolved_one_is_sent(
    command: str, sent: list[dict[str, Any]]
) -> None:
    runner = CliRunner()
    extra = SENDING[command]
    refused = runner.invoke(cli, [command, "--number", "468123456", *extra])
    assert refused.exit_code == 2, refused.output
    assert "ambiguous" in refused.output and f"{BELGIAN} (region BE" in refused.output
    assert "+468123456 (region SE" in refused.output and sent == []
    confirmed = runner.invoke(cli, [command, "--number", "468123456", "--yes", *extra])
    assert confirmed.exit_code == 0, confirmed.output
    assert f"subject: {BELGIAN} (region BE, MOBILE)" in confirmed.stderr
    swedish = runner.invoke(cli, [command, "--number", "08 123 456 78", "--region", "SE", *extra])
    assert swedish.exit_code == 0, swedish.output
    assert f"subject: {SWEDISH} (region SE" in swedish.stderr
    keyring = load_keyring(Path(os.environ["CDRPIPE_KEYRING"]))
    assert [_pseudonyms(request) for request in sent] == [
        _pairs(subject_from_number(BELGIAN, keyring, CLASSIFIER)),
        _pairs(subject_from_number(SWEDISH, keyring, CLASSIFIER)),
    ]
    assert all(request.get("tenant") is None and "subject" not in request for request in sent)
    assert "468123456" not in json.dumps(sent) and "812345678" not in json.dumps(sent)  # no number sent
    assert "468123456" not in refused.stdout + confirmed.stdout  # the resolution line is stderr's


@pytest.mark.parametrize("command", list(SENDING))
def test_an_extension_is_sent_with_its_tenant_and_the_tenants_searched_are_shown(
    command: str, sent: list[dict[str, Any]]
) -> None:
    runner = CliRunner()
    extra = SENDING[command]
    refused = runner.invoke(cli, [command, "--number", "1001", *extra])
    assert refused.exit_code == 2 and "--tenant" in refused.output and sent == []
    result = runner.invoke(cli, [command, "--number", "1001", "--tenant", "pbx-a1", *extra])
    assert result.exit_code == 0, result.output
    assert (
        "subject: extension 1001 at tenant acme (searched within tenants acme, pbx-a1, pbx-a2"
        in result.stderr
    )
    agent = runner.invoke(cli, [command, "--agent", " agent-7 ", "--tenant", "pbx-b", *extra])
    assert agent.exit_code == 0, agent.output
    assert "subject: agent agent-7 at tenant pbx-b" in agent.stderr
    keyring, tenants = load_keyring(Path(os.environ["CDRPIPE_KEYRING"])), {"pbx-a1": "acme", "pbx-a2": "acme"}
    assert [(_pseudonyms(request), request["tenant"]) for request in sent] == [
        (_pairs(subject_from_number("1001", keyring, CLASSIFIER, "pbx-a1", tenants)), "pbx-a1"),  # as given
        (_pairs(subject_from_agent("agent-7", keyring, "pbx-b", tenants)), "pbx-b"),
    ]
    assert all("subject" not in request for request in sent)


def test_export_reads_the_number_the_same_way(sent: list[dict[str, Any]], tmp_path: Path) -> None:
    out = tmp_path / "export.jsonl"
    runner = CliRunner()
    refused = runner.invoke(cli, ["export", "--number", "468123456", "--out", str(out)])
    assert refused.exit_code == 2 and "ambiguous" in refused.output and not out.exists()
    for args, expected in [(["--yes"], "belgian"), (["--region", "SE"], "swedish")]:
        number = "468123456" if expected == "belgian" else "08 123 456 78"
        result = runner.invoke(cli, ["export", "--number", number, *args, "--out", str(out), "--force"])
        assert result.exit_code == 0, result.output
        assert [json.loads(line)["cdr_id"] for line in out.read_text().splitlines()] == [expected]
    assert sent == []  # an export sends nothing


@pytest.mark.parametrize("command", [*SENDING, "export"])
def test_a_tenant_that_could_not_be_a_source_is_refused_before_anything_is_sent_or_shown(
    command: str, sent: list[dict[str, Any]], tmp_path: Path
) -> None:
    # The attacker review: erase sent `--tenant 0475123456` onto the request topic (the worker
    # rejected it there), and every command first showed it on the resolution line.
    extra = SENDING.get(command, ["--out", str(tmp_path / "export.jsonl")])
    runner = CliRunner()
    for tenant in ("0475123456", "pbx a1", "pbx-é"):
        result = runner.invoke(cli, [command, "--number", "1001", "--tenant", tenant, *extra])
        assert result.exit_code == 2, result.output
        assert "the tenant " in result.stderr and "subject:" not in result.stderr
        assert tenant not in result.output
    assert sent == [] and not (tmp_path / "export.jsonl").exists()


def test_the_request_carries_the_tenant_as_given_so_a_worker_with_another_mapping_finds_the_rows(
    sent: list[dict[str, Any]], tmp_path: Path
) -> None:
    # The attacker review: the command sent the tenant as its own CDRPIPE_TENANTS maps it (acme);
    # a worker that does not map pbx-a1 (yet, or any more) searched acme only and erased nothing.
    keyring = load_keyring(tmp_path / "keyring.json")
    classifier = NumberClassifier("BE", (2, 5))
    parties = PartyPseudonymizer(classifier, Pseudonymizer(keyring.active), 8)  # the worker maps nothing
    call = call_at("2026-11-01T10:00:00+00:00", cdr_id="a1", source="pbx-a1", callee="1001")
    cdrs = [canonical_decode(call)]
    storage = LocalStorage(tmp_path / "worker-store")
    written = encode(build_rows(cdrs, parties), [parties.key_ref])
    storage.publish("cdr/call_date=2026-11-01/t+0+0.parquet", written)
    result = CliRunner().invoke(cli, ["erase", "--number", " 1001", "--tenant", " pbx-a1 "])
    assert result.exit_code == 0, result.output
    assert sent[0]["tenant"] == "pbx-a1"
    view = SubjectLedger()
    worker = ErasureProcessor(storage, lambda: keyring, classifier, ledger=Ledger(view, view.add),
                              passes=Passes(0, lambda _: None), residual_copies=list)  # fmt: skip
    receipt = worker.handle(signed(sent[0], keyring))  # as request_and_wait signs it
    assert receipt.status == "completed" and receipt.rows_removed == 1, receipt.summary
    assert receipt.tenants_searched == ["pbx-a1"]


@pytest.mark.parametrize("command", [*SENDING, "export"])
def test_off_a_terminal_the_resolution_and_the_ambiguity_name_no_number(
    command: str, sent: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The attacker review: "the terminal only" was any standard error; redirected to a file or
    # collected from a job's output, the resolved number became a log line.
    monkeypatch.setattr("pipeline.cli.naming.on_terminal", lambda: False)
    extra = SENDING.get(command, ["--out", str(tmp_path / "export.jsonl"), "--force"])
    runner = CliRunner()
    refused = runner.invoke(cli, [command, "--number", "468123456", *extra])
    assert refused.exit_code == 2 and "ambiguous" in refused.stderr
    assert "a MOBILE number of region BE" in refused.stderr
    resolved = runner.invoke(cli, [command, "--number", "0475 12 34 56", *extra])
    extension = runner.invoke(cli, [command, "--number", "1001", "--tenant", "pbx-a1", *extra])
    agent = runner.invoke(cli, [command, "--agent", "+32475000111", "--tenant", "pbx-b", *extra])
    assert resolved.exit_code == extension.exit_code == agent.exit_code == 0
    assert (
        "subject: a MOBILE number of region BE (the subject is shown on a terminal only)" in resolved.stderr
    )
    assert (
        "subject: an extension at tenant acme (searched within tenants acme, pbx-a1, pbx-a2"
        in extension.stderr
    )
    assert "subject: an agent id at tenant pbx-b (the subject is shown on a terminal only)" in agent.stderr
    shown = refused.stderr + resolved.stderr + extension.stderr + agent.stderr
    for value in ("468123456", "8123456", "475123456", "475 12", "475000111", " 1001"):
        assert value not in shown, value
    assert all(request["subject_kind"] == "pseudonyms" and "subject" not in request for request in sent)
    for value in ("475123456", "1001", "475000111"):
        assert value not in json.dumps(sent), value
