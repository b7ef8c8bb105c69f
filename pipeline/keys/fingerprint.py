"""Key fingerprints: what binds a key id to the secret behind it, safe to write anywhere.

A key id (``k3``) is a name a person or a rotation chose; two secrets can carry
the same name (a keyring restored from a backup taken before ``k3`` existed,
then rotated). Wherever the store records which key rows were pseudonymised
under (Parquet footers, manifests, receipts), it records the key's
fingerprint beside its id, so that a search under one ``k3`` can tell rows of
another ``k3`` apart instead of silently finding nothing in them.

Contract: :func:`fingerprint` is HMAC-SHA-256 of the fixed label
:data:`FINGERPRINT_LABEL` under the secret, its first :data:`FINGERPRINT_BYTES`
bytes as lowercase hex. It is a deterministic function of the secret alone,
different secrets give different fingerprints (128 bits), and it reveals
nothing of the secret or of any pseudonym (the label is used by nothing else,
and pseudonym and signing keys are HKDF-derived from the secret under other
inputs). A :class:`KeyRef` is a key as data refers to it: its id and, when it
was recorded, its fingerprint; ``None`` stands for rows written before
fingerprints were recorded, whose key is known by id only.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass

FINGERPRINT_LABEL = b"cdrpipe key fingerprint v1"
FINGERPRINT_BYTES = 16
FINGERPRINT_PATTERN = re.compile(r"[0-9a-f]{32}")


def fingerprint(secret: bytes) -> str:
    """The fingerprint of a keyring secret (32 lowercase hex characters)."""
    return hmac.new(secret, FINGERPRINT_LABEL, hashlib.sha256).digest()[:FINGERPRINT_BYTES].hex()


@dataclass(frozen=True, slots=True)
class KeyRef:
    """A key as stored data names it: its id and its fingerprint (None: recorded by id only)."""

    key_id: str
    fingerprint: str | None

    def may_be(self, other: KeyRef) -> bool:
        """Whether ``other`` may be this key: the same id, and the same fingerprint where both record one.

        Keys recorded by id only (before fingerprints were recorded) are told apart by id alone.
        """
        if self.key_id != other.key_id:
            return False
        return self.fingerprint is None or other.fingerprint is None or self.fingerprint == other.fingerprint

    def describe(self) -> str:
        """The key in words, for receipts and messages: ``k3 (fingerprint 1f0c…)``."""
        if self.fingerprint is None:
            return f"{self.key_id} (no fingerprint recorded)"
        return f"{self.key_id} (fingerprint {self.fingerprint})"


def sorted_refs(refs: Iterable[KeyRef]) -> list[KeyRef]:
    """``refs`` in a stable order: by id, a ref without fingerprint before those with one."""
    return sorted(set(refs), key=lambda ref: (ref.key_id, ref.fingerprint or ""))
