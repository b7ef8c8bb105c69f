"""The main flows on a secured broker (SASL_SSL, SCRAM, ACLs), each client as its own principal."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka.admin import NewTopic
from aiokafka.errors import KafkaError, for_code

from pipeline.cli import demo
from pipeline.config.settings import load_settings
from pipeline.kafka.connection import kafka_connection
from pipeline.keys.keyring import load_keyring
from pipeline.lifecycle.subject import subject_from_number
from pipeline.numbers.msisdn import NumberClassifier
from tests.support.broker_requests import (
    SPELLINGS,
    SUBJECT,
    as_principal,
    pseudonym_rows,
    run_cli,
    secure_envs,
    traffic,
)
from tests.support.helpers import WorkerProcess, wait_stored

pytestmark = pytest.mark.integration


def test_ingest_export_restriction_and_erasure_each_under_its_own_principal(
    secure_kafka: dict[str, dict[str, str]], worker_env_on: Callable[[str], dict[str, str]], tmp_path: Path
) -> None:
    envs = secure_envs(secure_kafka, worker_env_on)
    worker_env, dpo_env, producer_env = envs["worker"], envs["dpo"], envs["producer"]
    cdrs, subject_rows = traffic(300, seed=131, subject_every=10)
    # a demo caller: never a party of the subject's calls (their other party is a service line)
    other = next(
        cdr.caller
        for cdr in cdrs
        if cdr.direction == "inbound"
        and cdr.caller.startswith("+32")
        and cdr.caller not in (SUBJECT, *SPELLINGS)
    )
    classifier = NumberClassifier("BE", (2, 5))
    keyring = load_keyring(Path(worker_env["CDRPIPE_KEYRING"]))
    restricted = subject_from_number(SUBJECT, keyring, classifier).pseudonyms
    erased = subject_from_number(other, keyring, classifier).pseudonyms
    records = tmp_path / "cdrs.jsonl"
    records.write_bytes(b"\n".join(demo.encode(cdr) for cdr in cdrs) + b"\n")
    store, export = worker_env["CDRPIPE_STORE"], tmp_path / "export.jsonl"
    worker = WorkerProcess(worker_env, tmp_path / "worker.log").start()
    try:
        run_cli(producer_env, "publish", "--format", "canonical-json", str(records))
        wait_stored(worker_env)
        before = pseudonym_rows(store, "cdr", erased)
        run_cli(dpo_env, "export", "--number", SUBJECT, "--out", str(export))
        restriction = json.loads(run_cli(dpo_env, "restrict", "--number", SUBJECT, "--wait", "180").stdout)
        erasure = json.loads(run_cli(dpo_env, "erase", "--number", other, "--wait", "180").stdout)
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
    assert len(export.read_text().splitlines()) == subject_rows
    assert restriction["status"] == "completed", restriction
    assert pseudonym_rows(store, "cdr", restricted) == 0
    assert pseudonym_rows(store, "restricted", restricted) == subject_rows
    assert erasure["status"] == "completed" and erasure["verification"]["passed"] is True, erasure
    assert before > 0 and pseudonym_rows(store, "cdr", erased) == 0
    assert worker.log().count("has 1 replica(s) and min.insync.replicas=1") == 1, "the ledger warning, once"
    password = Path(worker_env["CDRPIPE_KAFKA_SASL_PASSWORD_FILE"]).read_text().strip()
    assert password not in worker.log()


def test_the_dpo_principal_can_touch_nothing_but_the_request_and_receipt_topics(
    secure_kafka: dict[str, dict[str, str]], worker_env_on: Callable[[str], dict[str, str]], tmp_path: Path
) -> None:
    envs = secure_envs(secure_kafka, worker_env_on)
    worker = WorkerProcess(envs["worker"], tmp_path / "worker.log").start()  # creates the topics
    worker.stop()
    settings = load_settings(envs["dpo"])
    topics = settings.topics
    refused = asyncio.run(
        _refusals(envs["dpo"], topics.raw_topics[0], topics.ledger_topic, topics.receipts_topic)
    )
    assert refused == {
        "see raw": "TopicAuthorizationFailedError",
        "see ledger": "TopicAuthorizationFailedError",
        "write receipts": "TopicAuthorizationFailedError",
        "create topic": "TopicAuthorizationFailedError",
    }


async def _refusals(env: dict[str, str], raw: str, ledger: str, receipts: str) -> dict[str, str]:
    """What the broker answers the DPO's principal when it reads, writes or creates beyond its ACLs."""
    connection = kafka_connection(load_settings(env))
    refused: dict[str, str] = {}
    admin = connection.admin()
    await admin.start()
    try:
        described = await admin.describe_topics([raw, ledger])
        created = await admin.create_topics([NewTopic("cdr.dpo-made", 1, 1)])
    finally:
        await admin.close()
    for name, topic in zip(("see raw", "see ledger"), described, strict=True):
        refused[name] = for_code(topic["error_code"]).__name__
    ((_, code, *_),) = created.topic_errors
    refused["create topic"] = for_code(code).__name__
    producer = connection.producer(acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(receipts, b"forged receipt", key=b"some-request")
    except KafkaError as exc:
        refused["write receipts"] = type(exc).__name__
    finally:
        await producer.stop()
    return refused


def test_a_wrong_password_and_a_plaintext_client_are_refused_in_one_line(
    secure_kafka: dict[str, dict[str, str]], worker_env_on: Callable[[str], dict[str, str]], tmp_path: Path
) -> None:
    envs = secure_envs(secure_kafka, worker_env_on)
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    wrong_dpo = {**envs["dpo"], "CDRPIPE_KAFKA_SASL_PASSWORD_FILE": str(wrong)}
    wrong_worker = {**envs["worker"], "CDRPIPE_KAFKA_SASL_PASSWORD_FILE": str(wrong)}
    plaintext = as_principal({"CDRPIPE_BROKER": envs["dpo"]["CDRPIPE_BROKER"]}, envs["dpo"])
    erase = ("erase", "--number", SUBJECT, "--wait", "5")
    results = {
        "dpo": run_cli(wrong_dpo, *erase, check=False),
        "worker": run_cli(wrong_worker, "worker", check=False),
        "plaintext": run_cli(plaintext, *erase, check=False),
    }
    expected = {
        "dpo": "refused the SCRAM-SHA-512 login of user 'dpo'",
        "worker": "refused the SCRAM-SHA-512 login of user 'worker'",
        "plaintext": "closed the connection during the plaintext connection: its listener expects another "
        "security protocol",
    }
    for name, result in results.items():
        assert result.returncode == 2, (name, result.stdout, result.stderr)
        problem = [line for line in result.stderr.splitlines() if line.startswith("cdrpipe: ")]
        assert len(problem) == 1 and expected[name] in problem[0], (name, result.stderr)
        assert "Traceback" not in result.stderr and "not-the-password" not in result.stderr + result.stdout
