"""The subject ledger: whose rows are erased up to when, as every worker knows it.

The ledger is a compacted Kafka topic (key: :attr:`LedgerEntry.key`, the request id and family of
action). Only entries whose MAC holds are added (:mod:`pipeline.kafka.ledger_reader` checks it and
the Kafka key), so a forged entry never replaces, shortens or ends a genuine one. Every worker reads it
from the beginning before it publishes anything and follows it afterwards;
the sink passes every table through :meth:`SubjectLedger.route` before
publishing, so buffered, in-flight, replayed and late records of an erased
subject never reach the store again. Entries hold pseudonyms, never numbers.

Design, and why it holds under key rotation:

* An entry holds the subject as ``(key_id, pseudonym)`` pairs under every key
  the erasure knew (:class:`KeyedPseudonym`), and those keys' fingerprints
  (``key_fingerprints``), so that re-applying it after a restore can tell a
  file under another secret of the same key id. No number is stored anywhere.
* A record pseudonymised after the request under a newer key ``k2`` has no
  pseudonym in the entry. The ingest side therefore also computes each
  party's pseudonym under every other key of its keyring (old keys stay in
  the keyring) and hands the publisher, per batch, a *translation* map: the
  row's pseudonym to its pseudonyms under the other keys
  (:class:`~pipeline.ingest.translation.KeyTranslator`).
* :meth:`SubjectLedger.matches` takes the distinct pseudonyms of the table's
  subject columns (one Arrow pass), looks each one and its translations up in
  one combined index ``pseudonym -> request ids`` (a dict), and only then
  applies the few matching entries to the rows they match. A batch costs
  O(rows + distinct pseudonyms), whatever the number of entries.
* The same map carries a record's pseudonyms within the sources
  ``CDRPIPE_TENANTS`` maps to its tenant: an entry made before a source was
  mapped holds its extensions and agents within the source's own name, and a
  later record of theirs is pseudonymised within the tenant.
* It holds when the entry is known before the record arrives (the record's
  translation under the entry's key matches), when the entry arrives while
  the record is buffered (the match is made at publish time; the entry holds
  the pseudonym under every key that existed at the request, the record's
  key included, and the translation covers older ones), and when a rotation
  happens in between.
* The index is keyed by the pseudonym alone: pseudonyms are 128-bit HMAC
  outputs in separate domains, so two keys never give one value to two
  people. The key id is kept for receipts and audits.

Every entry has an ``action``, and :meth:`SubjectLedger.route` applies all of
them through the same :meth:`SubjectLedger.matches`:

* ``erase``: the rows (or parties) up to ``requested_at`` are removed;
* ``restrict`` (art. 18): every row of the subject, whatever its call time,
  goes to the quarantine instead of the dataset;
* ``suppress`` (an objection, art. 21): every row of the subject is dropped
  and counted, never written;
* ``ended``: a restriction lifted or an objection withdrawn. It replaces the
  entry under the same key (the compacted topic keeps only it) and has no
  subject, so it matches nothing;
* ``rectify`` (art. 16): in the rows of one call (``source``, ``cdr_id``),
  ``party`` is redacted where it is the entry's subject (the wrongly attributed
  person), and so is the connected party where it is the same pseudonym. It is
  keyed by the call and the party, not the request: rectifying one party of
  one call twice leaves one entry. It is applied before every other entry, so
  the wrong attribution never quarantines, drops or erases the call.

Holds are per person: :meth:`SubjectLedger.held_rows` says which rows a
restriction or objection in force still covers, whichever party it names;
a lift or withdrawal moves back only the others.
Entries written before ``rectify`` existed have none of its fields and decode
unchanged (the fields default to None).
Entries written before key ids were recorded (a bare ``pseudonyms`` list) are
still read, as pairs with an unknown key id; entries written before
fingerprints were recorded name their keys by id only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Literal

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.keys.fingerprint import KeyRef
from pipeline.lifecycle.requests.erasure_request import Mode
from pipeline.lifecycle.rows import (
    SUBJECT_COLUMNS,
    Party,
    call_party_masks,
    erase_rows,
    redact_parties,
    subject_row_mask,
)
from pipeline.sink.batch import Routed

Translations = Mapping[str, tuple[str, ...]]
"""A batch's pseudonyms, each mapped to the same party's pseudonyms under the keyring's other keys."""

Action = Literal["erase", "restrict", "suppress", "ended", "rectify"]
HOLDS: tuple[Action, ...] = ("restrict", "suppress")
"""The actions that take a subject's rows out of use while they are in force."""
_END_OF_TIME = datetime.max.replace(tzinfo=UTC)

UNKNOWN_KEY = ""
"""The key id of a pseudonym given as such (its key is not known)."""


class KeyedPseudonym(msgspec.Struct, array_like=True, frozen=True):
    """A subject's pseudonym and the key id it was computed with."""

    key_id: str
    pseudonym: str


class LedgerEntry(msgspec.Struct, kw_only=True, frozen=True):
    """One subject request as the sink applies it."""

    request_id: str
    requested_at: datetime
    mode: Mode = "delete"
    action: Action = "erase"
    subject: list[KeyedPseudonym] = []
    pseudonyms: list[str] = []
    """Entries of earlier versions: pseudonyms without key ids."""
    source: str | None = None
    """``rectify``: the source of the call."""
    cdr_id: str | None = None
    """``rectify``: the call."""
    party: Party | None = None
    """``rectify``: the party whose attribution is removed."""
    key_fingerprints: dict[str, str] | None = None
    """The fingerprint of each key id of ``subject`` (None in entries older than fingerprints)."""

    @property
    def key(self) -> str:
        """The entry's key in the ledger and on its topic: one per request id and family of action.

        An erasure and a restriction or objection with the same request id are two
        entries: neither replaces the other. ``ended`` replaces its restriction or objection.
        A rectification is keyed by its call and party (JSON, so no separator is ambiguous).
        """
        if self.action == "rectify":
            return f"rectify:{json.dumps([self.source, self.cdr_id, self.party])}"
        return f"{'erase' if self.action == 'erase' else 'hold'}:{self.request_id}"

    def key_ids(self) -> frozenset[str] | None:
        """The key ids of the subject's pseudonyms, or None when any of them has no known key."""
        if self.pseudonyms or any(pair.key_id == UNKNOWN_KEY for pair in self.subject):
            return None
        return frozenset(pair.key_id for pair in self.subject)

    def keys(self) -> frozenset[KeyRef]:
        """The keys of the subject's pseudonyms (without fingerprint where the entry records none)."""
        fingerprints = self.key_fingerprints or {}
        return frozenset(
            KeyRef(pair.key_id, fingerprints.get(pair.key_id))
            for pair in self.subject
            if pair.key_id != UNKNOWN_KEY
        )

    def subject_pseudonyms(self) -> frozenset[str]:
        """Every pseudonym of the entry's subject."""
        return frozenset(pair.pseudonym for pair in self.subject) | frozenset(self.pseudonyms)


_DECODER = msgspec.json.Decoder(LedgerEntry)


def encode_entry(entry: LedgerEntry) -> bytes:
    """The ledger message of ``entry``."""
    return msgspec.json.encode(entry)


def decode_entry(payload: bytes) -> LedgerEntry:
    """Read a ledger message (raises ``msgspec.DecodeError`` on a foreign message)."""
    return _DECODER.decode(payload)


def distinct_pseudonyms(table: pa.Table) -> set[str]:
    """The distinct non-null values of ``table``'s subject columns."""
    values: set[str] = set()
    for column in SUBJECT_COLUMNS:
        values.update(pc.unique(table.column(column)).drop_null().to_pylist())
    return values


class SubjectLedger:
    """The in-memory view of the ledger topic, with one combined index of every entry's pseudonyms."""

    def __init__(self) -> None:
        self._entries: dict[str, LedgerEntry] = {}
        # sets are replaced, never changed in place: the sink reads them from its publishing thread
        self._index: dict[str, frozenset[str]] = {}
        self._overshadowed: set[str] = set()

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[LedgerEntry]:
        """Every entry, in the order the requests were first seen."""
        return list(self._entries.values())

    def add(self, entry: LedgerEntry) -> None:
        """Record (or replace) an authenticated entry (by :attr:`LedgerEntry.key`, its Kafka key)."""
        self._overshadowed.discard(entry.key)
        previous = self._entries.get(entry.key)
        if previous is not None:
            for pseudonym in previous.subject_pseudonyms():
                self._index[pseudonym] = self._index[pseudonym] - {entry.key}
        self._entries[entry.key] = entry
        for pseudonym in entry.subject_pseudonyms():
            self._index[pseudonym] = self._index.get(pseudonym, frozenset()) | {entry.key}

    def overshadow(self, key: str) -> None:
        """Note that a refused message was published under ``key`` after the entry held under it.

        The entry stays in force here; but the compacted topic keeps only a key's last message,
        so the entry must be written again (:meth:`take_overshadowed`) or a worker that reads the
        topic after its compaction would never see it.
        """
        if key in self._entries:
            self._overshadowed.add(key)

    def take_overshadowed(self) -> list[LedgerEntry]:
        """The entries overshadowed since the last call, each once (to be written again)."""
        keys, self._overshadowed = sorted(self._overshadowed), set()
        return [self._entries[key] for key in keys]

    def matches(
        self, table: pa.Table, translations: Translations
    ) -> list[tuple[LedgerEntry, frozenset[str]]]:
        """The entries that concern rows of ``table``, each with the table's pseudonyms it matches."""
        if not self._entries:
            return []
        matched: dict[str, set[str]] = {}
        for value in distinct_pseudonyms(table):
            for name in (value, *translations.get(value, ())):
                for key in self._index.get(name, ()):
                    matched.setdefault(key, set()).add(value)
        return [(self._entries[key], frozenset(values)) for key, values in matched.items()]

    def in_force(self, action: Action, pseudonyms: frozenset[str]) -> list[LedgerEntry]:
        """The entries with ``action`` whose subject shares a pseudonym with ``pseudonyms``."""
        keys = set().union(*(self._index.get(pseudonym, ()) for pseudonym in pseudonyms))
        return [self._entries[key] for key in sorted(keys) if self._entries[key].action == action]

    def holds(self) -> list[LedgerEntry]:
        """Every restriction and objection in force."""
        return [entry for entry in self._entries.values() if entry.action in HOLDS]

    def held_rows(self, table: pa.Table, keys: frozenset[KeyRef]) -> pa.Array:
        """True for the rows of ``table`` (a file written under ``keys``, as its footer records them)
        that a restriction or objection in force still covers.

        A row is covered when any party is the subject of a hold, and also when it was
        pseudonymised under a key some hold has no pseudonym under: that hold's subject
        may be any party of the row, and the store has no translation to rule it out
        (ingest has one; the rows it quarantined under that key are such rows). A key is
        its id and fingerprint: a hold with a pseudonym under one ``k3`` has none under
        another secret that carries the name. The keys of a subject are those of all its
        holds (holds that share a pseudonym), so restricting the subject again under the
        current keyring clears the doubt. A hold given as a pseudonym (unknown key) covers
        the rows holding that pseudonym only.
        """
        held = frozenset().union(*(entry.subject_pseudonyms() for entry in self.holds()))
        mask = subject_row_mask(table, held, _END_OF_TIME)
        key_ids = table.column("key_id").cast(pa.string())
        in_rows = frozenset(pc.unique(key_ids).drop_null().to_pylist())
        unseen = self.holds_blind_to(frozenset(key for key in keys if key.key_id in in_rows))
        if unseen:
            unseen_ids = sorted({key.key_id for key in unseen})
            in_unseen = pc.is_in(key_ids, value_set=pa.array(unseen_ids, pa.string()))
            mask = pc.or_(mask, pc.fill_null(in_unseen, False))
        return mask

    def holds_blind_to(self, keys: frozenset[KeyRef]) -> dict[KeyRef, frozenset[str]]:
        """Each of ``keys`` that some hold in force has no pseudonym under, with those holds' request ids.

        A hold's keys are those of every hold of its subject (the holds sharing a pseudonym
        with it); a hold with a pseudonym of unknown key is blind to no key (see :meth:`held_rows`).
        A hold sees a key when one of those keys has its id and its fingerprint; where either
        side recorded no fingerprint (written before fingerprints were), the id decides, as
        in a verification's key coverage.
        """
        blind: dict[KeyRef, frozenset[str]] = {}
        for entry in self.holds():
            if entry.key_ids() is None:
                continue
            related = [
                other.keys()
                for action in HOLDS
                for other in self.in_force(action, entry.subject_pseudonyms())
                if other.key_ids() is not None
            ]
            seen = entry.keys().union(*related)
            for key in keys:
                if not any(key.may_be(own) for own in seen):
                    blind[key] = blind.get(key, frozenset()) | {entry.request_id}
        return blind

    def route(self, table: pa.Table, translations: Translations | None = None) -> Routed:
        """Apply every entry: rectifications first (the wrong attribution redacted), then objections
        (their rows dropped and counted), then erasures, then restrictions (their rows quarantined)."""
        matched = self.matches(table, translations or {})
        table = _rectified(table, matched)
        suppressed = frozenset().union(*(values for entry, values in matched if entry.action == "suppress"))
        dropped = 0
        if suppressed:
            mask = subject_row_mask(table, suppressed, _END_OF_TIME)
            dropped = pc.sum(pc.cast(mask, pa.int64())).as_py() or 0
            table = table.filter(pc.invert(mask))
        table = _erased(table, matched)
        restricted = frozenset().union(*(values for entry, values in matched if entry.action == "restrict"))
        if not restricted:
            return Routed(table, None, dropped)
        mask = subject_row_mask(table, restricted, _END_OF_TIME)
        quarantined = table.filter(mask)
        return Routed(table.filter(pc.invert(mask)), quarantined if quarantined.num_rows else None, dropped)

    def scrub(self, table: pa.Table) -> pa.Table:
        """Apply the rectifications and erasures only: for rows that stay where a hold put them.

        The quarantine's rows are there because a restriction or objection holds them; only a
        lift or withdrawal moves them, but an erasure or rectification applies to them as anywhere.
        """
        matched = self.matches(table, {})
        return _erased(_rectified(table, matched), matched)


def _rectified(table: pa.Table, matched: list[tuple[LedgerEntry, frozenset[str]]]) -> pa.Table:
    """``table`` with the wrong attributions of the matched rectifications redacted."""
    for entry, values in matched:
        if entry.action == "rectify" and entry.cdr_id and entry.party:
            masks = call_party_masks(table, entry.cdr_id, entry.source, entry.party, values)
            table = redact_parties(table, masks)
    return table


def _erased(table: pa.Table, matched: list[tuple[LedgerEntry, frozenset[str]]]) -> pa.Table:
    """``table`` without (or with redacted) rows of the matched erasures, up to each one's request."""
    for entry, values in matched:
        if entry.action == "erase":
            table, _ = erase_rows(table, values, entry.mode, entry.requested_at)
    return table
