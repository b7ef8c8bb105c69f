"""The canonical JSON decoder and the validation rules."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.record import MAX_RECORD_BYTES, RecordRejectedError, RejectReason
from tests.support.samples import canonical_bytes
from tests.support.samples import canonical_decode as decode


def test_decodes_and_converts_times_to_utc_across_a_dst_change() -> None:
    cdr = decode(canonical_bytes())
    assert cdr.start_time == datetime(2026, 3, 29, 0, 59, 30, tzinfo=UTC)
    assert cdr.end_time == datetime(2026, 3, 29, 1, 2, tzinfo=UTC)
    assert cdr.caller == "0475 12 34 56" and cdr.queue == "sales"


def test_unknown_fields_are_ignored_and_optional_fields_may_be_absent() -> None:
    cdr = decode(canonical_bytes(future_field={"x": 1}, answer_time=None, queue=None, agent=None))
    assert cdr.answer_time is None and cdr.queue is None


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", RejectReason.UNDECODABLE),
        (b"\xff\xfe", RejectReason.UNDECODABLE),
        (b"[]", RejectReason.SCHEMA),
        (canonical_bytes(caller=None), RejectReason.SCHEMA),
        (canonical_bytes(duration_s="0475123456"), RejectReason.SCHEMA),
        (canonical_bytes(direction="0475123456"), RejectReason.SCHEMA),
        (canonical_bytes(start_time="yesterday 0475123456"), RejectReason.SCHEMA),
        (canonical_bytes(schema_version=2), RejectReason.SCHEMA),
        (canonical_bytes(cdr_id=" "), RejectReason.SCHEMA),
        (canonical_bytes(start_time="2026-03-29T01:59:30"), RejectReason.INVALID_TIME),
        (canonical_bytes(answer_time="2026-03-29T05:00:00Z"), RejectReason.INVALID_TIME),
        (canonical_bytes(end_time="2026-03-28T00:00:00Z"), RejectReason.END_BEFORE_START),
        (canonical_bytes(duration_s=-1), RejectReason.NEGATIVE_DURATION),
        (canonical_bytes(billsec_s=151), RejectReason.NEGATIVE_DURATION),
        (canonical_bytes(callee=""), RejectReason.MISSING_PARTY),
        (canonical_bytes(queue="q" * MAX_RECORD_BYTES), RejectReason.OVERSIZE),
    ],
)
def test_rejections_carry_a_reason_and_no_input_values(payload: bytes, reason: RejectReason) -> None:
    with pytest.raises(RecordRejectedError) as raised:
        decode(payload)
    assert raised.value.reason is reason
    assert "0475" not in raised.value.message and "yesterday" not in raised.value.message
