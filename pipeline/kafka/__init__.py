"""Everything that talks to the broker: ingest consumer, its offsets, topics, lag, ledger reader."""
