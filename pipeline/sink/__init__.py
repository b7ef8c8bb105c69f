"""The Parquet sink: schema, column buffers, file naming, storage and the publish protocol."""
