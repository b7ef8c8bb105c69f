"""The keys of a data file's rows, with their fingerprints, in its footer, kept through rewrites."""

from __future__ import annotations

import io
import json
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.ingest.rows import build_rows
from pipeline.keys.fingerprint import KeyRef
from pipeline.keys.keyring import Key
from pipeline.keys.pseudonym import PartyPseudonymizer, Pseudonymizer
from pipeline.numbers.msisdn import NumberClassifier
from pipeline.store import manifest
from pipeline.store.merge import merge_into, read_file
from pipeline.store.naming import manifest_path
from pipeline.store.parquet import KEY_IDS_METADATA_KEY, KEYS_METADATA_KEY, decode, encode
from pipeline.store.storage import LocalStorage
from tests.support.samples import canonical_bytes, canonical_decode

FIRST, SECOND = Key("k3", b"a" * 32, "t"), Key("k3", b"c" * 32, "t")  # two secrets with one id
DATE = date(2026, 3, 29)
PATH = "cdr/call_date=2026-03-29/t+0+0.parquet"


def _rows(key: Key, cdr_id: str = "a1"):  # type: ignore[no-untyped-def]
    parties = PartyPseudonymizer(NumberClassifier("BE", (2, 5)), Pseudonymizer(key), 8)
    return build_rows([canonical_decode(canonical_bytes(cdr_id=cdr_id))], parties)


def test_the_footer_records_each_key_id_with_its_fingerprint() -> None:
    metadata = pq.ParquetFile(
        io.BytesIO(encode(_rows(FIRST), [FIRST.ref, Key("k9", b"z" * 32, "t").ref]))
    ).metadata
    footer = metadata.metadata
    assert json.loads(footer[KEYS_METADATA_KEY]) == [{"id": "k3", "fingerprint": FIRST.fingerprint}]
    assert json.loads(footer[KEY_IDS_METADATA_KEY]) == ["k3"]  # older readers still find the ids


def test_rows_are_never_stored_with_their_key_left_unsaid() -> None:
    with pytest.raises(ValueError, match=r"rows under key ids \['k3'\] were given no key"):
        encode(_rows(FIRST), [])


def test_a_file_written_before_fingerprints_is_read_and_rewritten_by_id_only(tmp_path: Path) -> None:
    data = encode(_rows(FIRST), [FIRST.ref])
    table = pq.read_table(io.BytesIO(data))
    older = {key: value for key, value in (table.schema.metadata or {}).items() if key != KEYS_METADATA_KEY}
    storage = LocalStorage(tmp_path)
    pq.write_table(table.replace_schema_metadata(older), tmp_path / "old.parquet")
    stored = read_file(storage, "old.parquet")
    assert stored is not None and stored.keys == {KeyRef("k3", None)}
    again = decode(encode(stored.table, stored.keys))  # a rewrite never invents a binding
    assert again.keys == {KeyRef("k3", None)}
    stamp = storage.stamp("old.parquet")
    assert stamp is not None
    entry = manifest.read_entry(storage, "old.parquet", stamp)
    assert entry.keys == {KeyRef("k3", None)} and entry.key_ids == {"k3"}


def test_a_merge_keeps_the_keys_of_both_sides_apart(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.publish(PATH, encode(_rows(FIRST, "a1"), [FIRST.ref]))
    assert merge_into(storage, PATH, _rows(SECOND, "a2"), [SECOND.ref])
    stored = read_file(storage, PATH)
    assert stored is not None and stored.keys == {FIRST.ref, SECOND.ref} and stored.table.num_rows == 2


def test_a_manifest_keeps_fingerprints_and_one_of_the_older_format_counts_as_empty(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.publish(PATH, encode(_rows(FIRST), [FIRST.ref]))
    manifest.record(storage, written=[PATH])
    (entry,) = manifest.load(storage, "cdr", DATE).values()
    assert entry.keys == {FIRST.ref}
    older = {"format": 1, "files": {"t+0+0.parquet": {"size": 1, "modified_ns": 1, "rows": 1,
             "key_ids": ["k3"], "subjects": None}}}  # fmt: skip
    storage.publish(manifest_path("cdr", DATE), json.dumps(older).encode())
    assert manifest.load(storage, "cdr", DATE) == {}
