"""The one detector of phone numbers inside free text, shared by the log scrubber and the text policies.

Contract: :func:`find_numbers` reports every run of text that could spell a
phone number; :func:`redact_numbers` replaces each with ``[number]``. It is
deliberately wider than :class:`~pipeline.numbers.msisdn.NumberClassifier` (a test
proves that every spelling the classifier reads as E.164 is caught inside
text): it looks at shape, not validity.

A run is digits (ASCII, full-width or any other Unicode decimal digits)
joined by runs of separators of any length (whitespace of any kind including
NBSP and tab, ``.``, ``_``, ``-`` and the other dashes, the minus sign, ``/``,
parentheses and brackets, soft hyphens and zero-width characters, ``%20``,
and backslash escapes such as ``\\t`` or ``\\xa0`` as ``repr()`` prints them),
optionally after ``+``, a full-width plus or ``%2B``. It is a number when it
holds at least :data:`MIN_SIGNIFICANT_DIGITS`
digits after its leading zeros (the classifier drops leading zeros, and the
shortest E.164 numbers have 7 digits, e.g. a 3-digit country code and a
4-digit national number). There is no upper bound: an over-long run is a
number with something appended.

What stays readable (decided for operational log lines): runs of up to 6
significant digits (partition numbers, offsets and counts below a million,
zero-padded file offsets such as ``00000000000000002876``); counts written with thousands separators
(``1,234,567``: a comma is not a separator); ISO 8601 dates and times of the
years 1900-2099 (a number written as a valid date, ``2047-01-23``, is the one
shape this lets through); and UUIDs none of whose groups holds 7 or more
consecutive digits. Plain integers of 7 or more significant digits are
replaced, however innocent, and so are IPv4 addresses with 7 or more digits:
they cannot be told apart from a national number without its trunk prefix
(nine digits such as ``4NNNNNNNN``) or one written with dots.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

REPLACEMENT = "[number]"
MIN_SIGNIFICANT_DIGITS = 7

# A backslash escape counts as a separator: repr() of a string prints NBSP as \xa0, a tab as \t.
# Any run of what dialled_key strips ([\s.\-/()\[\]]) or a human writes between digits (dashes,
# the minus sign, soft hyphen, zero-width characters, underscore, %20, backslash escapes): the
# detector must be at least as wide as the classifier, which strips any number of separators.
_SEPARATOR_CHARACTERS = r"\s()\[\]_/\-.\u00ad\u2010-\u2015\u2212\u200b-\u200d\u2060\ufeff"
KEPT_TEXT_SEPARATORS = ",'\u2019:\u00b7|"
"""What people also write between digit groups (``0475,12,34,56``, ``0'475``, ``0475:12``,
``0475·12``, ``0475|12``). Log lines keep ``,`` readable as a thousands separator (offsets and
counts are logged as ``1,234,567``); stored texts and texts from people treat all of these as
separators."""
_DATE_TIME = (
    r"(?<!\d)(?:19|20)\d\d-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
    r"(?:[T ](?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:[.,]\d{1,9})?)?)?(?!\d)"
)
_UUID = r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}(?![0-9A-Fa-f])"
_DIGIT = re.compile(r"\d")
_ENOUGH_DIGITS = re.compile(rf"(?:\d\D*){{{MIN_SIGNIFICANT_DIGITS}}}")  # a cheap first look
_LONG_DIGITS = re.compile(rf"\d{{{MIN_SIGNIFICANT_DIGITS},}}")


def _significant_digits(run: str) -> int:
    digits = "".join(_DIGIT.findall(run))
    return len(digits.lstrip("0\uff10"))  # ASCII and full-width zeros


def _is_number(match: re.Match[str]) -> bool:
    if match.lastgroup == "run":
        return _significant_digits(match.group()) >= MIN_SIGNIFICANT_DIGITS
    if match.lastgroup == "uuid":
        return _LONG_DIGITS.search(match.group()) is not None
    return False  # a date and time


def _separator(extra_separators: str) -> str:
    """The pattern of one run of separators between digits."""
    return (
        rf"(?:[{_SEPARATOR_CHARACTERS}{re.escape(extra_separators)}]"
        r"|%20|\\(?:[tnrfv]|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}))+"
    )


class NumberDetector:
    """Finds the runs of a text that could spell a phone number, with one set of separators."""

    def __init__(self, extra_separators: str = "") -> None:
        run = rf"(?:\+|\uff0b|%2[bB])?(?<!\d)\d(?:(?:{_separator(extra_separators)})?\d)*"
        self._token = re.compile(rf"(?P<date>{_DATE_TIME})|(?P<uuid>{_UUID})|(?P<run>{run})")

    def find(self, text: str) -> Iterator[re.Match[str]]:
        """The runs of ``text`` that could spell a phone number, left to right."""
        if not _ENOUGH_DIGITS.search(text):
            return iter(())
        return (match for match in self._token.finditer(text) if _is_number(match))

    def contains(self, text: str) -> bool:
        """Whether ``text`` holds anything :meth:`find` reports."""
        return next(self.find(text), None) is not None

    def redact(self, text: str) -> str:
        """``text`` with every run :meth:`find` reports replaced by ``[number]``."""
        if not _ENOUGH_DIGITS.search(text):
            return text
        return self._token.sub(lambda match: REPLACEMENT if _is_number(match) else match.group(), text)


IN_LOG_LINES = NumberDetector()
"""The detector of log lines and other operational texts (``1,234,567`` stays readable)."""
IN_KEPT_TEXTS = NumberDetector(KEPT_TEXT_SEPARATORS)
"""The detector of texts that are stored or come from people: stored text fields, reasons, notes."""
find_numbers = IN_LOG_LINES.find
contains_number = IN_LOG_LINES.contains
redact_numbers = IN_LOG_LINES.redact


_PREFIXED_RUN = re.compile(rf"(?:\+|\uff0b|%2[bB]|(?<!\d)0)\d(?:(?:{_separator('')})?\d){{5,}}")
_BARE_DIGITS = re.compile(rf"\+?\d{{{MIN_SIGNIFICANT_DIGITS},}}")


def identifier_holds_number(identifier: str) -> bool:
    """Whether an identifier (a request id, a call id) is or holds a phone number, as ids are read.

    Narrower than :func:`contains_number`, because ids routinely hold long
    digit groups that are not numbers (``DPO-2026-0042``, Asterisk's
    ``1732530102.42``): an id holds a number when it is, as a whole, 7 or more
    digits (with or without ``+``), or when a run starting with ``+``,
    ``%2B`` or a trunk or international ``0`` spells 7 or more digits
    (``0NNN NN NN NN``, ``cb-0NNNNNNNNN``). An id with a foreign number
    without its ``+`` inside other characters (``cb-32NNNNNNNNN``) is not
    recognised: that is the limit of reading ids.
    """
    return bool(_BARE_DIGITS.fullmatch(identifier) or _PREFIXED_RUN.search(identifier))
