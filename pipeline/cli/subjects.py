"""``cdrpipe erase`` and ``export``: one data subject, named by number, extension, agent or pseudonym.

Contract: the subject is named as every subject command names it
(:mod:`pipeline.cli.naming`: the resolution line on the terminal only, an
ambiguous number refused until the DPO settles it); the erasure request
carries the resolved subject and its tenant, never the digits as typed.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import msgspec

from pipeline.cli.client import request_and_wait
from pipeline.cli.group import cli, dpo_context
from pipeline.cli.naming import named_subject, subject_options
from pipeline.cli.progress import terminal_progress
from pipeline.cli.rights import REQUEST_ID_OPTION, WAIT_OPTION, classifier, echo_receipt
from pipeline.config.settings import Settings
from pipeline.keys.keyring import Keyring
from pipeline.lifecycle.operations.export import (
    ExportFormat,
    check_export_target,
    minimise,
    subject_rows,
    write_export,
)
from pipeline.lifecycle.operations.finder import list_data_files, skip_strays
from pipeline.lifecycle.requests.erasure_request import ErasureRequest
from pipeline.lifecycle.requests.ids import check_request_id, new_request_id
from pipeline.lifecycle.requests.register import record_answer, register_received
from pipeline.store.object_storage import open_storage
from pipeline.store.storage import LocalStorage


@cli.command("erase", short_help="Request the erasure of one subject (art. 17).")
@subject_options
@click.option("--mode", type=click.Choice(["delete", "redact"]), default="delete", show_default=True,
              help="delete whole rows, or redact only the subject's side of each row.")  # fmt: skip
@REQUEST_ID_OPTION
@WAIT_OPTION
def erase_command(*, mode: str, request_id: str | None, wait_s: float, **subject_options: Any) -> None:
    """Publish a GDPR erasure request for one subject to the erasure request topic.

    A --number is shown as the E.164 number and region (or extension and
    tenant) it resolves to, on the terminal only; the request carries its
    pseudonyms under every key of the keyring (never the number), signed with
    the keyring, so every worker reads it the same way.

    With --wait it prints the receipt and exits 1 if the request was rejected
    or its verification failed.

    Deleting an agent's rows removes whole calls; --mode redact keeps the calls
    and removes only the agent's pseudonym.
    """
    context = dpo_context(reads_store=False)
    settings = context.settings
    named = named_subject(context, subject_options)  # validated before anything is sent
    request = ErasureRequest(
        request_id=request_id or new_request_id(),
        **named.carried(),
        requested_at=datetime.now(UTC),
        mode="redact" if mode == "redact" else "delete",
    )
    receipt = asyncio.run(_request_erasure(settings, request, context.keys(), wait_s))
    echo_receipt(
        receipt, f"erasure request {request.request_id} published to {settings.topics.erasure_topic}", wait_s
    )
    verification = receipt.get("verification") if receipt is not None else None
    passed = isinstance(verification, dict) and verification.get("passed") is True
    if receipt is not None and (receipt.get("status") != "completed" or not passed):
        raise SystemExit(1)  # printed above: a rejected request or a failed verification


async def _request_erasure(
    settings: Settings, request: ErasureRequest, keyring: Keyring, wait_s: float
) -> dict[str, object] | None:
    payload = msgspec.json.encode(request)
    return await request_and_wait(
        settings,
        (settings.topics.erasure_topic, settings.topics.receipts_topic),
        request.request_id,
        payload,
        keyring=keyring,
        wait_s=wait_s,
    )


@cli.command("export", short_help="Export one subject's rows (art. 15).")
@subject_options
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(path_type=Path),
    help="Output file, created owner-only (0600); an existing one is refused.",
)
@click.option("--force", is_flag=True, help="Replace an existing --out file (atomically; never a symlink).")
@click.option("--format", "export_format", type=click.Choice(["jsonl", "csv", "parquet"]), default="jsonl",
              show_default=True)  # fmt: skip
@click.option(
    "--full",
    is_flag=True,
    help="Controller-internal copy: keep the other parties' pseudonyms, countries and line types and the "
    "agent pseudonyms. Never hand it to the data subject.",
)
@click.option(
    "--request-id",
    default=None,
    help="The access request this answers: registered if new, closed once the file is written.",
)
def export_command(
    *,
    out: Path,
    force: bool,
    export_format: str,
    full: bool,
    request_id: str | None,
    **subject_options: Any,
) -> None:
    """Export all of one subject's rows (every partition, every key id) for an access request.

    By default the copy is minimised for the subject (other parties become
    party-1, party-2, ... tokens of this export; no other agent pseudonyms; no
    other party's country or line type); --full is for the controller's
    internal use.
    """
    context = dpo_context(reads_store=True)
    settings = context.settings
    if request_id is not None:
        check_request_id(request_id, classifier())
    subject = named_subject(context, subject_options).subject
    storage = open_storage(settings.store.root, group_read=settings.store.group_read)
    store_root = storage.root if isinstance(storage, LocalStorage) else None
    check_export_target(out, force, store_root)  # before any work: refused with one line
    if request_id is not None:
        register_received(storage, check_request_id(request_id, classifier()), "access", datetime.now(UTC))
    listed = list_data_files(storage)
    skip_strays(storage, listed.strays, "export", datetime.now(UTC))
    for stray in listed.strays:
        click.echo(f"skipped {stray}: not in a call_date=YYYY-MM-DD/ directory", err=True)
    with terminal_progress("export") as progress:
        found = subject_rows(storage, subject, progress=progress)
    table = found.table
    if table is None:
        outcome = "no rows for this subject" if found.complete else "no rows found under the keys searched"
    else:
        chosen: ExportFormat = (
            "csv" if export_format == "csv" else "parquet" if export_format == "parquet" else "jsonl"
        )
        copy = table if full else minimise(table, subject)
        write_export(copy, out, chosen, force)
        kind = "full controller-internal" if full else "minimised"
        outcome = f"exported {copy.num_rows} rows ({export_format}, {kind})"
    if found.coverage is not None and found.coverage.caveat():
        click.echo(found.coverage.caveat().strip(), err=True)
    if request_id is not None:  # composed from the checked id, paths, key ids and counts
        # an incomplete export does not answer the request: it stays open, with the export noted
        note = "; ".join(filter(None, (outcome, found.incomplete(fingerprints=False))))
        record_answer(storage, request_id, datetime.now(UTC), note, closes=found.complete)
    click.echo(outcome if table is None else f"{outcome} to {out}")
    if not found.complete:
        click.echo(found.incomplete(fingerprints=True), err=True)
        raise SystemExit(1)
