"""The policy of every kept text field of a CDR, enforced once for every input format.

Contract: :func:`enforce_text_policies` returns the record unchanged, or with
the phone numbers in its free-text ``queue`` replaced by ``[number]``, or
raises :class:`~pipeline.record.RecordRejectedError` with reason
``pii_in_text`` and a message that names the field, never its value. Numbers
are what :data:`pipeline.numbers.text.IN_KEPT_TEXTS` finds (the log scrubber's
detector with the separators people also write, such as ``,`` and ``:``; tested to be at
least as wide as the classifier). The policies are listed per column in
``schemas/data-dictionary.json`` (``text_policy``), kept in step with :data:`POLICIES` by a test.

Fields: ``direction`` and ``disposition`` are enumerations the decoders
already enforce; caller, callee, connected and agent are pseudonymised and
never kept as text; ``cdr_id``, ``source``, ``queue``, ``hangup_cause`` and
``currency`` are checked here. :func:`system_name_problem` applies the
``source`` rule to the tenant a request names.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Literal

import msgspec

from pipeline.numbers.identifiers import identifier_holds_number
from pipeline.numbers.msisdn import NumberClassifier
from pipeline.numbers.text import IN_KEPT_TEXTS
from pipeline.record import CanonicalCdr, RecordRejectedError, RejectReason

OnNumber = Literal["reject", "replace", "reject-whole"]
CHECKED_VALUES_REMEMBERED = 1 << 16


@dataclass(frozen=True, slots=True)
class TextPolicy:
    """The rule of one text field: its shape, and what a phone number in it does.

    ``on_number``: ``reject`` sends the record to the DLQ when the detector
    finds a number anywhere in the value; ``replace`` replaces each number by
    ``[number]``; ``reject-whole`` (opaque ids, whose digit runs are routinely
    longer than a phone number: epoch-based Asterisk ids, carrier call
    references) applies the one rule of ids,
    :func:`~pipeline.numbers.identifiers.identifier_holds_number`, which request
    ids and a rectification's ``cdr_id`` are checked with too: a call stored
    can always be named in a request.
    """

    name: str
    shape: re.Pattern[str]
    on_number: OnNumber
    describes: str


POLICIES: dict[str, TextPolicy] = {
    "cdr_id": TextPolicy(
        "identifier",
        re.compile(r"[A-Za-z0-9._:#@/-]{1,128}"),
        "reject-whole",
        "1-128 characters of A-Z a-z 0-9 . _ : # @ / -; never a phone number as ids are read",
    ),
    "source": TextPolicy(
        "system-name",
        re.compile(r"[A-Za-z0-9._-]{1,64}"),
        "reject",
        "1-64 characters of A-Z a-z 0-9 . _ -, with no phone number in it",
    ),
    "queue": TextPolicy(
        "free-text",
        re.compile(r"[^\x00-\x1f\x7f]{1,128}"),
        "replace",
        "free text of 1-128 printable characters; every phone number in it is replaced by [number]",
    ),
    "hangup_cause": TextPolicy(
        "cause-name",
        re.compile(r"[A-Za-z0-9][A-Za-z0-9_. -]{0,63}"),
        "reject",
        "a cause name or code: 1-64 of A-Z a-z 0-9 _ . - and space, with no phone number in it",
    ),
    "currency": TextPolicy(
        "iso-4217",
        re.compile(r"[A-Z]{3}"),
        "reject",
        "an ISO 4217 code: three capital letters",
    ),
}


def enforce_text_policies(cdr: CanonicalCdr, classifier: NumberClassifier) -> CanonicalCdr:
    """``cdr`` with every text field within its policy, or a ``pii_in_text`` rejection."""
    replacements: dict[str, str] = {}
    for field, policy in POLICIES.items():
        value: str | None = getattr(cdr, field)
        if value is None:
            continue
        if policy.on_number == "reject-whole":  # ids are unique: nothing to remember
            problem = _shape_problem(field, value) or (
                f"{field} holds a phone number" if identifier_holds_number(value, classifier) else None
            )
            kept = value
        else:
            problem, kept = _checked(field, value)
        if problem is not None:
            raise RecordRejectedError(RejectReason.PII_IN_TEXT, problem)
        if kept != value:
            replacements[field] = kept
    return msgspec.structs.replace(cdr, **replacements) if replacements else cdr


@functools.lru_cache(maxsize=CHECKED_VALUES_REMEMBERED)
def _checked(field: str, value: str) -> tuple[str | None, str]:
    """The problem of a name or free-text ``value`` (None if it is fine) and the value to keep.

    Names, queues, causes and currencies repeat in almost every record, so
    each verdict is remembered (it depends on nothing but the field and value).
    """
    problem = _shape_problem(field, value)
    if problem is not None or not IN_KEPT_TEXTS.contains(value):
        return problem, value
    if POLICIES[field].on_number == "replace":
        return None, IN_KEPT_TEXTS.redact(value)
    return f"{field} holds a phone number", value


def system_name_problem(value: str, what: str) -> str | None:
    """Why ``value`` cannot name a system as a record's ``source`` does (None if it can), said of ``what``.

    A request's tenant is such a name (a source, or the tenant ``CDRPIPE_TENANTS`` maps sources to),
    so it is checked by the rule the stored sources passed, and may then be quoted in a receipt.
    """
    problem, _ = _checked("source", value)
    return None if problem is None else what + problem.removeprefix("source")


def _shape_problem(field: str, value: str) -> str | None:
    policy = POLICIES[field]
    return None if policy.shape.fullmatch(value) else f"{field} breaks its rule: {policy.describes}"
