"""Local publish protocol and the Parquet encoding."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.ingest.rows import build_rows
from pipeline.keys.keyring import Key
from pipeline.keys.pseudonym import PartyPseudonymizer, Pseudonymizer
from pipeline.numbers.msisdn import NumberClassifier
from pipeline.store.errors import StorageError
from pipeline.store.object_storage import open_storage
from pipeline.store.parquet import encode
from pipeline.store.storage import LocalStorage, Stamp, Storage
from tests.support.s3_support import BUCKET, CREDENTIALS, moto_server, s3_store_env
from tests.support.samples import canonical_bytes
from tests.support.samples import canonical_decode as decode


def test_publish_creates_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.publish("cdr/call_date=2026-01-01/t+0+1.parquet", b"first")
    storage.publish("cdr/call_date=2026-01-01/t+0+1.parquet", b"second")
    directory = tmp_path / "cdr" / "call_date=2026-01-01"
    assert [path.name for path in directory.iterdir()] == ["t+0+1.parquet"]
    assert (directory / "t+0+1.parquet").read_bytes() == b"second"


def test_failed_publish_leaves_neither_final_nor_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_replace(source: object, target: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("pipeline.store.storage.os.replace", failing_replace)
    with pytest.raises(StorageError, match="disk full"):
        LocalStorage(tmp_path).publish("cdr/x/t+0+1.parquet", b"data")
    assert list((tmp_path / "cdr" / "x").iterdir()) == []


KEY = Key("k1", b"k" * 32, "t")


def _table():
    parties = PartyPseudonymizer(NumberClassifier("BE", (2, 5)), Pseudonymizer(KEY), 8)
    return build_rows([decode(canonical_bytes(cdr_id=f"id-{index}")) for index in range(50)], parties)


def test_publish_and_delete_never_list_their_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A day holds tens of thousands of files: a listing per publish or delete makes a day quadratic.
    storage = LocalStorage(tmp_path)
    storage.publish("cdr/call_date=2026-01-01/t+0+0.parquet", b"first")

    def no_listing(*args: object, **kwargs: object) -> None:
        raise AssertionError("a publish or delete listed a directory")

    monkeypatch.setattr("os.scandir", no_listing)
    monkeypatch.setattr("os.listdir", no_listing)
    storage.publish("cdr/call_date=2026-01-01/t+0+1.parquet", b"second")
    storage.delete("cdr/call_date=2026-01-01/t+0+0.parquet")
    monkeypatch.undo()
    assert storage.list("cdr") == ["cdr/call_date=2026-01-01/t+0+1.parquet"]


def test_parquet_is_zstd_with_bloom_filters_and_no_pseudonym_statistics() -> None:
    data = encode(_table(), [KEY.ref])
    metadata = pq.ParquetFile(io.BytesIO(data)).metadata
    row_group = metadata.row_group(0)
    columns = {row_group.column(i).path_in_schema: row_group.column(i) for i in range(row_group.num_columns)}
    assert all(column.compression == "ZSTD" for column in columns.values())
    assert (
        columns["caller_pseudonym"].statistics is None
        or not columns["caller_pseudonym"].statistics.has_min_max
    )
    assert columns["cdr_id"].statistics.has_min_max
    assert columns["caller_pseudonym"].bloom_filter_offset is not None
    assert columns["caller_pseudonym"].bloom_filter_offset > 0
    assert pq.read_table(io.BytesIO(data)).num_rows == 50


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_stamps_tell_a_replaced_or_deleted_file_from_the_one_listed(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with contextlib.ExitStack() as stack:
        if kind == "local":
            storage: Storage = LocalStorage(tmp_path)
        else:
            # No credentials in the process environment: both of the store's clients take the given ones.
            for name in CREDENTIALS:
                monkeypatch.delenv(name, raising=False)
            storage = open_storage(f"s3://{BUCKET}/store", s3_store_env(stack.enter_context(moto_server())))
        published = storage.publish("cdr/call_date=2026-01-01/t+0+0.parquet", b"first")
        storage.publish("cdr/call_date=2026-01-02/t+0+9.parquet", b"other")
        if kind == "local":
            (tmp_path / "cdr/call_date=2026-01-01/.t+0+0.parquet.0123abcd.tmp").write_bytes(b"orphan")
        listed = storage.list_stamped("cdr")
        assert list(listed) == storage.list("cdr")
        before = listed["cdr/call_date=2026-01-01/t+0+0.parquet"]
        assert before == storage.stamp("cdr/call_date=2026-01-01/t+0+0.parquet") and before.size == 5
        # The stamp a publish returns is the version the listing reports (on S3: the same ETag).
        assert published is not None and published.same_version(before)
        assert (before.tag is not None) == (kind == "s3")
        replaced = storage.publish("cdr/call_date=2026-01-01/t+0+0.parquet", b"replaced")
        after = storage.stamp("cdr/call_date=2026-01-01/t+0+0.parquet")
        assert after is not None and not after.same_version(before)
        assert replaced is not None and replaced.same_version(after)
        storage.delete("cdr/call_date=2026-01-01/t+0+0.parquet")
        assert storage.stamp("cdr/call_date=2026-01-01/t+0+0.parquet") is None
        assert storage.list_stamped("restricted") == {}


def test_an_s3_stamp_with_the_same_size_and_second_is_told_apart_by_its_tag() -> None:
    first, second = Stamp(5, 1_000_000_000, '"aaa"'), Stamp(5, 1_000_000_000, '"bbb"')
    assert not first.same_version(second)
    assert first.same_version(Stamp(5, 2_000_000_000, '"aaa"'))
    assert Stamp(5, 7).same_version(Stamp(5, 7)) and not Stamp(5, 7).same_version(Stamp(5, 8))


def test_a_store_at_the_working_directory_lists_store_relative_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    storage = LocalStorage(Path("."))
    storage.publish("cdr/call_date=2026-01-01/t+0+0.parquet", b"data")
    (tmp_path / "cdr/call_date=2026-01-01/.t+0+1.parquet.0123abcd.tmp").write_bytes(b"orphan")
    assert storage.list("cdr") == ["cdr/call_date=2026-01-01/t+0+0.parquet"]
    assert list(storage.list_stamped("")) == ["cdr/call_date=2026-01-01/t+0+0.parquet"]
    assert storage.sweep_temporaries("") == 1
