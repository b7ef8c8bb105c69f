"""Parquet encoding of CDR tables: zstd, dictionaries, bloom filters on pseudonyms.

Pseudonyms are random-looking, so min/max statistics on them never prune a
file; they are left out, and Parquet bloom filters (which DuckDB probes) take
their place. Each file also carries cdrpipe's subject index of every
pseudonym column, agents included (:mod:`pipeline.store.subject_index`), and
the keys of its rows in its footer: their ids (:data:`KEY_IDS_METADATA_KEY`,
a JSON list) and, beside each id, the key's fingerprint
(:data:`KEYS_METADATA_KEY`, a JSON list of ``{"id", "fingerprint"}``; see
:mod:`pipeline.keys.fingerprint`). Erasure and export use them to find a
subject's files and the keys to search without reading their data.

Contract: :func:`encode` is given the keys the table's rows were written
under and records those whose id the rows carry; a key id of the rows without
a key given raises ``ValueError`` (rows are never stored with their key left
unsaid). A rewrite passes on the keys of the file it read
(:func:`decode`), never the keyring's: only the writer of a row knew its
secret. :func:`recorded_keys` reads them back; a file written before
fingerprints were recorded gives its key ids with ``fingerprint=None``, and a
rewrite of it keeps them so.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.keys.fingerprint import KeyRef, sorted_refs
from pipeline.store import subject_index
from pipeline.store.schema import CDR_SCHEMA, PSEUDONYM_COLUMNS

BLOOM_FPP = 0.01
ROW_GROUP_ROWS = 256 * 1024
_STATISTICS_COLUMNS = [name for name in CDR_SCHEMA.names if name not in PSEUDONYM_COLUMNS]


INDEXED_COLUMNS = PSEUDONYM_COLUMNS
KEY_IDS_METADATA_KEY = b"cdrpipe.key_ids"
KEYS_METADATA_KEY = b"cdrpipe.keys"


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A data file's rows and the keys its footer says they were written under."""

    table: pa.Table
    keys: frozenset[KeyRef]


def decode(data: bytes) -> StoredFile:
    """The rows and keys of a complete Parquet file (``ValueError`` if it is not one)."""
    parquet = pq.ParquetFile(io.BytesIO(data))
    table = parquet.read()
    return StoredFile(table, recorded_keys(parquet.metadata.metadata, lambda: _key_ids(table)))


def recorded_keys(
    metadata: Mapping[bytes, bytes] | None, key_ids: Callable[[], frozenset[str]]
) -> frozenset[KeyRef]:
    """The keys a footer's ``metadata`` records; ``key_ids`` reads the rows' ids if it holds none.

    A footer without fingerprints (written before they were recorded) gives its
    key ids without one.
    """
    metadata = metadata or {}
    keys = metadata.get(KEYS_METADATA_KEY)
    if keys is not None:
        try:
            return frozenset(_key_ref(key) for key in json.loads(keys))
        except (KeyError, TypeError) as exc:  # a footer cdrpipe did not write: unreadable, like any
            raise ValueError(f"the footer's {KEYS_METADATA_KEY.decode()} is malformed") from exc
    ids = metadata.get(KEY_IDS_METADATA_KEY)
    recorded = frozenset(str(key_id) for key_id in json.loads(ids)) if ids is not None else key_ids()
    return frozenset(KeyRef(key_id, None) for key_id in recorded)


def _key_ref(key: dict[str, object]) -> KeyRef:
    key_id, fingerprint = key["id"], key["fingerprint"]
    if not isinstance(key_id, str) or not (fingerprint is None or isinstance(fingerprint, str)):
        raise TypeError("a key is an id and a fingerprint (or null)")
    return KeyRef(key_id, fingerprint)


def _key_ids(table: pa.Table) -> frozenset[str]:
    return frozenset(value for value in pc.unique(table.column("key_id")).to_pylist() if value)


def encode(table: pa.Table, keys: Iterable[KeyRef], metadata: Mapping[bytes, bytes] | None = None) -> bytes:
    """The complete Parquet file of ``table`` (rows written under ``keys``) as bytes, index in the footer.

    The index goes into the Parquet footer's key-value metadata only, not into
    the embedded Arrow schema, so a footer read parses it once; so does ``metadata``.
    """
    key_ids = _key_ids(table)
    recorded = sorted_refs(key for key in keys if key.key_id in key_ids)
    unsaid = key_ids - {key.key_id for key in recorded}
    if unsaid:
        raise ValueError(f"rows under key ids {sorted(unsaid)} were given no key to record")
    pseudonyms: set[str] = set()
    for column in INDEXED_COLUMNS:
        pseudonyms.update(value for value in pc.unique(table.column(column)).to_pylist() if value is not None)
    sink = pa.BufferOutputStream()
    ndv = max(table.num_rows, 1)
    with pq.ParquetWriter(
        sink,
        table.schema,
        compression="zstd",
        write_statistics=_STATISTICS_COLUMNS,
        bloom_filter_options={column: {"ndv": ndv, "fpp": BLOOM_FPP} for column in PSEUDONYM_COLUMNS},
    ) as writer:
        writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        writer.add_key_value_metadata(
            {
                subject_index.METADATA_KEY: subject_index.build(pseudonyms),
                KEY_IDS_METADATA_KEY: json.dumps(sorted(key_ids)).encode(),
                KEYS_METADATA_KEY: json.dumps(
                    [{"id": key.key_id, "fingerprint": key.fingerprint} for key in recorded]
                ).encode(),
                **(metadata or {}),
            }
        )
    return bytes(sink.getvalue().to_pybytes())
