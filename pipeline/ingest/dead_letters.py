"""Dead-letter messages: the original bytes and headers, plus why and where from.

Contract: :func:`dead_letter_headers` keeps the original headers and adds the
``dlq-*`` headers below; none of the added values contains input data.
"""

from __future__ import annotations

from pipeline import __version__
from pipeline.ingest.records import DeadLetter

HEADER_REASON = "dlq-reason"
HEADER_MESSAGE = "dlq-message"
HEADER_SOURCE_TOPIC = "dlq-source-topic"
HEADER_SOURCE_PARTITION = "dlq-source-partition"
HEADER_SOURCE_OFFSET = "dlq-source-offset"
HEADER_FORMAT = "dlq-format"
HEADER_PIPELINE_VERSION = "dlq-pipeline-version"


def dead_letter_headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    """The headers of the DLQ message for ``letter``."""
    record = letter.record
    added = {
        HEADER_REASON: letter.reason.value,
        HEADER_MESSAGE: letter.message,
        HEADER_SOURCE_TOPIC: record.topic,
        HEADER_SOURCE_PARTITION: str(record.partition),
        HEADER_SOURCE_OFFSET: str(record.offset),
        HEADER_FORMAT: letter.format_name,
        HEADER_PIPELINE_VERSION: __version__,
    }
    kept = [(name, value) for name, value in record.headers if name not in added]
    return kept + [(name, value.encode("utf-8")) for name, value in added.items()]
