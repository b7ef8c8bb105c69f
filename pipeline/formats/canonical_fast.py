"""Canonical JSON a chunk at a time: fast acceptance, exact rejection.

The exact decoder (:mod:`pipeline.formats.canonical_json`) parses three
time-zone-aware datetimes per record and validates in Python; that costs more
than everything else a record needs. This module decodes the same documents
with the times kept as text, then checks a whole chunk at once with Arrow:
the times are parsed to UTC in C and the cross-field rules are evaluated as
column expressions.

Contract of :func:`accept_chunk`: a row is accepted only where every check
holds, and every check is at least as strict as the exact decoder's rule, so
an accepted row is one the exact decoder accepts with the same values (the
differential test compares both paths). Rows that are not accepted are not
rejected here: the caller hands their payloads to the exact decoder, which
rejects them with its own reason and message (or accepts the few that only
this stricter check refused).
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.record import (
    EARLIEST_YEAR,
    LATEST_YEAR,
    MAX_ABS_COST,
    MAX_DURATION_S,
    MAX_RECORD_BYTES,
    SCHEMA_VERSION,
    TIME_FIELDS,
    Direction,
    Disposition,
)
from pipeline.sink.schema import TIMESTAMP

# RFC 3339 with an explicit offset, microseconds at most, ASCII digits only: the
# subset of what msgspec accepts on which it and Arrow's parser certainly agree.
_RFC3339 = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
_VISIBLE = "[!-~]"  # a visible ASCII character: the value is not blank, whatever strip() removes


class CanonicalRow(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """A canonical CDR with its times as text (``schemas/cdr.schema.json``), not yet validated.

    The fields are :class:`~pipeline.record.CanonicalCdr`'s, in the same order
    and with the same types and defaults except the times (a test keeps the
    two in step); a generated struct would hide the fields from the type checker.
    """

    schema_version: int = SCHEMA_VERSION
    cdr_id: str
    source: str
    start_time: str
    answer_time: str | None = None
    end_time: str
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


_DECODER = msgspec.json.Decoder(CanonicalRow)


def decode_row(payload: bytes) -> CanonicalRow | None:
    """The document's fields, or None where only the exact decoder can say what is wrong."""
    if len(payload) > MAX_RECORD_BYTES or b"\\" in payload:
        return None
    try:
        row = _DECODER.decode(payload)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    # A key given twice counts once, last value first: the exact decoder parses every
    # occurrence of a time as a datetime and fails on a bad earlier one, while text never
    # fails. So each time key must occur exactly once (with no escape in the payload, a
    # key cannot hide behind one).
    answer_keys = row.answer_time is not None or _NULL_ANSWER in payload
    if payload.count(_TIME_KEY_END) != 2 + answer_keys:
        return None
    return row


_TIME_KEY_END = b'_time"'
_NULL_ANSWER = b'"answer_time":null'


@dataclass(frozen=True, slots=True)
class AcceptedChunk:
    """The accepted rows of a chunk (in input order) with their UTC times as Arrow arrays."""

    indices: list[int]
    start_time: pa.Array
    answer_time: pa.Array
    end_time: pa.Array


def accept_chunk(rows: list[CanonicalRow]) -> AcceptedChunk:
    """The rows of ``rows`` that certainly pass the exact decoder's validation."""
    try:
        return _accept(rows)
    except (pa.ArrowException, OverflowError):
        # A value Arrow cannot hold (an integer beyond 64 bits): the exact decoder decides.
        return AcceptedChunk([], *(pa.array([], TIMESTAMP) for _ in TIME_FIELDS))


def _accept(rows: list[CanonicalRow]) -> AcceptedChunk:
    texts = {name: pa.array([getattr(row, name) for row in rows], pa.string()) for name in TIME_FIELDS}
    shaped = pc.fill_null(
        _and_all(
            pc.match_substring_regex(texts["start_time"], _RFC3339),
            pc.match_substring_regex(texts["end_time"], _RFC3339),
            _null_or(texts["answer_time"], pc.match_substring_regex(texts["answer_time"], _RFC3339)),
            _local_years_in_range(texts),
        ),
        False,
    )
    start, answer, end = (_utc(texts[name], shaped) for name in TIME_FIELDS)
    duration = pa.array([row.duration_s for row in rows], pa.int64())
    billsec = pa.array([row.billsec_s for row in rows], pa.int64())
    cost = pa.array([row.cost for row in rows], pa.float64())
    accepted = _and_all(
        shaped,
        pc.less_equal(pa.array([row.schema_version for row in rows], pa.int64()), SCHEMA_VERSION),
        pc.match_substring_regex(pa.array([row.cdr_id for row in rows], pa.string()), _VISIBLE),
        pc.match_substring_regex(pa.array([row.callee for row in rows], pa.string()), _VISIBLE),
        pc.greater_equal(end, start),
        pc.or_kleene(
            pc.is_null(answer), pc.and_(pc.greater_equal(answer, start), pc.less_equal(answer, end))
        ),
        pc.greater_equal(billsec, 0),
        pc.less_equal(billsec, duration),
        pc.less_equal(duration, MAX_DURATION_S),
        pc.or_kleene(
            pc.is_null(cost), pc.and_(pc.is_finite(cost), pc.less_equal(pc.abs(cost), MAX_ABS_COST))
        ),
    )
    indices = pc.indices_nonzero(pc.fill_null(accepted, False))
    return AcceptedChunk(indices.to_pylist(), start.take(indices), answer.take(indices), end.take(indices))


def _utc(text: pa.Array, shaped: pa.Array) -> pa.Array:
    """UTC timestamps of the well-shaped rows (null elsewhere).

    A well-shaped time can still name a day that does not exist (February 30):
    Arrow then refuses the whole column (``ArrowInvalid``), and the chunk goes
    to the exact decoder.
    """
    return pc.cast(pc.if_else(shaped, text, pa.scalar(None, pa.string())), TIMESTAMP)


def _local_years_in_range(texts: dict[str, pa.Array]) -> pa.Array:
    """The years as written (before conversion to UTC) lie within the accepted range."""
    checks = []
    for name, text in texts.items():
        year = pc.utf8_slice_codeunits(text, 0, 4)
        in_range = pc.and_(
            pc.greater_equal(year, f"{EARLIEST_YEAR:04d}"), pc.less_equal(year, f"{LATEST_YEAR:04d}")
        )
        checks.append(pc.or_kleene(pc.is_null(text), in_range) if name == "answer_time" else in_range)
    return _and_all(*checks)


def _null_or(values: pa.Array, condition: pa.Array) -> pa.Array:
    """True where ``values`` is null, else ``condition``."""
    return pc.or_kleene(pc.is_null(values), condition)


def _and_all(*conditions: pa.Array) -> pa.Array:
    result = conditions[0]
    for condition in conditions[1:]:
        result = pc.and_kleene(result, condition)
    return result
