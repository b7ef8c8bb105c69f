"""Tenants on the real broker: an extension erased by number across the mapping of its source."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import msgspec
import pytest

from pipeline.cli import demo
from pipeline.record import CanonicalCdr
from tests.support.broker_requests import NOW, lifecycle_env, run_cli, send_cdrs
from tests.support.helpers import WorkerProcess, wait_stored

pytestmark = pytest.mark.integration

MAPPING = "pbx-a1=acme,pbx-a2=acme"


def _calls(seed: int, sources: tuple[str, ...], prefix: str) -> list[CanonicalCdr]:
    """Demo calls of ``sources``; every fourth one is answered by extension 1001 (the subject)."""
    calls = []
    for index, cdr in enumerate(demo.generate(120, seed=seed, start=NOW, days=2)):
        callee = "1001" if index % 4 == 0 else "1002"
        calls.append(
            msgspec.structs.replace(
                cdr,
                cdr_id=f"{prefix}-{index}",
                source=sources[index % len(sources)],
                caller="+32475000111",
                callee=callee,
                connected=None,
                direction="inbound",
            )
        )
    return calls


def test_an_extension_is_erased_by_number_before_and_after_its_source_was_mapped(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    unmapped = lifecycle_env(worker_env)
    mapped = {**unmapped, "CDRPIPE_TENANTS": MAPPING}
    before = _calls(5, ("pbx-a1", "pbx-b"), "before")  # pbx-b is another customer: its 1001 stays
    after = _calls(6, ("pbx-a1", "pbx-a2"), "after")
    subject_calls = {cdr.cdr_id for cdr in before + after if cdr.callee == "1001" and cdr.source != "pbx-b"}
    first = WorkerProcess(unmapped, tmp_path / "worker-before.log").start()
    try:
        send_cdrs(unmapped, before)
        wait_stored(unmapped)
    finally:
        assert first.stop() == 0, first.log()[-3000:]
    second = WorkerProcess(mapped, tmp_path / "worker-after.log").start()
    try:
        send_cdrs(mapped, after)
        wait_stored(mapped)
        erased = run_cli(mapped, "erase", "--number", "1001", "--tenant", "pbx-a1", "--wait", "120")
    finally:
        assert second.stop() == 0, second.log()[-3000:]
    assert "searched within tenants acme, pbx-a1, pbx-a2" in erased.stderr
    receipt = json.loads(erased.stdout)
    assert receipt["status"] == "completed" and receipt["verification"]["passed"] is True, receipt
    assert receipt["tenants_searched"] == ["acme", "pbx-a1", "pbx-a2"]
    assert receipt["rows_removed"] == len(subject_calls)
    store = unmapped["CDRPIPE_STORE"]
    left = {
        row[0] for row in duckdb.sql(f"SELECT cdr_id FROM read_parquet('{store}/cdr/*/*.parquet')").fetchall()
    }
    assert left == {cdr.cdr_id for cdr in before + after} - subject_calls
    assert any(cdr_id.startswith("before-") for cdr_id in subject_calls), "rows from before the mapping"
