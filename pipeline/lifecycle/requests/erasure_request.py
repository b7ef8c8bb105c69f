"""Messages of the erasure request topic, and why an invalid one is rejected.

Contract: :func:`decode_request` returns an :class:`ErasureRequest` that
matches ``schemas/erasure-request.schema.json`` (a ``requested_at`` without a
UTC offset does not, nor a tenant that could not be a record's source), or
an :class:`InvalidRequest` with the request id (a new
``unidentified-<uuid>`` when the message has no usable one) and a reason that
names where the message breaks the schema but never quotes its values: any
producer may put a phone number in any field. It never raises.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from pipeline.errors import RequestRefusedError
from pipeline.formats.text_policy import system_name_problem
from pipeline.lifecycle.requests.ids import check_request_id
from pipeline.numbers.msisdn import NumberClassifier

SubjectKind = Literal["number", "pseudonym", "agent", "pseudonyms"]
"""How a request names its subject: a number or extension, a contact-centre agent id, a pseudonym,
or (what the CLI sends) the pseudonyms it computed from one of them."""
MAX_SUBJECT_PSEUDONYMS = 4096
"""The most pseudonyms one request names (every key of a keyring at every tenant of a subject)."""
_SCHEMA_PATH = re.compile(r" - at (`\$[^`]*`)")
_MISSING_FIELD = re.compile(r"missing required field (`\w+`)")

Mode = Literal["delete", "redact"]
"""How an erasure treats the subject's rows: ``delete`` drops them, ``redact`` keeps the call without
the subject's side."""


class SubjectPseudonym(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """One of the pseudonyms a request names its subject by, computed by the sender under keyring key
    ``key_id`` (an extension's or agent's within ``tenant``), so the request carries no number."""

    key_id: str
    pseudonym: str
    tenant: str | None = None


SubjectPseudonyms = Annotated[list[SubjectPseudonym], msgspec.Meta(max_length=MAX_SUBJECT_PSEUDONYMS)]


class ErasureRequest(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """A message of the erasure request topic (``schemas/erasure-request.schema.json``).

    ``subject_kind`` ``pseudonyms`` names the subject by ``pseudonyms`` (what ``cdrpipe erase``
    sends: no number on the topic); the other kinds by ``subject``.
    """

    request_id: Annotated[str, msgspec.Meta(min_length=1)]
    subject: str | None = None
    subject_kind: SubjectKind = "number"
    pseudonyms: SubjectPseudonyms | None = None
    tenant: str | None = None
    requested_at: Annotated[datetime, msgspec.Meta(tz=True)]
    mode: Mode = "delete"


class _RequestId(msgspec.Struct):
    request_id: Annotated[str, msgspec.Meta(min_length=1)]


@dataclass(frozen=True, slots=True)
class InvalidRequest:
    """A message that is not a valid request: its id and why, without its values."""

    request_id: str
    reason: str


_REQUEST = msgspec.json.Decoder(ErasureRequest)
_REQUEST_ID = msgspec.json.Decoder(_RequestId)


def decode_request(payload: bytes, classifier: NumberClassifier) -> ErasureRequest | InvalidRequest:
    """The request in ``payload``, or why it is not one (its id checked with ``classifier``)."""
    try:
        request = _REQUEST.decode(payload)
    except msgspec.DecodeError as error:
        return InvalidRequest(_request_id_of(payload, classifier), schema_problem(error))
    try:
        check_request_id(request.request_id, classifier)
    except RequestRefusedError as error:
        # The id names the receipt, the audit entry and the ledger key: one that is or holds a
        # phone number (or cannot be a file name) is refused under an id of its own.
        return InvalidRequest(f"unidentified-{uuid.uuid4()}", f"the request id is not usable: {error}")
    problem = tenant_problem(request.tenant) or naming_problem(
        request.subject_kind, request.subject, request.pseudonyms
    )
    if problem is not None:
        return InvalidRequest(request.request_id, problem)
    return request


def tenant_problem(tenant: str | None) -> str | None:
    """Why a request's tenant is not usable (None if it is absent or usable); it never quotes the tenant.

    The receipt lists the tenants searched, so a tenant must pass the rule of a stored source.
    """
    return None if tenant is None else system_name_problem(tenant, "the tenant")


def naming_problem(
    kind: SubjectKind, subject: str | None, pseudonyms: list[SubjectPseudonym] | None
) -> str | None:
    """Why a request does not name its subject one way (by ``subject``, or by ``pseudonyms`` with
    ``subject_kind`` ``pseudonyms``), or None; the pseudonyms' tenants pass :func:`tenant_problem`."""
    by_pseudonyms = kind == "pseudonyms"
    if by_pseudonyms != (pseudonyms is not None) or (by_pseudonyms and subject is not None):
        return "a request names its subject by pseudonyms (subject_kind pseudonyms) or by subject, not both"
    return next(filter(None, (tenant_problem(pair.tenant) for pair in pseudonyms or ())), None)


def schema_problem(error: msgspec.DecodeError, schema: str = "schemas/erasure-request.schema.json") -> str:
    """Where a request breaks ``schema``; msgspec's own message may quote the value, so it is not used."""
    message = str(error)
    where, missing = _SCHEMA_PATH.search(message), _MISSING_FIELD.search(message)
    detail = (
        f"at {where.group(1)}"
        if where
        else f"missing field {missing.group(1)}"
        if missing
        else "not a JSON object of that form"
    )
    return f"the request does not match {schema} ({detail})"


def _request_id_of(payload: bytes, classifier: NumberClassifier) -> str:
    """The request id of an invalid request if it has a usable one, else a new unique id."""
    return claimed_request_id(payload, None, classifier) or f"unidentified-{uuid.uuid4()}"


def claimed_request_id(payload: bytes | None, key: bytes | None, classifier: NumberClassifier) -> str | None:
    """The request id a message claims (its ``request_id``, else its Kafka key) if it is usable, or None.

    Nothing is proved by it: it names the receipt of a message that is rejected unread.
    """
    try:
        return check_request_id(_REQUEST_ID.decode(payload or b"").request_id, classifier)
    except (msgspec.DecodeError, RequestRefusedError):
        pass
    try:
        return check_request_id(key.decode("utf-8", "replace"), classifier) if key else None
    except RequestRefusedError:
        return None
