"""Retention by call date: partitions older than the retention period are deleted.

Contract: :func:`expired_dates` lists the ``call_date`` partitions strictly
older than ``today - retention_days``; :func:`apply_retention` deletes their
files, their manifests and their compaction coverage (unless ``dry_run``) and writes one audit entry per
deleted partition, with the files the run listed and the seconds it had taken
when the partition was gone. It reads no footer.
Files under ``cdr/`` outside ``call_date=YYYY-MM-DD/`` are skipped with a
warning and an audit entry; they never stop retention.
:func:`horizon` is the same rule for a single record at ingest: a record
whose call date is before it is dropped. :func:`purge_dpo_records` deletes the
DPO records past their period: audit entries, receipts and closed requests.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, datetime

from pipeline.lifecycle.operations.finder import list_data_files, skip_strays
from pipeline.lifecycle.requests.audit import append_audit, purge_audit
from pipeline.lifecycle.requests.receipts import purge_receipts
from pipeline.lifecycle.requests.register import purge_requests
from pipeline.observability.progress import NO_PROGRESS, Progress
from pipeline.record import retention_horizon
from pipeline.store import coverage, manifest
from pipeline.store.naming import AREAS, partition_date
from pipeline.store.storage import Storage


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """What a retention run found and did."""

    horizon: date
    partitions: dict[date, list[str]]
    dry_run: bool

    @property
    def files(self) -> int:
        return sum(len(paths) for paths in self.partitions.values())


def apply_retention(
    storage: Storage,
    now: datetime,
    retention_days: int,
    dry_run: bool = False,
    progress: Progress = NO_PROGRESS,
) -> RetentionReport:
    """Delete (or list, with ``dry_run``) every partition past the retention period."""
    began = time.monotonic()
    oldest_kept = retention_horizon(now.date(), retention_days)
    expired: dict[date, list[str]] = {}
    listed = list_data_files(storage)
    for path in listed.paths:
        call_date = partition_date(path)
        if call_date is not None and call_date < oldest_kept:
            expired.setdefault(call_date, []).append(path)
    if not dry_run:
        for area in AREAS:  # what publishes killed mid-write left behind, expired or not
            storage.sweep_temporaries(area)
        skip_strays(storage, listed.strays, "retention", now)
        progress.start(sum(len(paths) for paths in expired.values()), "deleting expired files")
        for call_date, paths in sorted(expired.items()):
            for path in paths:
                storage.delete(path)
                progress.advance()
            for area in AREAS:
                manifest.forget_date(storage, area, call_date)
            coverage.forget(storage, call_date)  # no record of the date can be published again
            append_audit(
                storage,
                "retention",
                {
                    "call_date": call_date.isoformat(),
                    "files_deleted": paths,
                    "retention_days": retention_days,
                    "files_listed": len(listed.paths),
                    "seconds": round(time.monotonic() - began, 3),
                },
                now,
            )
    return RetentionReport(oldest_kept, expired, dry_run)


def purge_dpo_records(storage: Storage, keep_days: int, now: datetime) -> int:
    """Purge audit days, receipts and closed register entries older than ``keep_days``; return how many."""
    purged = purge_audit(storage, keep_days, now.date())
    purged += purge_receipts(storage, keep_days, now)
    return purged + purge_requests(storage, keep_days, now)
