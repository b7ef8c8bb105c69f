"""``cdrpipe worker``, ``demo`` and ``publish``: run the worker and put CDRs on the raw topics."""

from __future__ import annotations

import asyncio
import secrets
import sys
from collections.abc import Iterable
from pathlib import Path

import click

from pipeline.cli import demo
from pipeline.cli.group import cli, current_settings, store_keyring
from pipeline.cli.preflight import check_broker, check_web_port
from pipeline.config.settings import Settings
from pipeline.formats import file_source
from pipeline.formats.mapped_csv import load_mappings
from pipeline.formats.selection import FORMAT_HEADER
from pipeline.kafka.connection import check_login, kafka_connection
from pipeline.kafka.lag import wait_for_ingest
from pipeline.kafka.topics import require_topics
from pipeline.store.storage import make_dirs
from pipeline.worker.assembly import build_ingestor


@cli.command(
    short_help="Run the worker (Faust's worker command).",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
)
@click.argument("faust_args", nargs=-1, type=click.UNPROCESSED)
def worker(faust_args: tuple[str, ...]) -> None:
    """Run the worker (Faust's worker command; try `cdrpipe worker --help`).

    It starts only when its keyring and settings can be used, its web port is free and the broker
    answers; otherwise it stops with one line that says what to fix.
    """
    settings = current_settings()
    if "--help" not in faust_args:
        build_ingestor(settings, store_keyring(settings))
        check_web_port(settings)
        check_broker(settings)
        asyncio.run(check_login(kafka_connection(settings)))
        make_dirs(settings.runtime.state_dir)  # owner-only: Faust keeps its state there
    args = list(faust_args)
    if not any(arg in ("-l", "--loglevel") or arg.startswith("--loglevel=") for arg in args):
        args = ["--loglevel", "info", *args]
    from pipeline.worker.app import app  # noqa: PLC0415 - importing Faust is slow; only the worker needs it

    sys.argv = ["cdrpipe", "worker", *args]
    app.main()


@cli.command("demo", short_help="Publish realistic sample CDRs to the raw topic.")
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
    settings = current_settings()
    chosen_seed = seed if seed is not None else secrets.randbits(32)
    payloads = (demo.encode(cdr) for cdr in demo.generate(count, seed=chosen_seed))
    asyncio.run(_publish(settings, topic or settings.topics.raw_topics[0], payloads, count))
    click.echo(f"published {count} CDRs to {topic or settings.topics.raw_topics[0]}")
    if wait_s > 0:
        lag = asyncio.run(wait_for_ingest(settings, wait_s))
        if lag:
            raise click.ClickException(f"the worker still has {lag} records to store after {wait_s:.0f}s")
        click.echo(f"all records stored under {settings.store.root}")


async def _publish(
    settings: Settings,
    topic: str,
    payloads: Iterable[bytes],
    total: int,
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    """Send ``payloads`` (acks=all) with a progress bar; returns once all are acknowledged.

    The topic must exist: the worker creates it (a CDR producer's principal holds no Create).
    """
    connection = kafka_connection(settings)
    await check_login(connection)
    await require_topics(connection, [topic])
    producer = connection.producer(acks="all", linger_ms=20)
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


@cli.command("publish", short_help="Publish CDR files to the raw topic.")
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
    settings = current_settings()
    files = file_source.files_of(format_name, paths)
    mappings = load_mappings(settings.ingest.mappings_dir)
    total = sum(1 for _ in file_source.messages(format_name, files, mappings))
    target = topic or settings.topics.raw_topics[0]
    payloads = file_source.messages(format_name, files, mappings)
    headers = [(FORMAT_HEADER, format_name.encode())]
    asyncio.run(_publish(settings, target, payloads, total, headers))
    click.echo(f"published {total} CDRs from {len(files)} files to {target} (format {format_name})")
