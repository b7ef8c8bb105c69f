"""Write canonical CDRs in the other wire formats, for end-to-end tests of the decoders."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

from pipeline.record import CanonicalCdr

BRUSSELS = ZoneInfo("Europe/Brussels")
ASTERISK_DISPOSITIONS = {
    "answered": "ANSWERED", "no_answer": "NO ANSWER", "busy": "BUSY", "failed": "FAILED",
    "congestion": "CONGESTION", "cancelled": "NO ANSWER",
}  # fmt: skip


def _quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _local(moment: datetime | None) -> str:
    return moment.astimezone(BRUSSELS).strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def asterisk_line(cdr: CanonicalCdr) -> bytes:
    """A Master.csv line (18 columns) whose uniqueid is the cdr_id."""
    fields = [
        _quoted(""), _quoted(cdr.caller), _quoted(cdr.callee), _quoted("from-trunk"),
        _quoted(f'"Caller, Name" <{cdr.caller}>'), _quoted(f"PJSIP/trunk-{cdr.cdr_id[:8]}"), _quoted(""),
        _quoted("Queue" if cdr.queue else "Dial"),
        _quoted(f"{cdr.queue},t,,,300" if cdr.queue else "PJSIP/x"),
        _quoted(_local(cdr.start_time)), _quoted(_local(cdr.answer_time)), _quoted(_local(cdr.end_time)),
        str(cdr.duration_s), str(cdr.billsec_s), _quoted(ASTERISK_DISPOSITIONS[cdr.disposition]),
        _quoted("DOCUMENTATION"), _quoted(cdr.cdr_id), _quoted(""),
    ]  # fmt: skip
    return ",".join(fields).encode()


def freeswitch_document(cdr: CanonicalCdr) -> bytes:
    """A mod_json_cdr document whose uuid is the cdr_id."""

    def micros(moment: datetime | None) -> str:
        return str(int(moment.timestamp() * 1_000_000)) if moment else "0"

    variables = {
        "uuid": cdr.cdr_id,
        "direction": cdr.direction,
        "caller_id_number": cdr.caller,
        "destination_number": cdr.callee,
        "duration": str(cdr.duration_s),
        "billsec": str(cdr.billsec_s),
        "start_uepoch": micros(cdr.start_time),
        "answer_uepoch": micros(cdr.answer_time),
        "end_uepoch": micros(cdr.end_time),
        "hangup_cause": cdr.hangup_cause or "NORMAL_CLEARING",
    }
    return json.dumps({"core-uuid": "fs-test", "variables": variables, "callflow": [{}]}).encode()
