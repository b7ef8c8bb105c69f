"""Find the files that hold a subject, through the subject index in each file's footer.

Contract: :func:`find_subject_files` returns every data file that holds a row
of the subject (it may return a few that do not: the index has false
positives, which the rewriter finds empty-handed). Only footers are read,
several at a time (on S3 each footer read is a round trip). With
``modified_since`` only files modified at or after that instant are searched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pyarrow.parquet as pq

from pipeline.sink import subject_index
from pipeline.sink.naming import DATASET, SUFFIX
from pipeline.sink.storage import Storage

FOOTER_READERS = 8


def data_files(storage: Storage, modified_since: datetime | None = None) -> list[str]:
    """Every published data file of the store (modified at or after ``modified_since``)."""
    return [path for path in storage.list(DATASET, modified_since) if path.endswith(SUFFIX)]


def find_subject_files(
    storage: Storage,
    pseudonyms: Iterable[str],
    progress: Callable[[int], None] | None = None,
    modified_since: datetime | None = None,
) -> list[str]:
    """The data files whose subject index may contain any of ``pseudonyms``."""
    wanted = list(pseudonyms)

    def may_hold_subject(path: str) -> bool:
        with storage.open_input(path) as handle:
            metadata = pq.read_metadata(handle).metadata or {}
        index = metadata.get(subject_index.METADATA_KEY)
        return index is None or subject_index.might_contain_any(index, wanted)

    found = []
    paths = data_files(storage, modified_since)
    with ThreadPoolExecutor(FOOTER_READERS, thread_name_prefix="cdrpipe-footer") as readers:
        for path, candidate in zip(paths, readers.map(may_hold_subject, paths), strict=True):
            if candidate:
                found.append(path)
            if progress is not None:
                progress(1)
    return found
