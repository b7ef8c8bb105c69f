"""The compaction timers: the lifecycle lock per date, requests answered, nothing outside the owner."""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.compaction import requests
from pipeline.config.settings import load_settings
from pipeline.lifecycle.ledger import SubjectLedger
from pipeline.store.fence import FencedStorage, OwnershipLostError
from pipeline.store.naming import is_compacted
from pipeline.store.storage import LocalStorage
from pipeline.worker import compaction_timer
from pipeline.worker.compaction_timer import CompactionTimer
from tests.support.mini_pipeline import MiniPipeline


@dataclass
class _Context:
    """The parts of a worker's context the timers use."""

    storage: LocalStorage
    committed: dict[tuple[str, int], int]
    owner: bool = True
    settings: Any = field(default_factory=lambda: load_settings({"CDRPIPE_COMPACT_QUIET_S": "0.001"}))
    connection: Any = None
    ledger: SubjectLedger = field(default_factory=SubjectLedger)
    lifecycle_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    ledger_loaded: asyncio.Event = field(default_factory=asyncio.Event)

    def owns_lifecycle(self) -> bool:
        return self.owner


def _store(tmp_path: Path) -> MiniPipeline:
    pipeline = MiniPipeline(LocalStorage(tmp_path))
    for number in range(9):
        pipeline.call(0, f"c{number}", f"2026-11-01T10:{number:02d}:00+00:00")
    pipeline.consume()
    return pipeline


def _timer(
    pipeline: MiniPipeline, monkeypatch: pytest.MonkeyPatch, **options: Any
) -> tuple[CompactionTimer, _Context]:
    context = _Context(pipeline.storage, pipeline.offsets.committed_offsets, **options)
    context.ledger_loaded.set()

    async def committed(settings: object, connection: object) -> dict[tuple[str, int], int]:
        return context.committed

    monkeypatch.setattr(compaction_timer, "committed_offsets", committed)

    async def may_write() -> bool:
        return context.owner

    return CompactionTimer(context, pipeline.storage, may_write), context  # type: ignore[arg-type]


def _compacted(storage: LocalStorage) -> list[str]:
    return [path for path in storage.list("cdr") if is_compacted(path.rsplit("/", 1)[1])]


def test_a_date_is_compacted_only_while_the_pass_holds_the_lifecycle_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = _store(tmp_path)
    timer, context = _timer(pipeline, monkeypatch)

    async def scenario() -> None:
        await context.lifecycle_lock.acquire()  # an erasure is running
        running = asyncio.create_task(timer.scheduled())
        await asyncio.sleep(0.3)
        assert not _compacted(pipeline.storage) and not running.done()
        context.lifecycle_lock.release()
        await asyncio.wait_for(running, 30)

    asyncio.run(scenario())
    assert len(_compacted(pipeline.storage)) == 1


def test_a_request_is_answered_with_what_the_pass_did(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = _store(tmp_path)
    timer, _ = _timer(pipeline, monkeypatch)
    request_id = requests.ask(pipeline.storage, compaction_timer.datetime.now(compaction_timer.UTC))
    asyncio.run(timer.requested())
    answer = requests.answer_of(pipeline.storage, request_id)
    assert answer is not None and [report.files_replaced for report in answer] == [2]
    assert requests.pending(pipeline.storage) == []


def test_a_worker_that_is_not_the_lifecycle_owner_compacts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = _store(tmp_path)
    timer, _ = _timer(pipeline, monkeypatch, owner=False)
    request_id = requests.ask(pipeline.storage, compaction_timer.datetime.now(compaction_timer.UTC))
    asyncio.run(timer.scheduled())
    asyncio.run(timer.requested())
    assert not _compacted(pipeline.storage) and requests.pending(pipeline.storage) == [request_id]


def test_cdrpipe_compact_prints_the_answer_or_says_in_one_line_that_nobody_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = _store(tmp_path / "store")
    keyring_path = tmp_path / "keyring.json"
    CliRunner().invoke(cli, ["keys", "init", "--keyring", str(keyring_path)])
    env = {"CDRPIPE_KEYRING": str(keyring_path), "CDRPIPE_STORE": str(tmp_path / "store")}
    unanswered = CliRunner().invoke(cli, ["compact", "--wait", "1"], env=env)
    assert unanswered.exit_code == 1 and "no lifecycle owner answered within 1 s" in unanswered.output
    assert "Traceback" not in unanswered.output and requests.pending(pipeline.storage) == []
    timer, _ = _timer(pipeline, monkeypatch)
    stop = threading.Event()

    def owner() -> None:  # the worker's request timer, in its own loop
        while not stop.is_set():
            asyncio.run(timer.requested())
            stop.wait(0.2)

    worker = threading.Thread(target=owner)
    worker.start()
    try:
        answered = CliRunner().invoke(cli, ["compact", "--wait", "30"], env=env)
    finally:
        stop.set()
        worker.join()
    assert answered.exit_code == 0, answered.output
    assert (
        "call_date=2026-11-01: 2 files replaced by 1 (6 rows read, 6 written, 0 duplicates" in answered.output
    )
    assert "compacted 1 call dates: 2 files replaced by 1, 0 duplicates removed" in answered.output


def test_a_worker_fenced_out_mid_pass_stops_compacting_and_loses_no_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Another worker claimed the lifecycle after this one's first write: nothing more is written."""
    pipeline = _store(tmp_path)
    files_before = sorted(pipeline.storage.list("cdr"))
    writes: list[int] = []

    def guard() -> None:
        writes.append(len(writes))
        if len(writes) > 1:
            raise OwnershipLostError("lifecycle epoch 2 was claimed by another worker")

    timer, context = _timer(pipeline, monkeypatch)
    fenced = FencedStorage(pipeline.storage, guard)

    async def may_write() -> bool:
        return True

    timer = CompactionTimer(context, fenced, may_write)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger=compaction_timer.__name__):
        asyncio.run(timer.scheduled())  # never raises: the timer must not stop the worker
    assert len(writes) == 2, "the pass stopped at its first refused write"
    assert not _compacted(pipeline.storage)
    assert sorted(pipeline.storage.list("cdr")) == files_before
    assert any("left to the new lifecycle owner" in record.getMessage() for record in caplog.records)
