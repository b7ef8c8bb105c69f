"""The store manifest: per area and call date, what each data file's footer says, without opening it.

A manifest lives at :func:`~pipeline.store.naming.manifest_path` (one JSON
document per area and call date) and maps each data file's name to a
:class:`FileEntry`: its size and modification time when it was read (the
:class:`~pipeline.store.storage.Stamp` the listing reports), its row count,
the keys of its rows (ids and fingerprints, as its footer records them) and
its subject index.

Contract:

* The manifest is a cache; the listing stays authoritative. An entry counts
  only while it is :meth:`FileEntry.fresh` for the stamp the listing reports
  now; a file missing from the manifest, or changed since, is read through its
  footer as if there were no manifest, and a file without a subject index is
  a candidate for every subject. A manifest that is missing, unreadable or of
  another format counts as empty, and an entry for a file that is gone is
  never used. So a manifest can make a search cheaper, never miss a file.
* An entry pairs a stamp taken *before* its footer was read with what that
  footer said: if the file is replaced in between, the entry's stamp is the
  old one and the next listing finds it stale.
* :func:`record` is the one function writers call after they publish or
  delete data files: it re-reads the footers of the files written (a file
  gone meanwhile loses its entry) and drops the entries of the files
  deleted, then republishes the manifests of their dates, deleting a
  manifest that lists nothing. Manifests are written only on the lifecycle path (one
  serial writer); files the ingest publishes are added when the next search
  reads their footers (see :mod:`pipeline.lifecycle.operations.finder`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.keys.fingerprint import KeyRef, sorted_refs
from pipeline.store import subject_index
from pipeline.store.naming import manifest_path, parse_data_path
from pipeline.store.parquet import recorded_keys
from pipeline.store.storage import Stamp, Storage

log = logging.getLogger(__name__)

FORMAT = 2
"""2 records keys with their fingerprints; a manifest of format 1 counts as empty (footers are read)."""


@dataclass(frozen=True, slots=True)
class FileEntry:
    """What a data file's footer said when the file had ``size`` bytes and was modified at ``modified_ns``."""

    size: int
    modified_ns: int
    rows: int
    keys: frozenset[KeyRef]
    subjects: bytes | None
    """The file's subject index (base64), or None: the file might hold anybody."""

    @property
    def key_ids(self) -> frozenset[str]:
        """The ids of the file's keys."""
        return frozenset(key.key_id for key in self.keys)

    def fresh(self, stamp: Stamp) -> bool:
        """True if the file the listing reports with ``stamp`` is the one this entry describes."""
        return stamp.size == self.size and stamp.modified_ns == self.modified_ns

    def might_hold(self, pseudonyms: list[str]) -> bool:
        """False only if the file certainly holds none of ``pseudonyms``."""
        return self.subjects is None or subject_index.might_contain_any(self.subjects, pseudonyms)


def read_entry(storage: Storage, path: str, stamp: Stamp) -> FileEntry:
    """Read the footer of the data file at ``path``, listed with ``stamp`` (taken before this read).

    A file written before key ids were recorded in footers has its ``key_id``
    column read (its keys have no fingerprint, like those of a file written before
    fingerprints were recorded). Raises ``FileNotFoundError`` if the file is gone, ``OSError``
    or ``ValueError`` (pyarrow's "not a Parquet file") if it cannot be read.
    """
    with storage.open_input(path) as handle:
        footer = pq.read_metadata(handle)
    metadata = footer.metadata or {}

    def key_id_column() -> frozenset[str]:
        with storage.open_input(path) as handle:
            column = pq.read_table(handle, columns=["key_id"]).column("key_id")
        return frozenset(pc.unique(column).drop_null().to_pylist())

    keys = recorded_keys(metadata, key_id_column)
    subjects = metadata.get(subject_index.METADATA_KEY)
    return FileEntry(stamp.size, stamp.modified_ns, footer.num_rows, keys, subjects)


def load(storage: Storage, area: str, call_date: date) -> dict[str, FileEntry]:
    """The entries of the manifest of ``call_date`` in ``area`` by file name; empty if none is usable."""
    path = manifest_path(area, call_date)
    data = storage.read(path)
    if data is None:
        return {}
    try:
        document = json.loads(data)
        if document.get("format") != FORMAT:
            return {}
        return {
            name: FileEntry(
                int(entry["size"]),
                int(entry["modified_ns"]),
                int(entry["rows"]),
                frozenset(
                    KeyRef(str(key_id), None if fingerprint is None else str(fingerprint))
                    for key_id, fingerprint in entry["keys"]
                ),
                None if entry["subjects"] is None else str(entry["subjects"]).encode(),
            )
            for name, entry in document["files"].items()
        }
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("ignoring the unreadable manifest %s: %s", path, exc)
        return {}


def save(storage: Storage, area: str, call_date: date, entries: dict[str, FileEntry]) -> None:
    """Publish the manifest of ``call_date`` in ``area`` with ``entries``, or delete it if there are none."""
    path = manifest_path(area, call_date)
    if not entries:
        storage.delete(path)
        return
    files = {
        name: {
            "size": entry.size,
            "modified_ns": entry.modified_ns,
            "rows": entry.rows,
            "keys": [[key.key_id, key.fingerprint] for key in sorted_refs(entry.keys)],
            "subjects": None if entry.subjects is None else entry.subjects.decode(),
        }
        for name, entry in sorted(entries.items())
    }
    storage.publish(path, json.dumps({"format": FORMAT, "files": files}, separators=(",", ":")).encode())


def record(storage: Storage, written: Iterable[str] = (), deleted: Iterable[str] = ()) -> None:
    """Bring the manifests up to date for the data files just ``written`` (published) and ``deleted``."""
    by_date: dict[tuple[str, date], list[tuple[str, str, bool]]] = {}
    for paths, exists in ((written, True), (deleted, False)):
        for path in paths:
            parsed = parse_data_path(path)
            if parsed is not None:
                by_date.setdefault((parsed.area, parsed.call_date), []).append((path, parsed.name, exists))
    for (area, call_date), files in sorted(by_date.items()):
        entries = load(storage, area, call_date)
        for path, name, exists in files:
            entries.pop(name, None)
            stamp = storage.stamp(path) if exists else None
            if stamp is None:
                continue
            try:
                entries[name] = read_entry(storage, path, stamp)
            except (OSError, ValueError):  # gone again, or unreadable: the next search reads it
                continue
        save(storage, area, call_date, entries)
