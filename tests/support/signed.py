"""Lifecycle messages signed as cdrpipe's own tools sign them, for tests that play the CLI or a worker."""

from __future__ import annotations

import json
from typing import Any

import msgspec

from pipeline.cli.naming import NamedSubject
from pipeline.keys.keyring import Keyring
from pipeline.lifecycle.requests.erasure_request import SubjectPseudonym
from pipeline.lifecycle.requests.signing import sign_message
from pipeline.lifecycle.subject import Subject


def signed(message: bytes | dict[str, Any] | msgspec.Struct, keyring: Keyring) -> bytes:
    """``message`` (JSON bytes, a JSON object or a request struct) signed under ``keyring``'s active key."""
    if isinstance(message, msgspec.Struct):
        payload = msgspec.json.encode(message)
    elif isinstance(message, dict):
        payload = json.dumps(message).encode()
    else:
        payload = message
    return sign_message(payload, keyring.active)


def pseudonyms_of(subject: Subject) -> list[SubjectPseudonym]:
    """What the CLI sends of ``subject`` (a number's, resolved): its pseudonyms under every key."""
    carried = NamedSubject("number", "(resolved)", None, subject).carried()
    pseudonyms: list[SubjectPseudonym] = carried["pseudonyms"]
    return pseudonyms
