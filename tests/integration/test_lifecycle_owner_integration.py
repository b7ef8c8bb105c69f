"""Two lifecycle owners on the real broker: the revoked one stops before the new one writes.

A request handed to a thread cannot be cancelled. Worker A holds an erasure in its thread
between reading a file and writing it back (``tests.support.paused_worker``); worker B joins,
A cannot hand over in time, and the group gives the lifecycle to B, which answers the erasure
and then a restriction of another person whose calls share A's file. When A's thread goes on,
it must write nothing: its copy of the file would put the restricted rows back into ``cdr/``.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pytest
from aiokafka import AIOKafkaConsumer

from pipeline.cli import demo
from pipeline.keys.keyring import load_keyring
from pipeline.lifecycle.subject import subject_from_number
from pipeline.numbers.msisdn import NumberClassifier
from pipeline.record import CanonicalCdr
from tests.support.broker_requests import SUBJECT, rights_env, run_cli, send_cdrs
from tests.support.helpers import REPO, WorkerProcess, broker_address, free_port, wait_stored

pytestmark = pytest.mark.integration

OTHER = "+32475000222"
FENCED = "the request is left to the new lifecycle owner"


def _traffic() -> tuple[list[CanonicalCdr], set[str], set[str]]:
    """Demo calls, one in four from the subject, one in four from the other person: each file has both."""
    cdrs, subject, other = [], set(), set()
    for index, generated in enumerate(demo.generate(1_200, seed=211, days=2)):
        cdr = generated
        if index % 4 in (0, 2):
            caller = SUBJECT if index % 4 == 0 else OTHER
            cdr = msgspec.structs.replace(cdr, caller=caller, direction="inbound")
            (subject if caller == SUBJECT else other).add(cdr.cdr_id)
        cdrs.append(cdr)
    return cdrs, subject, other


def _rows(store: str, area: str) -> list[tuple[str, str | None]]:
    """(cdr_id, caller pseudonym) of every row under ``area``."""
    if not list(Path(store).glob(f"{area}/*/*.parquet")):
        return []
    query = f"SELECT cdr_id, caller_pseudonym FROM read_parquet('{store}/{area}/*/*.parquet')"
    return duckdb.sql(query).fetchall()


async def _keys_on(bootstrap: str, topic: str) -> list[bytes | None]:
    """The key of every message on ``topic`` so far."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=5_000)
        return [message.key for messages in batches.values() for message in messages]
    finally:
        await consumer.stop()


def _wait_for(done: Callable[[], bool], timeout_s: float, worker: WorkerProcess) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, worker.log()[-3000:]
        time.sleep(0.1)


@dataclass
class _HandOver:
    """What the two workers left: receipts, logs, the keys of the receipt topics and the store's rows."""

    erased: dict[str, Any] = field(default_factory=dict)
    restricted: dict[str, Any] = field(default_factory=dict)
    logs: list[str] = field(default_factory=list)
    erasure_receipts: list[bytes | None] = field(default_factory=list)
    subject_receipts: list[bytes | None] = field(default_factory=list)
    dataset: list[tuple[str, str | None]] = field(default_factory=list)
    quarantine: list[tuple[str, str | None]] = field(default_factory=list)


def _hand_over_during_an_erasure(env: dict[str, str], tmp_path: Path, cdrs: list[CanonicalCdr]) -> _HandOver:
    """A holds the erasure's first rewrite; B joins, takes over, erases and restricts; then A goes on."""
    control = tmp_path / "control"
    control.mkdir()
    paused_env = {**env, "PAUSED_WORKER_DIR": str(control)}
    first = WorkerProcess(paused_env, tmp_path / "worker-a.log", "tests.support.paused_worker").start()
    second = WorkerProcess({**env, "CDRPIPE_WEB_PORT": str(free_port())}, tmp_path / "worker-b.log")
    outcome = _HandOver()
    try:
        send_cdrs(env, cdrs)
        wait_stored(env)
        (control / "armed").touch()
        command = ["erase", "--number", SUBJECT, "--request-id", "E-1", "--wait", "240"]
        erasure = subprocess.Popen(
            [sys.executable, "-m", "pipeline", *command],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        _wait_for((control / "paused").exists, 120, first)  # A has read a file and holds its rewrite
        second.start()
        out, err = erasure.communicate(timeout=240)
        assert erasure.returncode == 0, err
        outcome.erased = json.loads(out)
        restriction = ["restrict", "--number", OTHER, "--request-id", "R-1", "--wait", "180"]
        outcome.restricted = json.loads(run_cli(env, *restriction).stdout)
        (control / "go").touch()  # A's thread goes on with the file it read before B took over
        ends = (FENCED, "erasure E-1 completed", "erasure E-1 failed")
        _wait_for(lambda: any(text in first.log() for text in ends), 60, first)
        time.sleep(2)  # anything A would still send or write after that line
        bootstrap = broker_address(env)
        outcome.erasure_receipts = asyncio.run(_keys_on(bootstrap, env["CDRPIPE_RECEIPTS_TOPIC"]))
        outcome.subject_receipts = asyncio.run(_keys_on(bootstrap, env["CDRPIPE_SUBJECT_RECEIPTS_TOPIC"]))
        outcome.dataset = _rows(env["CDRPIPE_STORE"], "cdr")
        outcome.quarantine = _rows(env["CDRPIPE_STORE"], "restricted")
    finally:
        first.stop()
        second.stop()
    outcome.logs = [first.log(), second.log()]
    return outcome


def test_a_revoked_lifecycle_owner_writes_nothing_after_the_new_owner_claims(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    env = {
        **rights_env(worker_env),
        # A hand-over that does not finish within 8 s moves the lifecycle without the old owner;
        # the new owner then waits 2 s for a write the old one might have begun.
        "CDRPIPE_REBALANCE_TIMEOUT_S": "8",
        "CDRPIPE_OWNER_GRACE_S": "2",
    }
    cdrs, subject_ids, other_ids = _traffic()
    outcome = _hand_over_during_an_erasure(env, tmp_path, cdrs)

    a_log, b_log = outcome.logs
    assert "erasure E-1 started" in b_log, "the new owner carried the erasure out"
    for receipt in (outcome.erased, outcome.restricted):
        assert receipt["status"] == "completed" and receipt["verification"]["passed"], receipt
    keyring, classifier = load_keyring(Path(env["CDRPIPE_KEYRING"])), NumberClassifier("BE", (2, 5))
    subject = subject_from_number(SUBJECT, keyring, classifier).pseudonyms
    other = subject_from_number(OTHER, keyring, classifier).pseudonyms
    # Every row of the subject gone; the other person's rows held once, in the quarantine only;
    # every other row still in cdr/, once.
    assert not [row for row in outcome.dataset + outcome.quarantine if row[1] in subject]
    assert sorted(row[0] for row in outcome.quarantine) == sorted(other_ids)
    assert not [row for row in outcome.dataset if row[1] in other], "rows the restriction moved came back"
    everyone_else = {cdr.cdr_id for cdr in cdrs} - subject_ids - other_ids
    assert sorted(row[0] for row in outcome.dataset) == sorted(everyone_else)
    # One receipt per request: A sent none for the request B answered.
    assert outcome.erasure_receipts.count(b"E-1") == 1, outcome.erasure_receipts
    assert outcome.subject_receipts.count(b"R-1") == 1, outcome.subject_receipts
    # A stopped at its next write, fenced by B's claim; B waited for a write A might have begun.
    assert FENCED in a_log, a_log[-3000:]
    assert "lifecycle epoch 2 claimed; the previous owner did not hand over" in b_log, b_log[-3000:]
