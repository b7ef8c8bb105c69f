"""The ingest publish keeps the store manifest: segments of its own per writer, folded by searches."""

from __future__ import annotations

import io
import random
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.lifecycle.operations.finder import search, survey
from pipeline.lifecycle.subject import subject_from_number
from pipeline.sink.batch import PartitionFlush, PendingFile
from pipeline.sink.publisher import BatchPublisher
from pipeline.store import manifest, subject_index
from pipeline.store.naming import DATASET, manifest_segment_dir
from tests.support.counting_storage import CountingStorage
from tests.support.lifecycle_store import CLASSIFIER, KEYS, SUBJECT, parquet_file

DAY = date(2026, 11, 1)
DAY_DIR = "cdr/call_date=2026-11-01"
NOON = "2026-11-01T12:00:00+00:00"


def _flush(partition: int, first: int, caller: str) -> PartitionFlush:
    table = pq.read_table(io.BytesIO(parquet_file(KEYS.keys[1], [(f"c{partition}-{first}", caller, NOON)])))
    path = f"{DAY_DIR}/t+{partition}+{first:020d}.parquet"
    pending = PendingFile(path, table, pa.array([first], pa.int64()), frozenset({KEYS.keys[1].ref}))
    return PartitionFlush("t", partition, first, (pending,), first + 1)


def _pseudonyms() -> frozenset[str]:
    return subject_from_number(SUBJECT, KEYS, CLASSIFIER).pseudonyms


def test_two_workers_publishing_into_one_date_lose_no_entry_and_a_search_reads_no_footer(
    tmp_path: Path,
) -> None:
    storage = CountingStorage(tmp_path)
    workers = [BatchPublisher(storage), BatchPublisher(storage)]
    for first in range(0, 10):  # interleaved: each publish rewrites only its own writer's segment
        workers[0].publish(_flush(0, first, "0475000111" if first == 3 else "0475999888"))
        workers[1].publish(_flush(1, first, "0475999888"))
    assert len(storage.list(manifest_segment_dir(DATASET, DAY))) == 2
    found = search(storage, _pseudonyms())
    assert storage.opened == []
    assert found.candidates == [f"{DAY_DIR}/t+0+{3:020d}.parquet"]
    entry = manifest.load(storage, DATASET, DAY)[f"t+1+{4:020d}.parquet"]
    assert entry.covered == (manifest.CoveredRange("t", 1, 4, 5),) and entry.rows == 1


def test_a_search_folds_closed_segments_and_deletes_them_and_keeps_the_open_one(tmp_path: Path) -> None:
    storage = CountingStorage(tmp_path)
    publisher = BatchPublisher(storage)
    for first in range(manifest.SEGMENT_ENTRIES + 3):
        publisher.publish(_flush(0, first, "0475999888"))
    segments = storage.list(manifest_segment_dir(DATASET, DAY))
    assert len(segments) == 2
    search(storage, _pseudonyms())
    assert storage.opened == []
    assert len(storage.list(manifest_segment_dir(DATASET, DAY))) == 1  # the closed one is in the base
    assert len(manifest.load(storage, DATASET, DAY)) == manifest.SEGMENT_ENTRIES + 3
    again = survey(storage)
    assert again.footers_read == 0 and storage.opened == []


def test_a_lost_corrupt_or_stale_segment_costs_footer_reads_never_a_row(tmp_path: Path) -> None:
    storage = CountingStorage(tmp_path)
    publisher = BatchPublisher(storage)
    for first in range(6):
        publisher.publish(_flush(0, first, "0475000111" if first in (1, 4) else "0475999888"))
    (segment,) = storage.list(manifest_segment_dir(DATASET, DAY))
    storage.publish(segment, b"{not json")
    assert search(storage, _pseudonyms()).candidates == [
        f"{DAY_DIR}/t+0+{1:020d}.parquet",
        f"{DAY_DIR}/t+0+{4:020d}.parquet",
    ]
    assert len(storage.opened) == 6
    # A file replaced behind the manifest (another writer, no segment) is read again.
    replaced = f"{DAY_DIR}/t+0+{2:020d}.parquet"
    storage.publish(replaced, parquet_file(KEYS.keys[1], [("x", "0475000111", NOON), ("y", "0475999", NOON)]))
    storage.opened.clear()
    assert replaced in search(storage, _pseudonyms()).candidates and storage.opened == [replaced]


def test_the_probe_agrees_with_the_index_it_reads() -> None:
    rng = random.Random(7)
    present = [f"{rng.getrandbits(128):032x}" for _ in range(300)]
    absent = [f"{rng.getrandbits(128):032x}" for _ in range(2_000)]
    index = subject_index.build(present)
    bitset = subject_index.decode(index)
    for pseudonym in present[:50] + absent:
        assert subject_index.Probe([pseudonym]).might_hold(bitset) == subject_index.might_contain(
            index, pseudonym
        )
    assert all(subject_index.Probe([pseudonym]).might_hold(bitset) for pseudonym in present)
    assert subject_index.Probe(present[:1]).might_hold(b"")  # not an index: rules nothing out
