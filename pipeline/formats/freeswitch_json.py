"""``freeswitch-json``: a FreeSWITCH JSON CDR as ``mod_json_cdr`` posts it.

Reads ``variables`` (values may be URL-encoded, as ``encode-values`` does) and
falls back to ``callflow[0].caller_profile`` and ``callflow[0].times``. Times
come from µs epochs (``*_uepoch`` or callflow ``*_time``) when present, else
from ``*_stamp`` strings in the context's source time zone.

Policy (data dictionary): caller/callee numbers are pseudonymised;
``cc_agent`` is pseudonymised in the agent domain; ``cc_queue`` keeps the
queue name; caller id names, SIP URIs and every other variable are dropped.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import msgspec

from pipeline.formats import DecodeContext
from pipeline.formats.local_time import resolve_call_times
from pipeline.formats.numerals import strict_strptime, whole_number
from pipeline.record import (
    MAX_RECORD_BYTES,
    CanonicalCdr,
    Direction,
    Disposition,
    RecordRejectedError,
    RejectReason,
    validate,
)

NAME = "freeswitch-json"
STAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
HANGUP_DISPOSITIONS: dict[str, Disposition] = {
    "NO_ANSWER": "no_answer",
    "NO_USER_RESPONSE": "no_answer",
    "ALLOTTED_TIMEOUT": "no_answer",
    "USER_BUSY": "busy",
    "ORIGINATOR_CANCEL": "cancelled",
    "LOSE_RACE": "cancelled",
    "NORMAL_CIRCUIT_CONGESTION": "congestion",
    "SWITCH_CONGESTION": "congestion",
}
_MAX_EPOCH_US = 32503680000 * 1_000_000  # year 3000


class _CallerProfile(msgspec.Struct):
    caller_id_number: str | None = None
    destination_number: str | None = None
    uuid: str | None = None


class _Times(msgspec.Struct):
    created_time: int | str | None = None
    answered_time: int | str | None = None
    hangup_time: int | str | None = None


class _Callflow(msgspec.Struct):
    caller_profile: _CallerProfile = msgspec.field(default_factory=_CallerProfile)
    times: _Times = msgspec.field(default_factory=_Times)


class _JsonCdr(msgspec.Struct):
    variables: dict[str, Any]
    callflow: list[_Callflow] | _Callflow | None = None


_DECODER = msgspec.json.Decoder(_JsonCdr)


def decode(payload: bytes, context: DecodeContext) -> CanonicalCdr:
    """Decode one JSON CDR document."""
    if len(payload) > MAX_RECORD_BYTES:
        raise RecordRejectedError(RejectReason.OVERSIZE, f"record exceeds {MAX_RECORD_BYTES} bytes")
    try:
        document = _DECODER.decode(payload)
    except msgspec.ValidationError:
        raise RecordRejectedError(RejectReason.SCHEMA, "not a mod_json_cdr document with variables") from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise RecordRejectedError(RejectReason.UNDECODABLE, "payload is not valid UTF-8 JSON") from None
    variables = {key: _text(value) for key, value in document.variables.items()}
    flow = document.callflow[0] if isinstance(document.callflow, list) and document.callflow else None
    if isinstance(document.callflow, _Callflow):
        flow = document.callflow
    profile = flow.caller_profile if flow else _CallerProfile()
    times = flow.times if flow else _Times()

    cdr_id = variables.get("uuid") or profile.uuid
    callee = variables.get("destination_number") or profile.destination_number
    if not cdr_id:
        raise RecordRejectedError(RejectReason.SCHEMA, "no uuid in variables or caller_profile")
    if not callee:
        raise RecordRejectedError(RejectReason.MISSING_PARTY, "no destination_number")
    duration = _whole(variables.get("duration"), "duration")
    billsec = _whole(variables.get("billsec"), "billsec")
    start, answer, end = _times(variables, times, duration, context)
    hangup_cause = (variables.get("hangup_cause") or "").upper() or None
    return validate(
        CanonicalCdr(
            cdr_id=cdr_id,
            source="freeswitch",
            start_time=start,
            answer_time=answer,
            end_time=end,
            duration_s=duration,
            billsec_s=billsec,
            caller=variables.get("caller_id_number") or profile.caller_id_number or "",
            callee=callee,
            direction=_direction(variables.get("direction")),
            disposition=_disposition(answer, hangup_cause),
            queue=(variables.get("cc_queue") or "").split("@", 1)[0] or None,
            agent=variables.get("cc_agent") or None,
            hangup_cause=hangup_cause,
        )
    )


def _text(value: Any) -> str:
    if isinstance(value, str):
        return unquote(value)
    return "" if value is None else str(value)


def _whole(value: str | None, field: str) -> int:
    if value is None or value == "":
        raise RecordRejectedError(RejectReason.SCHEMA, f"{field} is missing")
    return whole_number(value, field)


def _epoch_us(value: int | str | None, field: str) -> datetime | None:
    if value is None or value in ("", "0", 0):
        return None
    try:
        micros = value if isinstance(value, int) else whole_number(value, field, max_digits=18)
    except RecordRejectedError:
        raise RecordRejectedError(RejectReason.INVALID_TIME, f"{field} is not a µs epoch") from None
    if not 0 < micros < _MAX_EPOCH_US:
        raise RecordRejectedError(RejectReason.INVALID_TIME, f"{field} is out of range")
    return datetime.fromtimestamp(micros / 1_000_000, tz=UTC)


def _times(
    variables: dict[str, str], times: _Times, duration: int, context: DecodeContext
) -> tuple[datetime, datetime | None, datetime]:
    start = _epoch_us(variables.get("start_uepoch") or times.created_time, "start_uepoch")
    end = _epoch_us(variables.get("end_uepoch") or times.hangup_time, "end_uepoch")
    if start is not None and end is not None:
        answer = _epoch_us(variables.get("answer_uepoch") or times.answered_time, "answer_uepoch")
        return start, answer, end
    start_stamp, answer_stamp, end_stamp = (
        variables.get(name, "") for name in ("start_stamp", "answer_stamp", "end_stamp")
    )
    if not start_stamp or not end_stamp:
        raise RecordRejectedError(RejectReason.INVALID_TIME, "neither µs epochs nor start/end stamps")
    return resolve_call_times(
        _stamp(start_stamp, "start"),
        _stamp(answer_stamp, "answer") if answer_stamp else None,
        _stamp(end_stamp, "end"),
        duration,
        context.source_timezone,
    )


def _stamp(text: str, field: str) -> datetime:
    try:
        return strict_strptime(text, STAMP_FORMAT)
    except ValueError:
        message = f"{field}_stamp is not YYYY-MM-DD HH:MM:SS"
        raise RecordRejectedError(RejectReason.INVALID_TIME, message) from None


def _direction(value: str | None) -> Direction:
    if value in ("inbound", "outbound", "internal"):
        return value  # type: ignore[return-value]
    raise RecordRejectedError(RejectReason.SCHEMA, "direction is not inbound, outbound or internal")


def _disposition(answer: datetime | None, hangup_cause: str | None) -> Disposition:
    if answer is not None:
        return "answered"
    return HANGUP_DISPOSITIONS.get(hangup_cause or "", "failed")
