"""Forged lifecycle messages on the secured broker change nothing and fool nobody.

The forger is a principal the broker lets write every lifecycle topic (the ``admin`` super user of
``deploy/kafka-local``: ACLs cannot stop a principal that holds them) but that does not hold the
keyring. It publishes what the findings showed: a ledger entry with an erasure's request id and an
empty subject, an ``ended`` for a restriction, erasure and lift requests for anybody, and
"verification passed" receipts for the DPO's own request id.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import TopicPartition

from pipeline.cli import demo
from pipeline.config.settings import load_settings
from pipeline.kafka.connection import kafka_connection
from pipeline.keys.keyring import Key, Keyring, load_keyring
from pipeline.lifecycle.ledger import LedgerEntry, decode_entry, encode_entry
from pipeline.lifecycle.requests.signing import MESSAGE_MACS, sign_message
from pipeline.lifecycle.subject import subject_from_number
from pipeline.numbers.msisdn import NumberClassifier
from tests.support.broker_requests import SUBJECT, pseudonym_rows, run_cli, secure_envs, traffic
from tests.support.helpers import REPO, WorkerProcess, find_raw_numbers, raw_number_needles, wait_stored

pytestmark = pytest.mark.integration
FORGER = Keyring("k1", (Key("k1", bytes(range(70, 102)), "t"),))
"""The forger's own keyring, under the key id of the genuine one."""


async def _publish(env: dict[str, str], topic: str, messages: list[tuple[str, bytes | None]]) -> None:
    producer = kafka_connection(load_settings(env)).producer(acks="all")
    await producer.start()
    try:
        for key, value in messages:
            await producer.send_and_wait(topic, value, key=key.encode())
    finally:
        await producer.stop()


async def _read(env: dict[str, str], topic: str) -> list[tuple[bytes | None, bytes | None]]:
    """Every (key, value) of a single-partition topic, as a principal that may read it."""
    consumer = kafka_connection(load_settings(env)).consumer(enable_auto_commit=False)
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        end = (await consumer.end_offsets([partition]))[partition]
        messages = []
        while await consumer.position(partition) < end:
            for batch in (await consumer.getmany(timeout_ms=1000)).values():
                messages.extend((message.key, message.value) for message in batch)
        return messages
    finally:
        await consumer.stop()


def _genuine(value: bytes | None, keyring: Keyring) -> bool:
    try:
        document = json.loads(value or b"")
    except ValueError:
        return False
    return isinstance(document, dict) and MESSAGE_MACS.check(document, keyring) is None


def _wait_receipt(env: dict[str, str], topic: str, key: str, timeout_s: float = 60) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for found, value in asyncio.run(_read(env, topic)):
            if found == key.encode() and value is not None:
                receipt: dict[str, object] = json.loads(value)
                return receipt
        time.sleep(1)
    raise AssertionError(f"no receipt keyed {key} on {topic} after {timeout_s}s")


def test_forged_requests_ledger_entries_and_receipts_change_nothing_and_fool_no_one(
    secure_kafka: dict[str, dict[str, str]], worker_env_on: Callable[[str], dict[str, str]], tmp_path: Path
) -> None:
    envs = secure_envs(secure_kafka, worker_env_on)
    worker_env, dpo_env, producer_env, forger = envs["worker"], envs["dpo"], envs["producer"], envs["admin"]
    topics = load_settings(worker_env).topics
    cdrs, _ = traffic(300, seed=137, subject_every=10)
    inbound = [cdr.caller for cdr in cdrs if cdr.direction == "inbound" and cdr.caller.startswith("+32")]
    erased_number, bystander = [caller for caller in dict.fromkeys(inbound) if caller != SUBJECT][:2]
    classifier, keyring = NumberClassifier("BE", (2, 5)), load_keyring(Path(worker_env["CDRPIPE_KEYRING"]))
    restricted = subject_from_number(SUBJECT, keyring, classifier).pseudonyms
    erased = subject_from_number(erased_number, keyring, classifier).pseudonyms
    others = subject_from_number(bystander, keyring, classifier).pseudonyms
    records = tmp_path / "cdrs.jsonl"
    records.write_bytes(b"\n".join(demo.encode(cdr) for cdr in cdrs) + b"\n")
    store = worker_env["CDRPIPE_STORE"]
    worker = WorkerProcess(worker_env, tmp_path / "worker.log").start()
    try:
        run_cli(producer_env, "publish", "--format", "canonical-json", str(records))
        wait_stored(worker_env)
        restriction = json.loads(run_cli(dpo_env, "restrict", "--number", SUBJECT, "--wait", "180").stdout)
        erasure = json.loads(run_cli(dpo_env, "erase", "--number", erased_number, "--wait", "180").stdout)
        assert restriction["status"] == erasure["status"] == "completed", (restriction, erasure)
        held, bystander_rows = (
            pseudonym_rows(store, "restricted", restricted),
            pseudonym_rows(store, "cdr", others),
        )
        assert held > 0 and bystander_rows > 0 and pseudonym_rows(store, "cdr", erased) == 0

        emptied, ended, forged = _forge(
            forger, str(erasure["request_id"]), str(restriction["request_id"]), bystander
        )
        # the erased person's calls replayed and the restricted subject's calls arriving late
        run_cli(producer_env, "publish", "--format", "canonical-json", str(records))
        wait_stored(worker_env)
        last = _rewritten(forger, topics.ledger_topic, keyring, [emptied.key, ended.key])
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
    assert pseudonym_rows(store, "cdr", erased) == 0, "a forged entry brought erased rows back"
    assert pseudonym_rows(store, "cdr", restricted) == 0, "a forged ended lifted the restriction"
    assert pseudonym_rows(store, "restricted", restricted) == 2 * held
    assert pseudonym_rows(store, "cdr", others) == 2 * bystander_rows, "a forged request erased a bystander"
    log = worker.log()
    assert log.count("refused a ledger message") >= forged
    assert "rejected unread: unauthenticated" in log
    # the compacted topic ends with the genuine entries again: the owner wrote them once more
    assert decode_entry(last[ended.key] or b"").action == "restrict"
    assert decode_entry(last[emptied.key] or b"").subject != []

    _forged_receipts_fool_no_one(dpo_env, forger, bystander, str(erasure["request_id"]))
    _requests_hold_no_number(forger, keyring, [SUBJECT, erased_number, bystander])


def _rewritten(
    env: dict[str, str], topic: str, keyring: Keyring, keys: list[str], timeout_s: float = 60
) -> dict[str, bytes | None]:
    """The last message of each of ``keys`` once it is a genuine entry again (the owner rewrites it)."""
    deadline = time.monotonic() + timeout_s
    while True:
        last = {key: value for key, value in asyncio.run(_read(env, topic)) if key is not None}
        found = {key: last.get(key.encode()) for key in keys}
        if all(_genuine(value, keyring) for value in found.values()):
            return found
        assert time.monotonic() < deadline, f"the ledger still ends with a refused message for {keys}"
        time.sleep(1)


def _forge(
    forger: dict[str, str], erasure_id: str, restriction_id: str, bystander: str
) -> tuple[LedgerEntry, LedgerEntry, int]:
    """Publish the forged ledger entries and requests; the entries forged, and how many ledger messages."""
    topics, now = load_settings(forger).topics, datetime.now(UTC)
    # the erasure emptied and the restriction ended, unsigned, under a foreign key, and a tombstone
    emptied = LedgerEntry(request_id=erasure_id, requested_at=now, subject=[])
    ended = LedgerEntry(request_id=restriction_id, requested_at=now, action="ended")
    entries: list[tuple[str, bytes | None]] = [
        (entry.key, payload)
        for entry in (emptied, ended)
        for payload in (encode_entry(entry), sign_message(encode_entry(entry), FORGER.active))
    ]
    entries.append((ended.key, None))
    asyncio.run(_publish(forger, topics.ledger_topic, entries))
    # anybody's erasure, unsigned, and the restricted subject's lift under a foreign key
    erase = {"request_id": "forged-erasure", "subject": bystander, "requested_at": now.isoformat()}
    lift = {"request_id": "forged-lift", "kind": "lift", "subject": SUBJECT, "requested_at": now.isoformat()}
    asyncio.run(_publish(forger, topics.erasure_topic, [("forged-erasure", json.dumps(erase).encode())]))
    signed_lift = sign_message(json.dumps(lift).encode(), FORGER.active)
    asyncio.run(_publish(forger, topics.subject_requests_topic, [("forged-lift", signed_lift)]))
    for topic, key in (
        (topics.receipts_topic, "forged-erasure"),
        (topics.subject_receipts_topic, "forged-lift"),
    ):
        receipt = _wait_receipt(forger, topic, key)
        assert (receipt["status"], receipt["reason"]) == ("rejected", "unauthenticated"), receipt
    return emptied, ended, len(entries)


def _forged_receipts_fool_no_one(
    dpo_env: dict[str, str], forger: dict[str, str], number: str, other: str
) -> None:
    """The DPO's CLI waits for its request; the forger answers it, no worker does: no receipt is taken."""
    topics, now = load_settings(dpo_env).topics, datetime.now(UTC)
    request_id = "dpo-request-1"
    command = [sys.executable, "-m", "pipeline", "erase", "--number", number, "--request-id", request_id]
    cli = subprocess.Popen(
        [*command, "--wait", "20"],
        env=dpo_env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    passed = json.dumps({"summary": "erased 9 rows; verification passed", "request_id": request_id,
                         "status": "completed", "verification": {"passed": True},
                         "finished_at": now.isoformat()}).encode()  # fmt: skip
    receipts = asyncio.run(_read(forger, topics.receipts_topic))
    genuine_other = next(value for key, value in receipts if key == other.encode())
    deadline = time.monotonic() + 15
    while cli.poll() is None and time.monotonic() < deadline:
        forged = [
            (request_id, passed),
            (request_id, sign_message(passed, FORGER.active)),
            (request_id, genuine_other),  # a genuine receipt of another request, re-keyed
        ]
        asyncio.run(_publish(forger, topics.receipts_topic, forged))
        time.sleep(0.5)
    stdout, stderr = cli.communicate(timeout=60)
    assert cli.returncode != 0 and "no receipt after 20s" in stderr, (stdout, stderr)
    assert "verification passed" not in stdout
    assert "refused a receipt message" in stderr and "answers another request" in stderr


def _requests_hold_no_number(forger: dict[str, str], keyring: Keyring, numbers: list[str]) -> None:
    """What the DPO's CLI sent (the genuine messages of the request topics) holds none of ``numbers``."""
    topics = load_settings(forger).topics
    needles = raw_number_needles(numbers)
    sent = [
        value
        for topic in (topics.erasure_topic, topics.subject_requests_topic)
        for _, value in asyncio.run(_read(forger, topic))
        if _genuine(value, keyring)
    ]
    assert len(sent) == 3  # restrict, erase, and the erase that got no receipt
    assert all(find_raw_numbers(value or b"", needles) == [] for value in sent)
