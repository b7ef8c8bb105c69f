"""The finder: footers and subject indexes tell which files hold a subject's rows."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline.lifecycle.operations.finder import search
from pipeline.lifecycle.subject import subject_from_number
from tests.support.lifecycle_store import CLASSIFIER, KEYS, sample_store


def test_finder_uses_footers_and_finds_rows_under_every_key(tmp_path: Path) -> None:
    storage = sample_store(tmp_path)
    subject = subject_from_number("0475 00 01 11", KEYS, CLASSIFIER)
    assert subject.key_ids == ("k1", "k2") and len(subject.pseudonyms) == 2
    assert search(storage, subject.pseudonyms).candidates == [
        "cdr/call_date=2026-11-01/t+0+0.parquet",
        "cdr/call_date=2026-11-01/t+1+0.parquet",
    ]


def test_the_finder_can_search_only_files_modified_since_an_instant(tmp_path: Path) -> None:
    storage = sample_store(tmp_path)
    subject = subject_from_number("+32475000111", KEYS, CLASSIFIER)
    a_day_ago = (datetime.now(UTC) - timedelta(days=1)).timestamp()
    os.utime(tmp_path / "cdr/call_date=2026-11-01/t+0+0.parquet", (a_day_ago, a_day_ago))
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    assert search(storage, subject.pseudonyms, modified_since=an_hour_ago).candidates == [
        "cdr/call_date=2026-11-01/t+1+0.parquet"
    ]
    assert len(search(storage, subject.pseudonyms).candidates) == 2
