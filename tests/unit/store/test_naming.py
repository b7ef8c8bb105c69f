"""The path grammar: the parser that parses each partition directory once agrees with the plain one."""

from __future__ import annotations

from datetime import date

from pipeline.store.naming import DataFilePath, DataPathParser, file_path, parse_data_path

PATHS = [
    file_path(date(2026, 11, 1), "cdr.raw", 3, 42),
    "cdr/call_date=2026-11-01/t+0+0.parquet",
    "cdr/call_date=2026-11-02/t+0+0.parquet",
    "restricted/call_date=2026-11-01/t+0+0.parquet",
    "cdr/call_date=2026-11-01/t+0+0.json",
    "cdr/call_date=2026-11-01/nested/t+0+0.parquet",
    "cdr/call_date=2026-11-01",
    "cdr/t+0+0.parquet",
    "other/call_date=2026-11-01/t+0+0.parquet",
    "cdr/call_date=2026-13-01/t+0+0.parquet",
    "cdr/date=2026-11-01/t+0+0.parquet",
    "cdr/call_date=2026-11-01/.t+0+0.parquet.abc.tmp",
    "_cdrpipe/manifest/cdr/call_date=2026-11-01.parquet",
    "t+0+0.parquet",
    "",
]


def test_the_cached_parser_agrees_with_parse_data_path_on_every_path() -> None:
    parse = DataPathParser()
    for _ in range(2):  # the second round answers from the directories parsed in the first
        assert [parse(path) for path in PATHS] == [parse_data_path(path) for path in PATHS]
    assert parse(PATHS[1]) == DataFilePath("cdr", date(2026, 11, 1), "t+0+0.parquet")
    assert parse(PATHS[2]) == DataFilePath("cdr", date(2026, 11, 2), "t+0+0.parquet")
    assert parse(PATHS[3]) == DataFilePath("restricted", date(2026, 11, 1), "t+0+0.parquet")
    assert [path for path in PATHS if parse(path) is None] == PATHS[4:]
