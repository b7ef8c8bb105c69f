"""Realistic sample traffic of a Belgian contact centre, as canonical JSON CDRs.

Contract: :func:`generate` is deterministic for a seed. Subscribers repeat
(``distinct_ratio`` of the calls have a subscriber not seen before on
average), each subscriber's number is written in varying spellings (national,
``+32``, ``0032``, ``tel:``/``sip:`` URIs, separators), and foreign callers
come from neighbouring countries. The numbers are valid for ``phonenumbers``
but random: they belong to nobody in particular.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec
import phonenumbers

from pipeline.record import CanonicalCdr

QUEUES = ("sales", "support", "billing", "retention", "technical")
DISPOSITIONS = (
    ("answered", 0.72),
    ("no_answer", 0.12),
    ("busy", 0.06),
    ("cancelled", 0.06),
    ("failed", 0.03),
    ("congestion", 0.01),
)
HANGUP_CAUSES = {
    "answered": "NORMAL_CLEARING",
    "no_answer": "NO_ANSWER",
    "busy": "USER_BUSY",
    "cancelled": "ORIGINATOR_CANCEL",
    "failed": "UNALLOCATED_NUMBER",
    "congestion": "NORMAL_CIRCUIT_CONGESTION",
}


def example_number(kind: int, region: str = "BE") -> str:
    """libphonenumber's documented example number of ``kind`` in ``region``, as E.164."""
    number = phonenumbers.example_number_for_type(region, kind)
    if number is None:
        raise LookupError(f"phonenumbers has no example number of type {kind} for {region}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


SERVICE_LINES = tuple(
    example_number(kind)
    for kind in (
        phonenumbers.PhoneNumberType.FIXED_LINE,
        phonenumbers.PhoneNumberType.TOLL_FREE,
        phonenumbers.PhoneNumberType.SHARED_COST,
    )
)
"""The contact centre's own lines: example numbers, nobody's real line."""
_FOREIGN_PREFIXES = (("+33", "6", 8), ("+31", "6", 8), ("+49", "151", 8), ("+44", "7", 9), ("+352", "621", 6))


@dataclass(frozen=True, slots=True)
class Subscriber:
    """A caller in E.164 form, and whether it is Belgian (several national spellings apply)."""

    e164: str
    belgian: bool


def spell(subscriber: Subscriber, rng: random.Random) -> str:
    """One of the ways telephony systems write ``subscriber``'s number."""
    number = subscriber.e164
    if not subscriber.belgian:
        return rng.choice((number, "00" + number[1:], f"tel:{number}", f"sip:{number}@carrier.example"))
    national = "0" + number[3:]
    spaced = f"{national[:4]} {national[4:6]} {national[6:8]} {national[8:]}"
    return rng.choice(
        (
            number,
            national,
            spaced,
            "0032" + number[3:],
            f"tel:+32-{number[3:6]}-{number[6:]}",
            f"sip:{number}@sbc.operator.example;user=phone",
            f"{national[:4]}/{national[4:7]}.{national[7:]}",
        )
    )


def _random_subscriber(rng: random.Random) -> Subscriber:
    while True:
        if rng.random() < 0.85:
            national = rng.choice(("4", "4", "4", "2", "3", "9"))
            digits = 8 if national == "4" else 7
            candidate, belgian = f"+32{national}{rng.randint(0, 10**digits - 1):0{digits}d}", True
        else:
            prefix, lead, digits = rng.choice(_FOREIGN_PREFIXES)
            candidate, belgian = f"{prefix}{lead}{rng.randint(0, 10**digits - 1):0{digits}d}", False
        if phonenumbers.is_valid_number(phonenumbers.parse(candidate)):
            return Subscriber(candidate, belgian)


def generate(
    count: int,
    seed: int = 7,
    distinct_ratio: float = 0.2,
    start: datetime | None = None,
    days: int = 3,
) -> Iterator[CanonicalCdr]:
    """``count`` CDRs spread over ``days`` days ending at ``start`` (default: now)."""
    rng = random.Random(seed)
    end_of_window = start or datetime.now(UTC).replace(microsecond=0)
    subscribers: list[Subscriber] = []
    outcomes, weights = zip(*DISPOSITIONS, strict=True)
    for _ in range(count):
        if not subscribers or rng.random() < distinct_ratio:
            subscribers.append(_random_subscriber(rng))
        subscriber = rng.choice(subscribers)
        disposition = rng.choices(outcomes, weights)[0]
        began = end_of_window - timedelta(seconds=rng.randint(0, days * 86_400 - 1))
        ring = rng.randint(2, 30)
        talk = rng.randint(5, 1_800) if disposition == "answered" else 0
        inbound = rng.random() < 0.8
        service = rng.choice(SERVICE_LINES)
        agent = f"agent-{rng.randint(1, 60):03d}" if talk else None
        yield CanonicalCdr(
            cdr_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            source=rng.choice(("contact-centre", "carrier-in", "carrier-out")) if inbound else "carrier-out",
            start_time=began,
            answer_time=began + timedelta(seconds=ring) if talk else None,
            end_time=began + timedelta(seconds=ring + talk),
            duration_s=ring + talk,
            billsec_s=talk,
            caller=spell(subscriber, rng) if inbound else service,
            callee=service if inbound else spell(subscriber, rng),
            direction="inbound" if inbound else "outbound",
            disposition=disposition,
            connected=f"{rng.randint(200, 260)}" if talk else None,
            queue=rng.choice(QUEUES) if inbound else None,
            agent=agent,
            hangup_cause=HANGUP_CAUSES[disposition],
            cost=round(talk * 0.0012, 4) if not inbound else None,
            currency="EUR" if not inbound else None,
        )


def encode(cdr: CanonicalCdr) -> bytes:
    """The canonical JSON bytes of ``cdr``."""
    return msgspec.json.encode(cdr)
