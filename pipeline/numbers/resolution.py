"""What a DPO's ``--number`` means: the E.164 number or extension it resolves to, and its other readings.

Contract: :func:`resolve_number` classifies a subject's number the way the
store did (a subject is a person: short digits are an extension, never a
service number) in ``region`` (:func:`resolve_with`: in the region of a
classifier the caller already has), and lists every other valid E.164 reading of
the same digits. A national-looking number without ``+`` or an international
prefix can also be an international number whose ``+`` was left out
(``468123456``: Belgian mobile +32 468 12 34 56, or Swedish +46 8 123 456);
the caller must not pick one silently. Nothing here logs or stores the number.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.numbers.dialled import dialled_key
from pipeline.numbers.msisdn import NumberClassifier, NumberKind, PartyNumber


@dataclass(frozen=True, slots=True)
class Resolution:
    """The chosen reading of a subject's number and the other valid ones (empty: unambiguous)."""

    party: PartyNumber
    alternatives: tuple[PartyNumber, ...]

    @property
    def ambiguous(self) -> bool:
        """Whether the digits are also another person's valid number."""
        return bool(self.alternatives)

    def describe(self) -> str:
        """A line for the DPO's terminal (never for logs or receipts)."""
        return describe(self.party)


def describe(party: PartyNumber) -> str:
    """``+<country><number> (region BE, MOBILE)`` or ``extension 1001``."""
    if party.kind is NumberKind.EXTENSION:
        return f"extension {party.value}"
    return f"{party.value} (region {party.region}, {party.line_type})"


def resolve_number(raw: str, region: str, extension_digits: tuple[int, int]) -> Resolution:
    """Classify ``raw`` in ``region`` and find its other valid E.164 readings."""
    return resolve_with(raw, NumberClassifier(region, extension_digits))


def resolve_with(raw: str, classifier: NumberClassifier) -> Resolution:
    """Classify ``raw`` with ``classifier`` (its region) and find its other valid E.164 readings."""
    party = classifier.classify(raw)
    digits = dialled_key(raw)
    if party.kind is not NumberKind.E164 or digits.startswith("+"):
        return Resolution(party, ())
    international = classifier.classify("+" + digits)
    if international.kind is NumberKind.E164 and international.value != party.value:
        return Resolution(party, (international,))
    return Resolution(party, ())
