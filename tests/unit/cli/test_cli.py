"""The cdrpipe command: keys, its help, and one-line refusals (bad keyring, taken port, no broker)."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.ingest.rows import build_rows
from pipeline.keys.keyring import load_keyring
from pipeline.keys.pseudonym import PartyPseudonymizer, Pseudonymizer
from pipeline.lifecycle.requests.audit import read_audit
from pipeline.numbers.msisdn import NumberClassifier
from pipeline.store.parquet import encode
from pipeline.store.storage import LocalStorage
from tests.support.helpers import REPO, free_port
from tests.support.samples import canonical_bytes, canonical_decode


def test_keys_init_list_rotate_never_print_secrets(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    (tmp_path / "store").mkdir()  # rotate asks the store which key ids it knows
    runner = CliRunner(env={"CDRPIPE_STORE": str(tmp_path / "store")})
    assert runner.invoke(cli, ["keys", "init", "--keyring", str(path)]).exit_code == 0
    assert runner.invoke(cli, ["keys", "rotate", "--keyring", str(path)]).exit_code == 0
    listed = runner.invoke(cli, ["keys", "list", "--keyring", str(path)])
    assert listed.exit_code == 0
    assert "  k1" in listed.output and "* k2" in listed.output
    for key in json.loads(path.read_text())["keys"]:
        secret = base64.b64decode(key["secret"])
        assert key["secret"] not in listed.output and secret.hex() not in listed.output


def test_keys_init_if_missing_keeps_the_existing_keyring(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    runner = CliRunner()
    runner.invoke(cli, ["keys", "init", "--keyring", str(path)])
    before = path.read_bytes()
    again = runner.invoke(cli, ["keys", "init", "--if-missing", "--keyring", str(path)])
    assert again.exit_code == 0 and path.read_bytes() == before
    refused = runner.invoke(cli, ["keys", "init", "--keyring", str(path)])
    assert refused.exit_code == 2 and "already exists" in refused.output


def _start_worker(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``cdrpipe worker`` with ``env``, expected to stop at start-up (a minute at most)."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "worker"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_worker_refuses_a_group_readable_keyring_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    CliRunner().invoke(cli, ["keys", "init", "--keyring", str(path)])
    path.chmod(0o644)
    env = {**os.environ, "CDRPIPE_KEYRING": str(path), "CDRPIPE_STATE_DIR": str(tmp_path / "state")}
    result = _start_worker(env)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"cdrpipe: keyring {path} is accessible to group or others (mode 0644): run `chmod 600 {path}`"
    )


def test_worker_refuses_a_bad_setting(tmp_path: Path) -> None:
    env = {**os.environ, "CDRPIPE_WEB_PORT": "web"}
    result = _start_worker(env)
    assert result.returncode == 2
    assert "CDRPIPE_WEB_PORT='web' is not usable" in result.stderr
    assert "Traceback" not in result.stderr


def _usable_env(tmp_path: Path, **variables: str) -> dict[str, str]:
    """A worker environment that passes every check but those ``variables`` break."""
    path = tmp_path / "keyring.json"
    if not path.exists():
        CliRunner().invoke(cli, ["keys", "init", "--keyring", str(path)])
    env = {key: value for key, value in os.environ.items() if not key.startswith("CDRPIPE_")}
    env.update(
        CDRPIPE_KEYRING=str(path),
        CDRPIPE_STATE_DIR=str(tmp_path / "state"),
        CDRPIPE_STORE=str(tmp_path / "store"),
        CDRPIPE_WEB_PORT=str(free_port()),
        CDRPIPE_BROKER=f"kafka://127.0.0.1:{free_port()}",  # nothing listens there
    )
    env.update(variables)
    return env


def test_worker_refuses_a_taken_web_port_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("0.0.0.0", free_port()))
        other.listen()
        port = other.getsockname()[1]
        result = _start_worker(_usable_env(tmp_path, CDRPIPE_WEB_PORT=str(port)))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"cdrpipe: web port {port} is taken by another process (CDRPIPE_WEB_PORT): "
        "stop that process or set CDRPIPE_WEB_PORT to a free port"
    ]


def _unreachable(env: dict[str, str]) -> list[str]:
    address = env["CDRPIPE_BROKER"].removeprefix("kafka://")
    return [
        f"cdrpipe: cannot reach the Kafka broker at {address} (CDRPIPE_BROKER): "
        "start it with `make kafka-start` or fix the address"
    ]


def test_worker_refuses_an_unreachable_broker_in_one_line(tmp_path: Path) -> None:
    env = _usable_env(tmp_path)
    result = _start_worker(env)
    assert result.returncode == 2
    assert result.stderr.splitlines() == _unreachable(env)


@pytest.mark.parametrize(
    "args",
    [
        ["demo", "--count", "1"],
        ["erase", "--pseudonym", "0123456789abcdef0123456789abcdef"],
        ["restrict", "--pseudonym", "0123456789abcdef0123456789abcdef"],
    ],
)
def test_commands_report_an_unreachable_broker_in_one_line(tmp_path: Path, args: list[str]) -> None:
    env = _usable_env(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1:] == _unreachable(env)
    assert "Traceback" not in result.stderr and "Unable connect" not in result.stderr


def _listed_help_lines(group: click.Group, path: list[str]) -> list[str]:
    """The command lines of ``cdrpipe <path> --help``, and of every group it lists."""
    shown = CliRunner().invoke(cli, [*path, "--help"]).output
    listed = shown.split("Commands:\n", 1)[1].splitlines()
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            listed += _listed_help_lines(command, [*path, name])
    return listed


def test_every_command_reads_whole_in_the_help_listings() -> None:
    lines = _listed_help_lines(cli, [])
    # the commands, and the keys, requests, audit and store subcommands
    assert len(lines) == 17 + 3 + 4 + 1 + 1
    for line in lines:
        description = line.split(None, 1)[1]
        assert description.endswith(".") and not description.endswith("..."), line
        assert description.count("(") == description.count(")"), line


def test_export_by_agent_skips_stray_files_and_needs_exactly_one_subject(tmp_path: Path) -> None:
    keyring_path = tmp_path / "keyring.json"
    CliRunner().invoke(cli, ["keys", "init", "--keyring", str(keyring_path)])
    key = load_keyring(keyring_path).active
    parties = PartyPseudonymizer(NumberClassifier("BE", (2, 5)), Pseudonymizer(key), 8)
    calls = (("a1", "agent-42"), ("a2", "agent-7"), ("a3", "agent-42"))
    rows = build_rows(
        [canonical_decode(canonical_bytes(cdr_id=i, agent=agent)) for i, agent in calls], parties
    )
    storage = LocalStorage(tmp_path / "store")
    storage.publish("cdr/call_date=2026-03-29/t+0+0.parquet", encode(rows, [key.ref]))
    storage.publish("cdr/README.txt", b"left here by someone")
    env = {"CDRPIPE_KEYRING": str(keyring_path), "CDRPIPE_STORE": str(tmp_path / "store")}
    out = tmp_path / "agent.jsonl"
    args = ["export", "--agent", "agent-42", "--tenant", "contact-centre", "--out", str(out)]
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 0, result.output
    assert "skipped cdr/README.txt" in result.output
    assert sorted(json.loads(line)["cdr_id"] for line in out.read_text().splitlines()) == ["a1", "a3"]
    assert [entry["kind"] for entry in read_audit(storage)] == ["stray-files"]
    args = ["export", "--agent", "x", "--number", "+32475000111", "--out", str(out)]
    both = CliRunner().invoke(cli, args, env=env)
    assert both.exit_code == 2 and "exactly one of --number, --agent or --pseudonym" in both.output


def test_erase_exits_1_after_printing_a_failed_or_rejected_receipt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keyring_path = tmp_path / "keyring.json"
    CliRunner().invoke(cli, ["keys", "init", "--keyring", str(keyring_path)])
    env = {"CDRPIPE_KEYRING": str(keyring_path), "CDRPIPE_STORE": str(tmp_path / "store")}
    answers = {
        "passed": ({"status": "completed", "verification": {"passed": True}}, 0),
        "failed": ({"status": "completed", "verification": {"passed": False}}, 1),
        "rejected": ({"status": "rejected", "reason": "a short code"}, 1),
    }
    for receipt, exit_code in answers.values():

        async def answer(*_: object, receipt: dict[str, object] = receipt) -> dict[str, object]:
            return receipt  # the broker round trip is tested in tests/test_erasure_integration.py

        monkeypatch.setattr("pipeline.cli.subjects._request_erasure", answer)
        result = CliRunner().invoke(cli, ["erase", "--number", "+32475000111", "--wait", "1"], env=env)
        assert result.exit_code == exit_code and json.loads(result.stdout) == receipt  # stderr: "subject: …"


@pytest.mark.parametrize(
    "command",
    [
        ["erase", "--number", "+32475000111"],
        ["restrict", "--number", "+32475000111"],
        ["rectify", "--cdr-id", "c-1", "--party", "caller"],
        ["demo", "--count", "1"],
        ["reapply-erasures"],
    ],
)
def test_every_broker_command_stops_at_a_bad_security_setting_with_one_line(
    tmp_path: Path, command: list[str]
) -> None:
    keyring_path = tmp_path / "keyring.json"
    CliRunner().invoke(cli, ["keys", "init", "--keyring", str(keyring_path)])
    env = {
        "CDRPIPE_KEYRING": str(keyring_path),
        "CDRPIPE_STORE": str(tmp_path / "store"),
        "CDRPIPE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "CDRPIPE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "CDRPIPE_KAFKA_SASL_USERNAME": "dpo",
    }
    result = CliRunner().invoke(cli, command, env=env)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == (
        "cdrpipe: CDRPIPE_KAFKA_SASL_MECHANISM=SCRAM-SHA-512 needs CDRPIPE_KAFKA_SASL_PASSWORD_FILE: "
        "a file holding the password (never the password itself in a variable)"
    )


def test_worker_refuses_a_missing_password_file_before_faust_starts(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "CDRPIPE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "CDRPIPE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "CDRPIPE_KAFKA_SASL_USERNAME": "worker",
        "CDRPIPE_KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "missing.password"),
    }
    result = _start_worker(env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        f"cdrpipe: CDRPIPE_KAFKA_SASL_PASSWORD_FILE='{tmp_path / 'missing.password'}' does not exist: "
        "mount the file there, or fix the path"
    )
