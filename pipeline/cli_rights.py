"""``cdrpipe rectify``, ``restrict``, ``unrestrict``, ``object``, ``withdraw-objection``.

Contract: each command checks its request as the worker will (a request the
worker would reject is refused here with exit status 2), publishes it to the
subject request topic and, with ``--wait``, prints the receipt as JSON: exit
status 0 when the request was carried out, 1 when it was rejected or no
receipt came in time.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime

import click
import msgspec

from pipeline.config import load_settings
from pipeline.errors import ConfigError
from pipeline.lifecycle.register import check_request_id, new_request_id
from pipeline.lifecycle.subject_request import Rejection, SubjectRequest, parse_request
from pipeline.request_client import request_and_wait

REQUEST_ID_OPTION = click.option(
    "--request-id",
    default=None,
    callback=lambda _ctx, _param, value: value and check_request_id(value),
    help="Request id (default: a new UUID).",
)
WAIT_OPTION = click.option(
    "--wait", "wait_s", default=0.0, help="Wait up to this many seconds and print the receipt as JSON."
)


def _send(request: SubjectRequest, wait_s: float) -> None:
    payload = msgspec.json.encode(request)
    checked = parse_request(request.request_id.encode(), payload)
    if isinstance(checked, Rejection):
        raise ConfigError(checked.reason)
    settings = load_settings()
    topics = (settings.subject_requests_topic, settings.subject_receipts_topic)
    receipt = asyncio.run(request_and_wait(settings, topics, request.request_id, payload, wait_s))
    echo_receipt(receipt, f"{request.kind} request {request.request_id} published to {topics[0]}", wait_s)
    if receipt is not None and receipt.get("status") != "done":
        raise SystemExit(1)


def echo_receipt(receipt: dict[str, object] | None, published: str, wait_s: float) -> None:
    """Print the receipt as JSON; without one, say what was published (an error if it was awaited)."""
    if receipt is not None:
        click.echo(json.dumps(receipt, indent=2, sort_keys=True))
        return
    click.echo(published)
    if wait_s > 0:
        raise click.ClickException(f"no receipt after {wait_s:.0f}s; is a worker running?")


@click.command("rectify")
@click.option("--cdr-id", required=True, help="The call whose party is wrongly attributed.")
@click.option("--party", type=click.Choice(["caller", "callee"]), required=True, help="The wrong party.")
@click.option(
    "--call-date", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Search only this call date."
)
@REQUEST_ID_OPTION
@WAIT_OPTION
def rectify_command(
    cdr_id: str, party: str, call_date: datetime | None, request_id: str | None, wait_s: float
) -> None:
    """Redact a wrongly attributed party of one call (art. 16); the call itself is never edited."""
    day: date | None = call_date.date() if call_date else None
    _send(
        SubjectRequest(
            request_id=request_id or new_request_id(),
            kind="rectification",
            requested_at=datetime.now(UTC),
            cdr_id=cdr_id,
            party="caller" if party == "caller" else "callee",
            call_date=day,
        ),
        wait_s,
    )


COMMANDS = [rectify_command]
