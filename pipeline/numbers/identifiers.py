"""The one rule for ids that may be stored or quoted: call ids at ingest, request ids at the door.

Contract: :func:`identifier_holds_number` says whether an id is or holds a phone
number, as ids are read. Every id is checked with it once, where it enters
cdrpipe (a CDR's ``cdr_id`` by the text policies, a request id and a
rectification's ``cdr_id`` when the request is decoded); texts that cdrpipe
composes from checked ids and counts afterwards (outcomes, receipt paths,
"no row of call ...") are never checked again, so an id accepted once is
never refused later.

Narrower than :func:`~pipeline.numbers.text.contains_number`, because ids
routinely hold long digit groups that are not numbers (``DPO-2026-0042``,
Asterisk's ``1732530102.42#3``, carrier references ``20261125000123``). A UUID
(FreeSWITCH's call ids, the request ids cdrpipe makes) is random hex, never a
number, whatever digits its groups happen to hold. Any other id holds a number
when, as a whole (or as the user part of a ``sip:``/``tel:``
URI), it is digits the classifier reads as E.164, or when a run starting with
``+``, ``%2B`` or a trunk or international ``0`` spells 7 or more significant
digits inside it (``0NNN NN NN NN``, ``cb-0NNNNNNNNN``; a zero-padded counter
such as ``0000042`` is not a number). A ``0`` run inside letters or hex
(``CA086821166861d7f6``, a carrier's hex reference) is part of that word, not a
number. An id with a foreign number without its ``+`` inside other characters
(``cb-32NNNNNNNNN``), or a number glued to letters, is not recognised: that is
the limit of reading ids.
"""

from __future__ import annotations

import re

from pipeline.numbers.msisdn import NumberClassifier, NumberKind
from pipeline.numbers.text import MIN_SIGNIFICANT_DIGITS, SEPARATOR

_WHOLE_NUMBER = re.compile(r"(?i)(?:sips?:|tel:)?(\+?[0-9]{7,})(?:@.*)?")
_PREFIXED_RUN = re.compile(rf"(?:\+|\uff0b|%2[bB]|(?<![A-Za-z\d])0)\d(?:(?:{SEPARATOR})?\d){{5,}}")
_NON_DIGIT = re.compile(r"\D")
_UUID = re.compile(r"[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}")


def identifier_holds_number(identifier: str, classifier: NumberClassifier) -> bool:
    """Whether ``identifier`` is or holds a phone number, as ids are read (see the module contract)."""
    if _UUID.fullmatch(identifier):
        return False
    whole = _WHOLE_NUMBER.fullmatch(identifier)
    # Separators are not removed from a whole id: 1732530102.1 (an Asterisk uniqueid) would
    # otherwise read as the North American number +1 732 530 1021.
    if whole is not None and classifier.classify(whole.group(1)).kind is NumberKind.E164:
        return True
    return any(_is_number(run, identifier) for run in _PREFIXED_RUN.finditer(identifier))


def _is_number(run: re.Match[str], identifier: str) -> bool:
    if run.group().startswith(("+", "\uff0b", "%2")):
        return True  # an explicit plus: the digits after it are the number
    if identifier[run.end() : run.end() + 1].isalpha():
        return False  # a 0 run glued to letters: part of a word or a hex string
    return len(_NON_DIGIT.sub("", run.group()).lstrip("0")) >= MIN_SIGNIFICANT_DIGITS
