"""Everything that talks to the broker: topics and their set-up, consumer lag, the ledger reader, offsets."""
