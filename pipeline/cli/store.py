"""``cdrpipe retention``, ``reapply-erasures`` and ``store fix-permissions``: work on the store itself."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import click

from pipeline.cli.group import cli, dpo_context
from pipeline.cli.progress import terminal_progress
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
