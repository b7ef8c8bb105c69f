"""Find the files that hold a subject, through the subject index in each file's footer.

Contract:

* :func:`list_data_files` lists the published data files under
  ``<area>/call_date=YYYY-MM-DD/`` of every area (the dataset ``cdr/`` and
  the quarantine ``restricted/``, or the ones asked for); any other file
  under an area is returned apart as a stray, never parsed, so it stops no
  lifecycle operation.
  :func:`skip_strays` logs a warning and writes an audit entry naming them.
* :func:`survey` reads the store once: it lists it, and takes each file's
  entry from the ``previous`` survey when the file is unchanged, else from the
  store manifest, else from its footer; the passes of one request share their
  surveys, so a second pass or a verification reads only what changed.
  :meth:`Survey.search` finds the subject's candidates in a survey.
* :func:`search` (one survey, searched) lists the store, takes what the store manifest
  (:mod:`pipeline.store.manifest`) says of each file it still describes
  (same size and modification time), and reads the footer of every other
  file (several at a time: on S3 each footer read is a round trip). It
  returns every file that holds a row of the subject (and a few that do not:
  the index has false positives) and the key ids of every file listed. A file
  without a subject index might hold anything and is a candidate; a file
  without recorded key ids has its ``key_id`` column read. A file whose
  footer cannot be read (not Parquet, truncated) is listed as unreadable,
  logged, and stops nothing; a file that vanished meanwhile is left out.
  With ``modified_since`` only files modified at or after that instant are
  searched. The footers it read go into the manifests of their dates, and
  entries of files no longer listed are dropped, so the next search of a
  quiet date opens one manifest and no footer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import date, datetime

from pipeline.keys.fingerprint import KeyRef
from pipeline.lifecycle.requests.audit import append_audit
from pipeline.numbers.text import redact_numbers
from pipeline.observability.progress import NO_PROGRESS, Progress
from pipeline.store import manifest, subject_index
from pipeline.store.naming import AREAS, MANIFEST_DIR, parse_data_path, parse_manifest_segment
from pipeline.store.storage import Stamp, Storage

log = logging.getLogger(__name__)

FOOTER_READERS = 8
_GONE, _UNREADABLE = "gone", "unreadable"


@dataclass(frozen=True, slots=True)
class DataFiles:
    """The data files of a store, and the files under its areas that are not data files."""

    paths: list[str]
    strays: list[str]


def _listing(
    storage: Storage, modified_since: datetime | None, areas: tuple[str, ...]
) -> tuple[dict[str, Stamp], list[str]]:
    """The data files of ``areas`` (modified at or after ``modified_since``), stamped, and the strays."""
    since_ns = None if modified_since is None else int(modified_since.timestamp() * 1e9)
    stamps: dict[str, Stamp] = {}
    strays: list[str] = []
    for area in areas:
        for path, stamp in storage.list_stamped(area).items():
            if since_ns is not None and stamp.modified_ns < since_ns:
                continue
            if parse_data_path(path) is not None:
                stamps[path] = stamp
            else:
                # A stray's name is anybody's choice and goes into logs, audit entries and
                # receipts: a phone number in it is replaced like in any log line.
                strays.append(redact_numbers(path))
    return stamps, strays


def list_data_files(
    storage: Storage, modified_since: datetime | None = None, areas: tuple[str, ...] = AREAS
) -> DataFiles:
    """Every published data file of ``areas`` (modified at or after ``modified_since``), and the strays."""
    stamps, strays = _listing(storage, modified_since, areas)
    return DataFiles(list(stamps), strays)


def data_files(
    storage: Storage, modified_since: datetime | None = None, areas: tuple[str, ...] = AREAS
) -> list[str]:
    """Every published data file of ``areas`` (modified at or after ``modified_since``)."""
    return list_data_files(storage, modified_since, areas).paths


def skip_strays(storage: Storage, strays: list[str], operation: str, now: datetime) -> None:
    """Warn about and audit the files ``operation`` skipped because they are not data files."""
    if not strays:
        return
    log.warning(
        "%s skipped %d files under %s/ outside call_date=YYYY-MM-DD/ directories: %s",
        operation,
        len(strays),
        "/, ".join(AREAS),
        ", ".join(strays),
    )
    append_audit(storage, "stray-files", {"operation": operation, "files_skipped": strays}, now)


@dataclass(frozen=True, slots=True)
class Search:
    """What a search of the store's footers found."""

    candidates: list[str]
    keys: dict[str, frozenset[KeyRef]]
    """Every file read, with the keys its footer records."""
    strays: list[str]
    unreadable: list[str]

    def all_keys(self) -> frozenset[KeyRef]:
        """Every key of every file read."""
        return frozenset().union(*self.keys.values())


@dataclass(frozen=True, slots=True)
class Survey:
    """One reading of the store: every data file listed, and what its manifest entry or footer says.

    ``footers_read`` counts the footers this reading opened (the files no fresh
    manifest entry described); ``files_read`` the files whose entry it had to
    take anew (``footers_read`` plus the ones found in a manifest), the rest
    being the unchanged files of the ``previous`` survey it was refreshed from.
    """

    areas: tuple[str, ...]
    stamps: dict[str, Stamp]
    entries: dict[str, manifest.FileEntry]
    strays: list[str]
    unreadable: list[str]
    footers_read: int
    files_read: int

    def search(self, pseudonyms: Iterable[str], modified_since: datetime | None = None) -> Search:
        """The files that may hold ``pseudonyms`` (modified at or after ``modified_since``), and key ids."""
        probe = subject_index.Probe(pseudonyms)
        since_ns = None if modified_since is None else int(modified_since.timestamp() * 1e9)
        found: list[str] = []
        keys: dict[str, frozenset[KeyRef]] = {}
        for path, stamp in self.stamps.items():
            if since_ns is not None and stamp.modified_ns < since_ns:
                continue
            entry = self.entries.get(path)
            if entry is not None:
                keys[path] = entry.keys
                if entry.might_hold(probe):
                    found.append(path)
        # An unreadable file has no entry: it is reported, and the caller decides what it means.
        unreadable = [
            path for path in self.unreadable if since_ns is None or self.stamps[path].modified_ns >= since_ns
        ]
        return Search(found, keys, self.strays, unreadable)

    def without(self, storage: Storage, deleted: Iterable[str]) -> Survey:
        """This survey less the files since ``deleted`` that the store no longer has.

        A file said to be deleted is left out only once the store confirms it is gone
        (one stamp each): a verification checks the store, not what its writers said.
        """
        gone = {path for path in set(deleted) if storage.stamp(path) is None}
        return replace(
            self,
            stamps={path: stamp for path, stamp in self.stamps.items() if path not in gone},
            entries={path: entry for path, entry in self.entries.items() if path not in gone},
            unreadable=[path for path in self.unreadable if path not in gone],
        )


def survey(
    storage: Storage,
    areas: tuple[str, ...] = AREAS,
    previous: Survey | None = None,
    progress: Progress = NO_PROGRESS,
    *,
    save_manifests: bool = True,
) -> Survey:
    """Read the store: list it, and take each file's entry from ``previous``, a manifest or its footer.

    A file whose stamp is the one ``previous`` listed keeps its entry without any
    read; the others are looked up in the manifest of their date (base and
    segments) and, without a fresh entry there, read through their footer, 8 at
    a time. The entries found anew go into the bases of their dates, the closed
    segments folded are deleted and entries of files no longer listed are
    dropped, so the next reading of a quiet date opens one base and no footer
    (``save_manifests=False`` leaves the manifests alone, for readers outside the lifecycle path).
    """
    if previous is not None and previous.areas != areas:
        previous = None
    # Segments are listed before the data files: every entry they hold then describes a file
    # published before the data listing, which that listing shows.
    segments = _segments_by_date(storage, areas)
    stamps, strays = _listing(storage, None, areas)
    progress.start(len(stamps))
    entries: dict[str, manifest.FileEntry] = {}
    by_date: dict[tuple[str, date], list[tuple[str, str]]] = {}
    for path, stamp in stamps.items():
        known = previous.entries.get(path) if previous is not None else None
        if known is not None and known.fresh(stamp):
            entries[path] = known
        else:
            parsed = parse_data_path(path)
            assert parsed is not None  # the listing holds data files only
            by_date.setdefault((parsed.area, parsed.call_date), []).append((path, parsed.name))
    progress.advance(len(entries))
    manifests = {group: manifest.load_date(storage, *group, segments.get(group, {})) for group in by_date}
    to_read: list[str] = []
    for group, files in by_date.items():
        for path, name in files:
            entry = manifests[group].entry(name, stamps[path])
            if entry is None:
                to_read.append(path)
            else:
                entries[path] = entry
                progress.advance()
    unreadable = _read_footers(storage, {path: stamps[path] for path in to_read}, entries, progress)
    if save_manifests:
        _refresh_manifests(storage, stamps, by_date, manifests, entries)
    for path in [path for path in stamps if path not in entries and path not in unreadable]:
        del stamps[path]  # vanished while it was read
    return Survey(
        areas,
        stamps,
        entries,
        strays,
        unreadable,
        footers_read=len(to_read),
        files_read=sum(len(files) for files in by_date.values()),
    )


def _segments_by_date(storage: Storage, areas: tuple[str, ...]) -> dict[tuple[str, date], dict[str, Stamp]]:
    """The manifest segments of ``areas`` with their stamps, by area and call date."""
    segments: dict[tuple[str, date], dict[str, Stamp]] = {}
    for area in areas:
        for path, stamp in storage.list_stamped(f"{MANIFEST_DIR}/{area}").items():
            group = parse_manifest_segment(path)
            if group is not None:
                segments.setdefault(group, {})[path] = stamp
    return segments


def _read_footers(
    storage: Storage, stamps: dict[str, Stamp], entries: dict[str, manifest.FileEntry], progress: Progress
) -> list[str]:
    """Read the footers of the files of ``stamps`` into ``entries``, 8 at a time; return the unreadable."""

    def read_footer(path: str) -> manifest.FileEntry | str:
        try:
            return manifest.read_entry(storage, path, stamps[path])
        except FileNotFoundError:
            return _GONE
        except (OSError, ValueError) as exc:  # pyarrow's "not a Parquet file" errors are ValueErrors
            log.warning("cannot read the footer of %s: %s", path, exc)
            return _UNREADABLE

    unreadable: list[str] = []
    with ThreadPoolExecutor(FOOTER_READERS, thread_name_prefix="cdrpipe-footer") as readers:
        for path, footer in zip(stamps, readers.map(read_footer, stamps), strict=True):
            if footer == _UNREADABLE:
                unreadable.append(path)
            elif isinstance(footer, manifest.FileEntry):
                entries[path] = footer
            progress.advance()
    return unreadable


def search(
    storage: Storage,
    pseudonyms: Iterable[str],
    progress: Progress = NO_PROGRESS,
    modified_since: datetime | None = None,
    areas: tuple[str, ...] = AREAS,
    *,
    save_manifests: bool = True,
) -> Search:
    """The files of ``areas`` that may hold ``pseudonyms``, and their keys: from manifests, else footers."""
    found = survey(storage, areas, progress=progress, save_manifests=save_manifests)
    return found.search(pseudonyms, modified_since)


def _refresh_manifests(
    storage: Storage,
    stamps: dict[str, Stamp],
    by_date: dict[tuple[str, date], list[tuple[str, str]]],
    manifests: dict[tuple[str, date], manifest.DateManifest],
    entries: dict[str, manifest.FileEntry],
) -> None:
    """Publish the bases of the dates whose files were taken anew: the entries of every file listed.

    Only the dates with a file taken anew are written: the other dates' bases
    already hold their files.
    """
    listed: dict[tuple[str, date], dict[str, manifest.FileEntry]] = {}
    for path in stamps:
        parsed = parse_data_path(path)
        if parsed is not None and (parsed.area, parsed.call_date) in by_date and path in entries:
            listed.setdefault((parsed.area, parsed.call_date), {})[parsed.name] = entries[path]
    for group in by_date:
        known = manifests[group]
        updated = listed.get(group, {})
        if updated != known.base or known.segments_read:
            manifest.save(storage, *group, updated, folded=known.folded, closed=known.closed)
