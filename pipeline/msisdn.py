"""Classify and normalise the party numbers found in CDRs.

Contract: :meth:`NumberClassifier.classify` never raises for any input string.
It returns a :class:`PartyNumber` whose ``kind`` is one of :class:`NumberKind`;
only ``E164`` results carry an E.164 string (``+<country><national>``), and
every spelling of one subscriber number yields the same E.164 string. The
classification order errs towards privacy: a string of extension length is an
extension (pseudonymised) unless it is an emergency number.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumberType, shortnumberinfo

WITHHELD_WORDS = frozenset(
    {
        "",
        "anonymous",
        "restricted",
        "unknown",
        "unavailable",
        "private",
        "withheld",
        "anonymous@anonymous.invalid",
    }
)
_SEPARATORS = re.compile(r"[\s.\-/()\[\]]+")
_DIALLABLE = re.compile(r"\+?[0-9]+")
_URI_SCHEMES = ("tel:", "sip:", "sips:")


class NumberKind(enum.StrEnum):
    """What a party string turned out to be."""

    E164 = "E164"
    EXTENSION = "EXTENSION"
    SHORTCODE = "SHORTCODE"
    WITHHELD = "WITHHELD"
    INVALID = "INVALID"


@dataclass(frozen=True, slots=True)
class PartyNumber:
    """A classified party number.

    ``value`` is the E.164 string, the extension digits or the short code;
    ``None`` for WITHHELD and INVALID. ``region`` is the ISO 3166 region of an
    E.164 number; ``line_type`` its line type (``MOBILE``, ``FIXED_LINE``, ...).
    """

    kind: NumberKind
    value: str | None = None
    region: str | None = None
    line_type: str | None = None


WITHHELD = PartyNumber(NumberKind.WITHHELD)
INVALID = PartyNumber(NumberKind.INVALID)


class NumberClassifier:
    """Classifies party strings for one default region and extension length range."""

    def __init__(self, region: str, extension_digits: tuple[int, int]) -> None:
        self._region = region
        self._shortest_extension, self._longest_extension = extension_digits
        self._longest_short_number = max(self._longest_extension, _longest_short_number(region))

    def classify(self, raw: str) -> PartyNumber:
        """Classify ``raw`` (any spelling: national, international, URI, with separators)."""
        dialled = _dialled_part(raw)
        if dialled.lower() in WITHHELD_WORDS:
            return WITHHELD
        digits = _SEPARATORS.sub("", dialled)
        if not _DIALLABLE.fullmatch(digits):
            return INVALID
        if not digits.startswith("+"):
            local = self._classify_local(digits)
            if local is not None:
                return local
            digits = _international_form(digits)
        return self._classify_e164(digits)

    def _classify_local(self, digits: str) -> PartyNumber | None:
        if len(digits) > self._longest_short_number:
            return None
        if shortnumberinfo.is_emergency_number(digits, self._region):
            return PartyNumber(NumberKind.SHORTCODE, digits)
        if self._shortest_extension <= len(digits) <= self._longest_extension:
            return PartyNumber(NumberKind.EXTENSION, digits)
        if len(digits) <= 6:
            parsed = _parse(digits, self._region)
            if parsed is not None and shortnumberinfo.is_valid_short_number_for_region(parsed, self._region):
                return PartyNumber(NumberKind.SHORTCODE, digits)
        return None

    def _classify_e164(self, digits: str) -> PartyNumber:
        parsed = _parse(digits, self._region)
        if parsed is None or not phonenumbers.is_valid_number(parsed):
            parsed = _parse("+" + digits, self._region) if not digits.startswith("+") else None
            if parsed is None or not phonenumbers.is_valid_number(parsed):
                return INVALID
        return PartyNumber(
            NumberKind.E164,
            phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164),
            phonenumbers.region_code_for_number(parsed),
            _line_type_name(phonenumbers.number_type(parsed)),
        )


def _longest_short_number(region: str) -> int:
    """The longest short (service or emergency) number of ``region`` in phonenumbers' metadata."""
    metadata = PhoneMetadata.short_metadata_for_region(region)
    if metadata is None:
        return 0
    lengths = [
        length
        for description in (metadata.general_desc, metadata.emergency)
        if description is not None
        for length in (description.possible_length or ())
    ]
    return max(lengths, default=0)


def _dialled_part(raw: str) -> str:
    """The dialled digits of ``raw``, without display name, URI scheme, host or parameters."""
    text = raw.strip()
    if "<" in text and text.endswith(">"):
        text = text[text.rindex("<") + 1 : -1]
    lowered = text.lower()
    for scheme in _URI_SCHEMES:
        if lowered.startswith(scheme):
            text = text[len(scheme) :]
            text = text.split("@", 1)[0]
            break
    return text.split(";", 1)[0].strip()


def _international_form(digits: str) -> str:
    """Turn ``000032…``-style over-long international prefixes into ``+32…``."""
    if digits.startswith("000"):
        return "+" + digits.lstrip("0")
    return digits


def _parse(digits: str, region: str) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(digits, region)
    except phonenumbers.NumberParseException:
        return None


def _line_type_name(number_type: int) -> str:
    for name, value in vars(PhoneNumberType).items():
        if value == number_type and name.isupper():
            return name
    return "UNKNOWN"
