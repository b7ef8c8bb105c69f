"""Exactly once into Parquet on the real broker: kill -9, rebalances, broker restarts, stale workers."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.helpers import (
    REPO,
    WorkerProcess,
    assert_exactly_once,
    fast_env,
    free_port,
    publish_demo,
    wait_stored,
)

pytestmark = pytest.mark.integration


def test_kill_9_during_ingest_loses_and_duplicates_nothing(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    env = fast_env(worker_env)
    expected = publish_demo(env, 100_000, seed=1)
    rng = random.Random(8)
    kills = 0
    published_at_kill = []
    while kills < 10:
        worker = WorkerProcess(env, tmp_path / f"worker-{kills}.log").start()
        worker.wait_for("assigned", timeout_s=60)
        time.sleep(rng.uniform(0.0, 1.5))
        published_at_kill.append(worker.log().count("published "))
        worker.kill()
        kills += 1
    final = WorkerProcess(env, tmp_path / "worker-final.log").start()
    try:
        wait_stored(env, timeout_s=300)
    finally:
        assert final.stop() == 0, final.log()[-3000:]
    assert sum(published_at_kill) > 0, "no kill happened after a publish: the test did not test anything"
    assert_exactly_once(Path(env["CDRPIPE_STORE"]), expected)


def test_rebalance_with_a_worker_stopped_and_started_repeatedly(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    env = fast_env(worker_env)
    expected = publish_demo(env, 60_000, seed=2)
    steady = WorkerProcess({**env, "CDRPIPE_WEB_PORT": str(free_port())}, tmp_path / "steady.log")
    steady.start()
    try:
        for round_number in range(4):
            moving = WorkerProcess(env, tmp_path / f"moving-{round_number}.log").start()
            time.sleep(2.0)
            assert moving.stop() == 0, moving.log()[-3000:]
        wait_stored(env, timeout_s=300)
    finally:
        assert steady.stop() == 0, steady.log()[-3000:]
    assert "assigned" in steady.log()
    assert_exactly_once(Path(env["CDRPIPE_STORE"]), expected)


def test_a_stale_worker_resumed_after_its_session_expired_writes_no_duplicate(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    env = fast_env(worker_env)
    first_half = publish_demo(env, 30_000, seed=3)
    stale = WorkerProcess(env, tmp_path / "stale.log").start()
    other = WorkerProcess({**env, "CDRPIPE_WEB_PORT": str(free_port())}, tmp_path / "other.log")
    try:
        time.sleep(1.0)
        assert stale.process is not None
        os.kill(stale.process.pid, signal.SIGSTOP)
        other.start()
        second_half = publish_demo(env, 30_000, seed=4)
        time.sleep(12)  # past the 6 s session timeout: the other worker owns every partition
        wait_stored(env, timeout_s=120)
        os.kill(stale.process.pid, signal.SIGCONT)
        time.sleep(8)
        wait_stored(env, timeout_s=120)
    finally:
        if stale.process is not None and stale.process.poll() is None:
            os.kill(stale.process.pid, signal.SIGCONT)
        stale.stop()
        assert other.stop() == 0, other.log()[-3000:]
    assert_exactly_once(Path(env["CDRPIPE_STORE"]), first_half | second_half)


def test_broker_restart_mid_ingest_recovers_by_itself(
    kafka_restartable: tuple[str, dict[str, str]],
    worker_env_on: Callable[[str], dict[str, str]],
    tmp_path: Path,
) -> None:
    bootstrap, launcher_env = kafka_restartable
    env = fast_env(worker_env_on(bootstrap))
    expected = publish_demo(env, 40_000, seed=5)
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        time.sleep(2.0)
        launcher = str(REPO / "deploy" / "kafka-local")
        subprocess.run([launcher, "stop"], env=launcher_env, check=True, capture_output=True, timeout=120)
        time.sleep(3.0)
        subprocess.run([launcher, "start"], env=launcher_env, check=True, capture_output=True, timeout=300)
        wait_stored(env, timeout_s=300)
        assert worker.process is not None and worker.process.poll() is None, "the worker died with the broker"
    finally:
        worker.stop()
    assert_exactly_once(Path(env["CDRPIPE_STORE"]), expected)
