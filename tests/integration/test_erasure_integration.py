"""GDPR erasure and access on the real broker: concurrent ingest, key rotation, late records, redact."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import jsonschema
import msgspec
import pyarrow.parquet as pq
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from pipeline.cli import demo
from pipeline.config.settings import load_settings
from pipeline.kafka.connection import kafka_connection
from pipeline.kafka.topics import TopicPlan, ensure_topics
from pipeline.keys.keyring import load_keyring, rotate_keyring
from pipeline.lifecycle.subject import subject_from_number
from pipeline.numbers.msisdn import NumberClassifier
from pipeline.record import CanonicalCdr
from tests.support.broker_requests import NOW, SPELLINGS, SUBJECT, lifecycle_env, run_cli, send_cdrs, traffic
from tests.support.helpers import (
    REPO,
    WorkerProcess,
    broker_address,
    find_raw_numbers,
    raw_number_needles,
    wait_stored,
)
from tests.support.signed import signed

pytestmark = pytest.mark.integration

FOREVER = {"retention.ms": "-1"}


def _rows(store: str) -> list[tuple[str, str | None, str | None, str | None]]:
    query = (
        "SELECT cdr_id, caller_pseudonym, callee_pseudonym, key_id FROM read_parquet('{}/cdr/*/*.parquet')"
    )
    return duckdb.sql(query.format(store)).fetchall()


def test_erasure_across_rotation_with_concurrent_ingest_and_a_late_record(  # noqa: PLR0915 - one scenario
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    env = lifecycle_env(worker_env)
    keyring_path = Path(env["CDRPIPE_KEYRING"])
    before_rotation, subject_before = traffic(2_000, seed=61, subject_every=50)
    worker = WorkerProcess(env, tmp_path / "worker-1.log").start()
    send_cdrs(env, before_rotation)
    wait_stored(env)
    assert worker.stop() == 0, worker.log()[-3000:]

    rotate_keyring(keyring_path)
    after_rotation, subject_after = traffic(2_000, seed=62, subject_every=40)
    worker = WorkerProcess(env, tmp_path / "worker-2.log").start()
    try:
        send_cdrs(env, after_rotation)
        wait_stored(env)
        subject = subject_from_number(SUBJECT, load_keyring(keyring_path), NumberClassifier("BE", (2, 5)))
        assert len(subject.pseudonyms) == 2

        export_path = tmp_path / "subject.jsonl"
        run_cli(env, "export", "--number", "0475/00.01.11", "--out", str(export_path))
        exported = [json.loads(line) for line in export_path.read_text().splitlines()]
        assert len(exported) == subject_before + subject_after
        for row in exported:
            assert {row["caller_pseudonym"], row["callee_pseudonym"]} & subject.pseudonyms

        concurrent, subject_concurrent = traffic(3_000, seed=63, subject_every=30)
        sender = threading.Thread(target=send_cdrs, args=(env, concurrent))
        sender.start()
        erased = run_cli(env, "erase", "--number", "0475 00 01 11", "--wait", "180")
        sender.join()
        receipt = json.loads(erased.stdout)

        (older,) = demo.generate(1, seed=64, start=NOW - timedelta(days=1))
        late = msgspec.structs.replace(older, caller=SPELLINGS[0], direction="inbound")
        send_cdrs(env, [late])
        wait_stored(env)
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]

    schema = json.loads((REPO / "schemas" / "erasure-receipt.schema.json").read_text())
    jsonschema.validate(receipt, schema)
    assert receipt["verification"]["passed"] is True
    assert receipt["key_ids"] == ["k1", "k2"]
    assert receipt["rows_removed"] >= subject_before + subject_after
    assert {copy["topic"] for copy in receipt["residual_copies"]} >= {
        env["CDRPIPE_RAW_TOPICS"],
        env["CDRPIPE_DLQ_TOPIC"],
    }

    store = env["CDRPIPE_STORE"]
    rows = _rows(store)
    assert not [row for row in rows if {row[1], row[2]} & subject.pseudonyms]
    expected_others = {cdr.cdr_id for cdr in before_rotation + after_rotation + concurrent} - {
        cdr.cdr_id for cdr in before_rotation + after_rotation + concurrent + [late] if _is_subject(cdr)
    }
    assert {row[0] for row in rows} == expected_others
    assert len(rows) == len(expected_others)
    for path in Path(store).glob("cdr/*/*.parquet"):
        content = path.read_bytes()
        assert not [pseudonym for pseudonym in subject.pseudonyms if pseudonym.encode() in content]
        pq.read_metadata(path)

    needles = raw_number_needles([SUBJECT], SPELLINGS)
    audit = b"".join(path.read_bytes() for path in Path(store).glob("_cdrpipe/**/*.json"))
    logs = b"".join(path.read_bytes() for path in tmp_path.glob("worker-*.log"))
    assert find_raw_numbers(audit, needles) == []
    assert find_raw_numbers(logs, needles) == []
    assert find_raw_numbers(erased.stdout.encode(), needles) == []
    assert subject_concurrent > 0


def _is_subject(cdr: CanonicalCdr) -> bool:
    return cdr.caller in SPELLINGS or cdr.callee in SPELLINGS


def test_redact_keeps_the_other_party(worker_env: dict[str, str], tmp_path: Path) -> None:
    env = lifecycle_env(worker_env)
    cdrs, subject_count = traffic(600, seed=71, subject_every=20)
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        send_cdrs(env, cdrs)
        wait_stored(env)
        receipt = json.loads(
            run_cli(env, "erase", "--number", SUBJECT, "--mode", "redact", "--wait", "120").stdout
        )
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
    assert receipt["rows_redacted"] == subject_count and receipt["verification"]["passed"]
    subject = subject_from_number(
        SUBJECT, load_keyring(Path(env["CDRPIPE_KEYRING"])), NumberClassifier("BE", (2, 5))
    )
    store = env["CDRPIPE_STORE"]
    rows = duckdb.sql(
        f"""SELECT cdr_id, caller_pseudonym, callee_pseudonym, caller_number_type, callee_number_type
            FROM read_parquet('{store}/cdr/*/*.parquet')"""
    ).fetchall()
    assert len(rows) == 600
    by_id = {row[0]: row for row in rows}
    for cdr in cdrs:
        if not _is_subject(cdr):
            continue
        _, caller, callee, caller_type, callee_type = by_id[cdr.cdr_id]
        assert not {caller, callee} & subject.pseudonyms
        subject_side, other_side = ((caller, caller_type), (callee, callee_type))[
            :: 1 if cdr.caller in SPELLINGS else -1
        ]
        assert subject_side == (None, "REDACTED")
        other_pseudonym, other_type = other_side
        assert other_type != "REDACTED"
        assert (other_pseudonym is not None) == (other_type in {"E164", "EXTENSION"})


def test_kill_9_during_the_rewrite_then_the_erasure_completes_after_restart(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**lifecycle_env(worker_env), "CDRPIPE_FLUSH_ROWS": "150", "CDRPIPE_FLUSH_SECONDS": "0.3"}
    cdrs, _ = traffic(12_000, seed=81, subject_every=12)
    worker = WorkerProcess(env, tmp_path / "worker-1.log").start()
    send_cdrs(env, cdrs)
    wait_stored(env, timeout_s=180)
    erase = ["erase", "--number", SUBJECT, "--request-id", "crash-1", "--wait", "240"]
    request = subprocess.Popen(
        [sys.executable, "-m", "pipeline", *erase],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    worker.wait_for("erasure crash-1 started", timeout_s=60)
    started = time.time()
    store = Path(env["CDRPIPE_STORE"])
    while not any(path.stat().st_mtime > started for path in store.glob("cdr/*/*.parquet")):
        assert time.time() - started < 30, "no file was rewritten"
        time.sleep(0.005)
    worker.kill()  # in the middle of the first pass: some files are rewritten, others not yet
    assert "erasure crash-1 done" not in worker.log()
    restarted = WorkerProcess(env, tmp_path / "worker-2.log").start()
    try:
        stdout, stderr = request.communicate(timeout=300)
        assert request.returncode == 0, stderr
    finally:
        assert restarted.stop() == 0, restarted.log()[-3000:]
    receipt = json.loads(stdout)
    assert receipt["request_id"] == "crash-1" and receipt["verification"]["passed"]

    visible = list(store.glob("cdr/*/*"))
    assert all(path.name.endswith(".parquet") and not path.name.startswith(".") for path in visible)
    for path in visible:
        pq.read_metadata(path)
    subject = subject_from_number(
        SUBJECT, load_keyring(Path(env["CDRPIPE_KEYRING"])), NumberClassifier("BE", (2, 5))
    )
    rows = _rows(str(store))
    assert not [row for row in rows if {row[1], row[2]} & subject.pseudonyms]
    others = [cdr.cdr_id for cdr in cdrs if not _is_subject(cdr)]
    assert sorted(row[0] for row in rows) == sorted(others)


def test_a_restored_backup_loses_the_erased_subject_again(worker_env: dict[str, str], tmp_path: Path) -> None:
    env = lifecycle_env(worker_env)
    cdrs, subject_rows = traffic(3_000, seed=71, subject_every=20)
    store = Path(env["CDRPIPE_STORE"])
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        send_cdrs(env, cdrs)
        wait_stored(env)
        backup = tmp_path / "backup"
        shutil.copytree(store / "cdr", backup)
        receipt = json.loads(run_cli(env, "erase", "--number", SUBJECT, "--wait", "180").stdout)
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
    assert receipt["rows_removed"] == subject_rows

    shutil.rmtree(store / "cdr")
    shutil.copytree(backup, store / "cdr")
    assert len(_rows(str(store))) == len(cdrs), "the backup holds the subject again"
    reapplied = run_cli(env, "reapply-erasures")
    assert f"{subject_rows} rows affected, verification passed" in reapplied.stdout
    subject = subject_from_number(
        SUBJECT, load_keyring(Path(env["CDRPIPE_KEYRING"])), NumberClassifier("BE", (2, 5))
    )
    rows = _rows(str(store))
    assert len(rows) == len(cdrs) - subject_rows
    assert not [row for row in rows if {row[1], row[2]} & subject.pseudonyms]


def test_rotation_while_running_and_after_a_restart_never_lets_the_subject_back(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    env = lifecycle_env(worker_env)
    keyring_path = Path(env["CDRPIPE_KEYRING"])
    first, subject_first = traffic(600, seed=91, subject_every=30)
    second, subject_second = traffic(600, seed=92, subject_every=30)
    late = [
        msgspec.structs.replace(cdr, caller=caller, direction="inbound")
        for cdr, caller in zip(
            demo.generate(4, seed=93, start=NOW - timedelta(days=1)),
            [SPELLINGS[0], "+3225550199", SPELLINGS[3], "+3225550198"],
            strict=True,
        )
    ]
    worker = WorkerProcess(env, tmp_path / "worker-1.log").start()
    try:
        send_cdrs(env, first)
        wait_stored(env)
        # a rolling restart's first step: the keyring file changes under a running worker
        run_cli(env, "keys", "rotate")
        worker.wait_for("keyring changed: now writing under key k2", timeout_s=30)
        send_cdrs(env, second)
        wait_stored(env)
        receipt = json.loads(run_cli(env, "erase", "--number", SUBJECT, "--wait", "180").stdout)
        send_cdrs(env, late[:2])  # call times before the request, pseudonymised under k2
        wait_stored(env)
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
    run_cli(env, "keys", "rotate")
    worker = WorkerProcess(env, tmp_path / "worker-2.log").start()
    try:
        send_cdrs(env, late[2:])  # after a restart under k3, which did not exist at the request
        wait_stored(env)
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]

    assert receipt["status"] == "completed" and receipt["verification"]["passed"] is True
    assert receipt["key_ids"] == ["k1", "k2"]
    assert receipt["verification"]["key_ids_in_store"] == ["k1", "k2"]
    assert receipt["rows_removed"] == subject_first + subject_second
    subject = subject_from_number(SUBJECT, load_keyring(keyring_path), NumberClassifier("BE", (2, 5)))
    assert len(subject.pseudonyms) == 3
    rows = _rows(env["CDRPIPE_STORE"])
    assert not [row for row in rows if {row[1], row[2]} & subject.pseudonyms]
    by_id = {row[0]: row for row in rows}
    assert by_id[late[1].cdr_id][3] == "k2" and by_id[late[3].cdr_id][3] == "k3"
    assert late[0].cdr_id not in by_id and late[2].cdr_id not in by_id
    others = [cdr.cdr_id for cdr in first + second + late if not _is_subject(cdr)]
    assert sorted(by_id) == sorted(others)


async def _request_directly(
    env: dict[str, str], payloads: list[bytes], timeout_s: float
) -> list[dict[str, object]]:
    """Produce ``payloads`` to the request topic as any producer could; collect one receipt per payload."""
    bootstrap = broker_address(env)
    receipts = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await receipts.start()
    try:
        partition = TopicPartition(env["CDRPIPE_RECEIPTS_TOPIC"], 0)
        receipts.assign([partition])
        await receipts.seek_to_end(partition)
        await receipts.position(partition)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            for payload in payloads:
                await producer.send_and_wait(env["CDRPIPE_ERASURE_TOPIC"], payload)
        finally:
            await producer.stop()
        collected: list[dict[str, object]] = []
        deadline = time.monotonic() + timeout_s
        while len(collected) < len(payloads) and time.monotonic() < deadline:
            for messages in (await receipts.getmany(timeout_ms=500)).values():
                collected.extend(json.loads(message.value) for message in messages if message.value)
        return collected
    finally:
        await receipts.stop()


def test_bad_requests_published_straight_to_the_topic_each_get_a_rejected_receipt(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    env = lifecycle_env(worker_env)
    cdrs, subject_rows = traffic(400, seed=97, subject_every=20)

    def request(request_id: str, **fields: str) -> bytes:
        document = {
            "request_id": request_id,
            "subject": SUBJECT,
            "requested_at": datetime.now(UTC).isoformat(),
        }
        return signed({**document, **fields}, keyring)

    keyring = load_keyring(Path(env["CDRPIPE_KEYRING"]))  # a tool that holds the keyring signs them
    bad = {
        "malformed": b"{not json at all",  # cannot be signed: rejected unread
        "bad-missing": signed({"request_id": "bad-missing", "subject": SUBJECT}, keyring),
        "bad-short-code": request("bad-short-code", subject="112"),
        "bad-invalid": request("bad-invalid", subject="+3247"),
        "bad-pseudonym": request("bad-pseudonym", subject=SUBJECT, subject_kind="pseudonym"),
        "bad-kind": request("bad-kind", subject_kind=SUBJECT),
    }
    dlq = env["CDRPIPE_DLQ_TOPIC"]  # an operator's topic that keeps raw records forever
    asyncio.run(ensure_topics(kafka_connection(load_settings(env)), [TopicPlan(dlq, 1, FOREVER)]))
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        worker.wait_for(f"topic {dlq} keeps data without a time limit", timeout_s=30)
        send_cdrs(env, cdrs)
        wait_stored(env)
        receipts = asyncio.run(_request_directly(env, [*bad.values(), request("good-after")], timeout_s=180))
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]

    assert len(receipts) == len(bad) + 1, receipts
    schema = json.loads((REPO / "schemas" / "erasure-receipt.schema.json").read_text())
    for receipt in receipts:
        jsonschema.validate(receipt, schema, format_checker=jsonschema.FormatChecker())
    *rejected, completed = receipts
    assert [receipt["status"] for receipt in rejected] == ["rejected"] * len(bad)
    assert str(rejected[0]["request_id"]).startswith("unidentified-")
    assert rejected[0]["reason"] == "unauthenticated"
    assert [receipt["request_id"] for receipt in rejected[1:]] == list(bad)[1:]
    reasons = {str(receipt["request_id"]): str(receipt["reason"]) for receipt in rejected}
    # a subject is a person: short digits are an extension, which needs its tenant
    assert "tenant" in reasons["bad-short-code"] and "INVALID" in reasons["bad-invalid"]
    assert "32 hexadecimal" in reasons["bad-pseudonym"] and "`$.subject_kind`" in reasons["bad-kind"]
    assert completed["request_id"] == "good-after" and completed["status"] == "completed"
    assert completed["rows_removed"] == subject_rows
    residual = {copy["topic"]: copy for copy in completed["residual_copies"]}
    assert residual[dlq]["retention_days"] is None and residual[dlq]["retention_source"] == "broker"
    raw = residual[env["CDRPIPE_RAW_TOPICS"]]
    assert (raw["retention_days"], raw["retention_source"]) == (7, "broker")
    # the invalid number as sent (its bare digits would match times such as 23:47)
    needles = raw_number_needles([SUBJECT], SPELLINGS) | {b"+3247"}
    assert find_raw_numbers(json.dumps(receipts).encode(), needles) == []
    assert find_raw_numbers(worker.log().encode(), needles) == []
    assert "Traceback" not in worker.log()


def test_an_agent_is_exported_and_erased_by_id_or_pseudonym(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    # the demo's sources are one customer's: one tenant for its agents (CDRPIPE_TENANTS)
    env = {
        **lifecycle_env(worker_env),
        "CDRPIPE_TENANTS": "contact-centre=demo,carrier-in=demo,carrier-out=demo",
    }
    cdrs = list(demo.generate(800, seed=99, start=NOW, days=2))
    agents = [cdr.agent for cdr in cdrs if cdr.agent]
    agent = max(set(agents), key=agents.count)
    handled = {cdr.cdr_id for cdr in cdrs if cdr.agent == agent}
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        send_cdrs(env, cdrs)
        wait_stored(env)
        by_id = tmp_path / "agent.jsonl"
        run_cli(env, "export", "--agent", agent, "--tenant", "demo", "--out", str(by_id))
        exported = [json.loads(line) for line in by_id.read_text().splitlines()]
        assert {row["cdr_id"] for row in exported} == handled
        (pseudonym,) = {row["agent_pseudonym"] for row in exported}
        by_pseudonym = tmp_path / "pseudonym.jsonl"
        run_cli(env, "export", "--pseudonym", pseudonym, "--out", str(by_pseudonym))
        assert len(by_pseudonym.read_text().splitlines()) == len(handled)
        erase = ["erase", "--agent", agent, "--tenant", "demo", "--mode", "redact", "--wait", "120"]
        receipt = json.loads(run_cli(env, *erase).stdout)
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
    assert receipt["status"] == "completed" and receipt["verification"]["passed"] is True
    assert receipt["rows_redacted"] == len(handled)
    store = env["CDRPIPE_STORE"]
    rows = duckdb.sql(
        f"SELECT cdr_id, agent_pseudonym FROM read_parquet('{store}/cdr/*/*.parquet')"
    ).fetchall()
    assert len(rows) == len(cdrs)
    assert not [row for row in rows if row[1] == pseudonym]
    assert {row[0] for row in rows if row[1] is None} >= handled
