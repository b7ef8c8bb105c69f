"""A data subject as the store knows them: their pseudonyms under every key.

Contract: :func:`subject_from_number` normalises any spelling of a number and
returns its pseudonyms under every key of the keyring (in the number's
domain), so rows written before and after a key rotation are all found.
:func:`subject_from_agent` does the same for a contact-centre agent id (agent
domain). Extensions and agent ids are only unique within their tenant
(pseudonym scheme 2), so they need one; a subscriber number is the same
person at every tenant and takes none. :func:`subject_from_pseudonyms` takes the
``(key id, pseudonym)`` pairs a request carries (the CLI computed them from a
number or an agent id, so the request holds neither). :func:`subject_from_pseudonym` takes
a pseudonym as given: its key is unknown and it can only match rows of the
key it was computed with. None of them keeps the raw number; every refusal
is a :class:`SubjectError` whose message holds no input value.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from pipeline.errors import RequestRefusedError
from pipeline.keys.keyring import Keyring
from pipeline.keys.pseudonym import Domain, Pseudonymizer
from pipeline.lifecycle.ledger import UNKNOWN_KEY, KeyedPseudonym
from pipeline.numbers.msisdn import NumberClassifier, NumberKind, PartyNumber

_PSEUDONYM = re.compile(r"[0-9a-f]{32}")
_DOMAIN_OF_KIND = {NumberKind.E164: Domain.SUBSCRIBER, NumberKind.EXTENSION: Domain.EXTENSION}


class SubjectError(RequestRefusedError):
    """A request whose subject cannot be searched for (the reason names no input value)."""


@dataclass(frozen=True, slots=True)
class Subject:
    """The pseudonyms of one person, each with the key id it was computed with."""

    pairs: tuple[KeyedPseudonym, ...]

    @property
    def pseudonyms(self) -> frozenset[str]:
        """Every pseudonym of the subject."""
        return frozenset(pair.pseudonym for pair in self.pairs)

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The key ids the pseudonyms were computed with (empty for a given pseudonym)."""
        return tuple(sorted({pair.key_id for pair in self.pairs if pair.key_id != UNKNOWN_KEY}))

    def digest(self, key_ids: Iterable[str] | None = None) -> str:
        """A fingerprint of the subject (of its pseudonyms under ``key_ids``, default all).

        128 bits of SHA-256 over the sorted pairs: it tells two subjects apart and a
        re-delivered request from a reused id (under the keys of the first delivery, so
        a rotation in between changes nothing), and it reveals neither pseudonym nor number.
        """
        wanted = None if key_ids is None else set(key_ids)
        pairs = sorted(
            f"{pair.key_id}:{pair.pseudonym}"
            for pair in self.pairs
            if wanted is None or pair.key_id in wanted
        )
        return hashlib.sha256("\n".join(pairs).encode()).hexdigest()[:32]


def _under_every_key(keyring: Keyring, domain: Domain, value: str, tenant: str | None) -> Subject:
    return Subject(
        tuple(
            KeyedPseudonym(key.key_id, Pseudonymizer(key).pseudonym(domain, value, tenant))
            for key in keyring.keys
        )
    )


def subject_from_number(
    number: str, keyring: Keyring, classifier: NumberClassifier, tenant: str | None = None
) -> Subject:
    """The subject of a phone number or extension (at ``tenant``) in any spelling."""
    return subject_from_party(classifier.classify(number), keyring, tenant)


def subject_from_party(party: PartyNumber, keyring: Keyring, tenant: str | None = None) -> Subject:
    """The subject of a classified number; an extension needs its ``tenant``."""
    domain = _DOMAIN_OF_KIND.get(party.kind)
    if domain is None or party.value is None:
        raise SubjectError(f"the subject is not a subscriber number or extension (it is {party.kind.value})")
    if domain is Domain.EXTENSION and not tenant:
        raise SubjectError("an extension is only unique within its tenant, which the request must name")
    return _under_every_key(keyring, domain, party.value, tenant if domain is Domain.EXTENSION else None)


def subject_from_agent(agent_id: str, keyring: Keyring, tenant: str | None = None) -> Subject:
    """The subject of a contact-centre agent id (as the CDRs carry it) at ``tenant``."""
    value = agent_id.strip()
    if not value:
        raise SubjectError("the agent id is empty")
    if not tenant:
        raise SubjectError("an agent id is only unique within its tenant, which the request must name")
    return _under_every_key(keyring, Domain.AGENT, value, tenant)


def subject_from_pseudonyms(pairs: Iterable[tuple[str, str]]) -> Subject:
    """The subject named by ``(key id, pseudonym)`` pairs its sender computed (the CLI, from a number).

    A rotation the sender had not seen leaves keys without a pseudonym: the verification of what
    is done with the subject names the files under those keys.
    """
    checked = []
    for key_id, pseudonym in pairs:
        if not key_id or not key_id.isalnum():
            raise SubjectError("a pseudonym's key id is a non-empty alphanumeric string")
        if not _PSEUDONYM.fullmatch(pseudonym):
            raise SubjectError("a pseudonym is 32 lowercase hexadecimal characters")
        checked.append(KeyedPseudonym(key_id, pseudonym))
    if not checked:
        raise SubjectError("the request names no pseudonym of its subject")
    return Subject(tuple(dict.fromkeys(checked)))


def subject_from_pseudonym(pseudonym: str) -> Subject:
    """The subject given directly as a pseudonym (32 lowercase hex characters)."""
    value = pseudonym.strip().lower()
    if not _PSEUDONYM.fullmatch(value):
        raise SubjectError("a pseudonym is 32 hexadecimal characters")
    return Subject((KeyedPseudonym(UNKNOWN_KEY, value),))
