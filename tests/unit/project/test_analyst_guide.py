"""The analyst guide's DuckDB, Polars and pyarrow examples, run against a store of demo calls."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pytest

from pipeline.cli import demo
from pipeline.ingest.rows import build_rows
from pipeline.keys.keyring import Key
from pipeline.keys.pseudonym import PartyPseudonymizer, Pseudonymizer
from pipeline.numbers.msisdn import NumberClassifier
from pipeline.record import CanonicalCdr
from pipeline.store.parquet import encode
from pipeline.store.storage import LocalStorage
from tests.support.helpers import REPO

GUIDE = (REPO / "docs" / "analyst-guide.md").read_text()
CALLS = list(demo.generate(3_000, seed=5, start=datetime(2026, 11, 20, 18, tzinfo=UTC), days=3))


def _section(title: str) -> str:
    return GUIDE.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def _blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", _section(section), re.DOTALL)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("guide")
    pseudonymizer = Pseudonymizer(Key("k1", b"k" * 32, "t"))
    parties = PartyPseudonymizer(NumberClassifier("BE", (2, 5)), pseudonymizer, 4096)
    by_date: dict[str, list[CanonicalCdr]] = defaultdict(list)
    for cdr in CALLS:
        by_date[cdr.start_time.astimezone(UTC).date().isoformat()].append(cdr)
    storage = LocalStorage(root)
    for call_date, calls in by_date.items():
        rows = build_rows(calls, parties)
        storage.publish(f"cdr/call_date={call_date}/cdr.raw+0+0.parquet", encode(rows, [parties.key_ref]))
    return root


def _in(store: Path, code: str) -> str:
    return code.replace("./data/store", str(store))


def test_every_duckdb_query_runs_and_counts_right(store: Path) -> None:
    connection = duckdb.connect()
    results = []
    for query in _blocks("DuckDB", "sql"):
        relation = connection.sql(_in(store, query))
        results.append(relation.fetchall() if relation is not None else None)
    _view, per_queue, asr, talk, countries = results
    assert all(type(row[0]) is date for row in per_queue + asr), "DuckDB must read call_date as a DATE"
    assert sum(row[2] for row in per_queue) == sum(cdr.direction == "inbound" for cdr in CALLS)
    assert sum(row[1] for row in asr) == len(CALLS)
    assert sum(row[2] for row in asr) == sum(cdr.disposition == "answered" for cdr in CALLS)
    assert all(0 < row[3] < 1 for row in asr)
    assert {row[0] for row in talk} <= set(demo.QUEUES) and all(row[1] > 0 for row in talk)
    assert "BE" in {row[0] for row in countries}


def test_the_polars_and_pyarrow_examples_run(store: Path) -> None:
    namespace: dict[str, Any] = {}
    exec(_in(store, _blocks("Polars", "python")[0]), namespace)
    asr = namespace["asr"]
    assert asr["attempts"].sum() == len(CALLS)
    assert asr.schema["call_date"] == pl.Date
    exec(_in(store, _blocks("pyarrow", "python")[0]), namespace)
    table = namespace["table"]
    assert table.num_rows == sum(cdr.disposition == "answered" for cdr in CALLS)
    assert table.schema.field("call_date").type == pa.date32()
    assert {day.isoformat() for day in table.column("call_date").to_pylist()} == {
        cdr.start_time.astimezone(UTC).date().isoformat() for cdr in CALLS if cdr.disposition == "answered"
    }
