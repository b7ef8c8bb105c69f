"""Request ids, checked once at the door, and the free texts people write: never a number or a pseudonym.

Contract: :func:`check_request_id` returns a request id that may name files,
receipts and ledger entries (1-128 letters, digits, ``.``, ``_``, ``-``,
``#`` or ``@``, starting with a letter or digit, holding no phone number by
the one rule of ids, :func:`~pipeline.numbers.identifiers.identifier_holds_number`,
and no pseudonym), or raises :class:`~pipeline.errors.RequestRefusedError`
saying what is wrong, never echoing it. :func:`check_call_id` applies the same
rule to a rectification's ``cdr_id`` as ingest applied to the stored one.
:func:`check_text` refuses a text written by a person (an extension reason,
an outcome typed by the DPO) that holds anything shaped like a number or a
pseudonym; texts cdrpipe composes from checked ids and counts are not run
through it. :func:`path_name` is the file name of a request id (``#`` and
``@`` percent-encoded), :func:`request_id_of` its inverse.
:func:`new_request_id` returns a fresh id :func:`check_request_id` accepts.
"""

from __future__ import annotations

import re
import uuid
from urllib.parse import quote, unquote

from pipeline.errors import RequestRefusedError
from pipeline.numbers.identifiers import identifier_holds_number
from pipeline.numbers.msisdn import NumberClassifier
from pipeline.numbers.text import IN_KEPT_TEXTS
from pipeline.observability.log_scrub import scrub

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._#@-]{0,127}")
_PSEUDONYM = re.compile(r"(?i)(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")


def check_request_id(request_id: str, classifier: NumberClassifier) -> str:
    """``request_id`` if it can name files and holds neither a phone number nor a pseudonym."""
    if not _ID.fullmatch(request_id):
        raise RequestRefusedError(
            "a request id is 1-128 letters, digits, '.', '_', '-', '#' or '@', "
            "starting with a letter or digit"
        )
    if identifier_holds_number(request_id, classifier):
        raise RequestRefusedError("a request id must not contain a phone number")
    if _PSEUDONYM.search(request_id):
        raise RequestRefusedError("a request id must not contain a pseudonym")
    return request_id


def check_call_id(cdr_id: str, classifier: NumberClassifier) -> str:
    """``cdr_id`` unless the rule ingest stored it under refuses it (it then names no stored call)."""
    if identifier_holds_number(cdr_id, classifier):
        raise RequestRefusedError("cdr_id must not contain a phone number")
    return cdr_id


def check_text(text: str, what: str) -> str:
    """``text`` (written by a person) unless it holds something shaped like a phone number or a pseudonym.

    Texts from people are read with the kept-text detector (``0475,12,34,56`` is a number here,
    not a count) as well as the log scrubber (a SIP URI's user part).
    """
    if scrub(text) != text or IN_KEPT_TEXTS.contains(text):
        raise RequestRefusedError(f"{what} must not contain a phone number")
    if _PSEUDONYM.search(text):
        raise RequestRefusedError(f"{what} must not contain a pseudonym")
    return text


def path_name(request_id: str) -> str:
    """The file or directory name of ``request_id``: one name per id, and no two ids share one."""
    return quote(request_id, safe="-_.~")


def request_id_of(name: str) -> str:
    """The request id whose :func:`path_name` is ``name``."""
    return unquote(name)


def new_request_id() -> str:
    """A fresh UUID, which :func:`check_request_id` always accepts (a UUID is never read as a number)."""
    return str(uuid.uuid4())
