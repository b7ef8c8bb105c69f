"""A party's other pseudonyms, so the ledger matches across key rotations and tenant mappings.

Contract: :meth:`KeyTranslator.note` adds to a batch's translation map, for
each party and agent of a record, its pseudonym under the active key mapped to
its pseudonyms under every other key of the keyring (see the design in
:mod:`pipeline.lifecycle.ledger`), and, when ``CDRPIPE_TENANTS`` maps sources
to the record's tenant, to its pseudonyms within each of those sources under
every key (:func:`~pipeline.keys.pseudonym.tenants_under`): a request handled
before the mapping holds the subject within the source's own name. It keeps no
raw value: the map holds pseudonyms only. With a single key and no mapping it
does nothing and costs nothing.
Each other key has its own bounded caches (per dialled number and per agent id),
like the active key's :class:`~pipeline.keys.pseudonym.PartyPseudonymizer`.
"""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.keys.keyring import Keyring
from pipeline.keys.pseudonym import PartyPseudonymizer, Pseudonymizer, tenants_under
from pipeline.numbers.msisdn import NumberClassifier, can_reach_service
from pipeline.record import CanonicalCdr


class KeyTranslator:
    """Pseudonyms of the active key to those of the keyring's other keys."""

    def __init__(self, active: PartyPseudonymizer, others: tuple[PartyPseudonymizer, ...]) -> None:
        self._active = active
        self._others = others
        self._every_key = (active, *others)
        # the tenants a mapped tenant's sources were before the mapping, per tenant named
        tenants = active.tenants
        self._earlier = {tenant: tenants_under(tenant, tenants)[1:] for tenant in tenants.values()}

    @classmethod
    def for_keyring(
        cls, active: PartyPseudonymizer, keyring: Keyring, classifier: NumberClassifier, cache_size: int
    ) -> KeyTranslator:
        """A translator from ``active`` to every other key of ``keyring``."""
        others = tuple(
            PartyPseudonymizer(classifier, Pseudonymizer(key), cache_size, active.tenants)
            for key in keyring.keys
            if key.key_id != active.key_id
        )
        return cls(active, others)

    def note(self, cdrs: Iterable[CanonicalCdr], into: dict[str, tuple[str, ...]]) -> None:
        """Add the translations of the parties and agents of ``cdrs`` to ``into``."""
        if not self._others and not self._earlier:
            return  # one key and no mapping: nothing to translate, and no pass over the chunk
        for cdr in cdrs:
            self._note(cdr, into)

    def _note(self, cdr: CanonicalCdr, into: dict[str, tuple[str, ...]]) -> None:
        # the same tenant and roles the rows are built with (pipeline.ingest.rows)
        tenant = self._active.tenant_of(cdr.source)
        earlier = self._earlier.get(tenant, ())
        callee_service = can_reach_service("callee", cdr.direction)
        for raw, service in ((cdr.caller, False), (cdr.callee, callee_service), (cdr.connected, False)):
            if not raw:
                continue
            pseudonym = self._active.columns(raw, tenant, service).pseudonym
            if pseudonym is not None and pseudonym not in into:
                others = [parties.columns(raw, tenant, service).pseudonym for parties in self._others]
                # a subscriber's pseudonym is the same within every tenant: only an extension's differ
                others += [parties.columns(raw, name, service).pseudonym for parties in self._every_key
                           for name in earlier]  # fmt: skip
                into[pseudonym] = _distinct(others, pseudonym)
        if cdr.agent and cdr.agent.strip():  # a blank id names nobody (no pseudonym in the row)
            agent = self._active.agent(cdr.agent, tenant)
            if agent not in into:
                agents = [parties.agent(cdr.agent, tenant) for parties in self._others]
                agents += [parties.agent(cdr.agent, name) for parties in self._every_key for name in earlier]
                into[agent] = _distinct(agents, agent)


def _distinct(pseudonyms: Iterable[str | None], own: str) -> tuple[str, ...]:
    """``pseudonyms`` once each, in order, without ``own`` and None."""
    return tuple(dict.fromkeys(name for name in pseudonyms if name is not None and name != own))
