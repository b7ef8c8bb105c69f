"""A data subject as the store knows them: their pseudonyms under every key (and every tenant they may carry).

Contract: :func:`subject_from_number` normalises any spelling of a number and
returns its pseudonyms under every key of the keyring (in the number's
domain), so rows written before and after a key rotation are all found.
:func:`subject_from_agent` does the same for a contact-centre agent id (agent
domain). Extensions and agent ids are only unique within their tenant
(pseudonym scheme 2), so they need one; given the ``CDRPIPE_TENANTS`` mapping
(``tenants``), they are also computed within every tenant the named one's
rows may carry (:func:`~pipeline.keys.pseudonym.tenants_under`: a source
mapped to a tenant was its own tenant before), and
:attr:`Subject.tenants_searched` lists those tenants. A subscriber number is
the same person at every tenant and takes none. :func:`subject_from_pseudonyms` takes
the ``(key id, pseudonym)`` pairs a request carries (the CLI computed
them from a number or an agent id, so the request holds neither).
:func:`subject_from_pseudonym` takes a pseudonym as given: its key is unknown and it can only match rows of
the key it was computed with. A subject computed from a keyring also holds
the keys (ids and fingerprints) it was computed under, which verifications
compare with the keys of the store's files. :meth:`RequestSubjects.of` is what a worker
makes of a request's subject: it also refuses a number whose digits are two
people's (see :mod:`pipeline.numbers.resolution`) rather than choose one.
None of them keeps the raw number; every refusal is a :class:`SubjectError`
whose message holds no input value.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from pipeline.errors import RequestRefusedError
from pipeline.keys.fingerprint import KeyRef
from pipeline.keys.keyring import Keyring
from pipeline.keys.pseudonym import Domain, Pseudonymizer, tenants_under
from pipeline.lifecycle.ledger import UNKNOWN_KEY, KeyedPseudonym
from pipeline.lifecycle.requests.erasure_request import SubjectKind
from pipeline.numbers.msisdn import NumberClassifier, NumberKind, PartyNumber
from pipeline.numbers.resolution import resolve_with

_PSEUDONYM = re.compile(r"[0-9a-f]{32}")
_DOMAIN_OF_KIND = {NumberKind.E164: Domain.SUBSCRIBER, NumberKind.EXTENSION: Domain.EXTENSION}


class SubjectError(RequestRefusedError):
    """A request whose subject cannot be searched for (the reason names no input value)."""


@dataclass(frozen=True, slots=True)
class Subject:
    """The pseudonyms of one person, each with the key id it was computed with, and those keys."""

    pairs: tuple[KeyedPseudonym, ...]
    tenants_searched: tuple[str, ...] = ()
    """The tenants the pseudonyms were computed within (an extension or agent); empty otherwise."""
    keys: frozenset[KeyRef] = frozenset()
    """The keys of the pairs' key ids, with fingerprints (empty for a given pseudonym)."""
    pair_tenants: tuple[str | None, ...] = ()
    """The tenant each pair was computed within, in the order of ``pairs`` (empty when not known)."""

    @property
    def pseudonyms(self) -> frozenset[str]:
        """Every pseudonym of the subject."""
        return frozenset(pair.pseudonym for pair in self.pairs)

    @property
    def key_fingerprints(self) -> dict[str, str] | None:
        """The fingerprint of each key id, as ledger entries record them (None for a given pseudonym)."""
        return {key.key_id: key.fingerprint for key in self.keys if key.fingerprint is not None} or None

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


def _under_every_key(keyring: Keyring, domain: Domain, value: str, tenants: tuple[str, ...] = ()) -> Subject:
    pseudonymizers = [Pseudonymizer(key) for key in keyring.keys]
    scopes: tuple[str | None, ...] = tenants or (None,)
    pairs = tuple(
        KeyedPseudonym(pseudonymizer.key_id, pseudonymizer.pseudonym(domain, value, tenant))
        for pseudonymizer in pseudonymizers
        for tenant in scopes
    )
    pair_tenants = tuple(tenant for _ in pseudonymizers for tenant in scopes) if tenants else ()
    return Subject(pairs, tenants, frozenset(key.ref for key in keyring.keys), pair_tenants)


def subject_from_number(
    number: str,
    keyring: Keyring,
    classifier: NumberClassifier,
    tenant: str | None = None,
    tenants: Mapping[str, str] | None = None,
) -> Subject:
    """The subject of a phone number or extension (at ``tenant``, read with ``tenants``) in any spelling."""
    return subject_from_party(classifier.classify(number), keyring, tenant, tenants)


def subject_from_party(
    party: PartyNumber,
    keyring: Keyring,
    tenant: str | None = None,
    tenants: Mapping[str, str] | None = None,
    *,
    within: tuple[str, ...] = (),
) -> Subject:
    """The subject of a classified number; an extension needs its ``tenant`` (a source or a tenant).

    An extension is searched within ``within`` when given, else within every tenant ``tenant``'s
    rows may carry under ``tenants``.
    """
    domain = _DOMAIN_OF_KIND.get(party.kind)
    if domain is None or party.value is None:
        raise SubjectError(f"the subject is not a subscriber number or extension (it is {party.kind.value})")
    if domain is Domain.SUBSCRIBER:
        return _under_every_key(keyring, domain, party.value)
    if not tenant:
        raise SubjectError("an extension is only unique within its tenant, which the request must name")
    return _under_every_key(keyring, domain, party.value, within or tenants_under(tenant, tenants or {}))


def subject_from_agent(
    agent_id: str,
    keyring: Keyring,
    tenant: str | None = None,
    tenants: Mapping[str, str] | None = None,
    *,
    within: tuple[str, ...] = (),
) -> Subject:
    """The subject of a contact-centre agent id (as the CDRs carry it) at ``tenant`` (or ``within``)."""
    value = agent_id.strip()
    if not value:
        raise SubjectError("the agent id is empty")
    if not tenant:
        raise SubjectError("an agent id is only unique within its tenant, which the request must name")
    return _under_every_key(keyring, Domain.AGENT, value, within or tenants_under(tenant, tenants or {}))


def subject_from_pseudonyms(
    pairs: Iterable[tuple[str, str]], keyring: Keyring, tenants_searched: tuple[str, ...] = ()
) -> Subject:
    """The subject named by ``(key id, pseudonym)`` pairs its sender computed (the CLI), within
    ``tenants_searched`` for an extension or an agent.

    The subject's keys are those of ``keyring`` (the worker's) that the pairs name. A rotation
    the sender had not seen leaves keys without a pseudonym: the verification of what is done
    with the subject names the files under those keys.
    """
    checked: list[KeyedPseudonym] = []
    for key_id, pseudonym in pairs:
        if not key_id or not key_id.isalnum():
            raise SubjectError("a pseudonym's key id is a non-empty alphanumeric string")
        if not _PSEUDONYM.fullmatch(pseudonym):
            raise SubjectError("a pseudonym is 32 lowercase hexadecimal characters")
        checked.append(KeyedPseudonym(key_id, pseudonym))
    if not checked:
        raise SubjectError("the request names no pseudonym of its subject")
    named = {pair.key_id for pair in checked}
    keys = frozenset(key.ref for key in keyring.keys if key.key_id in named)
    return Subject(tuple(dict.fromkeys(checked)), tenants_searched, keys)


def subject_from_pseudonym(pseudonym: str) -> Subject:
    """The subject given directly as a pseudonym (32 lowercase hex characters)."""
    value = pseudonym.strip().lower()
    if not _PSEUDONYM.fullmatch(value):
        raise SubjectError("a pseudonym is 32 hexadecimal characters")
    return Subject((KeyedPseudonym(UNKNOWN_KEY, value),))


@dataclass(frozen=True, slots=True)
class RequestSubjects:
    """How a worker reads the subject of a request: its keyring (loaded only when needed), region and tenants.

    ``tenants`` is the ``CDRPIPE_TENANTS`` mapping the worker writes rows with.
    """

    keyring: Callable[[], Keyring]
    classifier: NumberClassifier
    tenants: Mapping[str, str]

    def of_pseudonyms(self, pairs: Iterable[tuple[str, str, str | None]], tenant: str | None) -> Subject:
        """The subject a request names by the pseudonyms its sender computed (no number in it).

        An extension's or agent's pseudonyms must cover every tenant ``tenant`` may carry by this
        worker's ``CDRPIPE_TENANTS`` (:func:`~pipeline.keys.pseudonym.tenants_under`): a sender whose
        mapping differs would leave rows unsearched, so its request is refused, naming the tenants;
        pseudonyms of tenants this worker does not read ``tenant`` as are left out.
        """
        triples = list(pairs)
        covered = {name for _, _, name in triples if name}
        expected = tenants_under(tenant, self.tenants) if tenant else ()
        missing = [name for name in expected if name not in covered]
        if missing:
            raise SubjectError(
                f"the request's pseudonyms miss tenants {', '.join(missing)}, which this worker's "
                "CDRPIPE_TENANTS says the rows may carry: send it with the workers' CDRPIPE_TENANTS"
            )
        # Only the pseudonyms of tenants this worker reads the request's tenant as: another tenant's
        # extension 1001 may be somebody else here, however the sender's mapping reads it.
        named = [(key_id, pseudonym) for key_id, pseudonym, within in triples if within in (*expected, None)]
        return subject_from_pseudonyms(named, self.keyring(), expected)

    def of(self, kind: SubjectKind, value: str, tenant: str | None, within: tuple[str, ...] = ()) -> Subject:
        """The subject a request names, as the worker searches for it (an extension or agent
        within ``within`` when given, else within every tenant its rows may carry).

        A number is read in the classifier's region. Digits that read as one person there and
        as another as an international number without its ``+`` are refused: the request must
        say which (``cdrpipe`` sends the E.164 form it resolved), because a wrong choice would
        act on somebody else.
        """
        if kind == "pseudonym":
            return subject_from_pseudonym(value)
        if kind == "agent":
            return subject_from_agent(value, self.keyring(), tenant, self.tenants, within=within)
        resolution = resolve_with(value, self.classifier)
        if resolution.ambiguous:
            raise SubjectError(
                "the number is ambiguous: read nationally it is one subscriber, read as an international "
                "number without its + another; send it in E.164 form (with +)"
            )
        return subject_from_party(resolution.party, self.keyring(), tenant, self.tenants, within=within)

    def as_first_searched(
        self, subject: Subject, kind: SubjectKind, value: str, tenant: str | None, searched: list[str] | None
    ) -> Subject:
        """``subject`` (the request's, :meth:`of`) as the first delivery of the request searched it.

        ``searched`` is the ``tenants_searched`` of that delivery's receipt. A request delivered
        again to a worker whose ``CDRPIPE_TENANTS`` changed in between is the same request: it is
        compared within the tenants the first delivery searched, when it named one of them (a
        request naming another tenant is about somebody else, and stays ``subject``).
        """
        if not searched or tuple(searched) == subject.tenants_searched or tenant not in searched:
            return subject
        return self.of(kind, value, tenant, tuple(searched))
