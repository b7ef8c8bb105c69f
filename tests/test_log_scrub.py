"""The logging filter of last resort."""

from __future__ import annotations

import io
import json
import logging
from datetime import datetime

import pytest

from pipeline import log_scrub
from pipeline.log_json import JsonFormatter, logging_config


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


def test_json_lines_carry_the_fields_and_scrub_message_and_exception() -> None:
    handler_stream = io.StringIO()
    handler = logging.StreamHandler(handler_stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("cdrpipe.test.json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise ValueError("bad party 0475 12 34 56")
        except ValueError:
            logger.exception("rejected %s", "tel:+32475123456")
    finally:
        logger.removeHandler(handler)
    line = json.loads(handler_stream.getvalue())
    assert line["level"] == "ERROR" and line["logger"] == "cdrpipe.test.json"
    assert line["message"] == "rejected tel:[number]"
    assert "ValueError: bad party [number]" in line["exception"]
    assert datetime.fromisoformat(line["time"]).tzinfo is not None
    assert "475" not in handler_stream.getvalue()


def test_json_logging_config_routes_the_root_logger_to_json() -> None:
    config = logging_config("WARNING")
    assert config["root"] == {"level": "WARNING", "handlers": ["stderr"]}
    assert config["formatters"]["json"]["()"] is JsonFormatter
