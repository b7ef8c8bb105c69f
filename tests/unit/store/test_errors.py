"""Storage errors that only the operator can fix are not retried and say what to fix."""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import pytest

from pipeline.observability.metrics import HEALTH
from pipeline.sink.publisher import BatchPublisher
from pipeline.store.errors import StorageError, TerminalStorageError, storage_error
from pipeline.store.storage import LocalStorage
from tests.support.commit_fakes import (
    KEY,
    AppliedCommitter,
    FakeOffsets,
    feed,
    records_at,
    small_ingestor,
    stored_ids,
)


@pytest.mark.parametrize(
    ("code", "fix"),
    [
        (errno.EACCES, "write permission"),
        (errno.EPERM, "write permission"),
        (errno.EROFS, "read-only"),
        (errno.ENOSPC, "disk is full"),
        (errno.EDQUOT, "quota"),
    ],
)
def test_local_errors_only_the_operator_can_fix_are_terminal(code: int, fix: str) -> None:
    error = storage_error("publishing cdr/x.parquet", OSError(code, "refused"))
    assert isinstance(error, TerminalStorageError)
    assert str(error).startswith("publishing cdr/x.parquet failed: refused: ") and fix in str(error)


@pytest.mark.parametrize(
    ("message", "fix"),
    [
        ("When uploading part: AWS Error ACCESS_DENIED during PutObject operation", "bucket policy"),
        (
            "AWS Error NO_SUCH_BUCKET during PutObject operation: The specified bucket does not exist",
            "create it",
        ),
        ("AWS Error UNKNOWN (HTTP status 403) during HeadObject operation: InvalidAccessKeyId", "access key"),
    ],
)
def test_s3_errors_only_the_operator_can_fix_are_terminal(message: str, fix: str) -> None:
    error = storage_error("reading cdr/x.parquet", OSError(message))
    assert isinstance(error, TerminalStorageError) and fix in str(error)


def test_passing_errors_stay_retryable() -> None:
    for cause in (OSError(errno.EIO, "i/o error"), OSError("AWS Error NETWORK_CONNECTION during PutObject")):
        error = storage_error("publishing cdr/x.parquet", cause)
        assert type(error) is StorageError


class RefusingStorage(LocalStorage):
    """A store whose publishes fail with ``errno`` while ``refusing`` is set."""

    def __init__(self, root: Path, code: int) -> None:
        super().__init__(root)
        self.code = code
        self.refusing = True
        self.attempts = 0

    def publish(self, relative_path: str, data: bytes) -> None:
        if self.refusing:
            self.attempts += 1
            raise storage_error(f"publishing {relative_path}", OSError(self.code, "refused"))
        super().publish(relative_path, data)


def test_a_terminal_error_is_not_retried_but_a_passing_one_is(tmp_path: Path) -> None:
    ingestor = small_ingestor()
    feed(ingestor, records_at(3))
    flush = ingestor.take(KEY)
    for code, attempts in ((errno.EACCES, 1), (errno.EIO, 4)):
        storage = RefusingStorage(tmp_path, code)
        with pytest.raises(StorageError):
            BatchPublisher(storage, attempts=4, sleep=lambda _: None).publish(flush)
        assert storage.attempts == attempts


def test_a_refusing_store_makes_the_worker_unhealthy_at_once_and_is_reported_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = RefusingStorage(tmp_path, errno.ENOSPC)
    ingestor, offsets, pauses = small_ingestor(), FakeOffsets(tmp_path), []
    publisher = BatchPublisher(storage, sleep=lambda _: None)
    committer = AppliedCommitter(ingestor, publisher, offsets, terminal_pause_s=7, sleep=pauses.append)
    records = records_at(3)
    with caplog.at_level(logging.ERROR):
        for _ in range(3):
            feed(ingestor, records)
            assert not committer.commit_batch(ingestor.take(KEY))
            assert not HEALTH.healthy and HEALTH.problem is not None and "disk is full" in HEALTH.problem
    assert offsets.committed_offsets == {} and pauses == [7, 7, 7]
    assert storage.attempts == 3, "one attempt per try: terminal errors are not retried"
    reports = [record for record in caplog.records if "the store refuses writes" in record.getMessage()]
    assert len(reports) == 1 and "free space" in reports[0].getMessage()
    storage.refusing = False
    feed(ingestor, records)
    assert committer.commit_batch(ingestor.take(KEY))
    assert HEALTH.healthy and HEALTH.problem is None and stored_ids(tmp_path) == ["c0", "c1", "c2"]


def test_temporaries_of_killed_publishes_are_swept(tmp_path: Path) -> None:
    # Found by the attacker review: a publish killed before its rename leaves a temporary file
    # with the batch's rows, which no scan lists.
    storage = LocalStorage(tmp_path)
    storage.publish("cdr/call_date=2026-11-01/a.parquet", b"published")
    folder = tmp_path / "cdr" / "call_date=2026-11-01"
    (folder / ".a.parquet.0123abcd.tmp").write_bytes(b"rows of a killed publish")
    (folder / ".b.parquet.4567ef01.tmp").write_bytes(b"rows of another killed publish")
    storage.delete("cdr/call_date=2026-11-01/a.parquet")
    left = sorted(path.name for path in folder.iterdir())
    assert left == [".a.parquet.0123abcd.tmp", ".b.parquet.4567ef01.tmp"]
    assert storage.sweep_temporaries("cdr") == 2
    assert list(folder.iterdir()) == []
    assert storage.sweep_temporaries("restricted") == 0
