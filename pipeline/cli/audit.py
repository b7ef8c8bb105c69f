"""``cdrpipe audit verify``: check the sealed chains of the audit trail and of the register.

Contract: prints one line per chain (entries checked, purge checkpoint), then
every break found, first break first; exits 1 if there is any, 0 otherwise.
"""

from __future__ import annotations

import click

from pipeline.cli.group import cli, dpo_context
from pipeline.lifecycle.requests.audit import verify_audit
from pipeline.lifecycle.requests.chain import sealing_keyring
from pipeline.lifecycle.requests.register import verify_register
from pipeline.store.object_storage import open_storage


@cli.group("audit", short_help="Check the sealed audit trail and register.")
def audit_group() -> None:
    """The audit trail and the register of requests: tamper-evident, sealed with the keyring."""


@audit_group.command("verify", short_help="Verify both chains; name the first break.")
def verify_command() -> None:
    """Verify every entry of the audit trail and the register; name the first break."""
    settings = dpo_context(reads_store=True).settings
    storage = open_storage(settings.store.root, group_read=settings.store.group_read)
    keyring = sealing_keyring()
    broken = False
    for name, report in (
        ("audit trail", verify_audit(storage, keyring)),
        ("register", verify_register(storage, keyring)),
    ):
        since = f", purged through entry {report.purged_through}" if report.purged_through else ""
        state = "intact" if report.intact else f"BROKEN: {report.breaks[0]}"
        click.echo(f"{name}: {report.checked} entries up to {report.last_seq}{since}: {state}")
        for problem in report.breaks[1:]:
            click.echo(f"  also: {problem}")
        for path in report.foreign:
            click.echo(f"  not an entry, skipped: {path}")
        broken = broken or not report.intact
    if broken:
        raise SystemExit(1)
