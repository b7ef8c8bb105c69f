"""Classify and normalise the party numbers found in CDRs.

Contract: :meth:`NumberClassifier.classify` never raises for any input string.
It returns a :class:`PartyNumber` whose ``kind`` is one of :class:`NumberKind`;
only ``E164`` results carry an E.164 string (``+<country><national>``), and
every spelling of one subscriber number yields the same E.164 string. The
classification order errs towards privacy: short digits are public service or
emergency numbers (kept in clear as ``SHORTCODE``) only where the caller says
the party can be one (``service=True``, see :func:`can_reach_service`);
everywhere else a string of extension length is an extension (pseudonymised).

Parsing is the expensive part, so each classifier remembers (up to
:data:`VALID_NUMBERS_REMEMBERED`) the valid numbers it has seen by E.164
string and skips validation and line-type lookup when another spelling of
one of them comes.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Literal

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumberType, shortnumberinfo

from pipeline.numbers.dialled import dialled_key
from pipeline.numbers.plan import UNDECIDED, NumberingPlan

_DIALLABLE = re.compile(r"\+?[0-9]+")
VALID_NUMBERS_REMEMBERED = 100_000


Role = Literal["caller", "callee", "connected"]


def can_reach_service(role: Role, direction: str) -> bool:
    """Whether the ``role`` party of a call in ``direction`` can be a public service number.

    Only the callee of an outbound call dialled out of the PBX can reach one. A
    caller, the answering party, either party of an internal call and the callee
    of an inbound call are people or extensions: Belgian 100 and 101 are also
    common extensions, and only the role tells them apart.
    """
    return role == "callee" and direction == "outbound"


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
    """Classifies party strings for one default region and extension length range.

    ``fast_path=False`` leaves every first-seen E.164 number to the full
    phonenumbers parse (the reference :mod:`pipeline.numbers.plan` is proved
    against, and measured against).
    """

    def __init__(self, region: str, extension_digits: tuple[int, int], *, fast_path: bool = True) -> None:
        self._region = region
        self._shortest_extension, self._longest_extension = extension_digits
        self._longest_short_number = max(self._longest_extension, _longest_short_number(region))
        self._valid_numbers: dict[str, PartyNumber] = {}
        self._international_prefix, self._national_prefix, self._country_prefix = _literal_prefixes(region)
        self._plan = NumberingPlan(region) if fast_path else None

    def classify(self, raw: str, *, service: bool = False) -> PartyNumber:
        """Classify ``raw`` (any spelling: national, international, URI, with separators).

        ``service`` says whether the party can be a public service or emergency
        number (:func:`can_reach_service`); without it short digits are never
        ``SHORTCODE``.
        """
        return self.classify_dialled(dialled_key(raw), service=service)

    def classify_dialled(self, digits: str, *, service: bool = False) -> PartyNumber:
        """Classify a :func:`dialled_key` (the expensive half of :meth:`classify`)."""
        if not digits:
            return WITHHELD
        if not _DIALLABLE.fullmatch(digits):
            return INVALID
        if not digits.startswith("+"):
            local = self._classify_local(digits, service)
            if local is not None:
                return local
            digits = _international_form(digits)
        return self._classify_e164(digits)

    def service_can_matter(self, digits: str) -> bool:
        """Whether ``service`` can change the classification of the dialled key ``digits``.

        Only short local digits can be a service number; for every other key
        :meth:`classify_dialled` gives the same result either way.
        """
        return not digits.startswith("+") and len(digits) <= self._longest_short_number

    def _classify_local(self, digits: str, service: bool) -> PartyNumber | None:
        if len(digits) > self._longest_short_number:
            return None
        if service and shortnumberinfo.is_emergency_number(digits, self._region):
            return PartyNumber(NumberKind.SHORTCODE, digits)
        if self._shortest_extension <= len(digits) <= self._longest_extension:
            return PartyNumber(NumberKind.EXTENSION, digits)
        if service and len(digits) <= 6:
            parsed = _parse(digits, self._region)
            if parsed is not None and shortnumberinfo.is_valid_short_number_for_region(parsed, self._region):
                return PartyNumber(NumberKind.SHORTCODE, digits)
        return None

    def _known_number(self, digits: str) -> PartyNumber | None:
        """A remembered valid number that ``digits`` certainly spell, without parsing.

        A valid number's E.164 string parses back to that number; so do the
        same digits after the region's international prefix, or after its
        national prefix where the region's metadata strips exactly that prefix.
        """
        if digits.startswith("+"):
            return self._valid_numbers.get(digits)
        if self._international_prefix and digits.startswith(self._international_prefix):
            return self._valid_numbers.get("+" + digits.removeprefix(self._international_prefix))
        if self._national_prefix and digits.startswith(self._national_prefix):
            return self._valid_numbers.get(self._country_prefix + digits.removeprefix(self._national_prefix))
        return None

    def _classify_e164(self, digits: str) -> PartyNumber:
        known = self._known_number(digits)
        if known is not None:
            return known
        candidates = (digits,) if digits.startswith("+") else (digits, "+" + digits)
        for candidate in candidates:
            decided = self._plan.decide(candidate) if self._plan is not None else UNDECIDED
            if decided is UNDECIDED:
                parsed = _parse(candidate, self._region)
                number = self._valid_number(parsed) if parsed is not None else None
            else:
                number = self._remember(*decided) if decided is not None else None
            if number is not None:
                return number
        return INVALID

    def _valid_number(self, parsed: phonenumbers.PhoneNumber) -> PartyNumber | None:
        """The E.164 classification of ``parsed`` if it is a valid number (remembered), else None."""
        e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        known = self._valid_numbers.get(e164)
        if known is not None:
            return known
        if not phonenumbers.is_valid_number(parsed):
            return None
        region = phonenumbers.region_code_for_number(parsed)
        return self._remember(e164, region, _line_type_name(phonenumbers.number_type(parsed)))

    def _remember(self, e164: str, region: str | None, line_type: str) -> PartyNumber:
        """The E.164 classification of a valid number, remembered by its E.164 string."""
        number = PartyNumber(NumberKind.E164, e164, region, line_type)
        if len(self._valid_numbers) >= VALID_NUMBERS_REMEMBERED:
            self._valid_numbers.clear()
        self._valid_numbers[e164] = number
        return number


def _literal_prefixes(region: str) -> tuple[str | None, str | None, str]:
    """``region``'s international and national prefixes where they are plain digits, and ``+<country code>``.

    A prefix is None where phonenumbers' metadata parses it with a pattern or a
    transformation (there, only a real parse tells what the digits mean).
    """
    metadata = PhoneMetadata.metadata_for_region(region)
    if metadata is None:
        return None, None, "+"
    international = metadata.international_prefix if (metadata.international_prefix or "").isdigit() else None
    national = metadata.national_prefix
    plain_national = (
        national
        and national.isdigit()
        and metadata.national_prefix_for_parsing == national
        and metadata.national_prefix_transform_rule is None
    )
    return international, national if plain_national else None, f"+{metadata.country_code}"


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
