"""Last line of defence: log messages lose anything shaped like a phone number.

Contract: after :func:`install`, every log record's message (``getMessage()``,
which is what every handler and formatter uses) has phone-number-shaped runs
and the user part of ``tel:``/``sip:`` URIs replaced by ``[number]``. Shapes
caught: international (``+…``, ``00…``) and national (``0…``) numbers of 7 to
15 digits with separators. The code never logs numbers on purpose; this catches
third-party messages that echo input.
"""

from __future__ import annotations

import logging
import re

REPLACEMENT = "[number]"
_URI_USER = re.compile(r"(?i)\b(sips?|tel):[^\s;@>,'\"]+")
_NUMBER = re.compile(r"(?:\+|\b00|\b0)\d(?:[ .\-/()]{0,2}\d){5,16}(?!\d)")


def scrub(text: str) -> str:
    """``text`` with phone-number-shaped runs replaced."""
    return _NUMBER.sub(REPLACEMENT, _URI_USER.sub(rf"\1:{REPLACEMENT}", text))


class _ScrubbedLogRecord(logging.LogRecord):
    def getMessage(self) -> str:  # noqa: N802 - overrides the stdlib name
        return scrub(super().getMessage())


def install() -> None:
    """Make every log record created from now on scrub its message (idempotent)."""
    if logging.getLogRecordFactory() is _ScrubbedLogRecord:
        return
    logging.setLogRecordFactory(_ScrubbedLogRecord)
