"""The ingest stage: raw records in, per-partition batches of pseudonymised Arrow rows out.

``records`` (what comes in and what is rejected), ``batches`` (offset-ordered
batches per partition with recorded boundaries), ``ingestor`` (decode and
build rows a chunk at a time), ``rows`` (Arrow columns from decoded CDRs),
``translation`` (pseudonyms under the keyring's other keys), ``dead_letters``
(the DLQ message of a rejected record). Nothing here talks to Kafka.
"""
