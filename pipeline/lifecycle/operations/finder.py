"""Find the files that hold a subject, through the subject index in each file's footer.

Contract:

* :func:`list_data_files` lists the published data files under
  ``<area>/call_date=YYYY-MM-DD/`` of every area (the dataset ``cdr/`` and
  the quarantine ``restricted/``, or the ones asked for); any other file
  under an area is returned apart as a stray, never parsed, so it stops no
  lifecycle operation.
  :func:`skip_strays` logs a warning and writes an audit entry naming them.
* :func:`search` lists the store, takes what the store manifest
  (:mod:`pipeline.store.manifest`) says of each file it still describes
  (same size and modification time), and reads the footer of every other
  file (several at a time: on S3 each footer read is a round trip). It
  returns every file that holds a row of the subject (and a few that do not:
  the index has false positives) and the keys (ids and fingerprints) of every
  file listed. A file
  without a subject index might hold anything and is a candidate; a file
  without recorded key ids has its ``key_id`` column read. A file whose
  footer cannot be read (not Parquet, truncated) is listed as unreadable,
  logged, and stops nothing; a file that vanished meanwhile is left out.
  With ``modified_since`` only files modified at or after that instant are
  searched. The footers it read go into the manifests of their dates, and
  entries of files no longer listed are dropped, so the next search of a
  quiet date opens one manifest and no footer (``save_manifests=False`` leaves
  the manifests alone, for readers outside the lifecycle path).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime

from pipeline.keys.fingerprint import KeyRef
from pipeline.lifecycle.requests.audit import append_audit
from pipeline.numbers.text import redact_numbers
from pipeline.store import manifest
from pipeline.store.naming import AREAS, parse_data_path
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


def search(
    storage: Storage,
    pseudonyms: Iterable[str],
    progress: Callable[[int], None] | None = None,
    modified_since: datetime | None = None,
    areas: tuple[str, ...] = AREAS,
    *,
    save_manifests: bool = True,
) -> Search:
    """The files of ``areas`` that may hold ``pseudonyms``, and key ids: from manifests, else footers."""
    wanted = list(pseudonyms)
    stamps, strays = _listing(storage, modified_since, areas)
    by_date: dict[tuple[str, date], list[tuple[str, str]]] = {}
    for path in stamps:
        parsed = parse_data_path(path)
        assert parsed is not None  # the listing holds data files only
        by_date.setdefault((parsed.area, parsed.call_date), []).append((path, parsed.name))
    manifests = {group: manifest.load(storage, *group) for group in by_date}
    entries: dict[str, manifest.FileEntry] = {}
    to_read: list[str] = []
    for group, files in by_date.items():
        for path, name in files:
            entry = manifests[group].get(name)
            if entry is not None and entry.fresh(stamps[path]):
                entries[path] = entry
            else:
                to_read.append(path)

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
        for path, footer in zip(to_read, readers.map(read_footer, to_read), strict=True):
            if footer == _UNREADABLE:
                unreadable.append(path)
            elif isinstance(footer, manifest.FileEntry):
                entries[path] = footer
    if save_manifests:
        _refresh_manifests(storage, by_date, manifests, entries, complete=modified_since is None)
    found: list[str] = []
    for path in stamps:
        entry = entries.get(path)
        if entry is not None and entry.might_hold(wanted):
            found.append(path)
        if progress is not None:
            progress(1)
    keys = {path: entries[path].keys for path in stamps if path in entries}
    return Search(found, keys, strays, unreadable)


def _refresh_manifests(
    storage: Storage,
    by_date: dict[tuple[str, date], list[tuple[str, str]]],
    manifests: dict[tuple[str, date], dict[str, manifest.FileEntry]],
    entries: dict[str, manifest.FileEntry],
    complete: bool,
) -> None:
    """Publish the manifests that a search found stale; drop entries of unlisted files if ``complete``."""
    for group, files in by_date.items():
        known = manifests[group]
        listed = {name: entries[path] for path, name in files if path in entries}
        updated = listed if complete else {**known, **listed}
        if updated != known:
            manifest.save(storage, *group, updated)
