"""``asterisk-csv``: one line of Asterisk's ``cdr_csv`` backend (``Master.csv``).

Columns: accountcode, src, dst, dcontext, clid, channel, dstchannel, lastapp,
lastdata, start, answer, end, duration, billsec, disposition, amaflags,
uniqueid, userfield, and with ``newcdrcolumns`` linkedid, peeraccount,
sequence. Times carry no zone: they are read in the context's source time zone.

Policy (data dictionary): src/dst become caller/callee (pseudonymised); clid
(display name and number), channel, dstchannel, lastdata (Dial() arguments),
accountcode, peeraccount and userfield are never copied; the queue name is
taken from lastdata only when lastapp is ``Queue``.
"""

from __future__ import annotations

import csv
from datetime import datetime

from pipeline.formats import DecodeContext
from pipeline.formats.dialplan import dialplan_direction
from pipeline.formats.local_time import resolve_call_times
from pipeline.formats.numerals import strict_strptime, whole_number
from pipeline.numbers.msisdn import NumberKind
from pipeline.record import (
    MAX_RECORD_BYTES,
    CanonicalCdr,
    Direction,
    Disposition,
    RecordRejectedError,
    RejectReason,
    validate,
)

NAME = "asterisk-csv"
BASE_COLUMNS = (
    "accountcode", "src", "dst", "dcontext", "clid", "channel", "dstchannel", "lastapp", "lastdata",
    "start", "answer", "end", "duration", "billsec", "disposition", "amaflags", "uniqueid", "userfield",
)  # fmt: skip
NEW_COLUMNS = ("linkedid", "peeraccount", "sequence")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
DISPOSITIONS: dict[str, Disposition] = {
    "ANSWERED": "answered",
    "NO ANSWER": "no_answer",
    "BUSY": "busy",
    "FAILED": "failed",
    "CONGESTION": "congestion",
}


def split_line(payload: bytes) -> list[str]:
    """The fields of one Master.csv line (Asterisk quotes strings and doubles embedded quotes)."""
    if len(payload) > MAX_RECORD_BYTES:
        raise RecordRejectedError(RejectReason.OVERSIZE, f"record exceeds {MAX_RECORD_BYTES} bytes")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise RecordRejectedError(RejectReason.UNDECODABLE, "line is not UTF-8") from None
    rows = list(csv.reader(text.strip("\r\n").splitlines() or [""], strict=True))
    if len(rows) != 1:
        raise RecordRejectedError(RejectReason.UNDECODABLE, "payload is not exactly one CSV line")
    return rows[0]


def decode(payload: bytes, context: DecodeContext) -> CanonicalCdr:
    """Decode one Master.csv line."""
    try:
        fields = split_line(payload)
    except csv.Error:
        raise RecordRejectedError(RejectReason.UNDECODABLE, "line is not valid CSV") from None
    if len(fields) not in (len(BASE_COLUMNS), len(BASE_COLUMNS) + len(NEW_COLUMNS)):
        raise RecordRejectedError(
            RejectReason.SCHEMA, f"expected 18 or 21 Master.csv columns, found {len(fields)}"
        )
    row = dict(zip(BASE_COLUMNS + NEW_COLUMNS, fields, strict=False))
    disposition = DISPOSITIONS.get(row["disposition"].strip().upper())
    if disposition is None:
        raise RecordRejectedError(RejectReason.SCHEMA, "disposition is not an Asterisk disposition")
    duration = _seconds(row["duration"], "duration")
    start, answer, end = resolve_call_times(
        _local_time(row["start"], "start"),
        _local_time(row["answer"], "answer") if row["answer"].strip() else None,
        _local_time(row["end"], "end"),
        duration,
        context.source_timezone,
    )
    uniqueid = row["uniqueid"].strip()
    if not uniqueid:
        raise RecordRejectedError(RejectReason.SCHEMA, "uniqueid is empty")
    sequence = row.get("sequence", "").strip()
    return validate(
        CanonicalCdr(
            cdr_id=f"{uniqueid}#{sequence}" if sequence else uniqueid,
            source="asterisk",
            start_time=start,
            answer_time=answer if disposition == "answered" else None,
            end_time=end,
            duration_s=duration,
            billsec_s=_seconds(row["billsec"], "billsec"),
            caller=row["src"],
            callee=row["dst"],
            direction=_direction(row, context),
            disposition=disposition,
            queue=_queue(row["lastapp"], row["lastdata"]),
        )
    )


def _local_time(text: str, field: str) -> datetime:
    try:
        return strict_strptime(text, TIME_FORMAT)
    except ValueError:
        raise RecordRejectedError(RejectReason.INVALID_TIME, f"{field} is not YYYY-MM-DD HH:MM:SS") from None


def _seconds(text: str, field: str) -> int:
    return whole_number(text, field)


def _direction(row: dict[str, str], context: DecodeContext) -> Direction:
    """Master.csv has no direction: the dialplan tells first, then the shape of the parties.

    The dialplan (:func:`~pipeline.formats.dialplan.dialplan_direction`) reads the context, the
    channel and the ``Dial()`` target: a PBX may present its DID or a mobile number as caller id
    on outbound calls, so ``src`` alone would make them inbound. A call placed inside the PBX is
    internal when ``dst`` is an extension, else outbound. ``dst`` is read as dialled out of the
    PBX (``service=True``): an emergency number there is a service number, never an extension.
    Without a telling dialplan: ``src`` is a caller, never a service number; short digits on both
    sides make the call internal, an extension calling out makes it outbound, else inbound.
    """
    callee_is_extension = context.classifier.classify(row["dst"], service=True).kind is NumberKind.EXTENSION
    placed = dialplan_direction(
        context.dialplan, row["dcontext"], row["channel"], row["lastapp"], row["lastdata"]
    )
    if placed == "internal":
        return "internal" if callee_is_extension else "outbound"
    if placed is not None:
        return placed
    caller_is_extension = context.classifier.classify(row["src"]).kind is NumberKind.EXTENSION
    if caller_is_extension and callee_is_extension:
        return "internal"
    return "outbound" if caller_is_extension else "inbound"


def _queue(lastapp: str, lastdata: str) -> str | None:
    if lastapp.strip().lower() != "queue":
        return None
    name = lastdata.replace("|", ",").split(",", 1)[0].strip()
    return name or None
