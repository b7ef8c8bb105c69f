"""Find the files that hold a subject, through the subject index in each file's footer.

Contract: :func:`find_subject_files` returns every data file that holds a row
of the subject (it may return a few that do not: the index has false
positives, which the rewriter finds empty-handed). Only footers are read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pyarrow.parquet as pq

from pipeline.sink import subject_index
from pipeline.sink.naming import DATASET, SUFFIX
from pipeline.sink.storage import Storage


def data_files(storage: Storage) -> list[str]:
    """Every published data file of the store."""
    return [path for path in storage.list(DATASET) if path.endswith(SUFFIX)]


def find_subject_files(
    storage: Storage,
    pseudonyms: Iterable[str],
    progress: Callable[[int], None] | None = None,
) -> list[str]:
    """The data files whose subject index may contain any of ``pseudonyms``."""
    wanted = list(pseudonyms)
    found = []
    for path in data_files(storage):
        with storage.open_input(path) as handle:
            metadata = pq.read_metadata(handle).metadata or {}
        index = metadata.get(subject_index.METADATA_KEY)
        if index is None or any(subject_index.might_contain(index, pseudonym) for pseudonym in wanted):
            found.append(path)
        if progress is not None:
            progress(1)
    return found
