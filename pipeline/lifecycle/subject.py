"""A data subject as the store knows them: their pseudonyms under every key.

Contract: :func:`subject_from_number` normalises any spelling of a number and
returns its pseudonyms under every key of the keyring (in the number's
domain), so rows written before and after a key rotation are all found.
:func:`subject_from_pseudonym` takes a pseudonym as given (it can only match
rows of the key it was computed with). Neither keeps the raw number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.errors import ConfigError
from pipeline.keyring import Keyring
from pipeline.msisdn import NumberClassifier, NumberKind
from pipeline.pseudonym import Domain, Pseudonymizer

_PSEUDONYM = re.compile(r"[0-9a-f]{32}")
_DOMAIN_OF_KIND = {NumberKind.E164: Domain.SUBSCRIBER, NumberKind.EXTENSION: Domain.EXTENSION}


@dataclass(frozen=True, slots=True)
class Subject:
    """The pseudonyms of one person, and the key ids they were computed with."""

    pseudonyms: frozenset[str]
    key_ids: tuple[str, ...]


def subject_from_number(number: str, keyring: Keyring, classifier: NumberClassifier) -> Subject:
    """The subject of a phone number or extension in any spelling."""
    classified = classifier.classify(number)
    domain = _DOMAIN_OF_KIND.get(classified.kind)
    if domain is None or classified.value is None:
        raise ConfigError(
            f"the subject is not a subscriber number or extension (it is {classified.kind.value})"
        )
    pseudonyms = frozenset(Pseudonymizer(key).pseudonym(domain, classified.value) for key in keyring.keys)
    return Subject(pseudonyms, tuple(key.key_id for key in keyring.keys))


def subject_from_pseudonym(pseudonym: str) -> Subject:
    """The subject given directly as a pseudonym (32 lowercase hex characters)."""
    value = pseudonym.strip().lower()
    if not _PSEUDONYM.fullmatch(value):
        raise ConfigError("a pseudonym is 32 hexadecimal characters")
    return Subject(frozenset({value}), ())
