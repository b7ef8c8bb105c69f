"""Subject rights on the real broker: rectification, rejected requests, the register of requests."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import urllib.request
from datetime import UTC, timedelta
from pathlib import Path

import duckdb
import jsonschema
import msgspec
import pytest

from pipeline.cli import demo
from pipeline.cli.client import request_and_wait
from pipeline.config.settings import load_settings
from pipeline.keys.keyring import load_keyring, rotate_keyring
from pipeline.lifecycle.requests.audit import read_audit
from pipeline.lifecycle.subject import subject_from_number
from pipeline.numbers.msisdn import NumberClassifier
from pipeline.store.storage import LocalStorage
from tests.support.broker_requests import NOW, SPELLINGS, SUBJECT, rights_env, run_cli, send_cdrs, traffic
from tests.support.helpers import (
    REPO,
    WorkerProcess,
    find_raw_numbers,
    raw_number_needles,
    start_workers,
    wait_stored,
)

pytestmark = pytest.mark.integration


def _rectify(env: dict[str, str], cdr_id: str, request_id: str) -> subprocess.CompletedProcess[str]:
    return run_cli(
        env, "rectify", "--cdr-id", cdr_id, "--party", "caller", "--request-id", request_id, "--wait", "120"
    )


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )


def _publish_raw(env: dict[str, str], key: str, payload: bytes, wait_s: float) -> dict[str, object] | None:
    """Publish ``payload`` straight to the subject request topic, keyed ``key``; its receipt, if awaited."""
    settings = load_settings(env)
    topics = (settings.topics.subject_requests_topic, settings.topics.subject_receipts_topic)
    keyring = load_keyring(settings.numbers.keyring)  # a tool that holds the keyring: the request is signed
    return asyncio.run(request_and_wait(settings, topics, key, payload, keyring=keyring, wait_s=wait_s))


def test_rectify_bad_requests_and_the_register(worker_env: dict[str, str], tmp_path: Path) -> None:
    env = rights_env(worker_env)
    cdrs, subject_rows = traffic(400, seed=91, subject_every=10)
    wrong = next(cdr for cdr in cdrs if cdr.caller in SPELLINGS)
    lift_without_subject = {
        "request_id": "bad-2",
        "kind": "lift",
        "requested_at": "2026-11-20T09:00:00+00:00",
    }
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        send_cdrs(env, cdrs)
        wait_stored(env)
        rectified = _rectify(env, wrong.cdr_id, "rect-1")
        unknown = _run(
            env,
            "rectify",
            "--cdr-id",
            "no-such-call",
            "--party",
            "callee",
            "--request-id",
            "rect-2",
            "--wait",
            "120",
        )
        bad = [
            _publish_raw(env, "bad-1", b'{"request_id": "bad-1", "kind": "nonsense"}', 60),
            _publish_raw(env, "bad-2", json.dumps(lift_without_subject).encode(), 60),
        ]
        # The key is number-shaped, so the receipt cannot carry it: it is found in the audit log below.
        _publish_raw(
            env, "+32475000111", json.dumps({"request_id": "+32475000111", "kind": "lift"}).encode(), 0
        )
        erased = json.loads(
            run_cli(env, "erase", "--number", SUBJECT, "--request-id", "era-1", "--wait", "180").stdout
        )
        listed = run_cli(env, "requests", "--json").stdout
        shown = {
            request_id: json.loads(run_cli(env, "requests", "show", request_id).stdout)
            for request_id in ("rect-1", "rect-2", "era-1")
        }
        unregistered = _run(env, "requests", "show", "bad-2")
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]

    receipt = json.loads(rectified.stdout)
    schema = json.loads((REPO / "schemas" / "subject-receipt.schema.json").read_text())
    jsonschema.validate(receipt, schema)
    assert (receipt["status"], receipt["rows_found"], receipt["rows_redacted"]) == ("completed", 1, 1)
    assert receipt["verification"]["passed"] is True
    store = env["CDRPIPE_STORE"]
    ((caller, caller_type, callee_type),) = duckdb.sql(
        f"""SELECT caller_pseudonym, caller_number_type, callee_number_type
            FROM read_parquet('{store}/cdr/*/*.parquet') WHERE cdr_id = '{wrong.cdr_id}'"""
    ).fetchall()
    assert (caller, caller_type) == (None, "REDACTED") and callee_type != "REDACTED"
    # The erasure afterwards removed the subject's rows, except the rectified call: no longer theirs.
    stored = duckdb.sql(f"SELECT count(*) FROM read_parquet('{store}/cdr/*/*.parquet')").fetchall()
    assert stored == [(400 - subject_rows + 1,)]

    assert unknown.returncode == 1 and json.loads(unknown.stdout)["reason"] == "no row of call no-such-call"
    for rejected in bad:
        jsonschema.validate(rejected, schema)
        assert rejected is not None and rejected["status"] == "rejected"
    assert [rejected["request_id"] for rejected in bad if rejected] == ["bad-1", "bad-2"]
    assert bad[1] is not None and bad[1]["reason"] == "a lift request names its subject"
    anonymous = [
        entry
        for entry in read_audit(LocalStorage(Path(env["CDRPIPE_STORE"])))
        if "request_id" in entry and entry["request_id"] is None
    ]
    assert [(entry["kind"], entry["status"]) for entry in anonymous] == [("lift", "rejected")]
    assert erased["verification"]["passed"] is True

    assert json.loads(listed) == []  # every request above is answered; malformed messages are not requests
    assert (shown["rect-1"]["status"], shown["rect-2"]["status"]) == ("closed", "rejected")
    assert unregistered.returncode == 1 and "no request bad-2" in unregistered.stderr
    assert shown["era-1"]["kind"] == "erasure" and shown["era-1"]["status"] == "closed"
    assert "verification passed" in shown["era-1"]["outcome"]

    needles = raw_number_needles([SUBJECT], SPELLINGS)
    records = b"".join(path.read_bytes() for path in Path(store).glob("_cdrpipe/**/*.json"))
    assert find_raw_numbers(records, needles) == []
    assert find_raw_numbers(json.dumps(bad).encode(), needles) == []
    assert find_raw_numbers((tmp_path / "worker.log").read_bytes(), needles) == []


def _subject_pseudonyms(env: dict[str, str]) -> frozenset[str]:
    keyring = load_keyring(Path(env["CDRPIPE_KEYRING"]))
    return subject_from_number(SUBJECT, keyring, NumberClassifier("BE", (2, 5))).pseudonyms


def _area_rows(store: str, area: str) -> list[tuple[str, str, str | None, str | None, object]]:
    """(cdr_id, call_date directory, caller, callee, start_time) of every row of ``area``."""
    if not list(Path(store).glob(f"{area}/*/*.parquet")):
        return []
    return duckdb.sql(
        f"""SELECT cdr_id, call_date::VARCHAR, caller_pseudonym, callee_pseudonym, start_time
            FROM read_parquet('{store}/{area}/*/*.parquet', hive_partitioning = true)"""
    ).fetchall()


def _of_subject(
    rows: list[tuple[str, str, str | None, str | None, object]], pseudonyms: frozenset[str]
) -> list[str]:
    return sorted(row[0] for row in rows if {row[2], row[3]} & pseudonyms)


def test_restrict_during_ingest_rotate_then_lift(worker_env: dict[str, str], tmp_path: Path) -> None:
    env = rights_env(worker_env)
    store = env["CDRPIPE_STORE"]
    before, _ = traffic(2_000, seed=101, subject_every=50)
    during, _ = traffic(3_000, seed=102, subject_every=30)
    (older,) = demo.generate(1, seed=103, start=NOW - timedelta(days=1))
    late = msgspec.structs.replace(older, caller=SPELLINGS[2], direction="inbound")
    everything = before + during + [late]
    subject_ids = sorted(
        cdr.cdr_id for cdr in everything if cdr.caller in SPELLINGS or cdr.callee in SPELLINGS
    )
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        send_cdrs(env, before)
        wait_stored(env)
        sender = threading.Thread(target=send_cdrs, args=(env, during))
        sender.start()
        restricted = json.loads(
            run_cli(
                env, "restrict", "--number", "0475 00 01 11", "--request-id", "res-1", "--wait", "180"
            ).stdout
        )
        sender.join()
        wait_stored(env)
        pseudonyms = _subject_pseudonyms(env)
        dataset, quarantine = _area_rows(store, "cdr"), _area_rows(store, "restricted")

        rotate_keyring(Path(env["CDRPIPE_KEYRING"]))
        worker.wait_for("keyring changed: now writing under key k2", timeout_s=60)
        send_cdrs(env, [late])
        wait_stored(env)
        after_rotation = _area_rows(store, "restricted")
        in_dataset_after_rotation = _of_subject(_area_rows(store, "cdr"), _subject_pseudonyms(env))

        lifted = json.loads(
            run_cli(
                env,
                "unrestrict",
                "--number",
                "tel:+32-475-000111",
                "--request-id",
                "lift-1",
                "--wait",
                "180",
            ).stdout
        )
        register = json.loads(run_cli(env, "requests", "show", "res-1").stdout)
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]

    schema = json.loads((REPO / "schemas" / "subject-receipt.schema.json").read_text())
    for receipt in (restricted, lifted):
        jsonschema.validate(receipt, schema)
        assert receipt["status"] == "completed" and receipt["verification"]["passed"] is True, receipt
    assert register["status"] == "closed"
    # While restricted: no analyst query over cdr/ sees the subject; the quarantine holds every row once.
    assert _of_subject(dataset, pseudonyms) == []
    assert _of_subject(quarantine, pseudonyms) == sorted(set(subject_ids) - {late.cdr_id})
    assert len(quarantine) == len({row[0] for row in quarantine})
    # A late record pseudonymised under the new key still lands in the quarantine.
    assert late.cdr_id in {row[0] for row in after_rotation} and in_dataset_after_rotation == []
    # Lifted: every row back once, in the partition of its call date; the quarantine is empty.
    rows = _area_rows(store, "cdr")
    assert sorted(row[0] for row in rows) == sorted(cdr.cdr_id for cdr in everything)
    assert all(row[1] == row[4].astimezone(UTC).date().isoformat() for row in rows)
    assert _area_rows(store, "restricted") == []

    needles = raw_number_needles([SUBJECT], SPELLINGS)
    records = b"".join(path.read_bytes() for path in Path(store).glob("_cdrpipe/**/*.json"))
    assert find_raw_numbers(records + json.dumps([restricted, lifted]).encode(), needles) == []
    assert find_raw_numbers((tmp_path / "worker.log").read_bytes(), needles) == []


def _suppressed(env: dict[str, str]) -> float:
    with urllib.request.urlopen(
        f"http://127.0.0.1:{env['CDRPIPE_WEB_PORT']}/metrics", timeout=10
    ) as response:
        text = response.read().decode()
    (line,) = [line for line in text.splitlines() if line.startswith("cdrpipe_records_suppressed_total")]
    return float(line.split()[-1])


def test_objection_with_erasure_then_withdrawal(worker_env: dict[str, str], tmp_path: Path) -> None:
    env = rights_env(worker_env)
    store = env["CDRPIPE_STORE"]
    first, _ = traffic(1_000, seed=111, subject_every=20)
    later, later_subject = traffic(600, seed=112, subject_every=15, start=NOW + timedelta(hours=1))
    # Calls after the objection: its erasure stays (calls up to it stay erased), its suppression ends.
    again, again_subject = traffic(600, seed=113, subject_every=15, start=NOW + timedelta(days=3))
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        send_cdrs(env, first)
        wait_stored(env)
        objected = json.loads(
            run_cli(
                env,
                "object",
                "--number",
                SUBJECT,
                "--existing",
                "erase",
                "--request-id",
                "obj-1",
                "--wait",
                "180",
            ).stdout
        )
        send_cdrs(env, later)
        wait_stored(env)
        pseudonyms = _subject_pseudonyms(env)
        while_objected = _of_subject(_area_rows(store, "cdr") + _area_rows(store, "restricted"), pseudonyms)
        suppressed = _suppressed(env)
        withdrawn = json.loads(
            run_cli(
                env, "withdraw-objection", "--number", SUBJECT, "--request-id", "wd-1", "--wait", "180"
            ).stdout
        )
        send_cdrs(env, again)
        wait_stored(env)
        stored_again = _of_subject(_area_rows(store, "cdr"), pseudonyms)
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]

    assert (
        objected["status"] == "completed"
        and objected["verification"]["passed"]
        and objected["rows_removed"] > 0
    )
    assert while_objected == [] and suppressed == later_subject
    assert withdrawn["ended"] == ["obj-1"]
    assert stored_again == sorted(
        cdr.cdr_id for cdr in again if cdr.caller in SPELLINGS or cdr.callee in SPELLINGS
    )
    assert len(stored_again) == again_subject
    others = {
        cdr.cdr_id
        for cdr in first + later + again
        if cdr.caller not in SPELLINGS and cdr.callee not in SPELLINGS
    }
    assert others <= {row[0] for row in _area_rows(store, "cdr")}


def test_erasure_and_retention_inside_the_quarantine(worker_env: dict[str, str], tmp_path: Path) -> None:
    env = rights_env(worker_env)
    store = env["CDRPIPE_STORE"]
    cdrs, subject_rows = traffic(800, seed=121, subject_every=20)
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        send_cdrs(env, cdrs)
        wait_stored(env)
        run_cli(env, "restrict", "--number", SUBJECT, "--request-id", "res-3", "--wait", "180")
        pseudonyms = _subject_pseudonyms(env)
        quarantined = _of_subject(_area_rows(store, "restricted"), pseudonyms)
        erased = json.loads(
            run_cli(env, "erase", "--number", SUBJECT, "--request-id", "era-3", "--wait", "180").stdout
        )
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
    assert len(quarantined) == subject_rows
    assert erased["verification"]["passed"] and erased["rows_removed"] == subject_rows
    assert _of_subject(_area_rows(store, "restricted") + _area_rows(store, "cdr"), pseudonyms) == []
    assert len(_area_rows(store, "cdr")) == len(cdrs) - subject_rows

    old_day = (NOW - timedelta(days=400)).date().isoformat()
    a_file = next(iter(Path(store).glob("cdr/*/*.parquet")))
    LocalStorage(Path(store)).publish(f"restricted/call_date={old_day}/t+0+0.parquet", a_file.read_bytes())
    retention = run_cli(env, "retention")
    assert f"deleted call_date={old_day} (1 files)" in retention.stdout
    assert not list(Path(store).glob(f"restricted/call_date={old_day}/*"))


def test_with_two_workers_subject_requests_run_where_erasures_run(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    env = rights_env(worker_env)
    cdrs, _ = traffic(2_000, seed=131, subject_every=25)
    wrong = next(cdr for cdr in cdrs if cdr.caller in SPELLINGS)
    workers = start_workers(env, tmp_path, 2)
    try:
        send_cdrs(env, cdrs)
        wait_stored(env)
        assert all("published" in worker.log() for worker in workers), "one worker did all the work"
        _rectify(env, wrong.cdr_id, "rect-9")
        run_cli(env, "restrict", "--number", SUBJECT, "--request-id", "res-9", "--wait", "180")
        run_cli(env, "erase", "--number", SUBJECT, "--request-id", "era-9", "--wait", "180")
    finally:
        codes = [worker.stop() for worker in workers]
    assert codes == [0, 0], [worker.log()[-3000:] for worker in workers]
    erasing = [worker for worker in workers if "erasure era-9 started" in worker.log()]
    rights = [worker for worker in workers if "restriction request res-9 completed" in worker.log()]
    assert len(erasing) == 1 and rights == erasing, "subject requests must run in the lifecycle owner only"
    assert "rectification request rect-9 completed" in erasing[0].log()
