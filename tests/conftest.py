"""Fixtures: a real local Kafka (deploy/kafka-local) for the session, keyrings, worker settings."""

from __future__ import annotations

import os
import shlex
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline.keys.keyring import Key, Keyring, init_keyring
from pipeline.lifecycle.requests import chain
from tests.support import fuzzing  # noqa: F401 - loads the Hypothesis profile (ci or fuzz) for every test
from tests.support.helpers import REPO, free_port, free_port_pair


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of a single-node KRaft broker started for this test session."""
    port = free_port_pair()
    data = tmp_path_factory.mktemp("kafka")
    env = {**os.environ, "CDRPIPE_KAFKA_PORT": str(port), "CDRPIPE_KAFKA_DATA": str(data)}
    launcher = str(REPO / "deploy" / "kafka-local")
    started = subprocess.run([launcher, "start"], env=env, capture_output=True, text=True, timeout=600)
    assert started.returncode == 0, f"kafka-local start failed:\n{started.stdout}\n{started.stderr}"
    assert f"bootstrap=127.0.0.1:{port}" in started.stdout
    yield f"127.0.0.1:{port}"
    subprocess.run([launcher, "stop"], env=env, capture_output=True, timeout=120)


SECURE_PRINCIPALS = ("worker", "dpo", "producer", "admin")


@pytest.fixture(scope="session")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, str]]]:
    """A single-node KRaft broker with only a SASL_SSL listener (SCRAM users, least-privilege ACLs).

    Yields each principal's client settings (``worker``, ``dpo``, ``producer``, and ``admin``, a
    super user that tests use as a principal allowed to write every topic), as
    ``deploy/kafka-local env USER`` prints them.
    """
    port = free_port_pair()
    data = tmp_path_factory.mktemp("kafka-secure")
    env = {
        **os.environ,
        "CDRPIPE_KAFKA_SECURE": "1",
        "CDRPIPE_KAFKA_PORT": str(port),
        "CDRPIPE_KAFKA_SECURE_PORT": str(free_port()),
        "CDRPIPE_KAFKA_DATA": str(data),
    }
    launcher = str(REPO / "deploy" / "kafka-local")
    started = subprocess.run([launcher, "start"], env=env, capture_output=True, text=True, timeout=900)
    assert started.returncode == 0, f"kafka-local secure start failed:\n{started.stdout}\n{started.stderr}"
    principals = {}
    for user in SECURE_PRINCIPALS:
        printed = subprocess.run([launcher, "env", user], env=env, capture_output=True, text=True, timeout=60)
        assert printed.returncode == 0, printed.stderr
        words = [shlex.split(line)[1] for line in printed.stdout.splitlines() if line.startswith("export ")]
        principals[user] = dict(word.split("=", 1) for word in words)
    yield principals
    subprocess.run([launcher, "stop"], env=env, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def kafka_restartable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """A broker of its own that a test may stop and start: (bootstrap, launcher environment)."""
    port = free_port_pair()
    data = tmp_path_factory.mktemp("kafka-restartable")
    env = {**os.environ, "CDRPIPE_KAFKA_PORT": str(port), "CDRPIPE_KAFKA_DATA": str(data)}
    launcher = str(REPO / "deploy" / "kafka-local")
    started = subprocess.run([launcher, "start"], env=env, capture_output=True, text=True, timeout=600)
    assert started.returncode == 0, f"kafka-local start failed:\n{started.stdout}\n{started.stderr}"
    yield f"127.0.0.1:{port}", env
    subprocess.run([launcher, "stop"], env=env, capture_output=True, timeout=120)


SEALING_KEYRING = Keyring("s1", (Key("s1", bytes(range(32)), "2026-01-01T00:00:00+00:00"),))
"""The keyring every test's audit and register entries are sealed with, unless a command loads its own."""


@pytest.fixture(autouse=True)
def sealing_keyring() -> Iterator[Keyring]:
    """Seal the chains of each test with :data:`SEALING_KEYRING`, as the worker and CLI do with theirs."""
    chain.seal_with(lambda: SEALING_KEYRING)
    yield SEALING_KEYRING
    chain.seal_with(None)


@pytest.fixture
def keyring_path(tmp_path: Path) -> Path:
    path = tmp_path / "secrets" / "keyring.json"
    init_keyring(path)
    return path


@pytest.fixture
def worker_env_on(tmp_path: Path, keyring_path: Path) -> Callable[[str], dict[str, str]]:
    """Build a worker environment for a given broker (see ``worker_env``)."""
    return lambda bootstrap: _worker_env(bootstrap, tmp_path, keyring_path)


@pytest.fixture
def worker_env(kafka: str, tmp_path: Path, keyring_path: Path) -> dict[str, str]:
    """Environment for a worker with its own topics, group, store and web port."""
    return _worker_env(kafka, tmp_path, keyring_path)


def _worker_env(kafka: str, tmp_path: Path, keyring_path: Path) -> dict[str, str]:
    run = uuid.uuid4().hex[:8]
    env = {key: value for key, value in os.environ.items() if not key.startswith("CDRPIPE_")}
    env.update(
        {
            "CDRPIPE_BROKER": f"kafka://{kafka}",
            "CDRPIPE_APP_ID": f"cdrpipe-test-{run}",
            "CDRPIPE_RAW_TOPICS": f"cdr.raw.{run}",
            "CDRPIPE_DLQ_TOPIC": f"cdr.dlq.{run}",
            "CDRPIPE_STORE": str(tmp_path / "store"),
            "CDRPIPE_KEYRING": str(keyring_path),
            "CDRPIPE_STATE_DIR": str(tmp_path / "state"),
            "CDRPIPE_WEB_PORT": str(free_port()),
            "CDRPIPE_FLUSH_SECONDS": "1",
        }
    )
    return env
