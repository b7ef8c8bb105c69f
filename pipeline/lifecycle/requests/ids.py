"""Request ids and the free texts of subject requests: never a phone number, never a pseudonym.

Contract: :func:`check_request_id`, :func:`check_identifier` and
:func:`check_text` return their argument or raise
:class:`~pipeline.errors.RequestRefusedError` saying what it must not contain (never
echoing it); :func:`new_request_id` returns a fresh id they accept.
"""

from __future__ import annotations

import re
import uuid

from pipeline.errors import RequestRefusedError
from pipeline.numbers.text import IN_KEPT_TEXTS, identifier_holds_number
from pipeline.observability.log_scrub import scrub

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_PSEUDONYM = re.compile(r"(?i)(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")


def check_request_id(request_id: str) -> str:
    """``request_id`` if it is usable as a file name and not shaped like a phone number."""
    if not _ID.fullmatch(request_id):
        raise RequestRefusedError(
            "a request id is 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    check_identifier(request_id, "a request id")
    return request_id


def check_identifier(identifier: str, what: str) -> str:
    """``identifier`` unless it is or holds a phone number as ids are read, or holds a pseudonym."""
    if identifier_holds_number(identifier):
        raise RequestRefusedError(f"{what} must not contain a phone number")
    if _PSEUDONYM.search(identifier):
        raise RequestRefusedError(f"{what} must not contain a pseudonym")
    return identifier


def check_text(text: str, what: str) -> str:
    """``text`` unless it holds something shaped like a phone number or a pseudonym.

    Texts from people are read with the kept-text detector (``0475,12,34,56`` is a number here,
    not a count) as well as the log scrubber (a SIP URI's user part).
    """
    if scrub(text) != text or IN_KEPT_TEXTS.contains(text):
        raise RequestRefusedError(f"{what} must not contain a phone number")
    if _PSEUDONYM.search(text):
        raise RequestRefusedError(f"{what} must not contain a pseudonym")
    return text


def new_request_id() -> str:
    """A fresh UUID that :func:`check_request_id` accepts (a few in a thousand spell a number)."""
    while True:
        candidate = str(uuid.uuid4())
        if not identifier_holds_number(candidate):
            return candidate
