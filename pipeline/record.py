"""The canonical CDR every input format is decoded into, and its validation rules.

Contract: :func:`validate` returns the record with all times in UTC, or raises
:class:`RecordRejectedError` carrying a :class:`RejectReason` and a message that
names fields, never their values. Ranges are checked too, so that every
validated record fits the store's columns: durations of at most a week, costs
finite and within ±1e9, times within 1970..2099 (reason ``out_of_range``).
"""

from __future__ import annotations

import enum
import math
from datetime import UTC, date, datetime, timedelta
from typing import Literal

import msgspec

SCHEMA_VERSION = 1
MAX_RECORD_BYTES = 64 * 1024
MAX_DURATION_S = 7 * 24 * 3600
"""No call lasts longer than a week; a longer duration is a corrupt value."""
MAX_ABS_COST = 1e9
EARLIEST_YEAR = 1970
LATEST_YEAR = 2099
"""Call times outside these years are corrupt values (and would overflow time-zone arithmetic)."""

TIME_FIELDS = ("start_time", "answer_time", "end_time")
"""The CDR's times, in schema order."""

Direction = Literal["inbound", "outbound", "internal"]
Disposition = Literal["answered", "no_answer", "busy", "failed", "congestion", "cancelled"]


class RejectReason(enum.StrEnum):
    """Why a record went to the dead-letter topic (the ``reason`` header)."""

    UNDECODABLE = "undecodable"
    SCHEMA = "schema"
    INVALID_TIME = "invalid_time"
    END_BEFORE_START = "end_before_start"
    NEGATIVE_DURATION = "negative_duration"
    MISSING_PARTY = "missing_party"
    OVERSIZE = "oversize"
    UNKNOWN_FORMAT = "unknown_format"
    PII_IN_TEXT = "pii_in_text"
    OUT_OF_RANGE = "out_of_range"
    DECODER_ERROR = "decoder_error"
    UNSTORABLE = "unstorable"


class RecordRejectedError(Exception):
    """A record that cannot enter the store. ``str()`` is safe to log."""

    def __init__(self, reason: RejectReason, message: str, format_name: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.format_name = format_name


class CanonicalCdr(msgspec.Struct, kw_only=True, frozen=True):
    """One call, as documented in ``schemas/cdr.schema.json``."""

    schema_version: int = SCHEMA_VERSION
    cdr_id: str
    source: str
    start_time: datetime
    answer_time: datetime | None = None
    end_time: datetime
    duration_s: int
    billsec_s: int
    caller: str
    callee: str
    direction: Direction
    disposition: Disposition
    connected: str | None = None
    queue: str | None = None
    agent: str | None = None
    hangup_cause: str | None = None
    cost: float | None = None
    currency: str | None = None


def validate(cdr: CanonicalCdr) -> CanonicalCdr:
    """Check the cross-field rules and return the record with times in UTC."""
    if not cdr.cdr_id.strip():
        raise RecordRejectedError(RejectReason.SCHEMA, "cdr_id is empty")
    start = _utc(cdr.start_time, "start_time")
    end = _utc(cdr.end_time, "end_time")
    answer = _utc(cdr.answer_time, "answer_time") if cdr.answer_time is not None else None
    if end < start:
        raise RecordRejectedError(RejectReason.END_BEFORE_START, "end_time is before start_time")
    if answer is not None and not start <= answer <= end:
        raise RecordRejectedError(RejectReason.INVALID_TIME, "answer_time is outside start_time..end_time")
    if cdr.duration_s < 0 or cdr.billsec_s < 0:
        raise RecordRejectedError(RejectReason.NEGATIVE_DURATION, "duration_s or billsec_s is negative")
    if cdr.billsec_s > cdr.duration_s:
        raise RecordRejectedError(RejectReason.NEGATIVE_DURATION, "billsec_s exceeds duration_s")
    check_duration(cdr.duration_s)
    if cdr.cost is not None and not (math.isfinite(cdr.cost) and abs(cdr.cost) <= MAX_ABS_COST):
        message = f"cost is not a finite amount within {MAX_ABS_COST:g}"
        raise RecordRejectedError(RejectReason.OUT_OF_RANGE, message)
    if not cdr.callee.strip():
        raise RecordRejectedError(RejectReason.MISSING_PARTY, "callee is empty")
    if start is cdr.start_time and end is cdr.end_time and answer is cdr.answer_time:
        return cdr  # the times were in UTC already (astimezone returned them): nothing to replace
    return msgspec.structs.replace(cdr, start_time=start, end_time=end, answer_time=answer)


def _utc(moment: datetime, field: str) -> datetime:
    if moment.tzinfo is None:
        raise RecordRejectedError(RejectReason.INVALID_TIME, f"{field} has no UTC offset")
    # Checked before the conversion, which overflows near year 1 and 9999.
    check_year(moment, field)
    return moment.astimezone(UTC)


def check_year(moment: datetime, field: str) -> None:
    """Reject a time outside the years a CDR can have (before any arithmetic on it)."""
    if not EARLIEST_YEAR <= moment.year <= LATEST_YEAR:
        raise RecordRejectedError(
            RejectReason.OUT_OF_RANGE, f"{field} is outside the years {EARLIEST_YEAR}..{LATEST_YEAR}"
        )


def check_duration(seconds: float) -> None:
    """Reject a duration longer than a week, or as negative (before any arithmetic on it).

    Shorter negative durations are left to :func:`validate`, which names them
    ``negative_duration``.
    """
    if abs(seconds) > MAX_DURATION_S:
        raise RecordRejectedError(RejectReason.OUT_OF_RANGE, "duration_s is longer than one week")


def retention_horizon(today: date, retention_days: int) -> date:
    """The oldest call date still kept: records of earlier dates are expired (at ingest and in the store)."""
    return today - timedelta(days=retention_days)
