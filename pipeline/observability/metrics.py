"""The worker's Prometheus metrics (names prefixed ``cdrpipe_``) and its health.

Contract: labels carry only topic names, partition numbers and reason codes,
never a number, pseudonym or key byte. :data:`HEALTH` is unhealthy while the
ingest path cannot publish or commit (set on the first failure, cleared by
the next batch that is published and committed); ``/health`` answers 503 then.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

RECORDS_CONSUMED = Counter("cdrpipe_records_consumed", "Records read from the raw topics", registry=REGISTRY)
RECORDS_WRITTEN = Counter("cdrpipe_records_written", "Rows published to the store", registry=REGISTRY)
RECORDS_DEAD_LETTERED = Counter(
    "cdrpipe_records_dead_lettered", "Records sent to the dead-letter topic", ["reason"], registry=REGISTRY
)
RECORDS_EXPIRED = Counter(
    "cdrpipe_records_expired", "Records dropped at ingest: past the retention period", registry=REGISTRY
)
RECORDS_QUARANTINED = Counter(
    "cdrpipe_records_quarantined",
    "Rows of restricted subjects written to the quarantine instead of the dataset",
    registry=REGISTRY,
)
RECORDS_SUPPRESSED = Counter(
    "cdrpipe_records_suppressed",
    "Rows dropped before publishing: their subject objected (art. 21)",
    registry=REGISTRY,
)
RECORDS_ALREADY_COMPACTED = Counter(
    "cdrpipe_records_already_compacted",
    "Rows of a replayed batch not published: their offsets are covered by a compacted file",
    registry=REGISTRY,
)
FILES_PUBLISHED = Counter("cdrpipe_files_published", "Parquet files published", registry=REGISTRY)
BYTES_PUBLISHED = Counter("cdrpipe_bytes_published", "Bytes of Parquet published", registry=REGISTRY)
PUBLISH_SECONDS = Histogram(
    "cdrpipe_publish_seconds",
    "Time to encode, publish and commit one batch",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
STORAGE_FAILURES = Counter(
    "cdrpipe_storage_failures",
    "Failed attempts to write the store or read committed offsets (each is retried)",
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "cdrpipe_consumer_lag",
    "Records behind the log end, per raw partition",
    ["topic", "partition"],
    registry=REGISTRY,
)
ERASURES_RECEIVED = Counter("cdrpipe_erasures_received", "Erasure requests received", registry=REGISTRY)
ERASURES_COMPLETED = Counter(
    "cdrpipe_erasures_completed",
    "Erasure requests answered with a receipt (verification: passed, failed or rejected)",
    ["verification"],
    registry=REGISTRY,
)
ERASURE_SECONDS = Histogram(
    "cdrpipe_erasure_seconds",
    "Duration of one erasure, both passes and verification",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800),
    registry=REGISTRY,
)
SUBJECT_REQUESTS = Counter(
    "cdrpipe_subject_requests",
    "Rectification, restriction, lift, objection and withdrawal requests answered",
    ["kind", "status"],
    registry=REGISTRY,
)
DPO_RECORDS_SKIPPED = Counter(
    "cdrpipe_dpo_records_skipped",
    "Files under _cdrpipe/ that are not readable records (empty, truncated or foreign), counted once each",
    ["area"],
    registry=REGISTRY,
)
AUDIT_CHAIN_INTACT = Gauge(
    "cdrpipe_audit_chain_intact",
    "1 while the audit trail and the register verify, 0 once a break is found (lifecycle owner only)",
    registry=REGISTRY,
)
TIMER_FAILURES = Counter(
    "cdrpipe_timer_failures",
    "Runs of a periodic task that failed (it runs again next interval)",
    ["timer"],
    registry=REGISTRY,
)
LIFECYCLE_MESSAGES_REFUSED = Counter(
    "cdrpipe_lifecycle_messages_refused",
    "Requests, ledger entries and receipts refused because their MAC does not hold "
    "(message: request, ledger or receipt; reason: unsigned, unknown-key, mismatch or misplaced)",
    ["message", "reason"],
    registry=REGISTRY,
)
RETENTION_PARTITIONS_DELETED = Counter(
    "cdrpipe_retention_partitions_deleted", "call_date partitions deleted by retention", registry=REGISTRY
)

COMPACTION_DUPLICATES_REMOVED = Counter(
    "cdrpipe_compaction_duplicates_removed",
    "Copies of a CDR its producer sent more than once, removed by compaction",
    registry=REGISTRY,
)
COMPACTION_FILES_REPLACED = Counter(
    "cdrpipe_compaction_files_replaced", "Small files deleted once compacted", registry=REGISTRY
)
COMPACTION_FILES_WRITTEN = Counter(
    "cdrpipe_compaction_files_written", "Compacted files written", registry=REGISTRY
)


def watch_cache_hit_ratio(cache_info: Callable[[], tuple[int, int, int | None, int]]) -> None:
    """Expose ``cdrpipe_pseudonym_cache_hit_ratio`` from an ``lru_cache``'s ``cache_info``."""

    def ratio() -> float:
        hits, misses, _, _ = cache_info()
        return hits / (hits + misses) if hits + misses else 0.0

    Gauge(
        "cdrpipe_pseudonym_cache_hit_ratio",
        "Share of party numbers found in the pseudonym cache",
        registry=REGISTRY,
    ).set_function(ratio)


@dataclass
class Health:
    """Whether the ingest path can publish and commit."""

    failing_since: float | None = None
    problem: str | None = None

    def failed(self, problem: str | None = None) -> None:
        """Record a failed attempt to publish or to read committed offsets (``problem``: what to fix)."""
        if self.failing_since is None:
            self.failing_since = time.time()
        if problem is not None:
            self.problem = problem
        STORAGE_FAILURES.inc()

    def recovered(self) -> None:
        """Record a batch published and committed."""
        self.failing_since = None
        self.problem = None

    @property
    def healthy(self) -> bool:
        """False while publishing or committing fails."""
        return self.failing_since is None


HEALTH = Health()
