"""What the ingest stage hands to the sink: a batch's files and the offset to commit after them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa

from pipeline.keys.fingerprint import KeyRef

TopicPartitionKey = tuple[str, int]
"""A Kafka partition: (topic, partition)."""


@dataclass(frozen=True, slots=True)
class PendingFile:
    """A file to publish: its path, its rows, each row's source offset, the keys the rows were
    pseudonymised under (recorded in the file's footer), and the rows' translations.

    ``translations`` maps each pseudonym of the rows to the same party's pseudonyms
    under the keyring's other keys (see :mod:`pipeline.lifecycle.ledger`).
    """

    path: str
    table: pa.Table
    offsets: pa.Array
    keys: frozenset[KeyRef]
    translations: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        """How many rows the file holds."""
        return int(self.table.num_rows)


@dataclass(frozen=True, slots=True)
class PartitionFlush:
    """What one batch produced: files to publish, then the offset to commit.

    The batch covers offsets ``first_offset`` (inclusive) to ``commit_offset`` (exclusive).
    """

    topic: str
    partition: int
    first_offset: int
    files: tuple[PendingFile, ...]
    commit_offset: int

    @property
    def rows(self) -> int:
        """Rows across the batch's files."""
        return sum(pending.rows for pending in self.files)


@dataclass(frozen=True, slots=True)
class Routed:
    """Where a table's rows go: the dataset, the quarantine (None when no row), or nowhere (counted)."""

    kept: pa.Table
    quarantined: pa.Table | None
    suppressed: int
