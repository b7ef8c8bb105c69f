"""Records of every input format carrying a chosen value in each kept text field they can carry."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from pipeline.formats.mapped_csv import CsvMapping
from pipeline.record import CanonicalCdr
from tests.support.wire_formats import asterisk_line, freeswitch_document

TEXT_MAPPING: dict[str, Any] = {
    "name": "carrier-text",
    "description": "A test layout that maps every kept text field.",
    "delimiter": ";",
    "columns": [
        "id",
        "start",
        "seconds",
        "from",
        "to",
        "type",
        "status",
        "system",
        "queue",
        "cause",
        "currency",
    ],
    "fields": {
        "cdr_id": {"column": "id"},
        "start_time": {"column": "start", "format": "epoch_s"},
        "duration_s": {"column": "seconds"},
        "caller": {"column": "from"},
        "callee": {"column": "to"},
        "direction": {"column": "type"},
        "disposition": {"column": "status"},
        "source": {"column": "system"},
        "queue": {"column": "queue"},
        "hangup_cause": {"column": "cause"},
        "currency": {"column": "currency"},
    },
}
TEXT_FORMAT = "mapped-csv/carrier-text"
FIELDS_BY_FORMAT = {
    "canonical-json": ("cdr_id", "source", "queue", "hangup_cause", "currency"),
    "freeswitch-json": ("cdr_id", "queue", "hangup_cause"),
    "asterisk-csv": ("cdr_id", "queue"),
    TEXT_FORMAT: ("cdr_id", "source", "queue", "hangup_cause", "currency"),
}
START = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def text_mapping() -> CsvMapping:
    """:data:`TEXT_MAPPING` as the decoder reads it."""
    return msgspec.convert(TEXT_MAPPING, CsvMapping)


def base_cdr(cdr_id: str) -> CanonicalCdr:
    """An ordinary outbound call whose text fields keep their policies."""
    return CanonicalCdr(
        cdr_id=cdr_id,
        source="pbx-a",
        start_time=START,
        answer_time=START + timedelta(seconds=5),
        end_time=START + timedelta(seconds=65),
        duration_s=65,
        billsec_s=60,
        caller="2001",
        callee="+32475123456",
        direction="outbound",
        disposition="answered",
        queue="sales",
        hangup_cause="NORMAL_CLEARING",
        cost=0.05,
        currency="EUR",
    )


def encode(format_name: str, cdr: CanonicalCdr) -> bytes:
    """``cdr`` in ``format_name`` (one of :data:`FIELDS_BY_FORMAT`)."""
    if format_name == "canonical-json":
        return msgspec.json.encode(cdr)
    if format_name == "asterisk-csv":
        return asterisk_line(cdr)
    if format_name == "freeswitch-json":
        document = json.loads(freeswitch_document(cdr))
        document["variables"]["cc_queue"] = f"{cdr.queue}@default" if cdr.queue else ""
        return json.dumps(document, ensure_ascii=False).encode()
    fields = [
        cdr.cdr_id, str(int(cdr.start_time.timestamp())), str(cdr.duration_s), cdr.caller, cdr.callee,
        cdr.direction, cdr.disposition, cdr.source,
        cdr.queue or "", cdr.hangup_cause or "", cdr.currency or "",
    ]  # fmt: skip
    return ";".join(f'"{field}"' if ";" in field else field for field in fields).encode()


def with_text(format_name: str, field: str, value: str, cdr_id: str) -> bytes:
    """A record of ``format_name`` whose ``field`` holds ``value`` (the cdr_id is ``cdr_id`` otherwise)."""
    cdr = msgspec.structs.replace(base_cdr(cdr_id), **{field: value})
    return encode(format_name, cdr)
