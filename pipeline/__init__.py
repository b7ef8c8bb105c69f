"""cdrpipe: CDRs from Kafka into pseudonymised Parquet partitions by call date."""

__version__ = "0.1.0"
