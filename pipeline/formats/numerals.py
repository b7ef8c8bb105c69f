"""Strict numerals and times for every decoder: ASCII digits only.

Python's ``int``, ``float`` and ``strptime`` accept any Unicode decimal digit
(``int('\\u0663') == 3``, ``float('\\uff11\\uff12') == 12.0``), and ``str.isdigit`` is true for
superscripts that ``int`` then refuses (``'\\u00b9'``). A CDR field is written by a
machine, so a non-ASCII digit is a malformed value, never a number.

Contract: :func:`whole_number` and :func:`decimal_number` return the value of
an ASCII numeral or raise :class:`~pipeline.record.RecordRejectedError` with
reason ``schema`` naming the field (never its value); :func:`strict_strptime`
raises ``ValueError`` for non-ASCII text, like a format mismatch, so callers
keep their own message.
"""

from __future__ import annotations

import re
from datetime import datetime

from pipeline.record import RecordRejectedError, RejectReason

_WHOLE = re.compile(r"-?[0-9]{1,18}")
_DECIMAL = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]{1,3})?")


def whole_number(text: str, field: str, max_digits: int = 9) -> int:
    """The integer an ASCII numeral of at most ``max_digits`` digits spells (surrounding blanks allowed)."""
    value = text.strip()
    if not _WHOLE.fullmatch(value) or len(value.lstrip("-")) > max_digits:
        raise RecordRejectedError(RejectReason.SCHEMA, f"{field} is not a whole number")
    return int(value)


def decimal_number(text: str, field: str) -> float:
    """The value of an ASCII decimal numeral (``12``, ``-1.5``, ``2e3``; no ``inf``, ``nan`` or ``_``)."""
    value = text.strip()
    if not _DECIMAL.fullmatch(value):
        raise RecordRejectedError(RejectReason.SCHEMA, f"{field} is not a number")
    return float(value)


def strict_strptime(text: str, time_format: str) -> datetime:
    """``datetime.strptime`` that refuses non-ASCII digits (``ValueError``, as a mismatch would)."""
    value = text.strip()
    if not value.isascii():
        raise ValueError("time text is not ASCII")
    return datetime.strptime(value, time_format)
