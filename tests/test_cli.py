"""The cdrpipe command: keys, and the worker's refusal to start on a bad keyring."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from pipeline.cli import cli
from tests.helpers import REPO


def test_keys_init_list_rotate_never_print_secrets(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    runner = CliRunner()
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


def test_worker_refuses_a_group_readable_keyring_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    CliRunner().invoke(cli, ["keys", "init", "--keyring", str(path)])
    path.chmod(0o644)
    env = {**os.environ, "CDRPIPE_KEYRING": str(path), "CDRPIPE_STATE_DIR": str(tmp_path / "state")}
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "worker"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"cdrpipe: keyring {path} is accessible to group or others (mode 0644): run `chmod 600 {path}`"
    )


def test_worker_refuses_a_bad_setting(tmp_path: Path) -> None:
    env = {**os.environ, "CDRPIPE_WEB_PORT": "web"}
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "worker"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "CDRPIPE_WEB_PORT='web' is not usable" in result.stderr
    assert "Traceback" not in result.stderr
