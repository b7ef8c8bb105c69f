"""The path grammar of the store, built and parsed here only.

Deterministic object names: a replay of the same offsets produces the same names.
``cdr/call_date=YYYY-MM-DD/<topic>+<partition>+<first offset, 20 digits>.parquet``; a quarantined
row lives under the same name with ``restricted/`` in place of ``cdr/``. Compaction replaces a
date's files with ``compacted~<pass id>~<index>.parquet``: ``~`` never occurs in a Kafka topic
name, so no ingest file can take a compacted file's name.
"""

from __future__ import annotations

from datetime import date
from typing import NamedTuple

DATASET = "cdr"
QUARANTINE = "restricted"
"""Rows taken out of use (restriction, objection): outside ``cdr/``, so no analyst query sees them."""
AREAS = (DATASET, QUARANTINE)
"""Every area that holds data files; lifecycle operations (erasure, export, retention) cover all."""
SUFFIX = ".parquet"
_PARTITION_PREFIX = "call_date="
COMPACTED_PREFIX = "compacted~"
"""The start of the name of a file written by compaction (:mod:`pipeline.compaction`)."""
COMPACTION_DIR = "_cdrpipe/compaction"
"""Compaction's own records: per call date, the offsets it covered, and the journal of a pass."""
MANIFEST_DIR = "_cdrpipe/manifest"
"""Per area and call date, what the store knows of its data files (:mod:`pipeline.store.manifest`)."""


class DataFilePath(NamedTuple):
    """The parts of a data file's path: ``<area>/call_date=<call_date>/<name>``."""

    area: str
    call_date: date
    name: str


def partition_name(call_date: date) -> str:
    """The Hive partition directory name of ``call_date`` (``call_date=YYYY-MM-DD``), in any area."""
    return f"{_PARTITION_PREFIX}{call_date.isoformat()}"


def partition_dir(call_date: date, area: str = DATASET) -> str:
    """The Hive partition directory of ``call_date`` in ``area``, relative to the store root."""
    return f"{area}/{partition_name(call_date)}"


def parse_data_path(path: str) -> DataFilePath | None:
    """The parts of a data file's path ``<area>/call_date=YYYY-MM-DD/<name>.parquet``, else None."""
    parts = path.split("/")
    if len(parts) != 3 or parts[0] not in AREAS or not parts[2].endswith(SUFFIX):
        return None
    if not parts[1].startswith(_PARTITION_PREFIX):
        return None
    try:
        return DataFilePath(parts[0], date.fromisoformat(parts[1].removeprefix(_PARTITION_PREFIX)), parts[2])
    except ValueError:
        return None


def partition_date(path: str) -> date | None:
    """The call date of a data file at ``<area>/call_date=YYYY-MM-DD/<name>.parquet``, else None."""
    parsed = parse_data_path(path)
    return None if parsed is None else parsed.call_date


def manifest_path(area: str, call_date: date) -> str:
    """The store-relative path of the manifest of ``call_date`` in ``area`` (its base, a Parquet file)."""
    return f"{MANIFEST_DIR}/{area}/{partition_name(call_date)}{SUFFIX}"


def manifest_segment_dir(area: str, call_date: date) -> str:
    """The directory of the segments writers add to the manifest of ``call_date`` in ``area``."""
    return f"{MANIFEST_DIR}/{area}/{partition_name(call_date)}"


def parse_manifest_segment(path: str) -> tuple[str, date] | None:
    """The area and call date of a segment at ``<manifest dir>/<area>/call_date=D/<name>.json``, else None."""
    parts = path.removeprefix(f"{MANIFEST_DIR}/").split("/")
    if len(parts) != 3 or parts[0] not in AREAS or not parts[2].endswith(".json"):
        return None
    try:
        return parts[0], date.fromisoformat(parts[1].removeprefix(_PARTITION_PREFIX))
    except ValueError:
        return None


class BatchOrigin(NamedTuple):
    """Where an ingest file's rows come from: the batch of ``topic``/``partition`` at ``first_offset``."""

    topic: str
    partition: int
    first_offset: int


def batch_origin(name: str) -> BatchOrigin | None:
    """The batch a file's name (``<topic>+<partition>+<first offset>.<extension>``) comes from, else None.

    Ingest files (``.parquet``) and intents (``.json``) are named so.
    """
    parts = name.rsplit(".", 1)[0].rsplit("+", 2)
    if "." not in name or len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    return BatchOrigin(parts[0], int(parts[1]), int(parts[2]))


def compacted_name(pass_id: str, index: int) -> str:
    """The name of the ``index``-th file a compaction pass writes into a partition directory."""
    return f"{COMPACTED_PREFIX}{pass_id}~{index:03d}{SUFFIX}"


def is_compacted(name: str) -> bool:
    """Whether a data file's name is one compaction wrote."""
    return name.startswith(COMPACTED_PREFIX)


def coverage_path(call_date: date) -> str:
    """Where the offsets covered by the compaction of ``call_date`` are recorded."""
    return f"{COMPACTION_DIR}/covered/{partition_name(call_date)}.json"


def journal_path(call_date: date) -> str:
    """Where the pass compacting ``call_date`` records what it replaces, until it is finished."""
    return f"{COMPACTION_DIR}/journal/{partition_name(call_date)}.json"


def journal_date(path: str) -> date | None:
    """The call date of a journal at :func:`journal_path`, else None."""
    name = path.rsplit("/", 1)[-1].removesuffix(".json")
    if not path.startswith(f"{COMPACTION_DIR}/journal/") or not name.startswith(_PARTITION_PREFIX):
        return None
    try:
        return date.fromisoformat(name.removeprefix(_PARTITION_PREFIX))
    except ValueError:
        return None


def file_path(call_date: date, topic: str, partition: int, first_offset: int) -> str:
    """The store-relative path of the file that starts at ``first_offset`` of ``topic``/``partition``."""
    return f"{partition_dir(call_date)}/{topic}+{partition}+{first_offset:020d}{SUFFIX}"


def in_area(path: str, area: str) -> str:
    """``path`` (``<area>/call_date=…/<name>``) in ``area``, under the same partition and name."""
    return f"{area}/{path.split('/', 1)[1]}"
