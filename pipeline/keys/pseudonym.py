"""Keyed pseudonyms: HMAC-SHA-256 under purpose- and tenant-separated subkeys.

Contract: for one key, one :class:`Domain` and (for the tenant-scoped domains
extension and agent) one tenant, :meth:`Pseudonymizer.pseudonym` is a
deterministic function of the normalised value; different domains, tenants or
keys give unrelated outputs (each uses its own HKDF-derived subkey), so
pseudonyms from two of them cannot be joined. Subscriber (E.164) pseudonyms
do not depend on the tenant: a person is the same person at every customer.
Output: the first 128 bits of the HMAC as 32 lowercase hex characters.
:class:`PartyPseudonymizer` adds number classification and bounded caches.

Scheme versions (``pseudonym_scheme_version`` in the data dictionary): 1 had
one extension and one agent subkey for everybody; 2 derives them per tenant.
Subscriber pseudonyms are the same in both.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from pipeline.keys.fingerprint import KeyRef
from pipeline.keys.keyring import Key
from pipeline.numbers.dialled import dialled_key
from pipeline.numbers.msisdn import NumberClassifier, NumberKind

PSEUDONYM_BYTES = 16
PSEUDONYM_SCHEME_VERSION = 2
_HKDF_SALT = b"cdrpipe/pseudonym/v1"


class Domain(enum.StrEnum):
    """Pseudonym domains: values from different domains never share a pseudonym space."""

    SUBSCRIBER = "subscriber"
    EXTENSION = "extension"
    AGENT = "agent"


TENANT_SCOPED = frozenset({Domain.EXTENSION, Domain.AGENT})


def derive_subkey(secret: bytes, domain: Domain, tenant: str | None = None) -> bytes:
    """The 32-byte HMAC key of ``domain`` (within ``tenant``) derived from a keyring secret (HKDF-SHA-256).

    A tenant-scoped domain needs a tenant; the subscriber domain takes none.
    The HKDF info is the domain name, then a NUL and the tenant (a domain
    name holds no NUL, so no two (domain, tenant) pairs share an info).
    """
    if (domain in TENANT_SCOPED) != (tenant is not None):
        raise ValueError(f"the {domain.value} domain {'needs' if tenant is None else 'takes no'} tenant")
    info = domain.value if tenant is None else f"{domain.value}\x00{tenant}"
    return derive_key(secret, _HKDF_SALT, info.encode("utf-8"))


def derive_key(secret: bytes, salt: bytes, info: bytes) -> bytes:
    """The 32-byte key of one purpose (``salt`` and ``info``) derived from a keyring secret (HKDF-SHA-256).

    Keys of different purposes are unrelated: knowing one tells nothing of the secret or the others.
    """
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(secret)


class Pseudonymizer:
    """Computes pseudonyms under one key; keyed HMAC states are built once and copied per value.

    ``cryptography``'s HMAC copy is ~1.7x faster than the stdlib's on OpenSSL 3.
    """

    def __init__(self, key: Key) -> None:
        self.key_id = key.key_id
        self.key_ref: KeyRef = key.ref
        self._secret = key.secret
        self._states: dict[tuple[Domain, str | None], hmac.HMAC] = {}

    def pseudonym(self, domain: Domain, value: str, tenant: str | None = None) -> str:
        """The pseudonym of ``value`` (an already normalised string) in ``domain`` (within ``tenant``)."""
        scope = (domain, tenant)
        base = self._states.get(scope)
        if base is None:
            subkey = derive_subkey(self._secret, domain, tenant)
            base = self._states[scope] = hmac.HMAC(subkey, hashes.SHA256())
        state = base.copy()
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

    The tenant of a record is its ``source``, or ``tenants[source]`` where the
    mapping names one (several sources of one customer share a tenant).

    Caches: parties are cached per dialled key (one entry for every spelling
    of a number that differs only in separators or URI parts), with the
    service flag only where it can change the class. The key holds no tenant:
    a subscriber number's columns are the same at every tenant, so one entry
    serves all of them. Only a tenant-scoped number (an extension) has its
    pseudonym looked up per (number, tenant), in a second cache. ``agent``
    pseudonyms are cached per (agent id, tenant). There is no cache per raw
    string: computing the dialled key is cheaper than the extra entry
    (``make bench-stages`` measured it), and callers resolve each distinct
    party of a batch once.
    """

    def __init__(
        self,
        classifier: NumberClassifier,
        pseudonymizer: Pseudonymizer,
        cache_size: int,
        tenants: Mapping[str, str] | None = None,
    ) -> None:
        self._classifier = classifier
        self._pseudonymizer = pseudonymizer
        self._tenants = dict(tenants or {})
        self.key_id = pseudonymizer.key_id
        self.key_ref: KeyRef = pseudonymizer.key_ref
        """The key the rows are written under, as their file's footer records it."""
        self._of_dialled = functools.lru_cache(maxsize=cache_size)(self._party_of_dialled)
        self._in_tenant = functools.lru_cache(maxsize=cache_size)(self._columns_in_tenant)
        self.agent = functools.lru_cache(maxsize=cache_size)(self._agent)

    @property
    def tenants(self) -> Mapping[str, str]:
        """The configured source-to-tenant mapping (sources not in it are their own tenant)."""
        return self._tenants

    def tenant_of(self, source: str) -> str:
        """The tenant whose extensions and agents a record of ``source`` names."""
        return tenant_for(source, self._tenants)

    def columns(self, raw: str, tenant: str, service: bool = False) -> PartyColumns:
        """The columns of party ``raw`` at ``tenant``; ``service``: see ``msisdn.can_reach_service``."""
        digits = dialled_key(raw)
        # one entry per number, not two, wherever the service flag cannot change its class
        party = self._of_dialled(digits, service and self._classifier.service_can_matter(digits))
        return party if isinstance(party, PartyColumns) else self._in_tenant(party, tenant)

    def cache_info(self) -> functools._CacheInfo:
        """Hits and misses of the party cache (the one every party goes through)."""
        return self._of_dialled.cache_info()

    def cache_clear(self) -> None:
        """Forget every cached party (benchmarks measure first-seen costs with it)."""
        for cache in (self._of_dialled, self._in_tenant, self.agent):
            cache.cache_clear()

    def _party_of_dialled(self, digits: str, service: bool) -> PartyColumns | _TenantScoped:
        number = self._classifier.classify_dialled(digits, service=service)
        domain = _DOMAIN_OF_KIND.get(number.kind)
        if domain in TENANT_SCOPED and number.value is not None:
            return _TenantScoped(domain, number.value, number.kind.value, number.region, number.line_type)
        shortcode = number.value if number.kind is NumberKind.SHORTCODE else None
        pseudonym = (
            self._pseudonymizer.pseudonym(domain, number.value)
            if domain is not None and number.value is not None
            else None
        )
        return PartyColumns(pseudonym, number.kind.value, number.region, number.line_type, shortcode)

    def _columns_in_tenant(self, party: _TenantScoped, tenant: str) -> PartyColumns:
        pseudonym = self._pseudonymizer.pseudonym(party.domain, party.value, tenant)
        return PartyColumns(pseudonym, party.number_type, party.country, party.line_type, None)

    def _agent(self, agent_id: str, tenant: str) -> str:
        """The pseudonym of a contact-centre agent id (agent domain, within ``tenant``)."""
        return self._pseudonymizer.pseudonym(Domain.AGENT, agent_id.strip(), tenant)


@dataclass(frozen=True, slots=True)
class _TenantScoped:
    """A classified number whose pseudonym depends on the tenant (an extension): all but the pseudonym."""

    domain: Domain
    value: str
    number_type: str
    country: str | None
    line_type: str | None


def tenant_for(name: str, tenants: Mapping[str, str]) -> str:
    """The tenant a source or tenant ``name`` stands for: ``tenants[name]`` for a mapped source."""
    return tenants.get(name, name)


def tenants_under(name: str, tenants: Mapping[str, str]) -> tuple[str, ...]:
    """Every tenant whose pseudonyms the extensions and agents of ``name`` (a source or tenant) may carry.

    First the tenant ``name`` stands for now (:func:`tenant_for`), then, sorted, ``name`` itself
    and every source mapped to that tenant: a source was its own tenant until ``tenants`` mapped
    it, and its rows written before keep pseudonyms derived within the source's name. The
    mapping declares the sources one customer's extensions, so their earlier rows are the
    same people's. A mapping that was changed or removed leaves no trace here: rows written
    under a tenant nobody maps to any more are named by that tenant's own name.
    """
    current = tenant_for(name, tenants)
    earlier = {name, *(source for source, tenant in tenants.items() if tenant == current)} - {current}
    return (current, *sorted(earlier))
