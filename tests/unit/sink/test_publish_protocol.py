"""The publish protocol without Kafka: recorded boundaries make replays rebuild the same files."""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.formats.selection import FormatSelector, builtin_decoders
from pipeline.ingest.ingestor import Ingestor
from pipeline.ingest.records import RawRecord
from pipeline.keys.keyring import Key
from pipeline.keys.pseudonym import PartyPseudonymizer, Pseudonymizer
from pipeline.numbers.msisdn import NumberClassifier
from pipeline.sink.batch import PartitionFlush
from pipeline.sink.publisher import BatchPublisher, intent_path
from pipeline.store.errors import StorageError
from pipeline.store.storage import LocalStorage
from tests.support.samples import call_at, decode_context

KEY = ("cdr.raw", 0)


def _ingestor(flush_rows: int) -> Ingestor:
    parties = PartyPseudonymizer(NumberClassifier("BE", (2, 5)), Pseudonymizer(Key("k1", b"z" * 32, "t")), 64)
    formats = FormatSelector(builtin_decoders({}), {"cdr.raw": "canonical-json"}, decode_context())
    return Ingestor(formats, parties, flush_rows, 3600.0)


def _records(count: int) -> list[RawRecord]:
    days = ["2026-11-01T10:00:00+00:00", "2026-11-02T10:00:00+00:00"]
    return [
        RawRecord("cdr.raw", 0, offset, call_at(days[offset % 2], cdr_id=f"c{offset}"))
        for offset in range(count)
    ]


def _consume(ingestor: Ingestor, records: list[RawRecord], start: int) -> None:
    for record in records[start:]:
        assert ingestor.add(record) is None


def _rows(storage_root: Path) -> list[str]:
    return sorted(
        cdr_id
        for path in storage_root.glob("cdr/*/*.parquet")
        for cdr_id in pq.read_table(path)["cdr_id"].to_pylist()
    )


def test_replay_after_a_crash_between_publish_and_commit_rebuilds_the_same_batch(tmp_path: Path) -> None:
    records = _records(10)
    publisher = BatchPublisher(LocalStorage(tmp_path))

    first_owner = _ingestor(flush_rows=3)
    _consume(first_owner, records[:3], 0)
    assert first_owner.due() == [KEY]
    crashed = first_owner.take(KEY)
    assert (crashed.first_offset, crashed.commit_offset) == (0, 3)
    assert publisher.claim(crashed) == 3
    publisher.publish(crashed)  # ...and the worker dies before committing offset 3
    files_before = {path.name: path.read_bytes() for path in tmp_path.glob("cdr/*/*.parquet")}

    replay = _ingestor(flush_rows=7)  # another worker, other settings, cuts differently
    _consume(replay, records[:7], 0)
    attempt = replay.take(KEY)
    assert attempt.commit_offset == 7
    recorded_end = publisher.claim(attempt)
    assert recorded_end == 3
    replay.rewind(KEY, attempt.first_offset, recorded_end)
    _consume(replay, records, 0)  # the consumer was sought back to offset 0
    assert replay.due() == [KEY]
    rebuilt = replay.take(KEY)
    assert (rebuilt.first_offset, rebuilt.commit_offset) == (0, 3)
    assert publisher.claim(rebuilt) == 3
    publisher.publish(rebuilt)
    assert {
        path.name: path.read_bytes() for path in tmp_path.glob("cdr/*/*.parquet")
    }.keys() == files_before.keys()

    rest = replay.take(KEY)
    assert (rest.first_offset, rest.commit_offset) == (3, 10)
    assert publisher.claim(rest) == 10
    publisher.publish(rest)
    assert _rows(tmp_path) == sorted(f"c{offset}" for offset in range(10))


def test_a_batch_with_a_recorded_boundary_waits_for_its_last_offset(tmp_path: Path) -> None:
    ingestor = _ingestor(flush_rows=2)
    ingestor.rewind(KEY, 0, 5)
    _consume(ingestor, _records(4), 0)
    assert ingestor.due() == []  # four rows > flush_rows, but the recorded batch ends at 5
    ingestor.add(_records(5)[4])
    assert ingestor.due() == [KEY]
    assert ingestor.take(KEY).commit_offset == 5


def test_memory_pressure_makes_every_batch_due() -> None:
    parties = PartyPseudonymizer(NumberClassifier("BE", (2, 5)), Pseudonymizer(Key("k1", b"z" * 32, "t")), 64)
    formats = FormatSelector(builtin_decoders({}), {"cdr.raw": "canonical-json"}, decode_context())
    ingestor = Ingestor(formats, parties, 1000, 3600.0, max_buffered_rows=4)
    _consume(ingestor, _records(3), 0)
    assert ingestor.due() == []
    ingestor.add(_records(4)[3])
    assert ingestor.due() == [KEY]


class FlakyStorage(LocalStorage):
    """Local storage whose publishes fail a given number of times first."""

    def __init__(self, root: Path, failures: int) -> None:
        super().__init__(root)
        self.failures = failures

    def publish(self, relative_path: str, data: bytes) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise StorageError("injected failure")
        super().publish(relative_path, data)


def _one_batch(tmp_path: Path) -> PartitionFlush:
    ingestor = _ingestor(flush_rows=2)
    _consume(ingestor, _records(2), 0)
    return ingestor.take(KEY)


def test_transient_failures_are_retried_with_backoff(tmp_path: Path) -> None:
    sleeps: list[float] = []
    publisher = BatchPublisher(FlakyStorage(tmp_path, failures=3), sleep=sleeps.append)
    publisher.publish(_one_batch(tmp_path))
    assert sleeps == [0.5, 1.0, 2.0]
    assert _rows(tmp_path) == ["c0", "c1"]


def test_each_failed_attempt_is_reported_and_each_retry_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    failures: list[None] = []
    publisher = BatchPublisher(
        FlakyStorage(tmp_path, failures=2),
        sleep=lambda _: None,
        on_storage_failure=lambda: failures.append(None),
    )
    with caplog.at_level(logging.WARNING, logger="pipeline.sink.publisher"):
        publisher.publish(_one_batch(tmp_path))
    assert len(failures) == 2
    assert [record.getMessage() for record in caplog.records] == [
        "storage attempt 1/5 failed, retrying in 0.5s: injected failure",
        "storage attempt 2/5 failed, retrying in 1.0s: injected failure",
    ]


def test_an_error_that_is_not_the_store_s_is_not_retried(tmp_path: Path) -> None:
    calls: list[None] = []

    def broken() -> None:
        calls.append(None)
        raise KeyError("not a storage problem")

    publisher = BatchPublisher(LocalStorage(tmp_path), sleep=lambda _: pytest.fail("no retry"))
    with pytest.raises(KeyError):
        publisher._retrying(broken)
    assert len(calls) == 1


def test_lasting_failures_raise_and_publish_nothing(tmp_path: Path) -> None:
    sleeps: list[float] = []
    publisher = BatchPublisher(FlakyStorage(tmp_path, failures=100), sleep=sleeps.append)
    batch = _one_batch(tmp_path)
    assert publisher.claim(batch) == 2
    with pytest.raises(StorageError, match="injected failure"):
        publisher.publish(batch)
    assert len(sleeps) == 4
    assert _rows(tmp_path) == []
    assert (tmp_path / intent_path("cdr.raw", 0, 0)).exists()


def test_restart_drops_every_batch_and_returns_the_oldest_first_offset() -> None:
    ingestor = _ingestor(flush_rows=2)
    records = _records(6)
    _consume(ingestor, records[:2], 0)
    ingestor.rewind(KEY, 2, 4)
    _consume(ingestor, records, 2)
    assert ingestor.restart(KEY) == 2
    assert ingestor.held() == []
    assert ingestor.restart(KEY) is None


def test_a_killed_publishs_temporary_file_is_removed_by_the_sweep_not_by_the_next_publish(
    tmp_path: Path,
) -> None:
    storage = LocalStorage(tmp_path)
    day = tmp_path / "cdr" / "call_date=2026-11-01"
    day.mkdir(parents=True)
    orphan = day / ".t+0+0.parquet.0123456789ab.tmp"
    orphan.write_bytes(b"half a file")
    other = day / ".t+1+0.parquet.0123456789ab.tmp"
    other.write_bytes(b"another batch, still being written")
    storage.publish("cdr/call_date=2026-11-01/t+0+0.parquet", b"complete")
    assert sorted(path.name for path in day.iterdir()) == [orphan.name, other.name, "t+0+0.parquet"]
    assert (day / "t+0+0.parquet").read_bytes() == b"complete"
    assert storage.sweep_temporaries("cdr") == 2
    assert sorted(path.name for path in day.iterdir()) == ["t+0+0.parquet"]
