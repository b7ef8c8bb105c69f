"""``cdrpipe retention``, ``compact``, ``reapply-erasures``, ``store fix-permissions``: work on the store."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import click

from pipeline.cli.group import cli, dpo_context
from pipeline.cli.progress import terminal_progress
from pipeline.compaction import requests
from pipeline.config.settings import Settings
from pipeline.kafka.connection import check_login, kafka_connection
from pipeline.kafka.ledger_reader import LedgerReader
from pipeline.keys.keyring import Keyring
from pipeline.lifecycle.ledger import SubjectLedger
from pipeline.lifecycle.operations.reapply import reapply_ledger
from pipeline.lifecycle.operations.retention import apply_retention, purge_dpo_records
from pipeline.store.object_storage import open_storage
from pipeline.store.permissions import fix_permissions


@cli.command("retention", short_help="Delete partitions past CDRPIPE_RETENTION_DAYS.")
@click.option("--dry-run", is_flag=True, help="Only list the call_date partitions that would be deleted.")
def retention_command(dry_run: bool) -> None:
    """Delete call_date partitions older than CDRPIPE_RETENTION_DAYS and purge old DPO records.

    The worker also does this hourly.
    Run it when no erasure is in progress; the worker's own timer is serialised with erasures.
    """
    settings = dpo_context(reads_store=True).settings
    storage = open_storage(settings.store.root, group_read=settings.store.group_read)
    now = datetime.now(UTC)
    with terminal_progress("retention") as progress:
        report = apply_retention(storage, now, settings.lifecycle.retention_days, dry_run, progress)
    verb = "would delete" if dry_run else "deleted"
    for call_date, paths in sorted(report.partitions.items()):
        click.echo(f"{verb} call_date={call_date.isoformat()} ({len(paths)} files)")
    click.echo(f"{verb} {len(report.partitions)} partitions older than {report.horizon.isoformat()}")
    if not dry_run:
        purged = purge_dpo_records(storage, settings.lifecycle.dpo_record_days, now)
        click.echo(f"purged {purged} DPO records (audit days, receipts, closed requests) past their period")


ANSWER_POLL_S = 0.5


@cli.command("compact", short_help="Ask the worker to compact the store now.")
@click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(min=1),
    default=600,
    show_default=True,
    help="Seconds to wait for the lifecycle owner's answer.",
)
def compact_command(wait_s: float) -> None:
    """Ask the lifecycle owner (a running worker) to compact every call date now; print what it did.

    A pass takes the committed, settled small files of each call date (unmodified for
    CDRPIPE_COMPACT_QUIET_S) into files of up to CDRPIPE_COMPACT_TARGET_ROWS rows, applies
    the ledger on the way out and removes copies of re-sent CDRs. The worker also does this
    every CDRPIPE_COMPACT_INTERVAL_S.
    """
    settings = dpo_context(reads_store=True).settings
    storage = open_storage(settings.store.root, group_read=settings.store.group_read)
    request_id = requests.ask(storage, datetime.now(UTC))
    deadline = time.monotonic() + wait_s
    reports = requests.answer_of(storage, request_id)
    while reports is None and time.monotonic() < deadline:
        time.sleep(ANSWER_POLL_S)
        reports = requests.answer_of(storage, request_id)
    if reports is None:
        requests.withdraw(storage, request_id)
        raise click.ClickException(
            f"no lifecycle owner answered within {wait_s:g} s: is a worker running against this store? "
            "(the worker compacts on its own timer too)"
        )
    for report in reports:
        click.echo(report.describe())
    files_in, files_out = sum(r.files_replaced for r in reports), sum(r.files_written for r in reports)
    duplicates = sum(report.duplicates_removed for report in reports)
    click.echo(
        f"compacted {len(reports)} call dates: {files_in} files replaced by {files_out}, "
        f"{duplicates} duplicates removed"
    )


@cli.command("reapply-erasures", short_help="Apply the ledger's erasures to the store again.")
def reapply_erasures_command() -> None:
    """Apply every erasure in the ledger topic to the store again (after restoring a backup).

    Rectified calls are redacted again; rows of subjects under a restriction or objection go
    back to the quarantine, and quarantined rows no restriction or objection in force covers
    (a lift or withdrawal after the backup) go back to the dataset.
    Stop the workers first: this rewrites files outside the worker's lifecycle path.
    """
    context = dpo_context(reads_store=True)
    settings, keyring = context.settings, context.keys()
    ledger = SubjectLedger()
    asyncio.run(_read_ledger(settings, ledger, keyring))
    entries = ledger.entries()
    storage = open_storage(settings.store.root, group_read=settings.store.group_read)
    with terminal_progress("re-apply") as progress:
        report = reapply_ledger(storage, entries, progress=progress)
    click.echo(
        f"{report.requests} erasures re-applied: {len(report.files_rewritten)} files rewritten, "
        f"{len(report.files_deleted)} deleted, {report.rows_affected} rows affected, "
        f"verification {'passed' if report.verification_passed else 'FAILED'}"
    )
    if report.holds:
        click.echo(
            f"{report.holds} restrictions and objections in force: "
            f"{report.rows_quarantined} rows moved back to the quarantine"
        )
    if report.rectifications:
        click.echo(f"{report.rectifications} rectified calls redacted again")
    if report.rows_released:
        click.echo(f"{report.rows_released} quarantined rows no hold in force covers moved back into cdr/")
    for item in report.files_not_searched:
        click.echo(
            f"FAILED: {item.path} holds rows under key {item.key.describe()}, which a re-applied request "
            "was not computed under: its subject's rows there were not found",
            err=True,
        )
    if not report.verification_passed:
        raise SystemExit(1)


async def _read_ledger(settings: Settings, ledger: SubjectLedger, keyring: Keyring) -> None:
    """Read the whole ledger; only entries whose MAC holds under ``keyring`` are re-applied."""
    connection = kafka_connection(settings)
    await check_login(connection)
    reader = LedgerReader(connection, settings.topics.ledger_topic, ledger, lambda: keyring)
    await reader.start()
    await reader.stop()


@cli.group("store", short_help="The store itself: who may read it.")
def store_group() -> None:
    """The store itself: who may read it."""


@store_group.command("fix-permissions", short_help="Make a local store owner-only again.")
def fix_permissions_command() -> None:
    """Make every file of a local store owner-only (0600, directories 0700).

    With CDRPIPE_STORE_GROUP_READ=true, group read stays allowed (0640/0750).
    Access is only ever taken away; symlinks are left alone.
    """
    settings = dpo_context(reads_store=True).settings
    if settings.store.root.startswith("s3://"):
        raise click.ClickException("an s3:// store has no file modes: access is the bucket policy's")
    report = fix_permissions(Path(settings.store.root), settings.store.group_read)
    click.echo(f"fixed {report.files} files and {report.directories} directories under {settings.store.root}")
