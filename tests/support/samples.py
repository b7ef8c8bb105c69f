"""Canonical JSON CDRs for tests."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pipeline.formats import DecodeContext, canonical_json
from pipeline.numbers.msisdn import NumberClassifier
from pipeline.record import CanonicalCdr


def canonical(**overrides: Any) -> dict[str, Any]:
    """A valid canonical CDR document; keyword arguments replace or add fields (None removes)."""
    document: dict[str, Any] = {
        "schema_version": 1,
        "cdr_id": "call-0001",
        "source": "contact-centre",
        "start_time": "2026-03-29T01:59:30+01:00",
        "answer_time": "2026-03-29T01:59:40+01:00",
        "end_time": "2026-03-29T03:02:00+02:00",
        "duration_s": 150,
        "billsec_s": 140,
        "caller": "0475 12 34 56",
        "callee": "+3225550100",
        "direction": "inbound",
        "disposition": "answered",
        "queue": "sales",
        "agent": "agent-007",
    }
    document.update(overrides)
    return {key: value for key, value in document.items() if value is not None}


def canonical_bytes(**overrides: Any) -> bytes:
    return json.dumps(canonical(**overrides)).encode()


def call_at(start: str, **overrides: Any) -> bytes:
    """Canonical JSON of an answered 150 s call starting at ``start`` (RFC 3339)."""
    began = datetime.fromisoformat(start)
    times = {
        "start_time": began.isoformat(),
        "answer_time": (began + timedelta(seconds=10)).isoformat(),
        "end_time": (began + timedelta(seconds=150)).isoformat(),
    }
    return canonical_bytes(**{**times, **overrides})


def decode_context(region: str = "BE") -> DecodeContext:
    """A decode context for Belgian traffic with Brussels local times."""
    return DecodeContext(ZoneInfo("Europe/Brussels"), NumberClassifier(region, (2, 5)))


def canonical_decode(payload: bytes) -> CanonicalCdr:
    """Decode canonical JSON with the default test context."""
    return canonical_json.decode(payload, decode_context())
