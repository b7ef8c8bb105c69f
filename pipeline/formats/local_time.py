"""Zone-less local times (Asterisk, carrier CSVs) to UTC, correct across DST changes.

Contract: :func:`resolve_call_times` returns UTC times for a call's start,
answer and end given as naive local times. In the repeated hour of an autumn
change each time could mean two instants; the combination whose length best
matches the reported duration (then the earliest) is chosen, so a call across
the change keeps its true length. A local time that does not exist (the
skipped spring hour) is rejected.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from pipeline.record import RecordRejectedError, RejectReason, check_duration, check_year


def _instants(naive: datetime, zone: ZoneInfo, field: str) -> list[datetime]:
    # Checked before any zone arithmetic, which overflows near year 1 and 9999.
    check_year(naive, field)
    candidates = []
    for fold in (0, 1):
        local = naive.replace(tzinfo=zone, fold=fold)
        if local.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != naive:
            message = f"{field} does not exist in the source time zone"
            raise RecordRejectedError(RejectReason.INVALID_TIME, message)
        candidates.append(local.astimezone(UTC))
    return sorted(set(candidates))


def earliest_instant(naive: datetime, zone: ZoneInfo, field: str) -> datetime:
    """The UTC instant of a naive local time; in a repeated hour, the first of the two."""
    return _instants(naive, zone, field)[0]


def resolve_call_times(
    start: datetime,
    answer: datetime | None,
    end: datetime,
    duration_s: float,
    zone: ZoneInfo,
) -> tuple[datetime, datetime | None, datetime]:
    """UTC start, answer and end for naive local times in ``zone``."""
    starts = _instants(start, zone, "start_time")
    ends = _instants(end, zone, "end_time")
    answers: list[datetime | None] = list(_instants(answer, zone, "answer_time")) if answer else [None]
    check_duration(duration_s)
    reported = timedelta(seconds=duration_s)

    def mismatch(choice: tuple[datetime, datetime | None, datetime]) -> tuple[bool, timedelta, datetime]:
        began, answered, ended = choice
        ordered = began <= ended and (answered is None or began <= answered <= ended)
        return (not ordered, abs((ended - began) - reported), began)

    return min(itertools.product(starts, answers, ends), key=mismatch)
