"""The ``cdrpipe`` command: worker, keys and demo traffic.

Contract: configuration and keyring problems end the command with exit status
2 and one line that says what to fix; no traceback, no secret.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import msgspec
from aiokafka import AIOKafkaProducer

from pipeline import __version__, demo, file_source, keyring, log_scrub
from pipeline.assembly import build_ingestor
from pipeline.cli_requests import requests_group
from pipeline.cli_rights import COMMANDS as RIGHTS_COMMANDS
from pipeline.cli_rights import REQUEST_ID_OPTION, WAIT_OPTION, echo_receipt
from pipeline.config import Settings, load_settings
from pipeline.config import _region as region_code
from pipeline.errors import ConfigError
from pipeline.formats.mapped_csv import load_mappings
from pipeline.formats.selection import FORMAT_HEADER
from pipeline.kafka.lag import wait_for_ingest
from pipeline.kafka.ledger_reader import LedgerReader
from pipeline.kafka.topics import ensure_topics, topic_plans
from pipeline.keyring import load_keyring
from pipeline.lifecycle.erasure_request import ErasureRequest, SubjectKind
from pipeline.lifecycle.export import ExportFormat, minimise, subject_rows, write_export
from pipeline.lifecycle.finder import list_data_files, skip_strays
from pipeline.lifecycle.ledger import ErasureLedger
from pipeline.lifecycle.reapply import reapply_ledger
from pipeline.lifecycle.register import check_request_id, close, new_request_id, register_received
from pipeline.lifecycle.resolution import describe, resolve_number
from pipeline.lifecycle.retention import apply_retention, purge_dpo_records
from pipeline.lifecycle.subject import (
    Subject,
    subject_from_agent,
    subject_from_party,
    subject_from_pseudonym,
)
from pipeline.msisdn import NumberKind, PartyNumber
from pipeline.request_client import request_and_wait
from pipeline.sink.storage import open_storage

EXIT_CONFIG = 2


def _settings() -> Settings:
    return load_settings()


class _ConfigAwareGroup(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            click.echo(f"cdrpipe: {exc}", err=True)
            ctx.exit(EXIT_CONFIG)


@click.group(cls=_ConfigAwareGroup)
@click.version_option(__version__, prog_name="cdrpipe")
def cli() -> None:
    """cdrpipe: CDRs from Kafka into pseudonymised Parquet partitions by call date.

    Configuration comes from CDRPIPE_* environment variables (see README).
    """


cli.add_command(requests_group)
for _command in RIGHTS_COMMANDS:
    cli.add_command(_command)


@cli.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}
)
@click.argument("faust_args", nargs=-1, type=click.UNPROCESSED)
def worker(faust_args: tuple[str, ...]) -> None:
    """Run the worker (Faust's worker command; try `cdrpipe worker --help`)."""
    settings = _settings()
    if "--help" not in faust_args:
        build_ingestor(settings)
        settings.state_dir.mkdir(parents=True, exist_ok=True)
    args = list(faust_args)
    if not any(arg in ("-l", "--loglevel") or arg.startswith("--loglevel=") for arg in args):
        args = ["--loglevel", "info", *args]
    from pipeline.app import app  # noqa: PLC0415 - importing Faust is slow; only the worker needs it

    sys.argv = ["cdrpipe", "worker", *args]
    app.main()


@cli.group()
def keys() -> None:
    """Manage the keyring (CDRPIPE_KEYRING): init, rotate, list. Secrets are never printed."""


def _keyring_path(path: Path | None) -> Path:
    return path if path is not None else _settings().keyring


_KEYRING_OPTION = click.option(
    "--keyring",
    "keyring_path",
    type=click.Path(path_type=Path),
    help="Keyring file (default: CDRPIPE_KEYRING).",
)


@keys.command("init")
@_KEYRING_OPTION
@click.option("--if-missing", is_flag=True, help="Do nothing when the keyring already exists.")
def keys_init(keyring_path: Path | None, if_missing: bool) -> None:
    """Create a keyring with one random 32-byte key (file mode 0600)."""
    path = _keyring_path(keyring_path)
    if if_missing and path.exists():
        click.echo(f"keyring {path} exists; left as it is")
        return
    created = keyring.init_keyring(path)
    click.echo(f"created keyring {path} with active key {created.active_id}")


@keys.command("rotate")
@_KEYRING_OPTION
def keys_rotate(keyring_path: Path | None) -> None:
    """Add a new active key; old keys stay for erasure and export of older rows."""
    path = _keyring_path(keyring_path)
    rotated = keyring.rotate_keyring(path)
    click.echo(f"keyring {path}: active key is now {rotated.active_id}; restart the workers to use it")


@keys.command("list")
@_KEYRING_OPTION
def keys_list(keyring_path: Path | None) -> None:
    """List key ids and creation times (never secrets)."""
    path = _keyring_path(keyring_path)
    loaded = keyring.load_keyring(path)
    for key in loaded.keys:
        marker = "*" if key.key_id == loaded.active_id else " "
        click.echo(f"{marker} {key.key_id}\tcreated {key.created_at}\t{len(key.secret)} bytes")


@cli.command("demo")
@click.option("--count", default=10_000, show_default=True, help="How many CDRs to publish.")
@click.option("--seed", type=int, default=None, help="Random seed for repeatable traffic (default: random).")
@click.option(
    "--topic", default=None, help="Raw topic to publish to (default: the first CDRPIPE_RAW_TOPICS)."
)
@click.option(
    "--wait", "wait_s", default=0.0, help="Then wait up to this many seconds for the worker to store them."
)
def demo_command(count: int, seed: int | None, topic: str | None, wait_s: float) -> None:
    """Publish realistic sample CDRs (canonical JSON) to the raw topic."""
    settings = _settings()
    chosen_seed = seed if seed is not None else secrets.randbits(32)
    payloads = (demo.encode(cdr) for cdr in demo.generate(count, seed=chosen_seed))
    asyncio.run(_publish(settings, topic or settings.raw_topics[0], payloads, count))
    click.echo(f"published {count} CDRs to {topic or settings.raw_topics[0]}")
    if wait_s > 0:
        lag = asyncio.run(wait_for_ingest(settings, wait_s))
        if lag:
            raise click.ClickException(f"the worker still has {lag} records to store after {wait_s:.0f}s")
        click.echo(f"all records stored under {settings.store}")


async def _publish(
    settings: Settings,
    topic: str,
    payloads: Iterable[bytes],
    total: int,
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    """Send ``payloads`` (acks=all) with a progress bar; returns once all are acknowledged."""
    await ensure_topics(settings.bootstrap_servers, topic_plans(settings))
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=20)
    await producer.start()
    try:
        with click.progressbar(length=total, label="publishing", file=sys.stderr) as bar:
            pending = []
            for payload in payloads:
                pending.append(await producer.send(topic, payload, headers=headers))
                if len(pending) >= 5_000:
                    await asyncio.gather(*pending)
                    bar.update(len(pending))
                    pending.clear()
            await asyncio.gather(*pending)
            bar.update(len(pending))
    finally:
        await producer.stop()


@cli.command("publish")
@click.option(
    "--format", "format_name", required=True,
    help="asterisk-csv, freeswitch-json, canonical-json (JSON lines) or mapped-csv/<mapping name>.",
)  # fmt: skip
@click.option("--topic", default=None, help="Raw topic (default: the first CDRPIPE_RAW_TOPICS).")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def publish_command(format_name: str, topic: str | None, paths: tuple[Path, ...]) -> None:
    """Publish CDR files to the raw topic, one message per CDR with the cdr-format header.

    Reads an Asterisk Master.csv, a directory of FreeSWITCH JSON CDRs, a JSON-lines
    file of canonical CDRs, or a carrier CSV described by a mapping.
    """
    settings = _settings()
    files = file_source.files_of(format_name, paths)
    mappings = load_mappings(settings.mappings_dir)
    total = sum(1 for _ in file_source.messages(format_name, files, mappings))
    target = topic or settings.raw_topics[0]
    payloads = file_source.messages(format_name, files, mappings)
    headers = [(FORMAT_HEADER, format_name.encode())]
    asyncio.run(_publish(settings, target, payloads, total, headers))
    click.echo(f"published {total} CDRs from {len(files)} files to {target} (format {format_name})")


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
    """The subject of the options: its kind, the value a request carries, its tenant and pseudonyms."""

    kind: SubjectKind
    value: str
    tenant: str | None
    subject: Subject


def _subject(settings: Settings, options: dict[str, Any]) -> _NamedSubject:
    """The subject named by --number, --agent or --pseudonym (with --region, --tenant and --yes)."""
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
    tenant: str | None = options["tenant"]
    if kind == "pseudonym":
        return _NamedSubject("pseudonym", value, None, subject_from_pseudonym(value))
    if kind == "agent":
        if not tenant:
            raise click.UsageError(
                "an agent id is only unique within its tenant: give --tenant "
                "(the records' source, or its CDRPIPE_TENANTS tenant)"
            )
        click.echo(f"subject: agent {value.strip()} at tenant {tenant}", err=True)  # the terminal only
        subject = subject_from_agent(value, load_keyring(settings.keyring), tenant)
        return _NamedSubject("agent", value, tenant, subject)
    party = _resolve(settings, value, options["region"], tenant, yes=options["yes"])
    scope = tenant if party.kind is NumberKind.EXTENSION else None
    subject = subject_from_party(party, load_keyring(settings.keyring), scope)
    return _NamedSubject("number", str(party.value), scope, subject)


def _resolve(
    settings: Settings, number: str, region: str | None, tenant: str | None, *, yes: bool
) -> PartyNumber:
    """The subject's number as the store knows it; the reading is shown on the terminal only."""
    try:
        chosen_region = region_code(region) if region is not None else settings.region
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--region") from None
    resolution = resolve_number(number, chosen_region, settings.extension_digits)
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


@cli.command("erase")
@_subject_options
@click.option("--mode", type=click.Choice(["delete", "redact"]), default="delete", show_default=True,
              help="delete whole rows, or redact only the subject's side of each row.")  # fmt: skip
@REQUEST_ID_OPTION
@WAIT_OPTION
def erase_command(*, mode: str, request_id: str | None, wait_s: float, **subject_options: Any) -> None:
    """Publish a GDPR erasure request for one subject to the erasure request topic.

    A --number is shown as the E.164 number and region (or extension and
    tenant) it resolves to, on the terminal only; the request carries that
    resolved form, so every worker reads it the same way.

    With --wait it prints the receipt and exits 1 if the request was rejected
    or its verification failed.

    Deleting an agent's rows removes whole calls; --mode redact keeps the calls
    and removes only the agent's pseudonym.
    """
    settings = _settings()
    named = _subject(settings, subject_options)  # validated before anything is sent
    request = ErasureRequest(
        request_id=request_id or new_request_id(),
        subject=named.value,
        subject_kind=named.kind,
        tenant=named.tenant,
        requested_at=datetime.now(UTC),
        mode="redact" if mode == "redact" else "delete",
    )
    receipt = asyncio.run(_request_erasure(settings, request, wait_s))
    echo_receipt(
        receipt, f"erasure request {request.request_id} published to {settings.erasure_topic}", wait_s
    )
    verification = receipt.get("verification") if receipt is not None else None
    passed = isinstance(verification, dict) and verification.get("passed") is True
    if receipt is not None and (receipt.get("status") != "completed" or not passed):
        raise SystemExit(1)  # printed above: a rejected request or a failed verification


async def _request_erasure(
    settings: Settings, request: ErasureRequest, wait_s: float
) -> dict[str, object] | None:
    payload = msgspec.json.encode(request)
    return await request_and_wait(
        settings, (settings.erasure_topic, settings.receipts_topic), request.request_id, payload, wait_s
    )


@cli.command("export")
@_subject_options
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Output file.")
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
    *, out: Path, export_format: str, full: bool, request_id: str | None, **subject_options: Any
) -> None:
    """Export all of one subject's rows (every partition, every key id) for an access request.

    By default the copy is minimised for the subject (other parties become
    party-1, party-2, ... tokens of this export; no other agent pseudonyms; no
    other party's country or line type); --full is for the controller's
    internal use.
    """
    settings = _settings()
    subject = _subject(settings, subject_options).subject
    storage = open_storage(settings.store)
    if request_id is not None:
        register_received(storage, check_request_id(request_id), "access", datetime.now(UTC))
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
        write_export(copy, out, chosen)
        kind = "full controller-internal" if full else "minimised"
        outcome = f"exported {copy.num_rows} rows ({export_format}, {kind})"
    if request_id is not None:
        close(storage, request_id, datetime.now(UTC), outcome)
    click.echo(outcome if table is None else f"{outcome} to {out}")


@cli.command("retention")
@click.option("--dry-run", is_flag=True, help="Only list the call_date partitions that would be deleted.")
def retention_command(dry_run: bool) -> None:
    """Delete call_date partitions older than CDRPIPE_RETENTION_DAYS and purge old DPO records.

    The worker also does this hourly.
    Run it when no erasure is in progress; the worker's own timer is serialised with erasures.
    """
    settings = _settings()
    storage, now = open_storage(settings.store), datetime.now(UTC)
    report = apply_retention(storage, now, settings.retention_days, dry_run)
    verb = "would delete" if dry_run else "deleted"
    for call_date, paths in sorted(report.partitions.items()):
        click.echo(f"{verb} call_date={call_date.isoformat()} ({len(paths)} files)")
    click.echo(f"{verb} {len(report.partitions)} partitions older than {report.horizon.isoformat()}")
    if not dry_run:
        purged = purge_dpo_records(storage, settings.dpo_record_days, now)
        click.echo(f"purged {purged} DPO records (audit days, receipts, closed requests) past their period")


@cli.command("reapply-erasures")
def reapply_erasures_command() -> None:
    """Apply every erasure in the ledger topic to the store again (after restoring a backup).

    Rows of subjects under a restriction or objection go back to the quarantine.
    Stop the workers first: this rewrites files outside the worker's lifecycle path.
    """
    settings = _settings()
    ledger = ErasureLedger()
    asyncio.run(_read_ledger(settings, ledger))
    entries = ledger.entries()
    with click.progressbar(length=len(entries), label="re-applying erasures", file=sys.stderr) as bar:
        report = reapply_ledger(open_storage(settings.store), entries, progress=bar.update)
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


async def _read_ledger(settings: Settings, ledger: ErasureLedger) -> None:
    reader = LedgerReader(settings.bootstrap_servers, settings.ledger_topic, ledger)
    await reader.start()
    await reader.stop()


def main() -> None:
    """Console-script entry point."""
    log_scrub.install()
    cli(prog_name="cdrpipe")
