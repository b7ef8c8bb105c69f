"""Rectification of a wrongly attributed call: redact one party of one call, never edit it.

A CDR is the record of a fact (this line called that line at that time), so
rectification (art. 16) cannot mean writing another value. When a call is
attributed to the wrong subject, the wrong attribution is removed: the party
becomes ``REDACTED`` (pseudonym, country, line type and short code null), as
erasure's redact mode does, in that call's rows only.

Contract: :func:`rectify_call` rewrites copy-on-write every data file (in the
dataset and in the quarantine, optionally only one ``call_date``) holding rows
whose ``cdr_id`` is the given one, redacting ``party`` in those rows and
nothing else, then re-reads the rewritten files. Files without the call are
left untouched; a file that cannot be read is named and fails the
verification. Running it twice changes nothing the second time (the party
is already redacted; the rows count as found, not as redacted again).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.lifecycle.operations.finder import data_files
from pipeline.lifecycle.rows import REDACTED, redact_parties
from pipeline.store import manifest
from pipeline.store.naming import partition_date
from pipeline.store.parquet import encode
from pipeline.store.storage import Storage

Party = Literal["caller", "callee"]


@dataclass(frozen=True, slots=True)
class Rectification:
    """What rectifying one call found and did."""

    rows_found: int
    rows_redacted: int
    files_rewritten: list[str]
    files_checked: int
    verified: bool
    files_unreadable: list[str]
    sources: int = 1


def _call_mask(table: pa.Table, cdr_id: str, source: str | None) -> pa.Array:
    mask = pc.equal(table.column("cdr_id"), pa.scalar(cdr_id, pa.string()))
    if source is not None:
        mask = pc.and_(
            mask, pc.equal(table.column("source").cast(pa.string()), pa.scalar(source, pa.string()))
        )
    return pc.fill_null(mask, False)


def _unredacted(table: pa.Table, mask: pa.Array, party: Party) -> pa.Array:
    types = table.column(f"{party}_number_type").cast(pa.string())
    return pc.and_(mask, pc.fill_null(pc.not_equal(types, pa.scalar(REDACTED)), True))


def rectify_call(
    storage: Storage, cdr_id: str, party: Party, call_date: date | None = None, source: str | None = None
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
    for path in data_files(storage):
        if call_date is not None and partition_date(path) != call_date:
            continue
        try:
            with storage.open_input(path) as handle:  # two columns first: most files do not hold the call
                ids = pq.read_table(handle, columns=["cdr_id", "source"])
        except (OSError, ValueError):  # not Parquet (pyarrow raises ValueErrors for that) or gone
            unreadable.append(path)
            continue
        mask = _call_mask(ids, cdr_id, source)
        if pc.any(mask).as_py():
            holding.append(path)
            sources.update(ids.column("source").cast(pa.string()).filter(mask).to_pylist())
    if len(sources) > 1:
        return Rectification(0, 0, [], 0, False, unreadable, sources=len(sources))
    for path in holding:
        data = storage.read(path)
        if data is None:
            continue
        table = pq.read_table(io.BytesIO(data))
        mask = _call_mask(table, cdr_id, source)
        found += pc.sum(pc.cast(mask, pa.int64())).as_py() or 0
        pending = _unredacted(table, mask, party)
        count = pc.sum(pc.cast(pending, pa.int64())).as_py() or 0
        if count:
            storage.publish(path, encode(redact_parties(table, {party: pending})))
            redacted += count
            rewritten.append(path)
    manifest.record(storage, written=rewritten)
    verified = not unreadable  # a file not read may hold the call
    for path in rewritten:
        data = storage.read(path)
        table = pq.read_table(io.BytesIO(data)) if data is not None else None
        verified = (
            verified
            and table is not None
            and not pc.any(_unredacted(table, _call_mask(table, cdr_id, source), party)).as_py()
        )
    return Rectification(found, redacted, rewritten, len(rewritten), verified, unreadable)
