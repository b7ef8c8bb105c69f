"""/metrics and /health of a real worker after real traffic on the real broker."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.cli import demo
from pipeline.record import RejectReason
from tests.support.helpers import (
    WorkerProcess,
    broker_address,
    find_raw_numbers,
    publish,
    raw_number_needles,
    wait_stored,
)

pytestmark = pytest.mark.integration


def _get(port: str, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _outside_address() -> str:
    """This machine's address on its default route (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))
        address = str(probe.getsockname()[0])
    assert not address.startswith("127."), "no address but the loopback to check the bind address on"
    return address


def _answers(address: str, port: str) -> bool:
    """Whether anything accepts a TCP connection on ``address``:``port``."""
    try:
        with socket.create_connection((address, int(port)), timeout=5):
            return True
    except OSError:
        return False


def _samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def test_metrics_count_what_the_worker_did(worker_env: dict[str, str], tmp_path: Path) -> None:
    worker_env = {**worker_env, "CDRPIPE_LOG_FORMAT": "json"}
    now = datetime.now(UTC).replace(microsecond=0)
    valid = list(demo.generate(3_000, seed=21, start=now, days=2))
    expired = list(demo.generate(7, seed=22, start=now - timedelta(days=800), days=1))
    malformed = [b'{"cdr_id": "cut off', b"not a CDR at all", b"\xff\xfe"] * 40
    payloads = [demo.encode(cdr) for cdr in valid + expired] + malformed
    worker = WorkerProcess(worker_env, tmp_path / "worker.log").start()
    port = worker_env["CDRPIPE_WEB_PORT"]
    try:
        asyncio.run(publish(broker_address(worker_env),
                            worker_env["CDRPIPE_RAW_TOPICS"], payloads))  # fmt: skip
        wait_stored(worker_env)
        status, body = _get(port, "/metrics")
        health_status, health = _get(port, "/health")
        faust_views = {path: _get(port, path)[0] for path in ("/router/", "/table/", "/graph/", "/stats/")}
        outside = _answers(_outside_address(), port)
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]

    assert status == 200
    samples = _samples(body)
    assert samples[("cdrpipe_records_consumed_total", ())] == len(payloads)
    assert samples[("cdrpipe_records_written_total", ())] == len(valid)
    assert samples[("cdrpipe_records_expired_total", ())] == len(expired)
    dead = {
        dict(labels)["reason"]: value
        for (name, labels), value in samples.items()
        if name == "cdrpipe_records_dead_lettered_total"
    }
    assert sum(dead.values()) == len(malformed)
    assert set(dead) <= {reason.value for reason in RejectReason}
    assert samples[("cdrpipe_files_published_total", ())] >= 2  # two call dates at least
    assert samples[("cdrpipe_bytes_published_total", ())] > 10_000
    assert samples[("cdrpipe_publish_seconds_count", ())] >= 1
    lags = [value for (name, _), value in samples.items() if name == "cdrpipe_consumer_lag"]
    assert lags and all(lag == 0 for lag in lags)
    assert 0 < samples[("cdrpipe_pseudonym_cache_hit_ratio", ())] < 1

    assert health_status == 200 and json.loads(health) == {"status": "ok"}
    assert faust_views == dict.fromkeys(faust_views, 404), "Faust's own views are served"
    assert not outside, "the web server listens beyond 127.0.0.1 (CDRPIPE_WEB_HOST's default)"
    numbers = [party for cdr in valid for party in (cdr.caller, cdr.callee)]
    assert find_raw_numbers(body, raw_number_needles([], numbers)) == []

    ours = [json.loads(line) for line in worker.log().splitlines() if '"logger": "pipeline.' in line]
    assert any(line["message"].startswith("ingest started") for line in ours)
    assert any(line["message"].startswith("published") and line["level"] == "INFO" for line in ours)
