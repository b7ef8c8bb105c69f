"""Lifecycle messages only cdrpipe's own tools can write: requests, ledger entries and receipts.

Contract: :func:`sign_message` adds ``signing_key_id`` and ``mac`` to a JSON
object (its fields keep their order: a receipt still opens with its summary);
the MAC (:class:`~pipeline.keys.macs.MacDomain`) is keyed by the keyring's
active key in a domain of its own (HKDF info ``cdrpipe lifecycle message v1``),
so it tells nothing of the pseudonym keys or of the audit chain's key, and a
message signed before a rotation stays verifiable while its key is in the
keyring. The CLI and the workers hold the keyring; a producer that does not
cannot sign. :func:`verified_message` returns the message's JSON object only
when its MAC holds; otherwise it counts the refusal in
``cdrpipe_lifecycle_messages_refused{message, reason}``, logs it with the
reason and what the caller says of where it came from (never the payload or
any of its values: a forger chooses them), and returns None. It never raises.
:func:`message_digest` names a request's exact bytes: a receipt carries the
digest of the request it answers (``answers``), so the CLI accepts only the
answer to its own request.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any, Literal

from pipeline.keys.keyring import Key, Keyring
from pipeline.keys.macs import MacDomain, MacProblem
from pipeline.observability.metrics import LIFECYCLE_MESSAGES_REFUSED

log = logging.getLogger(__name__)

SIGNING_KEY_FIELD = "signing_key_id"
MESSAGE_MACS = MacDomain(
    salt=b"cdrpipe/lifecycle-messages/v1", info=b"cdrpipe lifecycle message v1", key_field=SIGNING_KEY_FIELD
)
Message = Literal["request", "ledger", "receipt"]
UNAUTHENTICATED = "unauthenticated"
"""The reason of the rejected receipt of a request whose MAC does not hold."""


def sign_message(payload: bytes, key: Key) -> bytes:
    """``payload`` (a JSON object) signed under ``key``: with ``signing_key_id`` and ``mac``."""
    document = json.loads(payload)
    if not isinstance(document, dict):
        raise TypeError("only a JSON object can be signed")
    return json.dumps(MESSAGE_MACS.seal(document, key), ensure_ascii=False).encode()


def verified_message(payload: bytes | None, keyring: Keyring, message: Message, where: str) -> bytes | None:
    """``payload`` as checked if its MAC holds under ``keyring``; else None, counted and logged.

    What is returned is the checked JSON object encoded again, so a reader decodes exactly what
    the MAC covered (whatever a JSON parser makes of a crafted payload, such as a key given twice).
    ``where`` says where the message came from (a topic and offset), in words the caller composed.
    """
    document = _object(payload)
    problem = MacProblem.UNSIGNED if document is None else MESSAGE_MACS.check(document, keyring)
    if problem is None:
        assert document is not None
        return json.dumps(document, ensure_ascii=False).encode()
    refuse(message, problem, where)
    return None


def refuse(message: Message, reason: str, where: str) -> None:
    """Count and log one refused lifecycle message (``reason``: a fixed code, never a value)."""
    LIFECYCLE_MESSAGES_REFUSED.labels(message=message, reason=reason).inc()
    log.warning("refused a %s message (%s): %s; it changes nothing", message, where, reason)


def message_digest(payload: bytes) -> str:
    """The SHA-256 of a message's exact bytes, as the receipt that answers it carries it."""
    return hashlib.sha256(payload).hexdigest()


def _object(payload: bytes | None) -> dict[str, Any] | None:
    try:
        document = json.loads(payload) if payload else None
    except (ValueError, RecursionError):  # RecursionError: crafted deep nesting
        return None
    return document if isinstance(document, dict) else None
