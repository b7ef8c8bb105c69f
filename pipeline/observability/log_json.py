"""JSON log lines (``CDRPIPE_LOG_FORMAT=json``): one object per line, scrubbed like every log line.

Contract: :class:`JsonFormatter` writes ``time`` (UTC, RFC 3339), ``level``,
``logger``, ``process`` and ``message``, plus ``exception`` and ``stack`` when
there are any, plus the event's facts passed as ``extra=`` (topic, partition,
offsets, rows, bytes, request id...) as fields of their own, so a JSON log can
be queried. Every text passes through :func:`pipeline.observability.log_scrub.scrub` (again:
records of the installed factory arrive scrubbed already; extra fields do not).
:func:`logging_config` is the ``logging.config.dictConfig`` document that
routes every logger to standard error in this format.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from pipeline.observability.log_scrub import scrub


class JsonFormatter(logging.Formatter):
    """Formats a log record as one JSON object."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "process": record.process,
            "message": scrub(record.getMessage()),
        }
        exception = record.exc_text or (self.formatException(record.exc_info) if record.exc_info else None)
        if exception:
            document["exception"] = scrub(exception)
        if record.stack_info:
            document["stack"] = scrub(record.stack_info)
        for name, value in vars(record).items():
            if name not in _STANDARD_ATTRIBUTES and name not in document:
                document[name] = _field(value)
        return json.dumps(document, ensure_ascii=False)


_STANDARD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
"""What every log record has; anything else on a record came from ``extra=``."""


def _field(value: object) -> object:
    """An extra field as JSON: numbers and booleans as they are, anything else as scrubbed text."""
    if value is None or isinstance(value, bool | int | float):
        return value
    return scrub(str(value))


def logging_config(level: str = "INFO") -> dict[str, Any]:
    """A dictConfig document: every logger to standard error as JSON at ``level``."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
        },
        "root": {"level": level, "handlers": ["stderr"]},
    }
