"""The DPO commands say what they act on (store, keyring, broker) and refuse a store that is not there."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.cli.group import store_keyring
from pipeline.config.settings import load_settings
from pipeline.errors import KeyringError
from pipeline.keys.keyring import init_keyring, rotate_keyring

PSEUDONYM = "0123456789abcdef0123456789abcdef"
NUMBER = "+32475000111"
STORE_COMMANDS = [
    ["export", "--pseudonym", PSEUDONYM, "--out", "out.jsonl"],
    ["requests"],
    ["requests", "--json"],
    ["requests", "show", "0b4c3d2e-1f00-4a6b-9c8d-7e6f5a4b3c2d"],
    ["requests", "add", "--kind", "access"],
    ["retention", "--dry-run"],
    ["reapply-erasures"],
]
"""The commands that read or write the store themselves."""
BROKER_COMMANDS = [
    ["erase", "--number", NUMBER],
    ["erase", "--pseudonym", PSEUDONYM],
    ["restrict", "--number", NUMBER],
    ["unrestrict", "--pseudonym", PSEUDONYM],
    ["object", "--number", NUMBER, "--existing", "quarantine"],
    ["withdraw-objection", "--number", NUMBER],
    ["rectify", "--cdr-id", "c1", "--party", "caller"],
]
"""The commands that only publish a request for the worker."""


@pytest.fixture
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A store and a keyring of two keys; the broker round trips answered without a broker."""

    async def no_receipt(*_: object, **__: object) -> None:
        return None  # the round trips are tested in tests/integration

    async def empty_ledger(*_: object) -> None:
        return None

    monkeypatch.setattr("pipeline.cli.rights.request_and_wait", no_receipt)
    monkeypatch.setattr("pipeline.cli.subjects._request_erasure", no_receipt)
    monkeypatch.setattr("pipeline.cli.store._read_ledger", empty_ledger)
    monkeypatch.chdir(tmp_path)
    keyring = tmp_path / "secrets" / "keyring.json"
    init_keyring(keyring)
    rotate_keyring(keyring)
    (tmp_path / "store").mkdir()
    return {
        "CDRPIPE_STORE": str(tmp_path / "store"),
        "CDRPIPE_KEYRING": str(keyring),
        "CDRPIPE_BROKER": "kafka://127.0.0.1:19999",
    }


@pytest.mark.parametrize("args", [*STORE_COMMANDS, *BROKER_COMMANDS, ["keys", "list"]])
def test_every_dpo_command_shows_its_store_keyring_and_broker(
    environment: dict[str, str], args: list[str]
) -> None:
    result = CliRunner().invoke(cli, args, env=environment)
    store, keyring = Path(environment["CDRPIPE_STORE"]), Path(environment["CDRPIPE_KEYRING"])
    assert result.stderr.splitlines()[0] == (
        f"using store {store}; keyring {keyring} (keys k1, k2; active k2); broker 127.0.0.1:19999"
    )
    for key in json.loads(keyring.read_text())["keys"]:
        assert key["secret"] not in result.output
        assert base64.b64decode(key["secret"]).hex() not in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args", STORE_COMMANDS)
def test_a_command_that_reads_the_store_refuses_one_that_does_not_exist(
    environment: dict[str, str], args: list[str]
) -> None:
    env = {**environment, "CDRPIPE_STORE": "./data/store"}
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "cdrpipe: store ./data/store does not exist: run from the project directory or set CDRPIPE_STORE"
    ]
    assert not Path("data").exists()  # nothing written in the wrong place


def test_a_command_that_only_publishes_names_a_missing_store_but_goes_on(environment: dict[str, str]) -> None:
    env = {**environment, "CDRPIPE_STORE": "./data/store"}
    result = CliRunner().invoke(cli, ["erase", "--pseudonym", PSEUDONYM], env=env)
    assert result.exit_code == 0, result.output
    assert f"using store {Path('data/store').resolve()} (does not exist); " in result.stderr


def test_a_missing_keyring_beside_a_store_is_never_told_to_create_a_key(environment: dict[str, str]) -> None:
    env = {**environment, "CDRPIPE_KEYRING": "./elsewhere/keyring.json"}
    result = CliRunner().invoke(cli, ["export", "--number", NUMBER, "--out", "out.jsonl"], env=env)
    assert result.exit_code == 2
    assert f"keyring {Path('elsewhere/keyring.json').resolve()} (missing)" in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"cdrpipe: keyring elsewhere/keyring.json does not exist, but the store {env['CDRPIPE_STORE']} "
        "does: point CDRPIPE_KEYRING at the keyring the store was written with "
        "(a new key would match none of its rows)"
    )
    assert "keys init" not in result.output


def test_without_a_store_a_missing_keyring_is_told_to_be_created(tmp_path: Path) -> None:
    settings = load_settings({"CDRPIPE_STORE": str(tmp_path / "store"), "CDRPIPE_KEYRING": "k.json"})
    with pytest.raises(KeyringError, match=r"create one with `cdrpipe keys init`"):
        store_keyring(settings)
    (tmp_path / "store").mkdir()
    with pytest.raises(KeyringError, match="the keyring the store was written with"):
        store_keyring(settings)
