"""Find the files that hold a subject, through the subject index in each file's footer.

Contract:

* :func:`list_data_files` lists the published data files under
  ``<area>/call_date=YYYY-MM-DD/`` of every area (the dataset ``cdr/`` and
  the quarantine ``restricted/``, or the ones asked for); any other file
  under an area is returned apart as a stray, never parsed, so it stops no
  lifecycle operation.
  :func:`skip_strays` logs a warning and writes an audit entry naming them.
* :func:`search` reads every file's footer (several at a time: on S3 each
  footer read is a round trip) and returns every file that holds a row of
  the subject (and a few that do not: the index has false positives) and
  the key ids of every file it read. A file without a subject index might
  hold anything and is a candidate; a file without recorded key ids has its
  ``key_id`` column read. A file whose footer cannot be read (not Parquet,
  truncated) is listed as unreadable, logged, and stops nothing; a file that
  vanished meanwhile is left out. With ``modified_since`` only files modified
  at or after that instant are searched.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.lifecycle.requests.audit import append_audit
from pipeline.numbers.text import redact_numbers
from pipeline.store import subject_index
from pipeline.store.naming import AREAS, partition_date
from pipeline.store.parquet import KEY_IDS_METADATA_KEY
from pipeline.store.storage import Storage

log = logging.getLogger(__name__)

FOOTER_READERS = 8
_GONE, _UNREADABLE = "gone", "unreadable"


@dataclass(frozen=True, slots=True)
class DataFiles:
    """The data files of a store, and the files under its areas that are not data files."""

    paths: list[str]
    strays: list[str]


def list_data_files(
    storage: Storage, modified_since: datetime | None = None, areas: tuple[str, ...] = AREAS
) -> DataFiles:
    """Every published data file of ``areas`` (modified at or after ``modified_since``), and the strays."""
    paths: list[str] = []
    strays: list[str] = []
    for area in areas:
        for path in storage.list(area, modified_since):
            if partition_date(path) is not None:
                paths.append(path)
            else:
                # A stray's name is anybody's choice and goes into logs, audit entries and
                # receipts: a phone number in it is replaced like in any log line.
                strays.append(redact_numbers(path))
    return DataFiles(paths, strays)


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
    key_ids: dict[str, frozenset[str]]
    strays: list[str]
    unreadable: list[str]

    def all_key_ids(self) -> frozenset[str]:
        """Every key id of every file read."""
        return frozenset().union(*self.key_ids.values())


def _key_ids(storage: Storage, path: str, metadata: dict[bytes, bytes]) -> frozenset[str]:
    recorded = metadata.get(KEY_IDS_METADATA_KEY)
    if recorded is not None:
        return frozenset(json.loads(recorded))
    with storage.open_input(path) as handle:  # written before key ids were recorded in footers
        column = pq.read_table(handle, columns=["key_id"]).column("key_id")
    return frozenset(pc.unique(column).drop_null().to_pylist())


def search(
    storage: Storage,
    pseudonyms: Iterable[str],
    progress: Callable[[int], None] | None = None,
    modified_since: datetime | None = None,
    areas: tuple[str, ...] = AREAS,
) -> Search:
    """Read the footers of the data files of ``areas``: the files that may hold ``pseudonyms``, key ids."""
    wanted = list(pseudonyms)

    def read_footer(path: str) -> tuple[bool, frozenset[str]] | str:
        try:
            with storage.open_input(path) as handle:
                metadata = pq.read_metadata(handle).metadata or {}
            index = metadata.get(subject_index.METADATA_KEY)
            candidate = index is None or subject_index.might_contain_any(index, wanted)
            return candidate, _key_ids(storage, path, metadata)
        except FileNotFoundError:
            return _GONE
        except (OSError, ValueError) as exc:  # pyarrow's "not a Parquet file" errors are ValueErrors
            log.warning("cannot read the footer of %s: %s", path, exc)
            return _UNREADABLE

    listed = list_data_files(storage, modified_since, areas)
    found: list[str] = []
    unreadable: list[str] = []
    key_ids: dict[str, frozenset[str]] = {}
    with ThreadPoolExecutor(FOOTER_READERS, thread_name_prefix="cdrpipe-footer") as readers:
        for path, footer in zip(listed.paths, readers.map(read_footer, listed.paths), strict=True):
            if footer == _UNREADABLE:
                unreadable.append(path)
            elif not isinstance(footer, str):
                candidate, key_ids[path] = footer
                if candidate:
                    found.append(path)
            if progress is not None:
                progress(1)
    return Search(found, key_ids, listed.strays, unreadable)
