"""Compaction on the real broker: kill -9 mid-pass with late records arriving, rights, offset resets."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections import Counter
from pathlib import Path

import duckdb
import pytest
from aiokafka import TopicPartition

from pipeline.cli import demo
from pipeline.config.settings import load_settings
from pipeline.kafka.connection import kafka_connection
from pipeline.kafka.lag import ingest_group
from pipeline.keys.keyring import load_keyring
from pipeline.lifecycle.subject import subject_from_number
from pipeline.numbers.msisdn import NumberClassifier
from pipeline.store.naming import is_compacted
from tests.support.broker_requests import NOW, SUBJECT, lifecycle_env, run_cli, send_cdrs, traffic
from tests.support.helpers import WorkerProcess, assert_exactly_once, fast_env, publish_demo, wait_stored

pytestmark = pytest.mark.integration


def _compacting(env: dict[str, str]) -> dict[str, str]:
    return {
        **fast_env(env),
        "CDRPIPE_FLUSH_ROWS": "2000",
        "CDRPIPE_COMPACT_INTERVAL_S": "1",
        "CDRPIPE_COMPACT_QUIET_S": "1",
        "CDRPIPE_COMPACT_TARGET_ROWS": "5000",
    }


def _files(store: Path) -> tuple[list[Path], list[Path]]:
    """The compacted and the other data files of ``cdr/``."""
    files = sorted(store.glob("cdr/call_date=*/*.parquet"))
    return [path for path in files if is_compacted(path.name)], [
        path for path in files if not is_compacted(path.name)
    ]


class _LateRecords:
    """A producer that keeps sending demo CDRs (over the same three call dates) until stopped."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.sent: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        seed = 1000
        while not self._stop.is_set():
            self.sent |= publish_demo(self.env, 1_500, seed=seed)
            seed += 1
            self._stop.wait(0.7)

    def __enter__(self) -> _LateRecords:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _journal_appears(store: Path, timeout_s: float) -> bool:
    """Wait until a compaction journal exists (a pass is mid-swap); False if none came in time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(store.glob("_cdrpipe/compaction/journal/*.json")):
            return True
        time.sleep(0.002)
    return False


def test_kill_9_of_the_lifecycle_owner_mid_compaction_with_late_records_loses_and_doubles_nothing(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    env = _compacting(worker_env)
    store = Path(env["CDRPIPE_STORE"])
    expected = publish_demo(env, 30_000, seed=21)
    rng = random.Random(23)
    kills_mid_swap = 0
    with _LateRecords(env) as late:
        for kill in range(8):
            worker = WorkerProcess(env, tmp_path / f"worker-{kill}.log").start()
            worker.wait_for("compacted call_date", timeout_s=120)  # this owner compacts
            if kill % 2:
                time.sleep(rng.uniform(0.0, 1.5))  # anywhere: ingesting, compacting, recovering
            elif _journal_appears(store, timeout_s=30):
                kills_mid_swap += 1  # a pass is between its journal and its end
            worker.kill()
    expected |= late.sent
    expected |= late.sent
    final = WorkerProcess(env, tmp_path / "worker-final.log").start()
    try:
        wait_stored(env, timeout_s=300)
        time.sleep(2)  # settle, so the requested pass takes every committed batch but the latest
        answer = run_cli(env, "compact", "--wait", "120").stdout
    finally:
        assert final.stop() == 0, final.log()[-3000:]
    assert kills_mid_swap >= 3, "too few kills in the middle of a pass: the test did not test anything"
    logs = "".join(path.read_text() for path in tmp_path.glob("worker-*.log"))
    assert "undid compaction pass" in logs or "finished after a crash" in logs, "no pass was recovered"
    assert "compacted" in answer
    assert_exactly_once(store, expected)
    compacted, small = _files(store)
    assert compacted and not list(store.glob("_cdrpipe/compaction/journal/*"))
    # Few small files remain: the latest batch of each of the 4 partitions, per call date (3 days
    # back from now span 4 dates).
    assert len(small) <= 4 * 4, [path.name for path in small]


def _rows(store: str, area: str) -> list[tuple[str, str | None, str | None]]:
    if not list(Path(store).glob(f"{area}/*/*.parquet")):
        return []
    return duckdb.sql(
        f"SELECT cdr_id, caller_pseudonym, callee_pseudonym FROM read_parquet('{store}/{area}/*/*.parquet')"
    ).fetchall()


def _subject_ids(rows: list[tuple[str, str | None, str | None]], pseudonyms: frozenset[str]) -> list[str]:
    return sorted(row[0] for row in rows if {row[1], row[2]} & pseudonyms)


def _reset_ingest_offsets(env: dict[str, str]) -> None:
    """What an operator's ``--reset-offsets --to-earliest`` does to the stopped ingest group."""
    settings = load_settings(env)

    async def reset() -> None:
        consumer = kafka_connection(settings).consumer(
            group_id=ingest_group(settings), enable_auto_commit=False
        )
        await consumer.start()
        try:
            topic = settings.topics.raw_topics[0]
            partitions = [
                TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
            ]
            if not partitions:
                await consumer._client.force_metadata_update()
                partitions = [
                    TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
                ]
            consumer.assign(partitions)
            await consumer.commit({tp: 0 for tp in partitions})
        finally:
            await consumer.stop()

    asyncio.run(reset())


def _rights_env(worker_env: dict[str, str]) -> dict[str, str]:
    run = worker_env["CDRPIPE_APP_ID"]
    return _compacting(
        {
            **lifecycle_env(worker_env),
            "CDRPIPE_SUBJECT_REQUESTS_TOPIC": f"cdr.subject.requests.{run}",
            "CDRPIPE_SUBJECT_RECEIPTS_TOPIC": f"cdr.subject.receipts.{run}",
        }
    )


def _receipt(env: dict[str, str], command: str, request_id: str) -> dict[str, object]:
    answer = run_cli(env, command, "--number", SUBJECT, "--request-id", request_id, "--wait", "180")
    receipt: dict[str, object] = json.loads(answer.stdout)
    return receipt


def _compact_now(env: dict[str, str]) -> str:
    time.sleep(2)  # past the quiet period: the pass takes every committed batch but the latest
    return run_cli(env, "compact", "--wait", "120").stdout


def _ids(store: str, area: str = "cdr") -> list[str]:
    return sorted(row[0] for row in _rows(store, area))


def test_restriction_lift_and_erasure_right_after_and_during_compaction_with_resent_records(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    env = _rights_env(worker_env)
    store = env["CDRPIPE_STORE"]
    before, _ = traffic(6_000, seed=31, subject_every=40)
    during, _ = traffic(6_000, seed=32, subject_every=40)
    resent = before[:40]  # an at-least-once producer sends these again, before and after compaction
    # The copies never go last: the latest batch of a partition is never compacted.
    later, _ = traffic(400, seed=33, subject_every=1000)
    everything = sorted(cdr.cdr_id for cdr in before + during + later)
    pseudonyms = subject_from_number(
        SUBJECT, load_keyring(Path(env["CDRPIPE_KEYRING"])), NumberClassifier("BE", (2, 5))
    ).pseudonyms
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        send_cdrs(env, before[:3000] + resent + before[3000:])
        wait_stored(env)
        assert len(_rows(store, "cdr")) == len(before) + len(resent)  # twice until compacted
        assert "duplicates removed" in _compact_now(env)
        # A restriction right after compaction, while new and re-sent records arrive and are compacted.
        # The copies go in the middle: the latest batches, never compacted, hold later records.
        sender = threading.Thread(target=send_cdrs, args=(env, during[:3000] + resent + during[3000:]))
        sender.start()
        restricted = _receipt(env, "restrict", "c-res")
        sender.join()
        wait_stored(env)
        send_cdrs(env, later)  # the batches that held the copies are not the latest any more
        wait_stored(env)
        _compact_now(env)
        subject_ids = _subject_ids(_rows(store, "cdr") + _rows(store, "restricted"), pseudonyms)
        in_dataset = _subject_ids(_rows(store, "cdr"), pseudonyms)
        quarantined = _subject_ids(_rows(store, "restricted"), pseudonyms)
        lifted = _receipt(env, "unrestrict", "c-lift")
        _compact_now(env)
        after_lift = _ids(store)
        erased = _receipt(env, "erase", "c-erase")
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
    for receipt in (restricted, lifted, erased):
        assert receipt["status"] == "completed", receipt
        assert receipt["verification"]["passed"] is True, receipt  # type: ignore[index]
    assert subject_ids and in_dataset == [] and quarantined == sorted(set(subject_ids))
    assert after_lift == everything  # every row once: copies removed, nothing left in the quarantine
    assert _rows(store, "restricted") == []
    assert _ids(store) == sorted(set(everything) - set(subject_ids))


def test_an_offset_reset_after_compaction_adds_nothing(worker_env: dict[str, str], tmp_path: Path) -> None:
    env = _compacting(worker_env)
    store = env["CDRPIPE_STORE"]
    cdrs = list(demo.generate(12_000, seed=41, start=NOW))
    tail = list(demo.generate(1_000, seed=42, start=NOW))
    expected = {cdr.cdr_id for cdr in cdrs + tail}
    send_cdrs(env, cdrs + cdrs[:300] + cdrs[:300])  # 300 CDRs sent three times by their producer
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        wait_stored(env)
        send_cdrs(env, tail)  # the latest batches, never compacted, hold later records
        wait_stored(env)
        _compact_now(env)
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
    compacted = _ids(store)
    _reset_ingest_offsets(env)
    more = list(demo.generate(1_000, seed=43, start=NOW))
    replaying = WorkerProcess(env, tmp_path / "replay.log").start()
    try:
        wait_stored(env, timeout_s=300)
        replayed = _ids(store)
        # Once the latest batches are not the latest any more, the pass takes them too.
        send_cdrs(env, more)
        wait_stored(env)
        _compact_now(env)
    finally:
        assert replaying.stop() == 0, replaying.log()[-3000:]
    assert "already compacted" in replaying.log()
    # Nothing compacted came back. Only the latest batches (never compacted) may be cut otherwise by the
    # replay, and their rows stored twice until the next pass, like any replay without compaction.
    tail_ids = {cdr.cdr_id for cdr in tail}
    assert set((Counter(replayed) - Counter(compacted)).elements()) <= tail_ids
    assert_exactly_once(Path(store), expected | {cdr.cdr_id for cdr in more})
