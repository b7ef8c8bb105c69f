"""The store manifest: per area and call date, what each data file's footer says, without opening it.

A manifest describes the data files of one area and call date. Each
:class:`FileEntry` holds a file's version (the :class:`~pipeline.store.storage.Stamp`
of the version described: size, modification time and, on S3, the ETag), its
row count, the key ids of its rows, the offset ranges it covers and its
subject index. A manifest has two parts:

* the **base**, :func:`~pipeline.store.naming.manifest_path` (a small Parquet
  file), written only by searches and the lifecycle writers (:func:`record`);
* **segments**, JSON files under :func:`~pipeline.store.naming.manifest_segment_dir`,
  written by the ingest publish (:class:`SegmentWriter`). Every publishing
  process writes segments under names of its own (a random writer id and a
  sequence number), so two workers publishing into the same date never write
  the same object and no entry of one is lost by the other's write. A segment
  holds at most :data:`SEGMENT_ENTRIES` entries, then it is *closed* and never
  written again; a search folds segments into the base and deletes the closed
  ones it folded.

Contract:

* The manifest is a cache; the listing stays authoritative. An entry counts
  only while it is :meth:`FileEntry.fresh` for the stamp the listing reports
  now; a file missing from the manifest, or changed since, is read through its
  footer as if there were no manifest, and a file without a subject index is
  a candidate for every subject. A base or segment that is missing,
  unreadable or of another format counts as empty, and an entry for a file
  that is gone is never used. So a manifest can make a search cheaper, never
  miss a file; losing a segment or a base (two writers of a base at once, a
  crash between a publish and its segment) costs footer reads, nothing else.
* An entry pairs a stamp of the version it describes with what that version's
  footer says: taken *before* the footer was read (:func:`read_entry`), or
  returned by the publish that wrote those very bytes (:func:`encoded_entry`),
  never a stamp taken after a publish, which could be another writer's.
* :func:`record` is the one function the lifecycle writers call after they
  publish or delete data files: it re-reads the footers of the files written
  (a file gone meanwhile loses its entry) and drops the entries of the files
  deleted, then republishes the bases of their dates, deleting a base that
  lists nothing.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.keys.fingerprint import KeyRef, sorted_refs
from pipeline.store import subject_index
from pipeline.store.errors import StorageError
from pipeline.store.naming import (
    manifest_path,
    manifest_segment_dir,
    parse_data_path,
)
from pipeline.store.parquet import recorded_keys
from pipeline.store.storage import Stamp, Storage

log = logging.getLogger(__name__)

FORMAT = 3
"""3: a Parquet base with versions, keys (ids and fingerprints) and covered offsets, and segments;
earlier manifests count as empty (their files' footers are read again)."""
SEGMENT_ENTRIES = 64
"""Entries per segment before it is closed: each publish rewrites its open segment, so this bounds
the bytes a publish writes (about 30 KB) and the segments a day leaves (files / 64 at most)."""
OPEN_DATES = 16
"""Dates a writer keeps an open segment for; the least recently used one beyond is closed."""
_FORMAT_KEY = b"cdrpipe.manifest.format"
_SEGMENTS_KEY = b"cdrpipe.manifest.segments"


@dataclass(frozen=True, slots=True)
class CoveredRange:
    """Offsets ``first`` up to ``end`` (exclusive; None when unknown) of ``topic``/``partition``."""

    topic: str
    partition: int
    first: int
    end: int | None


@dataclass(frozen=True, slots=True)
class FileEntry:
    """What the footer of one version of a data file says."""

    stamp: Stamp
    rows: int
    keys: frozenset[KeyRef]
    """The keys of the file's rows (ids and fingerprints), as its footer records them."""
    subjects: bytes | None
    """The file's subject index as a bit set (:func:`~pipeline.store.subject_index.decode`), or None:
    the file might hold anybody."""
    covered: tuple[CoveredRange, ...] = ()

    @property
    def key_ids(self) -> frozenset[str]:
        """The ids of the file's keys."""
        return frozenset(key.key_id for key in self.keys)

    def fresh(self, stamp: Stamp) -> bool:
        """True if the file the listing reports with ``stamp`` is the version this entry describes."""
        return self.stamp.same_version(stamp)

    def might_hold(self, probe: subject_index.Probe) -> bool:
        """False only if the file certainly holds none of the pseudonyms of ``probe``."""
        return self.subjects is None or probe.might_hold(self.subjects)


def _covered_by_name(name: str, end: int | None = None) -> tuple[CoveredRange, ...]:
    """The range a ``<topic>+<partition>+<first offset>.parquet`` name starts, ending at ``end``."""
    topic, _, rest = name.removesuffix(".parquet").rpartition("+")
    topic, _, partition = topic.rpartition("+")
    if not (topic and partition.isdigit() and rest.isdigit()):
        return ()
    return (CoveredRange(topic, int(partition), int(rest), end),)


def _entry_of_footer(footer: pq.FileMetaData, stamp: Stamp, name: str, keys: frozenset[KeyRef]) -> FileEntry:
    metadata = footer.metadata or {}
    index = metadata.get(subject_index.METADATA_KEY)
    return FileEntry(
        stamp,
        footer.num_rows,
        keys,
        None if index is None else subject_index.decode(index),
        _covered_by_name(name),
    )


def read_entry(storage: Storage, path: str, stamp: Stamp) -> FileEntry:
    """Read the footer of the data file at ``path``, listed with ``stamp`` (taken before this read).

    A file written before key ids were recorded in footers has its ``key_id``
    column read. Raises ``FileNotFoundError`` if the file is gone, ``OSError``
    or ``ValueError`` (pyarrow's "not a Parquet file") if it cannot be read.
    """
    with storage.open_input(path) as handle:
        footer = pq.read_metadata(handle)

    def key_id_column() -> frozenset[str]:
        with storage.open_input(path) as handle:
            column = pq.read_table(handle, columns=["key_id"]).column("key_id")
        return frozenset(pc.unique(column).drop_null().to_pylist())

    keys = recorded_keys(footer.metadata, key_id_column)
    return _entry_of_footer(footer, stamp, path.rsplit("/", 1)[-1], keys)


def encoded_entry(data: bytes, stamp: Stamp, covered: CoveredRange) -> FileEntry:
    """The entry of a data file this process encoded as ``data`` and published as ``stamp``."""
    footer = pq.read_metadata(pa.BufferReader(data))
    keys = recorded_keys(footer.metadata, frozenset)  # encode() always records the keys
    index = (footer.metadata or {}).get(subject_index.METADATA_KEY)
    return FileEntry(
        stamp, footer.num_rows, keys, None if index is None else subject_index.decode(index), (covered,)
    )


# ---------------------------------------------------------------------------------------- encoding


def _entry_document(entry: FileEntry) -> dict[str, object]:
    return {
        "size": entry.stamp.size,
        "modified_ns": entry.stamp.modified_ns,
        "tag": entry.stamp.tag,
        "rows": entry.rows,
        "keys": [[key.key_id, key.fingerprint] for key in sorted_refs(entry.keys)],
        "subjects": None if entry.subjects is None else entry.subjects.hex(),
        "covered": [[item.topic, item.partition, item.first, item.end] for item in entry.covered],
    }


def _entry_of_document(document: Mapping[str, object]) -> FileEntry:
    subjects = document["subjects"]
    covered = document.get("covered") or []
    assert isinstance(covered, list)
    tag = document.get("tag")
    return FileEntry(
        Stamp(
            int(str(document["size"])), int(str(document["modified_ns"])), None if tag is None else str(tag)
        ),
        int(str(document["rows"])),
        frozenset(
            KeyRef(str(key_id), None if fingerprint is None else str(fingerprint))
            for key_id, fingerprint in document["keys"]  # type: ignore[attr-defined]
        ),
        None if subjects is None else bytes.fromhex(str(subjects)),
        tuple(
            CoveredRange(str(topic), int(partition), int(first), None if end is None else int(end))
            for topic, partition, first, end in covered
        ),
    )


_BASE_SCHEMA = pa.schema(
    [
        ("name", pa.string()),
        ("size", pa.int64()),
        ("modified_ns", pa.int64()),
        ("tag", pa.string()),
        ("rows", pa.int64()),
        ("key_ids", pa.list_(pa.string())),
        ("fingerprints", pa.list_(pa.string())),
        ("subjects", pa.binary()),
    ]
)
_COVERED_KEY = b"cdrpipe.manifest.covered"
"""The covered offset ranges of every row, as one JSON list in the schema's metadata: one parse per
base, not one per file (a search decodes the bases of every date)."""


def _encode_base(entries: Mapping[str, FileEntry], segments: Mapping[str, Stamp]) -> bytes:
    names = sorted(entries)
    rows = [entries[name] for name in names]
    table = pa.table(
        {
            "name": names,
            "size": [entry.stamp.size for entry in rows],
            "modified_ns": [entry.stamp.modified_ns for entry in rows],
            "tag": [entry.stamp.tag for entry in rows],
            "rows": [entry.rows for entry in rows],
            "key_ids": [[key.key_id for key in sorted_refs(entry.keys)] for entry in rows],
            "fingerprints": [[key.fingerprint for key in sorted_refs(entry.keys)] for entry in rows],
            "subjects": [entry.subjects for entry in rows],
        },
        schema=_BASE_SCHEMA.with_metadata(
            {
                _FORMAT_KEY: str(FORMAT).encode(),
                _COVERED_KEY: json.dumps(
                    [
                        [[item.topic, item.partition, item.first, item.end] for item in entry.covered]
                        for entry in rows
                    ]
                ).encode(),
                _SEGMENTS_KEY: json.dumps(
                    {path: [stamp.size, stamp.modified_ns, stamp.tag] for path, stamp in segments.items()}
                ).encode(),
            }
        ),
    )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return bytes(sink.getvalue().to_pybytes())


def _decode_base(data: bytes) -> tuple[dict[str, FileEntry], dict[str, Stamp]]:
    table = pq.read_table(pa.BufferReader(data))
    metadata = table.schema.metadata or {}
    if metadata.get(_FORMAT_KEY) != str(FORMAT).encode():
        return {}, {}
    columns = [table.column(name).to_pylist() for name in _BASE_SCHEMA.names]
    covered = json.loads(metadata.get(_COVERED_KEY, b"[]"))
    key_sets: dict[tuple[tuple[str, str | None], ...], frozenset[KeyRef]] = {}  # few distinct sets
    entries = {}
    for (name, size, modified, tag, rows, key_ids, fingerprints, subjects), ranges in zip(
        zip(*columns, strict=True), covered, strict=True
    ):
        pairs = tuple(zip(key_ids, fingerprints, strict=True))
        keys = key_sets.get(pairs)
        if keys is None:
            keys = key_sets[pairs] = frozenset(KeyRef(key_id, fingerprint) for key_id, fingerprint in pairs)
        entries[name] = FileEntry(
            Stamp(size, modified, tag),
            rows,
            keys,
            subjects,
            tuple(CoveredRange(*item) for item in ranges),
        )
    segments = {
        path: Stamp(size, modified, tag)
        for path, (size, modified, tag) in json.loads(metadata.get(_SEGMENTS_KEY, b"{}")).items()
    }
    return entries, segments


# ------------------------------------------------------------------------------------ base and views


@dataclass(slots=True)
class DateManifest:
    """What the manifest of one area and date says.

    ``base`` is the base's entry per file name; ``versions`` adds, per name, the
    entries of the segments read (a file may have several versions described);
    ``folded`` holds the open segments folded into the base with their stamps
    (not read again until they change); ``closed`` the closed segments read,
    which may be deleted once a base holding their entries is published.
    """

    base: dict[str, FileEntry] = field(default_factory=dict)
    versions: dict[str, list[FileEntry]] = field(default_factory=dict)
    folded: dict[str, Stamp] = field(default_factory=dict)
    closed: list[str] = field(default_factory=list)
    segments_read: bool = False
    """True if a segment was read: the base does not hold all it knows."""

    def entry(self, name: str, stamp: Stamp) -> FileEntry | None:
        """The entry that describes the version of ``name`` listed with ``stamp``, if any."""
        base = self.base.get(name)
        if base is not None and base.fresh(stamp):
            return base
        return next((entry for entry in self.versions.get(name, ()) if entry.fresh(stamp)), None)


def _read_base(storage: Storage, area: str, call_date: date) -> tuple[dict[str, FileEntry], dict[str, Stamp]]:
    path = manifest_path(area, call_date)
    data = storage.read(path)
    if data is None:
        return {}, {}
    try:
        return _decode_base(data)
    except (ValueError, KeyError, TypeError, OSError) as exc:  # pyarrow's "not Parquet" is an OSError
        log.warning("ignoring the unreadable manifest %s: %s", path, exc)
        return {}, {}


def _read_segment(storage: Storage, path: str) -> tuple[dict[str, FileEntry], bool]:
    """The entries of the segment at ``path`` and whether it is closed; empty if unusable."""
    data = storage.read(path)
    if data is None:
        return {}, False
    try:
        document = json.loads(data)
        if document.get("format") != FORMAT:
            return {}, False
        files = {name: _entry_of_document(entry) for name, entry in document["files"].items()}
        return files, bool(document.get("closed"))
    except (ValueError, KeyError, TypeError, AttributeError, AssertionError) as exc:
        log.warning("ignoring the unreadable manifest segment %s: %s", path, exc)
        return {}, False


def load_date(
    storage: Storage, area: str, call_date: date, segments: Mapping[str, Stamp] | None = None
) -> DateManifest:
    """The manifest of ``call_date`` in ``area``: its base and the segments not folded into it.

    ``segments`` are the date's segment files with their stamps, as a listing of
    the manifest directory reported them (listed when not given).
    """
    base, folded = _read_base(storage, area, call_date)
    listed = segments if segments is not None else storage.list_stamped(manifest_segment_dir(area, call_date))
    view = DateManifest(base)
    for path, stamp in listed.items():
        known = folded.get(path)
        if known is not None and known.same_version(stamp):
            view.folded[path] = known
            continue
        files, closed = _read_segment(storage, path)
        view.segments_read = True
        for name, entry in files.items():
            view.versions.setdefault(name, []).append(entry)
        if closed:
            view.closed.append(path)
        else:
            view.folded[path] = stamp
    return view


def load(storage: Storage, area: str, call_date: date) -> dict[str, FileEntry]:
    """The base's entries of the manifest of ``call_date`` in ``area`` by file name; empty if unusable."""
    return _read_base(storage, area, call_date)[0]


def save(
    storage: Storage,
    area: str,
    call_date: date,
    entries: dict[str, FileEntry],
    *,
    folded: Mapping[str, Stamp] | None = None,
    closed: Iterable[str] = (),
) -> None:
    """Publish the base of ``call_date`` in ``area`` with ``entries``, or delete it if there are none.

    ``folded`` are the open segments whose entries it holds (so they are not read
    again until they change); ``closed`` the closed segments it holds, deleted
    once the base is published (never written again by their writer).
    """
    path = manifest_path(area, call_date)
    if entries or folded:
        storage.publish(path, _encode_base(entries, folded or {}))
    else:
        storage.delete(path)
    for segment in closed:
        storage.delete(segment)


def record(storage: Storage, written: Iterable[str] = (), deleted: Iterable[str] = ()) -> None:
    """Bring the manifests up to date for the data files just ``written`` (published) and ``deleted``."""
    by_date: dict[tuple[str, date], list[tuple[str, str, bool]]] = {}
    for paths, exists in ((written, True), (deleted, False)):
        for path in paths:
            parsed = parse_data_path(path)
            if parsed is not None:
                by_date.setdefault((parsed.area, parsed.call_date), []).append((path, parsed.name, exists))
    for (area, call_date), files in sorted(by_date.items()):
        entries, folded = _read_base(storage, area, call_date)
        for path, name, exists in files:
            entries.pop(name, None)
            stamp = storage.stamp(path) if exists else None
            if stamp is None:
                continue
            try:
                entries[name] = read_entry(storage, path, stamp)
            except (OSError, ValueError):  # gone again, or unreadable: the next search reads it
                continue
        save(storage, area, call_date, entries, folded=folded)


def forget_date(storage: Storage, area: str, call_date: date) -> None:
    """Delete the manifest of ``call_date`` in ``area``: its base and its segments (retention)."""
    for segment in storage.list(manifest_segment_dir(area, call_date)):
        storage.delete(segment)
    storage.delete(manifest_path(area, call_date))


# --------------------------------------------------------------------------------- segment writer


@dataclass(slots=True)
class _OpenSegment:
    path: str
    files: dict[str, dict[str, object]] = field(default_factory=dict)


class SegmentWriter:
    """Adds the files one process publishes to the manifests of their dates, in segments of its own.

    Calls are serialised by a lock (the worker publishes from threads). A failed segment write is
    logged and forgotten (the next search reads those files' footers); it never
    fails the publish of the data it describes.
    """

    def __init__(self, storage: Storage, entries_per_segment: int = SEGMENT_ENTRIES) -> None:
        self._storage = storage
        self._id = secrets.token_hex(8)
        self._sequence = 0
        self._limit = entries_per_segment
        self._open: OrderedDict[tuple[str, date], _OpenSegment] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, path: str, entry: FileEntry) -> None:
        """Describe the data file at ``path`` with ``entry`` in the segment of its date."""
        parsed = parse_data_path(path)
        if parsed is None:
            return
        with self._lock:
            self._add((parsed.area, parsed.call_date), parsed.name, entry)

    def _add(self, group: tuple[str, date], name: str, entry: FileEntry) -> None:
        segment = self._open.pop(group, None)
        if segment is None:
            self._sequence += 1
            directory = manifest_segment_dir(*group)
            segment = _OpenSegment(f"{directory}/{self._id}-{self._sequence:06d}.json")
        segment.files[name] = _entry_document(entry)
        closing = len(segment.files) >= self._limit
        if self._write(segment, closed=closing) and not closing:
            self._open[group] = segment
        while len(self._open) > OPEN_DATES:
            _, oldest = self._open.popitem(last=False)
            self._write(oldest, closed=True)

    def _write(self, segment: _OpenSegment, closed: bool) -> bool:
        document = {"format": FORMAT, "closed": closed, "files": segment.files}
        try:
            self._storage.publish(segment.path, json.dumps(document, separators=(",", ":")).encode())
        except StorageError as exc:
            log.warning("could not write the manifest segment %s (a search reads the footers): %s",
                        segment.path, exc)  # fmt: skip
            return False
        return True
