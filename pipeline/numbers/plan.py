"""Classify first-seen numbers in microseconds with phonenumbers' own metadata, compiled once.

Contract: :meth:`NumberingPlan.decide` takes a string of ASCII digits, optionally
after one ``+`` (what :meth:`pipeline.numbers.msisdn.NumberClassifier.classify_dialled`
passes on), and returns either

* ``(e164, region, line type)`` exactly when ``phonenumbers.parse(digits,
  region)`` succeeds and ``is_valid_number`` holds for the result: its E.164
  string, ``region_code_for_number`` (``001`` if non-geographic) and the name of
  its ``number_type``;
* ``None`` when that parse fails or the number it gives is not valid;
* :data:`UNDECIDED` for a shape it does not reproduce (fewer than 4 or more
  than 24 characters, a national number in a default region phonenumbers does
  not know): the caller then runs the full parse.

It follows the steps of the pinned phonenumbers' ``parse``,
``region_code_for_number`` and ``_number_type_helper`` for these inputs, with
the same regular expressions from the same metadata (see
:mod:`pipeline.numbers.types`). ``tests/test_numbering_plan.py`` proves the
results identical on a million generated inputs.
"""

from __future__ import annotations

import enum
from typing import Final

from pipeline.numbers.types import CALLING_CODES, CallingCode, RegionRules, Regions, rules_for

# Shorter inputs are never worth compiling for; longer ones cannot be valid, and
# leaving both to phonenumbers keeps its input-length rules out of this module.
_SHORTEST, _LONGEST = 4, 24
_SHORTEST_NSN, _LONGEST_NSN = 2, 17  # phonenumbers' _MIN_LENGTH_FOR_NSN and _MAX_LENGTH_FOR_NSN

Valid = tuple[str, str, str]
"""A valid number: E.164 string, region, line type name."""


class Undecided(enum.Enum):
    """The type of :data:`UNDECIDED`."""

    UNDECIDED = "undecided"


UNDECIDED: Final = Undecided.UNDECIDED


class _UnknownCode(enum.Enum):
    UNKNOWN_CODE = "unknown calling code"


_UNKNOWN_CODE: Final = _UnknownCode.UNKNOWN_CODE


class NumberingPlan:
    """The fast path of E.164 classification for one default region."""

    def __init__(self, region: str) -> None:
        self._default = rules_for(region)
        self._default_code = None if self._default is None else CALLING_CODES[self._default.calling_code]

    def decide(self, digits: str) -> Valid | Undecided | None:
        """What ``phonenumbers`` makes of ``digits`` (see the module contract)."""
        if not _SHORTEST <= len(digits) <= _LONGEST:
            return UNDECIDED
        if digits[0] == "+":
            decided = _international(digits[1:])
            if decided is not _UNKNOWN_CODE:
                return decided
            # phonenumbers reads the digits after "+" and an unknown code again without
            # the "+": only the default region's international prefix can make a number of them.
            end = self._international_prefix_end(digits[1:])
            decided = None if end is None else _international(digits[1 + end :])
            return None if decided is _UNKNOWN_CODE else decided
        default, default_code = self._default, self._default_code
        if default is None or default_code is None:
            return UNDECIDED
        end = self._international_prefix_end(digits)
        if end is None:
            return _national(digits, default, default_code)
        decided = _international(digits[end:])
        return None if decided is _UNKNOWN_CODE else decided

    def _international_prefix_end(self, digits: str) -> int | None:
        """Where the default region's international prefix ends in ``digits``; None if parse strips none."""
        idd = self._default.idd if self._default is not None else None
        match = idd.match(digits) if idd is not None else None
        # phonenumbers strips an international prefix only when no "0" follows it.
        return None if match is None or digits.startswith("0", match.end()) else match.end()


def _international(number: str) -> Valid | Undecided | _UnknownCode | None:
    """``number`` after its "+" or international prefix: country code, then national number."""
    if len(number) <= _SHORTEST_NSN:  # phonenumbers: too short after the international prefix
        return None
    for end in (1, 2, 3):
        code = CALLING_CODES.get(number[:end])
        if code is not None:
            main = code.main
            return UNDECIDED if main is None else _significant(number[end:], main, code)
    return _UNKNOWN_CODE


def _national(digits: str, default: RegionRules, code: CallingCode) -> Valid | Undecided | None:
    """``digits`` without international prefix: national, or the default country code without "+"."""
    if digits.startswith(code.calling_code):
        # phonenumbers takes the digits after the default country code when the
        # whole is not a national number but the rest is, or the whole is too long.
        rest = default.strip_national_prefix(digits[len(code.calling_code) :])
        if (not default.is_national(digits) and default.is_national(rest)) or default.too_long(len(digits)):
            main = code.main
            return UNDECIDED if main is None else _significant(rest, main, code)
    return _significant(digits, default, code)


def _significant(national: str, rules: RegionRules, code: CallingCode) -> Valid | None:
    """The number of ``code`` whose national part, before national prefix stripping, is ``national``."""
    if len(national) < _SHORTEST_NSN:
        return None
    stripped = rules.strip_national_prefix(national)
    # phonenumbers keeps the prefix when what remains has no possible length.
    if stripped is not national and len(stripped) in rules.keeps_stripped:
        national = stripped
    if len(national) > _LONGEST_NSN or len(national) < _SHORTEST_NSN:
        return None
    regions = code.regions
    if len(regions) == 1:
        region, region_rules = regions[0]
        line_type = region_rules.line_type(national) if region_rules is not None else None
    else:
        region, line_type = _shared_code_region(national, regions)
    return None if line_type is None else ("+" + code.calling_code + national, region, line_type)


def _shared_code_region(nsn: str, regions: Regions) -> tuple[str, str | None]:
    """``region_code_for_number`` among the regions of a shared calling code, and the line type there."""
    for region, rules in regions:
        if rules is None:
            continue
        if rules.leading_digits is not None:
            # A region chosen by its leading digits is the answer even if the number is invalid there.
            if rules.leading_digits.match(nsn):
                return region, rules.line_type(nsn)
            continue
        line_type = rules.line_type(nsn)
        if line_type is not None:
            return region, line_type
    return "", None
