"""One region's numbering rules from phonenumbers' metadata, compiled for :mod:`pipeline.numbers.plan`.

Contract: each method of :class:`RegionRules` gives, for strings of ASCII
digits, exactly what the named step of the pinned phonenumbers gives with the
same region's metadata. It uses the metadata's own regular expressions,
compiled once, and tables of phonenumbers' own length verdicts.

The costly step is ``_number_type_helper``: up to a dozen pattern matches per
number. Here it is one match of one pattern per region and number length: the
number types that admit that length, as named alternatives in phonenumbers'
order of precedence, behind a look-ahead for the general pattern. Python's
``fullmatch`` takes the first alternative that matches the whole number, which
is the type phonenumbers returns.
"""

from __future__ import annotations

import functools
import re

from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, SUPPORTED_REGIONS, PhoneMetadata
from phonenumbers.phonemetadata import PhoneNumberDesc
from phonenumbers.phonenumberutil import ValidationResult, _test_number_length

NON_GEOGRAPHIC = "001"
_LONGEST_NSN = 17  # phonenumbers' _MAX_LENGTH_FOR_NSN: longer numbers never reach a type check
# Longer than any national number RegionRules is asked about: numbering_plan passes at most
# 24 characters, and a transformation rule adds at most 4 digits.
_LENGTHS_TABULATED = 40

# The types _number_type_helper tries before fixed-line and mobile, in its order.
_SERVICE_TYPES = (
    ("PREMIUM_RATE", "premium_rate"),
    ("TOLL_FREE", "toll_free"),
    ("SHARED_COST", "shared_cost"),
    ("VOIP", "voip"),
    ("PERSONAL_NUMBER", "personal_number"),
    ("PAGER", "pager"),
    ("UAN", "uan"),
    ("VOICEMAIL", "voicemail"),
)


class RegionRules:
    """The parsing and validation rules of one region (or non-geographic calling code)."""

    def __init__(self, metadata: PhoneMetadata) -> None:
        if metadata.country_code is None or metadata.general_desc is None:
            raise ValueError(f"phonenumbers metadata of {metadata.id} has no country code or general pattern")
        self.country_code = metadata.country_code
        self.calling_code = str(metadata.country_code)
        self.idd = _compile(metadata.international_prefix)
        self.leading_digits = None if metadata.leading_digits is None else re.compile(metadata.leading_digits)
        self._general = _compile(metadata.general_desc.national_number_pattern)
        self._national_prefix = _compile(metadata.national_prefix_for_parsing)
        self._transform: str | None = metadata.national_prefix_transform_rule or None
        verdicts = [_test_number_length("0" * length, metadata) for length in range(_LENGTHS_TABULATED)]
        too_long, possible = ValidationResult.TOO_LONG, ValidationResult.IS_POSSIBLE
        self._too_long = frozenset(n for n, verdict in enumerate(verdicts) if verdict == too_long)
        # The lengths at which parse keeps a number stripped of its national prefix: not too
        # short, local-only or impossible.
        self.keeps_stripped = frozenset(
            n for n, verdict in enumerate(verdicts) if verdict in (too_long, possible)
        )
        self._types = tuple(_type_pattern(metadata, length) for length in range(_LONGEST_NSN + 1))

    def is_national(self, number: str) -> bool:
        """``_match_national_number`` against the general description (no length check)."""
        return self._general is not None and self._general.fullmatch(number) is not None

    def too_long(self, length: int) -> bool:
        """``_test_number_length`` says TOO_LONG for a number of ``length`` digits."""
        return length in self._too_long

    def strip_national_prefix(self, number: str) -> str:
        """The number ``_maybe_strip_national_prefix_carrier_code`` returns."""
        prefix = self._national_prefix
        match = prefix.match(number) if prefix is not None and number else None
        if prefix is None or match is None:
            return number
        # phonenumbers' test of "no transformation needed" is its last group being unset.
        if self._transform is None or match.groups()[-1] is None:
            stripped = number[match.end() :]
        else:
            stripped = prefix.sub(self._transform, number, count=1)
        general = self._general  # is_national, inlined: this runs for every national number
        if general is not None and general.fullmatch(number) and not general.fullmatch(stripped):
            return number
        return stripped

    def line_type(self, nsn: str) -> str | None:
        """The name of ``_number_type_helper``'s type for ``nsn`` (2-17 digits); None for UNKNOWN."""
        pattern = self._types[len(nsn)]
        match = pattern.fullmatch(nsn) if pattern is not None else None
        return match.lastgroup if match is not None else None


def _compile(pattern: str | None) -> re.Pattern[str] | None:
    return re.compile(pattern) if pattern else None


def _admits(desc: PhoneNumberDesc | None, length: int) -> str | None:
    """``desc``'s pattern if ``_is_number_matching_desc`` would try it on a number of ``length`` digits."""
    if desc is None or not desc.national_number_pattern:
        return None
    if desc.possible_length and length not in desc.possible_length:
        return None
    return str(desc.national_number_pattern)


def _type_pattern(metadata: PhoneMetadata, length: int) -> re.Pattern[str] | None:
    """One pattern whose matching named group is ``_number_type_helper``'s type at ``length``."""
    general = _admits(metadata.general_desc, length)
    if general is None:
        return None
    named = [(name, _admits(getattr(metadata, attribute), length)) for name, attribute in _SERVICE_TYPES]
    fixed, mobile = _admits(metadata.fixed_line, length), _admits(metadata.mobile, length)
    if metadata.same_mobile_and_fixed_line_pattern:
        # phonenumbers calls such a fixed-line number FIXED_LINE_OR_MOBILE and never tries mobile.
        named.append(("FIXED_LINE_OR_MOBILE", fixed))
    else:
        both = None if fixed is None or mobile is None else rf"(?=(?:{fixed})\Z)(?:{mobile})"
        named += [("FIXED_LINE_OR_MOBILE", both), ("FIXED_LINE", fixed), ("MOBILE", mobile)]
    alternatives = "|".join(f"(?P<{name}>{pattern})" for name, pattern in named if pattern is not None)
    if not alternatives:
        return None
    return re.compile(rf"(?=(?:{general})\Z)(?:{alternatives})")


def rules_for(region: str) -> RegionRules | None:
    """The rules ``phonenumbers.parse`` uses for the default ``region``; None if it rejects the region."""
    return _region_rules(region) if region in SUPPORTED_REGIONS else None


Regions = tuple[tuple[str, RegionRules | None], ...]
"""(region code, rules or None where phonenumbers has no metadata) of a calling code's regions."""


class CallingCode:
    """A country calling code: its regions in phonenumbers' order (main region first), with their rules.

    The rules are compiled on first use (about 1 ms a calling code; 0.3 s for all).
    """

    def __init__(self, country_code: int, region_codes: tuple[str, ...]) -> None:
        self.country_code = country_code
        self.calling_code = str(country_code)
        self._region_codes = region_codes

    @functools.cached_property
    def regions(self) -> Regions:
        """(region code, rules or None where phonenumbers has no metadata) of each region."""
        if self._region_codes == (NON_GEOGRAPHIC,):
            metadata = PhoneMetadata.metadata_for_nongeo_region(self.country_code, None)
            return ((NON_GEOGRAPHIC, None if metadata is None else RegionRules(metadata)),)
        return tuple((region, _region_rules(region)) for region in self._region_codes)

    @functools.cached_property
    def main(self) -> RegionRules | None:
        """The rules ``parse`` strips a national prefix with: those of the main region."""
        return self.regions[0][1]


# Every calling code by its digits; phonenumbers' codes are prefix-free, 1 to 3 digits long.
CALLING_CODES = {
    str(country_code): CallingCode(country_code, regions)
    for country_code, regions in COUNTRY_CODE_TO_REGION_CODE.items()
}


@functools.cache
def _region_rules(region: str) -> RegionRules | None:
    metadata = PhoneMetadata.metadata_for_region(region, None)
    return None if metadata is None else RegionRules(metadata)
