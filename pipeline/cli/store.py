"""``cdrpipe retention`` and ``reapply-erasures``: lifecycle work on the store with the workers stopped."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime

import click

from pipeline.cli.group import cli, current_settings
from pipeline.config.settings import Settings
from pipeline.kafka.connection import check_login, kafka_connection
from pipeline.kafka.ledger_reader import LedgerReader
from pipeline.lifecycle.ledger import SubjectLedger
from pipeline.lifecycle.operations.reapply import reapply_ledger
from pipeline.lifecycle.operations.retention import apply_retention, purge_dpo_records
from pipeline.store.object_storage import open_storage


@cli.command("retention")
@click.option("--dry-run", is_flag=True, help="Only list the call_date partitions that would be deleted.")
def retention_command(dry_run: bool) -> None:
    """Delete call_date partitions older than CDRPIPE_RETENTION_DAYS and purge old DPO records.

    The worker also does this hourly.
    Run it when no erasure is in progress; the worker's own timer is serialised with erasures.
    """
    settings = current_settings()
    storage, now = open_storage(settings.store.root), datetime.now(UTC)
    report = apply_retention(storage, now, settings.lifecycle.retention_days, dry_run)
    verb = "would delete" if dry_run else "deleted"
    for call_date, paths in sorted(report.partitions.items()):
        click.echo(f"{verb} call_date={call_date.isoformat()} ({len(paths)} files)")
    click.echo(f"{verb} {len(report.partitions)} partitions older than {report.horizon.isoformat()}")
    if not dry_run:
        purged = purge_dpo_records(storage, settings.lifecycle.dpo_record_days, now)
        click.echo(f"purged {purged} DPO records (audit days, receipts, closed requests) past their period")


@cli.command("reapply-erasures")
def reapply_erasures_command() -> None:
    """Apply every erasure in the ledger topic to the store again (after restoring a backup).

    Rows of subjects under a restriction or objection go back to the quarantine.
    Stop the workers first: this rewrites files outside the worker's lifecycle path.
    """
    settings = current_settings()
    ledger = SubjectLedger()
    asyncio.run(_read_ledger(settings, ledger))
    entries = ledger.entries()
    with click.progressbar(length=len(entries), label="re-applying erasures", file=sys.stderr) as bar:
        report = reapply_ledger(open_storage(settings.store.root), entries, progress=bar.update)
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
    if not report.verification_passed:
        raise SystemExit(1)


async def _read_ledger(settings: Settings, ledger: SubjectLedger) -> None:
    connection = kafka_connection(settings)
    await check_login(connection)
    reader = LedgerReader(connection, settings.topics.ledger_topic, ledger)
    await reader.start()
    await reader.stop()
