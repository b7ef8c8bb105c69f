"""Input formats: each module decodes one format's bytes into :class:`~pipeline.record.CanonicalCdr`.

Contract of every decoder: ``decode(payload, context)`` returns a validated
record or raises :class:`~pipeline.record.RecordRejectedError`; no other
exception escapes, whatever the bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from pipeline.formats.dialplan import Dialplan
from pipeline.numbers.msisdn import NumberClassifier
from pipeline.record import CanonicalCdr


@dataclass(frozen=True, slots=True)
class DecodeContext:
    """What decoders may need beyond the bytes: the zone of zone-less times, number classes, the
    PBX's dialplan (for formats without a direction)."""

    source_timezone: ZoneInfo
    classifier: NumberClassifier
    dialplan: Dialplan = field(default_factory=Dialplan)


Decoder = Callable[[bytes, DecodeContext], CanonicalCdr]
