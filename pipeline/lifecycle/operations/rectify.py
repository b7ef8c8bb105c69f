"""Rectification of a wrongly attributed call: redact one party of one call, never edit it.

A CDR is the record of a fact (this line called that line at that time), so
rectification (art. 16) cannot mean writing another value. When a call is
attributed to the wrong subject, the wrong attribution is removed: the party
becomes ``REDACTED`` (pseudonym, country, line type and short code null), as
erasure's redact mode does, in that call's rows only.

Contract: :func:`rectify_call` rewrites copy-on-write every data file (in the
dataset and in the quarantine, optionally only one ``call_date``) holding rows
whose ``cdr_id`` is the given one, redacting ``party`` in those rows, and the
connected party in the rows where it is the same pseudonym as ``party`` (the
same person answered: leaving it would keep the call in that person's export),
and nothing else; then it re-reads every file holding the call (rewritten or
already redacted): the verification counts the rows of the call whose party is
still there, and decodes at least one file whenever the call was found. Given a
:class:`LedgerRecord`, it first writes a ``rectify`` ledger entry holding the
redacted pseudonyms (with their key ids), so every worker redacts replayed and
late copies of the call too. Files without the call are left untouched; a file
that cannot be read is named and fails the verification. Running it twice
changes nothing the second time (the party is already redacted; the rows count
as found, not as redacted again, and no entry is written).
:func:`reapply_rectification` applies a ``rectify`` entry to the store again
(after a restore).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.lifecycle.ledger import KeyedPseudonym, LedgerEntry
from pipeline.lifecycle.operations.finder import data_files, search
from pipeline.lifecycle.operations.restriction import Ledger
from pipeline.lifecycle.rows import Party, call_mask, call_party_masks, redact_parties
from pipeline.store import manifest
from pipeline.store.merge import read_file, read_table
from pipeline.store.naming import partition_date
from pipeline.store.parquet import StoredFile, encode
from pipeline.store.storage import Storage


@dataclass(frozen=True, slots=True)
class LedgerRecord:
    """The ledger a rectification records itself in, and the request it records."""

    ledger: Ledger
    request_id: str
    requested_at: datetime


@dataclass(frozen=True, slots=True)
class Rectification:
    """What rectifying one call found and did."""

    rows_found: int
    rows_redacted: int
    files_rewritten: list[str]
    files_in_store: int
    files_checked: int
    rows_remaining: int
    verified: bool
    files_unreadable: list[str]
    sources: int = 1
    parties_redacted: list[str] = field(default_factory=list)
    """The roles redacted by this run: the party, and ``connected`` when it was the same person."""


def _redacted_pairs(table: pa.Table, mask: pa.Array, party: Party) -> set[KeyedPseudonym]:
    chosen = table.filter(mask)
    pairs = zip(
        chosen.column("key_id").cast(pa.string()).to_pylist(),
        chosen.column(f"{party}_pseudonym").to_pylist(),
        strict=True,
    )
    return {KeyedPseudonym(key_id, pseudonym) for key_id, pseudonym in pairs if pseudonym is not None}


def rectify_call(
    storage: Storage,
    cdr_id: str,
    party: Party,
    call_date: date | None = None,
    source: str | None = None,
    *,
    record: LedgerRecord | None = None,
) -> Rectification:
    """Redact ``party`` in the rows of call ``cdr_id`` (of ``source``); re-read what was rewritten.

    A call id is unique per source only: when its rows come from several sources and
    ``source`` is not given, nothing is redacted and ``sources`` says how many there are.
    """
    found = redacted = 0
    rewritten: list[str] = []
    unreadable: list[str] = []
    holding: list[str] = []
    sources: set[str] = set()
    searched = 0
    for path in data_files(storage):
        if call_date is not None and partition_date(path) != call_date:
            continue
        searched += 1
        try:
            with storage.open_input(path) as handle:  # two columns first: most files do not hold the call
                ids = pq.read_table(handle, columns=["cdr_id", "source"])
        except (OSError, ValueError):  # not Parquet (pyarrow raises ValueErrors for that) or gone
            unreadable.append(path)
            continue
        mask = call_mask(ids, cdr_id, source)
        if pc.any(mask).as_py():
            holding.append(path)
            sources.update(ids.column("source").cast(pa.string()).filter(mask).to_pylist())
    if len(sources) > 1:
        return Rectification(0, 0, [], searched, 0, 0, False, unreadable, sources=len(sources))
    pending: list[tuple[str, StoredFile, dict[str, pa.Array]]] = []
    pairs: set[KeyedPseudonym] = set()
    for path in holding:
        stored = read_file(storage, path)
        if stored is None:
            continue
        table = stored.table
        found += pc.sum(pc.cast(call_mask(table, cdr_id, source), pa.int64())).as_py() or 0
        masks = call_party_masks(table, cdr_id, source, party)
        if masks:  # the connected party is only ever redacted with the party itself
            pending.append((path, stored, masks))
            pairs |= _redacted_pairs(table, masks[party], party)
    if record is not None and pairs:
        # Recorded before any file changes: a replay published meanwhile is redacted as well.
        (call_source,) = sources
        record.ledger.write(
            LedgerEntry(
                request_id=record.request_id,
                requested_at=record.requested_at,
                action="rectify",
                subject=sorted(pairs, key=lambda pair: (pair.key_id, pair.pseudonym)),
                source=call_source,
                cdr_id=cdr_id,
                party=party,
            )
        )
    roles: set[str] = set()
    for path, stored, masks in pending:
        storage.publish(path, encode(redact_parties(stored.table, masks), stored.keys))
        redacted += pc.sum(pc.cast(masks[party], pa.int64())).as_py() or 0
        roles.update(masks)
        rewritten.append(path)
    manifest.record(storage, written=rewritten)
    checked, remaining = _unredacted_rows(storage, holding, cdr_id, source, party)
    # A file not read may hold the call; a call found but no file re-read is a check that checked nothing.
    verified = not unreadable and remaining == 0 and (checked > 0 or found == 0)
    parties = [role for role in (party, "connected") if role in roles]
    return Rectification(
        found,
        redacted,
        rewritten,
        searched,
        checked,
        remaining,
        verified,
        unreadable,
        parties_redacted=parties,
    )


def _unredacted_rows(
    storage: Storage, paths: list[str], cdr_id: str, source: str | None, party: Party
) -> tuple[int, int]:
    """Re-read ``paths``: how many could be decoded, and the call's rows whose ``party`` is still there."""
    checked = remaining = 0
    for path in paths:
        table = read_table(storage, path)
        if table is None:
            continue
        left = call_party_masks(table, cdr_id, source, party).get(party)
        if left is not None:
            remaining += pc.sum(pc.cast(left, pa.int64())).as_py() or 0
        checked += 1
    return checked, remaining


def reapply_rectification(storage: Storage, entry: LedgerEntry) -> list[str]:
    """Redact the entry's party (and the same connected party) in its call again; the files rewritten."""
    if entry.cdr_id is None or entry.party is None:
        return []
    pseudonyms = entry.subject_pseudonyms()
    rewritten = []
    for path in search(storage, pseudonyms).candidates:
        stored = read_file(storage, path)
        if stored is None:
            continue
        masks = call_party_masks(stored.table, entry.cdr_id, entry.source, entry.party, pseudonyms)
        if masks:
            storage.publish(path, encode(redact_parties(stored.table, masks), stored.keys))
            rewritten.append(path)
    manifest.record(storage, written=rewritten)
    return rewritten
