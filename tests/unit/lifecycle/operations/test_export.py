"""Access exports hold exactly the subject's rows."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from pipeline.lifecycle.operations.export import subject_rows, write_export
from pipeline.lifecycle.subject import subject_from_number
from tests.support.lifecycle_store import CLASSIFIER, KEYS, sample_store


def test_export_returns_exactly_the_subjects_rows(tmp_path: Path) -> None:
    storage = sample_store(tmp_path)
    table = subject_rows(storage, subject_from_number("0032475000111", KEYS, CLASSIFIER)).table
    assert table is not None
    assert sorted(table.column("cdr_id").to_pylist()) == ["a", "c"]
    assert set(table.column("call_date").to_pylist()) == {date(2026, 11, 1)}
    for export_format in ("jsonl", "csv", "parquet"):
        out = tmp_path / f"export.{export_format}"
        write_export(table, out, export_format)  # type: ignore[arg-type]
        assert out.stat().st_size > 0
    lines = (tmp_path / "export.jsonl").read_text().splitlines()
    assert {json.loads(line)["cdr_id"] for line in lines} == {"a", "c"}
