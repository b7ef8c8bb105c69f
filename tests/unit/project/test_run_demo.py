"""`make run` (deploy/run-demo.sh) stops in seconds, with one line, when the worker cannot run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.helpers import REPO, free_port

SCRIPT = REPO / "deploy" / "run-demo.sh"
BIN = Path(sys.executable).parent
"""The bin directory of the virtualenv running the tests: its cdrpipe and python, as make passes .venv/bin."""


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another process listens on, as when something else already has 6066."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", free_port()))
        other.listen()
        yield other.getsockname()[1]


def _demo_env(tmp_path: Path, **variables: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CDRPIPE_")}
    env.update(
        PYTHONPATH=str(REPO),
        CDRPIPE_STORE=str(tmp_path / "data" / "store"),
        CDRPIPE_KEYRING=str(tmp_path / "secrets" / "keyring.json"),
        CDRPIPE_STATE_DIR=str(tmp_path / "data" / "state"),
        **variables,
    )
    return env


def _run_demo(tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(SCRIPT), "5", str(BIN)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result, time.monotonic() - started


def test_a_taken_web_port_stops_the_demo_before_the_worker_starts(tmp_path: Path, taken_port: int) -> None:
    env = _demo_env(tmp_path, CDRPIPE_WEB_PORT=str(taken_port), CDRPIPE_BROKER="kafka://127.0.0.1:1")
    result, elapsed = _run_demo(tmp_path, env)
    assert result.returncode == 1 and elapsed < 20
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"run-demo: web port {taken_port} is taken by another process (CDRPIPE_WEB_PORT): stop it, "
        f"or choose another port, e.g. CDRPIPE_WEB_PORT={taken_port + 1} make run"
    ]
    assert not (tmp_path / "data" / "worker.log").exists()  # no worker was started


def test_a_worker_that_dies_at_start_stops_the_demo_with_its_last_error(tmp_path: Path) -> None:
    closed = free_port()  # nothing listens there: the broker does not answer
    env = _demo_env(tmp_path, CDRPIPE_WEB_PORT=str(free_port()), CDRPIPE_BROKER=f"kafka://127.0.0.1:{closed}")
    result, elapsed = _run_demo(tmp_path, env)
    assert result.returncode == 1 and elapsed < 60  # the worker's start-up (imports) under load
    assert "publish" not in result.stdout
    assert result.stderr.splitlines() == [
        f"run-demo: the worker stopped at start: cdrpipe: cannot reach the Kafka broker at "
        f"127.0.0.1:{closed} (CDRPIPE_BROKER): start it with `make kafka-start` or fix the address "
        "(full log: data/worker.log)"
    ]


def test_make_run_checks_the_web_port_before_the_broker_starts(tmp_path: Path, taken_port: int) -> None:
    check = ["bash", str(SCRIPT), "--check"]
    env = _demo_env(tmp_path, CDRPIPE_WEB_PORT=str(taken_port))
    taken = subprocess.run(check, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=20)
    assert taken.returncode == 1 and "(CDRPIPE_WEB_PORT)" in taken.stderr
    env = _demo_env(tmp_path, CDRPIPE_WEB_PORT=str(free_port()))
    free = subprocess.run(check, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=20)
    assert (free.returncode, free.stdout, free.stderr) == (0, "", "")
    makefile = (REPO / "Makefile").read_text()
    assert "run: install run-check kafka-start\n" in makefile
