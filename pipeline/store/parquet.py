"""Parquet encoding of CDR tables: zstd, dictionaries, bloom filters on pseudonyms.

Pseudonyms are random-looking, so min/max statistics on them never prune a
file; they are left out, and Parquet bloom filters (which DuckDB probes) take
their place. Each file also carries cdrpipe's subject index of every
pseudonym column, agents included (:mod:`pipeline.store.subject_index`), and
the key ids of its rows (:data:`KEY_IDS_METADATA_KEY`, a JSON list) in its
footer, which erasure and export use to find a subject's files and the keys
to search without reading their data.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.store import subject_index
from pipeline.store.schema import CDR_SCHEMA, PSEUDONYM_COLUMNS

BLOOM_FPP = 0.01
ROW_GROUP_ROWS = 256 * 1024
_STATISTICS_COLUMNS = [name for name in CDR_SCHEMA.names if name not in PSEUDONYM_COLUMNS]


INDEXED_COLUMNS = PSEUDONYM_COLUMNS
KEY_IDS_METADATA_KEY = b"cdrpipe.key_ids"


def encode(table: pa.Table, metadata: Mapping[bytes, bytes] | None = None) -> bytes:
    """The complete Parquet file of ``table`` as bytes, with its subject index in the footer.

    The index goes into the Parquet footer's key-value metadata only, not into
    the embedded Arrow schema, so a footer read parses it once; so does ``metadata``.
    """
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
        key_ids = sorted(value for value in pc.unique(table.column("key_id")).to_pylist() if value)
        writer.add_key_value_metadata(
            {
                subject_index.METADATA_KEY: subject_index.build(pseudonyms),
                KEY_IDS_METADATA_KEY: json.dumps(key_ids).encode(),
                **(metadata or {}),
            }
        )
    return bytes(sink.getvalue().to_pybytes())
