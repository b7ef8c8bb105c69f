"""The logging filter of last resort."""

from __future__ import annotations

import logging

import pytest

from pipeline import log_scrub


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("caller 0475 12 34 56 failed", "caller [number] failed"),
        ("to +32475123456.", "to [number]."),
        ("peer sip:+32475123456@sbc.example;user=phone", "peer sip:[number]@sbc.example;user=phone"),
        ("tel:+32-475-123456", "tel:[number]"),
        ("0032475123456", "[number]"),
        ("+33 6 12 34 56 78 rang", "[number] rang"),
    ],
)
def test_number_shapes_are_replaced(message: str, expected: str) -> None:
    assert log_scrub.scrub(message) == expected


@pytest.mark.parametrize(
    "message",
    [
        "2026-11-25 10:21:42,528 published 4 files (2876 rows) for cdr.raw[0] up to offset 2876",
        "cdr/call_date=2026-11-25/cdr.raw+0+00000000000000002876.parquet",
        "flushed in 0.52s, 123456789 rows",
    ],
)
def test_operational_numbers_survive(message: str) -> None:
    assert log_scrub.scrub(message) == message


def test_installed_factory_scrubs_formatted_arguments(caplog: pytest.LogCaptureFixture) -> None:
    previous = logging.getLogRecordFactory()
    log_scrub.install()
    try:
        with caplog.at_level(logging.INFO):
            logging.getLogger("third.party").info("could not route %s", "0475/12.34.56")
        assert caplog.messages == ["could not route [number]"]
    finally:
        logging.setLogRecordFactory(previous)
