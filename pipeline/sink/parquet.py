"""Parquet encoding of CDR tables: zstd, dictionaries, bloom filters on pseudonyms.

Pseudonyms are random-looking, so min/max statistics on them never prune a
file; they are left out, and bloom filters (which DuckDB probes) take their place.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.sink.schema import CDR_SCHEMA, PSEUDONYM_COLUMNS

BLOOM_FPP = 0.01
ROW_GROUP_ROWS = 256 * 1024
_STATISTICS_COLUMNS = [name for name in CDR_SCHEMA.names if name not in PSEUDONYM_COLUMNS]


def encode(table: pa.Table) -> bytes:
    """The complete Parquet file of ``table`` as bytes."""
    sink = pa.BufferOutputStream()
    ndv = max(table.num_rows, 1)
    pq.write_table(
        table,
        sink,
        compression="zstd",
        row_group_size=ROW_GROUP_ROWS,
        write_statistics=_STATISTICS_COLUMNS,
        bloom_filter_options={column: {"ndv": ndv, "fpp": BLOOM_FPP} for column in PSEUDONYM_COLUMNS},
    )
    return bytes(sink.getvalue().to_pybytes())
