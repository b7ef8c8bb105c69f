"""``cdrpipe erase`` and ``export``: one data subject, named by number, extension, agent or pseudonym.

Contract: the subject the command resolved is shown on the terminal only (never
in logs or receipts); an ambiguous number is refused until the DPO confirms.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import msgspec

from pipeline.cli.client import request_and_wait
from pipeline.cli.group import DpoContext, cli, dpo_context
from pipeline.cli.rights import REQUEST_ID_OPTION, WAIT_OPTION, classifier, echo_receipt, request_pseudonyms
from pipeline.config.fields import region_code
from pipeline.config.settings import Settings
from pipeline.keys.keyring import Keyring
from pipeline.keys.pseudonym import tenant_for
from pipeline.lifecycle.operations.export import (
    ExportFormat,
    check_export_target,
    minimise,
    subject_rows,
    write_export,
)
from pipeline.lifecycle.operations.finder import list_data_files, skip_strays
from pipeline.lifecycle.requests.erasure_request import ErasureRequest, SubjectKind
from pipeline.lifecycle.requests.ids import check_request_id, new_request_id
from pipeline.lifecycle.requests.register import record_answer, register_received
from pipeline.lifecycle.subject import (
    Subject,
    subject_from_agent,
    subject_from_party,
    subject_from_pseudonym,
)
from pipeline.numbers.msisdn import NumberKind, PartyNumber
from pipeline.numbers.resolution import describe, resolve_number
from pipeline.store.object_storage import open_storage
from pipeline.store.storage import LocalStorage


def _subject_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options that name a data subject, shared by erase and export."""
    options = [
        click.option("--number", help="The subject's phone number or extension, in any spelling."),
        click.option("--agent", help="The subject as a contact-centre agent id (an employee)."),
        click.option("--pseudonym", help="The subject as a pseudonym (32 hex characters) of a number, "
                     "extension or agent."),
        click.option("--region", default=None, help="Read a national --number in this ISO 3166 region "
                     "(default: CDRPIPE_REGION)."),
        click.option("--tenant", default=None, help="The tenant of an extension --number or an --agent (the "
                     "records' source, or its CDRPIPE_TENANTS tenant): they are pseudonymised per tenant."),
        click.option("--yes", is_flag=True, help="Confirm the national reading of a --number that is also "
                     "valid as an international number without its +."),
    ]  # fmt: skip
    for option in reversed(options):
        command = option(command)
    return command


@dataclass(frozen=True, slots=True)
class _NamedSubject:
    """The subject of the options: its kind, the value it was named by, its tenant and pseudonyms."""

    kind: SubjectKind
    value: str
    tenant: str | None
    subject: Subject


def _subject(context: DpoContext, options: dict[str, Any]) -> _NamedSubject:
    """The subject named by --number, --agent or --pseudonym (with --region, --tenant and --yes)."""
    settings = context.settings
    given: list[tuple[SubjectKind, str | None]] = [
        ("number", options["number"]),
        ("agent", options["agent"]),
        ("pseudonym", options["pseudonym"]),
    ]
    chosen = [(kind, value) for kind, value in given if value is not None]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --number, --agent or --pseudonym")
    kind, value = chosen[0]
    assert value is not None
    # a source mapped by CDRPIPE_TENANTS names its tenant, as the worker writes the rows
    tenant = tenant_for(options["tenant"], dict(settings.numbers.tenants)) if options["tenant"] else None
    if kind == "pseudonym":
        return _NamedSubject("pseudonym", value, None, subject_from_pseudonym(value))
    if kind == "agent":
        if not tenant:
            raise click.UsageError(
                "an agent id is only unique within its tenant: give --tenant "
                "(the records' source, or its CDRPIPE_TENANTS tenant)"
            )
        click.echo(f"subject: agent {value.strip()} at tenant {tenant}", err=True)  # the terminal only
        subject = subject_from_agent(value, context.keys(), tenant)
        return _NamedSubject("agent", value, tenant, subject)
    party = _resolve(settings, value, options["region"], tenant, yes=options["yes"])
    scope = tenant if party.kind is NumberKind.EXTENSION else None
    subject = subject_from_party(party, context.keys(), scope)
    return _NamedSubject("number", str(party.value), scope, subject)


def _resolve(
    settings: Settings, number: str, region: str | None, tenant: str | None, *, yes: bool
) -> PartyNumber:
    """The subject's number as the store knows it; the reading is shown on the terminal only."""
    try:
        chosen_region = region_code(region) if region is not None else settings.numbers.region
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--region") from None
    resolution = resolve_number(number, chosen_region, settings.numbers.extension_digits)
    party = resolution.party
    if party.kind not in (NumberKind.E164, NumberKind.EXTENSION):
        raise click.UsageError(f"--number is not a subscriber number or extension (it is {party.kind.value})")
    if resolution.ambiguous and not yes:
        others = "; ".join(describe(other) for other in resolution.alternatives)
        raise click.UsageError(
            f"--number is ambiguous: as a national number of {chosen_region} it is {resolution.describe()}; "
            f"as an international number without its + it is {others}. Give it with + or 00, "
            "or its country with --region, or confirm the national reading with --yes"
        )
    if party.kind is NumberKind.EXTENSION and not tenant:
        raise click.UsageError(
            "an extension is only unique within its tenant: give --tenant "
            "(the records' source, or its CDRPIPE_TENANTS tenant)"
        )
    where = f" at tenant {tenant}" if party.kind is NumberKind.EXTENSION else ""
    click.echo(f"subject: {resolution.describe()}{where}", err=True)  # the terminal only: never a log line
    return party


@cli.command("erase", short_help="Request the erasure of one subject (art. 17).")
@_subject_options
@click.option("--mode", type=click.Choice(["delete", "redact"]), default="delete", show_default=True,
              help="delete whole rows, or redact only the subject's side of each row.")  # fmt: skip
@REQUEST_ID_OPTION
@WAIT_OPTION
def erase_command(*, mode: str, request_id: str | None, wait_s: float, **subject_options: Any) -> None:
    """Publish a GDPR erasure request for one subject to the erasure request topic.

    A --number is shown as the E.164 number and region (or extension and
    tenant) it resolves to, on the terminal only; the request carries the
    pseudonyms of that resolved form under every key of the keyring (never
    the number), signed with the keyring, so every worker reads it the same way.

    With --wait it prints the receipt and exits 1 if the request was rejected
    or its verification failed.

    Deleting an agent's rows removes whole calls; --mode redact keeps the calls
    and removes only the agent's pseudonym.
    """
    context = dpo_context(reads_store=False)
    settings = context.settings
    named = _subject(context, subject_options)  # validated before anything is sent
    by_pseudonym = named.kind == "pseudonym"  # a pseudonym as given: its key is not known
    request = ErasureRequest(
        request_id=request_id or new_request_id(),
        subject=named.value if by_pseudonym else None,
        subject_kind=named.kind if by_pseudonym else "pseudonyms",
        pseudonyms=None if by_pseudonym else request_pseudonyms(named.subject, named.tenant),
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
@_subject_options
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
    subject = _subject(context, subject_options).subject
    storage = open_storage(settings.store.root, group_read=settings.store.group_read)
    store_root = storage.root if isinstance(storage, LocalStorage) else None
    check_export_target(out, force, store_root)  # before any work: refused with one line
    if request_id is not None:
        register_received(storage, check_request_id(request_id, classifier()), "access", datetime.now(UTC))
    listed = list_data_files(storage)
    skip_strays(storage, listed.strays, "export", datetime.now(UTC))
    for stray in listed.strays:
        click.echo(f"skipped {stray}: not in a call_date=YYYY-MM-DD/ directory", err=True)
    with click.progressbar(length=len(listed.paths), label="searching files", file=sys.stderr) as bar:
        table = subject_rows(storage, subject, progress=bar.update)
    if table is None:
        outcome = "no rows for this subject"
    else:
        chosen: ExportFormat = (
            "csv" if export_format == "csv" else "parquet" if export_format == "parquet" else "jsonl"
        )
        copy = table if full else minimise(table, subject)
        write_export(copy, out, chosen, force)
        kind = "full controller-internal" if full else "minimised"
        outcome = f"exported {copy.num_rows} rows ({export_format}, {kind})"
    if request_id is not None:  # composed from the checked id and counts: never refused by the register
        record_answer(storage, request_id, datetime.now(UTC), outcome, closes=True)
    click.echo(outcome if table is None else f"{outcome} to {out}")
