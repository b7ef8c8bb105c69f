"""The raw-byte leak scanner used by the privacy tests must find real leaks."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq

from tests.support.helpers import find_raw_numbers, raw_number_needles


def test_scanner_finds_a_number_leaked_into_parquet_statistics_and_dictionaries() -> None:
    needles = raw_number_needles(["+32475123456"], ["0475 12 34 56"])
    sink = io.BytesIO()
    table = pa.table({"note": ["called 0475 12 34 56", "x"], "channel": ["PJSIP/+32475123456-0001", "y"]})
    pq.write_table(table, sink, compression="zstd")
    assert find_raw_numbers(sink.getvalue(), needles) == [b"+32475123456", b"0475 12 34 56"]


def test_scanner_ignores_digit_runs_inside_pseudonyms() -> None:
    needles = raw_number_needles(["+32475123456"])
    assert find_raw_numbers(b"\x20\x00\x00\x00ab475123456cd0123456789abcdef01", needles) == []
    assert find_raw_numbers(b'"475123456"', needles) == [b"475123456"]
