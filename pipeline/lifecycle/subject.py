"""A data subject as the store knows them: their pseudonyms under every key.

Contract: :func:`subject_from_number` normalises any spelling of a number and
returns its pseudonyms under every key of the keyring (in the number's
domain), so rows written before and after a key rotation are all found. An
extension is only unique within its tenant (pseudonym scheme 2), so it needs
one; a subscriber number is the same person at every tenant and takes none.
:func:`subject_from_pseudonym` takes a pseudonym as given (it can only match
rows of the key it was computed with). Neither keeps the raw number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.errors import ConfigError
from pipeline.keyring import Keyring
from pipeline.msisdn import NumberClassifier, NumberKind, PartyNumber
from pipeline.pseudonym import Domain, Pseudonymizer

_PSEUDONYM = re.compile(r"[0-9a-f]{32}")
_DOMAIN_OF_KIND = {NumberKind.E164: Domain.SUBSCRIBER, NumberKind.EXTENSION: Domain.EXTENSION}


@dataclass(frozen=True, slots=True)
class Subject:
    """The pseudonyms of one person, and the key ids they were computed with."""

    pseudonyms: frozenset[str]
    key_ids: tuple[str, ...]


def subject_from_number(
    number: str, keyring: Keyring, classifier: NumberClassifier, tenant: str | None = None
) -> Subject:
    """The subject of a phone number or extension (at ``tenant``) in any spelling."""
    return subject_from_party(classifier.classify(number), keyring, tenant)


def subject_from_party(party: PartyNumber, keyring: Keyring, tenant: str | None = None) -> Subject:
    """The subject of a classified number; an extension needs its ``tenant``."""
    domain = _DOMAIN_OF_KIND.get(party.kind)
    if domain is None or party.value is None:
        raise ConfigError(f"the subject is not a subscriber number or extension (it is {party.kind.value})")
    if domain is Domain.EXTENSION and not tenant:
        raise ConfigError("an extension is only unique within its tenant: give the tenant (--tenant)")
    scope = tenant if domain is Domain.EXTENSION else None
    pseudonyms = frozenset(Pseudonymizer(key).pseudonym(domain, party.value, scope) for key in keyring.keys)
    return Subject(pseudonyms, tuple(key.key_id for key in keyring.keys))


def subject_from_pseudonym(pseudonym: str) -> Subject:
    """The subject given directly as a pseudonym (32 lowercase hex characters)."""
    value = pseudonym.strip().lower()
    if not _PSEUDONYM.fullmatch(value):
        raise ConfigError("a pseudonym is 32 hexadecimal characters")
    return Subject(frozenset({value}), ())
