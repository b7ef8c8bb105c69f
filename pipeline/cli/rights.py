"""``cdrpipe rectify``, ``restrict``, ``unrestrict``, ``object``, ``withdraw-objection``.

Contract: each command checks its request as the worker will (a request the
worker would reject is refused here with exit status 2; the subject of a
restriction, lift, objection or withdrawal is named as for an erasure, by
:mod:`pipeline.cli.naming`, and the request carries its pseudonyms, never the
number), signs it with the keyring, publishes it to the subject request topic
and, with ``--wait``, prints the receipt as JSON (its
one-line ``summary`` first): exit status 0 when the request was carried out,
1 when it was rejected, failed, or no receipt came in time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

import click
import msgspec

from pipeline.cli.client import request_and_wait
from pipeline.cli.group import DpoContext, dpo_context
from pipeline.cli.naming import named_subject, subject_options
from pipeline.config.settings import load_settings
from pipeline.errors import RequestRefusedError
from pipeline.lifecycle.requests.ids import check_request_id, new_request_id
from pipeline.lifecycle.requests.subject_request import Rejection, RequestKind, SubjectRequest, parse_request
from pipeline.numbers.msisdn import NumberClassifier
from pipeline.worker.assembly import build_classifier


def classifier() -> NumberClassifier:
    """The classifier of the settings, which reads ids as the worker will."""
    return build_classifier(load_settings())


REQUEST_ID_OPTION = click.option(
    "--request-id",
    default=None,
    callback=lambda _ctx, _param, value: check_request_id(value, classifier()) if value else None,
    help="Request id (default: a new UUID).",
)
WAIT_OPTION = click.option(
    "--wait", "wait_s", default=0.0, help="Wait up to this many seconds and print the receipt as JSON."
)


def _send(context: DpoContext, request: SubjectRequest, wait_s: float) -> None:
    payload = msgspec.json.encode(request)
    checked = parse_request(request.request_id.encode(), payload, classifier())
    if isinstance(checked, Rejection):
        raise RequestRefusedError(checked.reason)
    settings = context.settings
    topics = (settings.topics.subject_requests_topic, settings.topics.subject_receipts_topic)
    receipt = asyncio.run(
        request_and_wait(settings, topics, request.request_id, payload, keyring=context.keys(), wait_s=wait_s)
    )
    echo_receipt(receipt, f"{request.kind} request {request.request_id} published to {topics[0]}", wait_s)
    if receipt is not None and receipt.get("status") != "completed":
        raise SystemExit(1)


def echo_receipt(receipt: dict[str, object] | None, published: str, wait_s: float) -> None:
    """Print the receipt as JSON; without one, say what was published (an error if it was awaited)."""
    if receipt is not None:
        click.echo(json.dumps(receipt, indent=2))  # in the worker's order: the summary first
        return
    click.echo(published)
    if wait_s > 0:
        raise click.ClickException(f"no receipt after {wait_s:.0f}s; is a worker running?")


@click.command("rectify", short_help="Redact a wrongly attributed party (art. 16).")
@click.option("--cdr-id", required=True, help="The call whose party is wrongly attributed.")
@click.option("--party", type=click.Choice(["caller", "callee"]), required=True, help="The wrong party.")
@click.option(
    "--call-date", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Search only this call date."
)
@click.option("--source", default=None, help="The call's source, when its cdr_id is used by several.")
@REQUEST_ID_OPTION
@WAIT_OPTION
def rectify_command(
    *,
    cdr_id: str,
    party: str,
    call_date: datetime | None,
    source: str | None,
    request_id: str | None,
    wait_s: float,
) -> None:
    """Redact a wrongly attributed party of one call (art. 16); the call itself is never edited."""
    day: date | None = call_date.date() if call_date else None
    _send(
        dpo_context(reads_store=False),
        SubjectRequest(
            request_id=request_id or new_request_id(),
            kind="rectification",
            requested_at=datetime.now(UTC),
            cdr_id=cdr_id,
            party="caller" if party == "caller" else "callee",
            call_date=day,
            source=source,
        ),
        wait_s,
    )


def _send_about(kind: RequestKind, subject_options: Mapping[str, Any], request_id: str | None, wait_s: float,
                **fields: Any) -> None:  # fmt: skip
    """Send a request about the subject the options name (:mod:`pipeline.cli.naming`), checked first."""
    context = dpo_context(reads_store=False)
    named = named_subject(context, subject_options)  # the resolution line, before anything is sent
    request = SubjectRequest(
        request_id=request_id or new_request_id(),
        kind=kind,
        requested_at=datetime.now(UTC),
        **named.carried(),
        **fields,
    )
    _send(context, request, wait_s)


@click.command("restrict", short_help="Restrict a subject's processing (art. 18).")
@subject_options
@REQUEST_ID_OPTION
@WAIT_OPTION
def restrict_command(*, request_id: str | None, wait_s: float, **subject: Any) -> None:
    """Restrict a subject (art. 18): move their rows to the quarantine; later records go there too."""
    _send_about("restriction", subject, request_id, wait_s)


@click.command("unrestrict", short_help="Lift a subject's restriction.")
@subject_options
@REQUEST_ID_OPTION
@WAIT_OPTION
def unrestrict_command(*, request_id: str | None, wait_s: float, **subject: Any) -> None:
    """Lift a subject's restriction: their rows go back into the dataset, later records too."""
    _send_about("lift", subject, request_id, wait_s)


@click.command("object", short_help="Record a subject's objection (art. 21).")
@subject_options
@click.option(
    "--existing",
    type=click.Choice(["quarantine", "erase"]),
    required=True,
    help="What happens to the rows already stored: moved to the quarantine, or erased.",
)
@REQUEST_ID_OPTION
@WAIT_OPTION
def object_command(*, existing: str, request_id: str | None, wait_s: float, **subject: Any) -> None:
    """Record an objection (art. 21): later records are dropped; stored ones quarantined or erased."""
    chosen = "erase" if existing == "erase" else "quarantine"
    _send_about("objection", subject, request_id, wait_s, existing=chosen)


@click.command("withdraw-objection", short_help="Withdraw a subject's objection.")
@subject_options
@REQUEST_ID_OPTION
@WAIT_OPTION
def withdraw_objection_command(*, request_id: str | None, wait_s: float, **subject: Any) -> None:
    """Withdraw a subject's objection: later records are stored again; quarantined rows come back."""
    _send_about("withdrawal", subject, request_id, wait_s)


COMMANDS = [rectify_command, restrict_command, unrestrict_command, object_command, withdraw_objection_command]
