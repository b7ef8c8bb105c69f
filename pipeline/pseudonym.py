"""Keyed pseudonyms: HMAC-SHA-256 under purpose-separated subkeys.

Contract: for one key and one :class:`Domain`, :meth:`Pseudonymizer.pseudonym`
is a deterministic function of the normalised value; different domains or
keys give unrelated outputs (each domain uses its own HKDF-derived subkey), so
pseudonyms from two domains cannot be joined. Output: the first 128 bits of
the HMAC as 32 lowercase hex characters. :class:`PartyPseudonymizer` adds number classification and a
bounded cache keyed by the raw party string.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from pipeline.keyring import Key
from pipeline.msisdn import NumberClassifier, NumberKind, dialled_key

PSEUDONYM_BYTES = 16
_HKDF_SALT = b"cdrpipe/pseudonym/v1"


class Domain(enum.StrEnum):
    """Pseudonym domains: values from different domains never share a pseudonym space."""

    SUBSCRIBER = "subscriber"
    EXTENSION = "extension"
    AGENT = "agent"


def derive_subkey(secret: bytes, domain: Domain) -> bytes:
    """The 32-byte HMAC key of ``domain`` derived from a keyring secret (HKDF-SHA-256)."""
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=_HKDF_SALT,
        info=domain.value.encode("ascii"),
    ).derive(secret)


class Pseudonymizer:
    """Computes pseudonyms under one key; keyed HMAC states are built once and copied per value.

    ``cryptography``'s HMAC copy is ~1.7x faster than the stdlib's on OpenSSL 3.
    """

    def __init__(self, key: Key) -> None:
        self.key_id = key.key_id
        self._states = {
            domain: hmac.HMAC(derive_subkey(key.secret, domain), hashes.SHA256()) for domain in Domain
        }

    def pseudonym(self, domain: Domain, value: str) -> str:
        """The pseudonym of ``value`` (an already normalised string) in ``domain``."""
        state = self._states[domain].copy()
        state.update(value.encode("utf-8"))
        return state.finalize()[:PSEUDONYM_BYTES].hex()


@dataclass(frozen=True, slots=True)
class PartyColumns:
    """What the store keeps of one party: never a subscriber number or extension.

    ``shortcode`` holds public service and emergency numbers (``112``) in clear.
    """

    pseudonym: str | None
    number_type: str
    country: str | None
    line_type: str | None
    shortcode: str | None


_DOMAIN_OF_KIND = {NumberKind.E164: Domain.SUBSCRIBER, NumberKind.EXTENSION: Domain.EXTENSION}


class PartyPseudonymizer:
    """Raw party string to :class:`PartyColumns`, with bounded LRU caches.

    ``columns`` is cached per raw string, and behind it per dialled key (one
    entry for the spellings of a number that differ only in separators or URI
    parts); ``agent`` pseudonyms are cached per agent id.
    """

    def __init__(self, classifier: NumberClassifier, pseudonymizer: Pseudonymizer, cache_size: int) -> None:
        self._classifier = classifier
        self._pseudonymizer = pseudonymizer
        self.key_id = pseudonymizer.key_id
        self.columns = functools.lru_cache(maxsize=cache_size)(self._columns)
        self._dialled_columns = functools.lru_cache(maxsize=cache_size)(self._columns_of_dialled)
        self.agent = functools.lru_cache(maxsize=cache_size)(self._agent)

    def _columns(self, raw: str) -> PartyColumns:
        return self._dialled_columns(dialled_key(raw))

    def _columns_of_dialled(self, digits: str) -> PartyColumns:
        number = self._classifier.classify_dialled(digits)
        domain = _DOMAIN_OF_KIND.get(number.kind)
        pseudonym = (
            self._pseudonymizer.pseudonym(domain, number.value)
            if domain is not None and number.value is not None
            else None
        )
        shortcode = number.value if number.kind is NumberKind.SHORTCODE else None
        return PartyColumns(pseudonym, number.kind.value, number.region, number.line_type, shortcode)

    def _agent(self, agent_id: str) -> str:
        """The pseudonym of a contact-centre agent id (agent domain)."""
        return self._pseudonymizer.pseudonym(Domain.AGENT, agent_id.strip())
