"""The Parquet sink: the batch it accepts, schema, naming, encoding, storage, publish-then-commit.

The sink never imports the ingest stage or the lifecycle: it defines what it
accepts (``batch``) and what it answers (``outcomes``).
"""
