"""``cdrpipe requests``: the register of subject requests, their due dates and extensions.

Contract: the listing shows the open requests, overdue ones first, as a table
or (``--json``) as one JSON array; ``show`` prints one request with its
history; ``extend`` records the one extension of art. 12(3) with its reason;
``add`` registers a request that arrived by mail or phone, with the date it
was received; ``close`` closes one answered (or refused) outside cdrpipe.
Register problems end with exit status 2 and one line.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, time

import click

from pipeline.cli.group import dpo_context
from pipeline.cli.rights import classifier
from pipeline.lifecycle.requests.ids import check_request_id, new_request_id
from pipeline.lifecycle.requests.register import (
    KINDS,
    Kind,
    close,
    extend,
    load_register,
    load_request,
    open_requests,
    register_received,
)
from pipeline.store.object_storage import open_storage
from pipeline.store.storage import Storage


def _storage() -> Storage:
    """The store of the register, once the command's context line is shown (a missing store refused)."""
    settings = dpo_context(reads_store=True).settings
    return open_storage(settings.store.root, group_read=settings.store.group_read)


@click.group(
    "requests", invoke_without_command=True, short_help="List the open subject requests, overdue first."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of a table.")
@click.pass_context
def requests_group(ctx: click.Context, as_json: bool) -> None:
    """The register of subject requests: list the open ones, overdue first (see the subcommands)."""
    if ctx.invoked_subcommand is not None:
        return
    now = datetime.now(UTC)
    pending = open_requests(load_register(_storage()), now.date())
    if as_json:
        click.echo(json.dumps([record.summary(now.date()) for record in pending], indent=2))
        return
    if not pending:
        click.echo("no open requests")
        return
    rows = [("REQUEST", "KIND", "RECEIVED", "DUE", "STATE")]
    for record in pending:
        state = "OVERDUE" if record.overdue(now.date()) else "open"
        if record.extension_reason is not None:
            state += " (extended)"
        received = record.received_at.date().isoformat()
        rows.append((record.request_id, record.kind, received, record.due.isoformat(), state))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip())


@requests_group.command("show", short_help="Print one request, with its history, as JSON.")
@click.argument("request_id")
def show_command(request_id: str) -> None:
    """Print one request, with its history, as JSON."""
    record = load_request(_storage(), check_request_id(request_id, classifier()))
    if record is None:
        raise click.ClickException(f"no request {request_id} in the register (never registered, or purged)")
    click.echo(json.dumps(record.summary(datetime.now(UTC).date()), indent=2))


@requests_group.command("extend", short_help="Extend an open request by two months, once.")
@click.argument("request_id")
@click.option("--reason", required=True, help="Why two more months are needed (told to the subject).")
def extend_command(request_id: str, reason: str) -> None:
    """Extend an open request by two months, once, before it falls due (art. 12(3))."""
    record = extend(_storage(), check_request_id(request_id, classifier()), reason, datetime.now(UTC))
    click.echo(f"request {request_id} extended: due {record.due.isoformat()}")


@requests_group.command("close", short_help="Close a request answered outside cdrpipe.")
@click.argument("request_id")
@click.option("--outcome", required=True, help="How the request was answered (never a phone number).")
@click.option(
    "--rejected", is_flag=True, help="The request was refused, e.g. as manifestly unfounded (art. 12(5))."
)
def close_command(request_id: str, outcome: str, rejected: bool) -> None:
    """Close a request answered outside cdrpipe (or refused); the first closing stands."""
    storage = _storage()
    before = load_request(storage, check_request_id(request_id, classifier()))
    if before is not None and before.closed_at is not None:
        raise click.ClickException(
            f"request {request_id} was already {before.status} on {before.closed_at.date()}"
        )
    record = close(storage, request_id, datetime.now(UTC), outcome, "rejected" if rejected else "closed")
    click.echo(f"request {request_id} {record.status}")


@requests_group.command("add", short_help="Register a request received by mail or phone.")
@click.option("--kind", "kind", type=click.Choice(KINDS), required=True, help="What the subject asks for.")
@click.option("--request-id", default=None, help="Request id (default: a new UUID).")
@click.option(
    "--received",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="Day the request was received, UTC (default: now).",
)
def add_command(kind: Kind, request_id: str | None, received: datetime | None) -> None:
    """Register a request received outside cdrpipe; its deadline runs from the day it was received."""
    received_at = datetime.combine(received.date(), time(), UTC) if received else datetime.now(UTC)
    chosen = check_request_id(request_id, classifier()) if request_id else new_request_id()
    record = register_received(_storage(), chosen, kind, received_at)
    click.echo(f"request {record.request_id} ({record.kind}) registered: due {record.due.isoformat()}")
