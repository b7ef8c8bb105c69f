"""The worker watches the DPO's records, and no timer can stop it."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.lifecycle.requests.audit import AUDIT_CHAIN, append_audit
from pipeline.lifecycle.requests.register import load_register, register_received
from pipeline.observability.metrics import REGISTRY
from pipeline.store.storage import LocalStorage
from pipeline.worker.dpo_records import ChainHealth, guarded

NOW = datetime(2026, 11, 25, tzinfo=UTC)


def test_a_failing_timer_logs_once_and_runs_again(caplog: pytest.LogCaptureFixture) -> None:
    runs: list[int] = []

    async def register_metrics() -> None:
        runs.append(len(runs))
        if len(runs) <= 2:
            raise ValueError("Expecting value: line 1 column 1 (char 0)")

    timer = guarded("register_metrics", register_metrics)
    before = REGISTRY.get_sample_value("cdrpipe_timer_failures_total", {"timer": "register_metrics"}) or 0
    with caplog.at_level(logging.INFO, logger="pipeline.worker.dpo_records"):
        for _ in range(3):
            asyncio.run(timer())  # never raises: Faust would stop the worker
    assert runs == [0, 1, 2]
    failures = [record for record in caplog.records if "timer failed" in record.getMessage()]
    assert len(failures) == 1
    # The traceback is on the record: as exc_info, or as scrubbed exc_text once the scrubbing
    # record factory is installed (it formats and clears exc_info so no handler sees raw values).
    logged_traceback = failures[0].exc_text or logging.Formatter().formatException(failures[0].exc_info)  # type: ignore[arg-type]
    assert "ValueError" in logged_traceback and "register_metrics" in logged_traceback
    assert any(
        "runs again" in record.getMessage() for record in caplog.records if record.levelno == logging.INFO
    )
    after = REGISTRY.get_sample_value("cdrpipe_timer_failures_total", {"timer": "register_metrics"})
    assert after == before + 2


def test_the_register_timer_survives_a_half_written_file(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    register_received(storage, "acc-1", "access", NOW)
    (tmp_path / "_cdrpipe" / "requests" / "acc-1" / "closed.json").write_bytes(b"")  # an old crash
    (tmp_path / "_cdrpipe" / "requests" / "acc-2").mkdir()
    (tmp_path / "_cdrpipe" / "requests" / "acc-2" / "received.json").write_bytes(b'{"event": "rec')
    assert [(record.request_id, record.status) for record in load_register(storage)] == [("acc-1", "open")]
    skipped = REGISTRY.get_sample_value("cdrpipe_dpo_records_skipped_total", {"area": "register"})
    assert skipped is not None and skipped >= 2


def _watched_trail(tmp_path: Path) -> tuple[LocalStorage, ChainHealth]:
    """A trail of three entries, checked once by a fresh watch."""
    storage = LocalStorage(tmp_path)
    for index in range(3):
        append_audit(storage, "erasure", {"request_id": f"r-{index}"}, NOW)
    health = ChainHealth()
    health.check(storage)
    return storage, health


def test_a_break_is_reported_once_and_in_the_metric(tmp_path: Path) -> None:
    storage, health = _watched_trail(tmp_path)
    assert health.first_break is None
    assert REGISTRY.get_sample_value("cdrpipe_audit_chain_intact") == 1
    entry = tmp_path / AUDIT_CHAIN.path(2)
    entry.write_text(json.dumps({**json.loads(entry.read_text()), "rows_removed": 0}))
    health.check(storage)
    assert health.first_break is not None and health.first_break.startswith("entry 2 ")
    assert REGISTRY.get_sample_value("cdrpipe_audit_chain_intact") == 0


def test_a_truncated_chain_is_a_break(tmp_path: Path) -> None:
    storage, health = _watched_trail(tmp_path)
    (tmp_path / AUDIT_CHAIN.path(3)).unlink()  # the newest entry: no later entry points at it
    health.check(storage)
    assert health.first_break == "_cdrpipe/audit ends at entry 2, but entry 3 was seen"


class _View:
    """The part of Faust's view that ``/health`` uses."""

    def json(self, value: dict[str, object], status: int = 200) -> tuple[int, dict[str, object]]:
        return status, value


def test_health_names_a_break_without_failing_the_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.worker import app  # Faust is slow to import: only this test needs it

    monkeypatch.setattr(app, "_store_encryption", {})  # a local store: nothing to say of a bucket
    assert asyncio.run(app._health(_View(), None)) == (200, {"status": "ok"})
    monkeypatch.setattr(app.CHAIN_HEALTH, "first_break", "entry 2 (_cdrpipe/audit/000000000002.json): ...")
    status, body = asyncio.run(app._health(_View(), None))
    assert status == 200 and body["audit_chain_break"] == "entry 2 (_cdrpipe/audit/000000000002.json): ..."
