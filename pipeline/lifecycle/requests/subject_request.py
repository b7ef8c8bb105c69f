"""Messages of the subject request topic (``schemas/subject-request.schema.json``) and their checks.

Contract: :func:`parse_request` turns one message into either a
:class:`SubjectRequest` whose fields fit its kind, or a :class:`Rejection`
that says why in words that never quote the message's values (any field may
hold a phone number). The rejection carries the request id only when the id itself is
usable (see :func:`~pipeline.lifecycle.requests.ids.check_request_id`); ids are checked here,
once, with the classifier of the worker or command that reads the message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

import msgspec

from pipeline.errors import RequestRefusedError
from pipeline.lifecycle.requests.erasure_request import (
    SubjectKind,
    SubjectPseudonyms,
    naming_problem,
    schema_problem,
    tenant_problem,
)
from pipeline.lifecycle.requests.ids import check_call_id, check_request_id
from pipeline.numbers.msisdn import NumberClassifier

RequestKind = Literal["restriction", "lift", "objection", "withdrawal", "rectification"]
SCHEMA = "schemas/subject-request.schema.json"


class SubjectRequest(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """A restriction, lift, objection, withdrawal or rectification request."""

    request_id: str
    kind: RequestKind
    requested_at: datetime
    subject: str | None = None
    subject_kind: SubjectKind = "number"
    pseudonyms: SubjectPseudonyms | None = None
    """``subject_kind`` ``pseudonyms``: the subject's pseudonyms (what the CLI sends: no number)."""
    tenant: str | None = None
    existing: Literal["quarantine", "erase"] | None = None
    cdr_id: str | None = None
    party: Literal["caller", "callee"] | None = None
    call_date: date | None = None
    source: str | None = None


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message is not a usable request (its receipt says so)."""

    request_id: str | None
    kind: RequestKind | None
    reason: str


_NEEDS_SUBJECT = ("restriction", "lift", "objection", "withdrawal")


def _usable_id(value: object, classifier: NumberClassifier) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return check_request_id(value, classifier)
    except RequestRefusedError:
        return None


def parse_request(
    key: bytes | None, payload: bytes | None, classifier: NumberClassifier
) -> SubjectRequest | Rejection:
    """The request in ``payload``, or the reason it is rejected."""
    fallback_id = _usable_id(key.decode("utf-8", "replace"), classifier) if key else None
    try:
        request = msgspec.json.decode(payload or b"", type=SubjectRequest)
    except msgspec.DecodeError as exc:
        try:
            loose = json.loads(payload or b"")
        except ValueError:
            loose = None
        found = loose if isinstance(loose, dict) else {}
        request_id = _usable_id(found.get("request_id"), classifier) or fallback_id
        kind = found.get("kind") if found.get("kind") in (*_NEEDS_SUBJECT, "rectification") else None
        return Rejection(request_id, kind, schema_problem(exc, SCHEMA))
    problem = _problem(request, classifier)
    if problem is not None:
        return Rejection(_usable_id(request.request_id, classifier) or fallback_id, request.kind, problem)
    return request


def _problem(request: SubjectRequest, classifier: NumberClassifier) -> str | None:
    try:
        check_request_id(request.request_id, classifier)
    except RequestRefusedError as exc:
        return str(exc)
    if request.requested_at.tzinfo is None:
        return "requested_at needs a UTC offset"
    if request.kind in _NEEDS_SUBJECT and not (request.subject or request.pseudonyms):
        return f"a {request.kind} request names its subject"
    problem = tenant_problem(request.tenant) or naming_problem(
        request.subject_kind, request.subject, request.pseudonyms
    )
    if problem is not None:
        return problem
    if request.kind == "objection" and request.existing is None:
        return "an objection says what happens to existing rows: existing is quarantine or erase"
    if request.kind == "rectification":
        if not request.cdr_id or request.party is None:
            return "a rectification names the call (cdr_id) and the party (caller or callee)"
        try:
            check_call_id(request.cdr_id, classifier)
        except RequestRefusedError as exc:
            return str(exc)
    return None
