"""Which Kafka offsets the compaction of a call date has covered: their rows are never published again.

Per call date, :func:`~pipeline.store.naming.coverage_path` holds one JSON
document: the id of the last compaction pass that finished its swap
(``pass``) and, per topic and partition, the half-open offset ranges whose
rows of that date are in compacted files (``covers``).

Contract:

* Only compaction writes the document (under the lifecycle lock), after the
  files holding the covered rows are published and before the files they
  replace are deleted. It is the publisher's authoritative view:
  :meth:`Coverage.covered` is True for a row of the date at a covered offset,
  and the publisher drops such rows, so a replay or an offset reset after
  compaction adds nothing.
* Ranges only grow; retention deletes the document with its date.
* A missing document covers nothing; a document that cannot be read raises
  :class:`~pipeline.store.errors.StorageError` (publishing through it could
  add rows twice, so the batch is retried instead).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.store.errors import StorageError
from pipeline.store.naming import coverage_path
from pipeline.store.storage import Storage

FORMAT = 1
TopicPartition = tuple[str, int]
Ranges = Mapping[TopicPartition, tuple[tuple[int, int], ...]]
"""Per topic and partition, sorted disjoint half-open offset ranges ``[first, end)``."""


@dataclass(frozen=True, slots=True)
class Coverage:
    """The offsets whose rows of one call date are in its compacted files, and the last pass that said so."""

    pass_id: str | None = None
    ranges: Ranges = field(default_factory=dict)

    def covered(self, topic: str, partition: int, offsets: pa.Array) -> pa.Array:
        """True for each of ``offsets`` (of ``topic``/``partition``) inside a covered range."""
        mask = pa.repeat(pa.scalar(False), len(offsets))
        for first, end in self.ranges.get((topic, partition), ()):
            inside = pc.and_(pc.greater_equal(offsets, first), pc.less(offsets, end))
            mask = pc.or_(mask, inside)
        return mask

    def extended(self, pass_id: str, added: Ranges) -> Coverage:
        """This coverage with ``added`` ranges, as recorded by pass ``pass_id``."""
        merged = {key: list(ranges) for key, ranges in self.ranges.items()}
        for key, ranges in added.items():
            merged.setdefault(key, []).extend(ranges)
        return Coverage(pass_id, {key: _merged(ranges) for key, ranges in sorted(merged.items())})

    def to_json(self) -> dict[str, object]:
        """The document's content (topics and partitions as keys, ranges as pairs)."""
        covers: dict[str, dict[str, list[list[int]]]] = {}
        for (topic, partition), ranges in self.ranges.items():
            covers.setdefault(topic, {})[str(partition)] = [[first, end] for first, end in ranges]
        return {"format": FORMAT, "pass": self.pass_id, "covers": covers}

    @classmethod
    def from_json(cls, document: Mapping[str, object]) -> Coverage:
        """Read :meth:`to_json`'s content; ``ValueError``, ``KeyError`` or ``TypeError`` if malformed."""
        if document.get("format") != FORMAT:
            raise ValueError(f"format {document.get('format')!r} is not {FORMAT}")
        covers = document["covers"]
        if not isinstance(covers, dict):
            raise TypeError("covers is not an object")
        ranges = {
            (str(topic), int(partition)): _merged([(int(first), int(end)) for first, end in pairs])
            for topic, partitions in covers.items()
            for partition, pairs in partitions.items()
        }
        pass_id = document.get("pass")
        return cls(None if pass_id is None else str(pass_id), ranges)


def _merged(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """``ranges`` sorted, with overlapping and adjacent ones joined, empty ones dropped."""
    joined: list[tuple[int, int]] = []
    for first, end in sorted(ranges):
        if end <= first:
            continue
        if joined and first <= joined[-1][1]:
            joined[-1] = (joined[-1][0], max(end, joined[-1][1]))
        else:
            joined.append((first, end))
    return tuple(joined)


def load(storage: Storage, call_date: date) -> Coverage:
    """The coverage of ``call_date`` (empty if none is recorded)."""
    path = coverage_path(call_date)
    data = storage.read(path)
    if data is None:
        return Coverage()
    try:
        return Coverage.from_json(json.loads(data))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StorageError(
            f"the compaction coverage {path} cannot be read ({exc}); restore or remove it"
        ) from exc


def save(storage: Storage, call_date: date, coverage: Coverage) -> None:
    """Publish the coverage of ``call_date``."""
    storage.publish(coverage_path(call_date), json.dumps(coverage.to_json(), separators=(",", ":")).encode())


def forget(storage: Storage, call_date: date) -> None:
    """Delete the coverage of ``call_date`` (retention deleted the date itself)."""
    storage.delete(coverage_path(call_date))
