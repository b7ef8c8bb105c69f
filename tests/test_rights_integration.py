"""Subject rights on the real broker: rectification, rejected requests, the register of requests."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import duckdb
import jsonschema
import pytest

from pipeline.config import load_settings
from pipeline.lifecycle.audit import read_audit
from pipeline.request_client import request_and_wait
from pipeline.sink.storage import LocalStorage
from tests.helpers import REPO, WorkerProcess, find_raw_numbers, raw_number_needles, wait_stored
from tests.test_erasure_integration import SPELLINGS, SUBJECT, _cli, _env, _send, _traffic

pytestmark = pytest.mark.integration


def _rights_env(worker_env: dict[str, str]) -> dict[str, str]:
    run = worker_env["CDRPIPE_APP_ID"]
    return {
        **_env(worker_env),
        "CDRPIPE_SUBJECT_REQUESTS_TOPIC": f"cdr.subject.requests.{run}",
        "CDRPIPE_SUBJECT_RECEIPTS_TOPIC": f"cdr.subject.receipts.{run}",
    }


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
    topics = (settings.subject_requests_topic, settings.subject_receipts_topic)
    return asyncio.run(request_and_wait(settings, topics, key, payload, wait_s))


def test_rectify_bad_requests_and_the_register(worker_env: dict[str, str], tmp_path: Path) -> None:
    env = _rights_env(worker_env)
    cdrs, subject_rows = _traffic(400, seed=91, subject_every=10)
    wrong = next(cdr for cdr in cdrs if cdr.caller in SPELLINGS)
    lift_without_subject = {
        "request_id": "bad-2",
        "kind": "lift",
        "requested_at": "2026-11-20T09:00:00+00:00",
    }
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        _send(env, cdrs)
        wait_stored(env)
        rectified = _cli(
            env,
            "rectify",
            "--cdr-id",
            wrong.cdr_id,
            "--party",
            "caller",
            "--request-id",
            "rect-1",
            "--wait",
            "120",
        )
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
            _publish_raw(env, "bad-1", b"{not json", 60),
            _publish_raw(env, "bad-2", json.dumps(lift_without_subject).encode(), 60),
        ]
        # The key is number-shaped, so the receipt cannot carry it: it is found in the audit log below.
        _publish_raw(
            env, "+32475000111", json.dumps({"request_id": "+32475000111", "kind": "lift"}).encode(), 0
        )
        erased = json.loads(
            _cli(env, "erase", "--number", SUBJECT, "--request-id", "era-1", "--wait", "180").stdout
        )
        listed = _cli(env, "requests", "--json").stdout
        shown = {
            request_id: json.loads(_cli(env, "requests", "show", request_id).stdout)
            for request_id in ("rect-1", "rect-2", "era-1")
        }
        unregistered = _run(env, "requests", "show", "bad-2")
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]

    receipt = json.loads(rectified.stdout)
    schema = json.loads((REPO / "schemas" / "subject-receipt.schema.json").read_text())
    jsonschema.validate(receipt, schema)
    assert (receipt["status"], receipt["rows_found"], receipt["rows_redacted"]) == ("done", 1, 1)
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
