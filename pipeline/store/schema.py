"""The Arrow schema of the Parquet files (the data dictionary's columns, in order).

``call_date`` is not stored in the files: it is the Hive partition directory
(``call_date=YYYY-MM-DD``), the UTC date of ``start_time``.
"""

from __future__ import annotations

import pyarrow as pa

TIMESTAMP = pa.timestamp("us", tz="UTC")
LOW_CARDINALITY = pa.dictionary(pa.int32(), pa.string())


def _party(role: str) -> list[pa.Field]:
    return [
        pa.field(f"{role}_pseudonym", pa.string()),
        pa.field(f"{role}_number_type", LOW_CARDINALITY, nullable=False),
        pa.field(f"{role}_country", LOW_CARDINALITY),
        pa.field(f"{role}_line_type", LOW_CARDINALITY),
        pa.field(f"{role}_shortcode", LOW_CARDINALITY),
    ]


CDR_SCHEMA = pa.schema(
    [
        pa.field("cdr_id", pa.string(), nullable=False),
        pa.field("source", LOW_CARDINALITY, nullable=False),
        pa.field("start_time", TIMESTAMP, nullable=False),
        pa.field("answer_time", TIMESTAMP),
        pa.field("end_time", TIMESTAMP, nullable=False),
        pa.field("duration_s", pa.int32(), nullable=False),
        pa.field("billsec_s", pa.int32(), nullable=False),
        pa.field("direction", LOW_CARDINALITY, nullable=False),
        pa.field("disposition", LOW_CARDINALITY, nullable=False),
        *_party("caller"),
        *_party("callee"),
        pa.field("connected_pseudonym", pa.string()),
        pa.field("agent_pseudonym", pa.string()),
        pa.field("queue", LOW_CARDINALITY),
        pa.field("hangup_cause", LOW_CARDINALITY),
        pa.field("cost", pa.float64()),
        pa.field("currency", LOW_CARDINALITY),
        pa.field("key_id", LOW_CARDINALITY, nullable=False),
    ]
)

PSEUDONYM_COLUMNS = tuple(name for name in CDR_SCHEMA.names if name.endswith("_pseudonym"))
