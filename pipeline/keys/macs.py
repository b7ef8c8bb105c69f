"""MACs of JSON documents under keys derived from the keyring, one domain per purpose.

Contract: a :class:`MacDomain` seals a JSON object with the id of the keyring
key it used (in the domain's ``key_field``) and ``mac``: HMAC-SHA-256, as 64
lowercase hex characters, of :func:`canonical` (the object without ``mac``, as
sorted-key JSON) under a key derived from that keyring key's secret with
HKDF-SHA-256 and the domain's own salt and info, so no two domains (and no
pseudonym key) tell anything of each other. :meth:`MacDomain.check` verifies a
document under whichever key of the keyring its key id names, so documents
sealed before a rotation stay verifiable while their key is in the keyring; it
compares in constant time and never raises, whatever the document holds.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from pipeline.keys.keyring import Key, Keyring
from pipeline.keys.pseudonym import derive_key

MAC_FIELD = "mac"


class MacProblem(enum.StrEnum):
    """Why a document's MAC does not hold (metric labels: never a value of the document)."""

    UNSIGNED = "unsigned"
    """No MAC, or no key id."""
    UNKNOWN_KEY = "unknown-key"
    """Sealed under a key id the keyring does not hold."""
    MISMATCH = "mismatch"
    """The MAC does not match the document: it was forged or changed."""


def canonical(document: dict[str, Any]) -> bytes:
    """The bytes a MAC covers: ``document`` without its ``mac``, as sorted-key JSON."""
    return json.dumps({k: v for k, v in document.items() if k != MAC_FIELD}, sort_keys=True).encode()


@dataclass(frozen=True, slots=True)
class MacDomain:
    """The MACs of one purpose: its HKDF salt and info, and the field that names the key id."""

    salt: bytes
    info: bytes
    key_field: str

    def derive(self, key: Key) -> bytes:
        """The MAC key of this domain under keyring key ``key``."""
        return _derived(key.secret, self.salt, self.info)

    def mac(self, document: dict[str, Any], key: Key) -> str:
        """The MAC of ``document`` (its ``mac`` field aside) under ``key``."""
        return hmac.new(self.derive(key), canonical(document), hashlib.sha256).hexdigest()

    def seal(self, document: dict[str, Any], key: Key) -> dict[str, Any]:
        """``document`` (JSON types only) with the key id and the MAC that seals it under ``key``."""
        sealed = {k: v for k, v in document.items() if k != MAC_FIELD}
        sealed[self.key_field] = key.key_id
        sealed[MAC_FIELD] = self.mac(sealed, key)
        return sealed

    def check(self, document: dict[str, Any], keyring: Keyring) -> MacProblem | None:
        """Why ``document``'s MAC does not hold under ``keyring``, or None when it holds."""
        mac, key_id = document.get(MAC_FIELD), document.get(self.key_field)
        if not isinstance(mac, str) or not isinstance(key_id, str):
            return MacProblem.UNSIGNED
        key = next((key for key in keyring.keys if key.key_id == key_id), None)
        if key is None:
            return MacProblem.UNKNOWN_KEY
        try:
            expected = self.mac(document, key)
        except (TypeError, ValueError, RecursionError):  # a document that is not plain JSON
            return MacProblem.MISMATCH
        # as bytes: compare_digest raises on a str with non-ASCII characters, and a crafted
        # document must be refused, never crash its reader
        matches = hmac.compare_digest(expected.encode(), mac.encode("utf-8", "replace"))
        return None if matches else MacProblem.MISMATCH


@functools.lru_cache(maxsize=64)
def _derived(secret: bytes, salt: bytes, info: bytes) -> bytes:
    # cached: a worker verifies every ledger entry at start, under a handful of keys
    return derive_key(secret, salt, info)
