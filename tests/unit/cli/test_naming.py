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
from pipeline.lifecycle.subject import Subject, subject_from_agent, subject_from_number
from pipeline.numbers.msisdn import NumberClassifier
from pipeline.store.parquet import encode
from pipeline.store.storage import LocalStorage
from tests.support.samples import call_at, canonical_decode

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
        (_pairs(subject_from_number("1001", keyring, CLASSIFIER, "acme", tenants)), "acme"),
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
