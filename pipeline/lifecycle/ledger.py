"""The erasure ledger: which pseudonyms are erased up to when, as every worker knows it.

The ledger is a compacted Kafka topic (key: request id). Every worker reads it
from the beginning before it publishes anything and follows it afterwards;
the sink passes every table through :meth:`ErasureLedger.apply` before
publishing, so buffered, in-flight, replayed and late records of an erased
subject never reach the store again. Entries hold pseudonyms, never numbers.
"""

from __future__ import annotations

from datetime import datetime

import msgspec
import pyarrow as pa

from pipeline.lifecycle.rows import Mode, erase_rows


class LedgerEntry(msgspec.Struct, kw_only=True, frozen=True):
    """One erasure request as the sink applies it."""

    request_id: str
    pseudonyms: list[str]
    requested_at: datetime
    mode: Mode = "delete"


_DECODER = msgspec.json.Decoder(LedgerEntry)


def encode_entry(entry: LedgerEntry) -> bytes:
    """The ledger message of ``entry``."""
    return msgspec.json.encode(entry)


def decode_entry(payload: bytes) -> LedgerEntry:
    """Read a ledger message (raises ``msgspec.DecodeError`` on a foreign message)."""
    return _DECODER.decode(payload)


class ErasureLedger:
    """The in-memory view of the ledger topic."""

    def __init__(self) -> None:
        self._entries: dict[str, LedgerEntry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[LedgerEntry]:
        """Every entry, in the order the requests were first seen."""
        return list(self._entries.values())

    def add(self, entry: LedgerEntry) -> None:
        """Record (or replace) an entry."""
        self._entries[entry.request_id] = entry

    def apply(self, table: pa.Table) -> pa.Table:
        """``table`` without the rows (or parties) erased by any entry."""
        for entry in self._entries.values():
            table, _ = erase_rows(table, entry.pseudonyms, entry.mode, entry.requested_at)
        return table
