"""The ``cdrpipe`` command group: configuration problems end it with exit status 2 and one line.

Contract: configuration and keyring problems end any command with exit status
2 and one line that says what to fix; no traceback, no secret.
:func:`current_settings` also sets up the sealing of the audit trail and the
register with the keyring file (read when an entry is first written), and
warns on standard error about a local store whose files others may read
(a bounded check; ``cdrpipe store fix-permissions`` fixes them).
"""

from __future__ import annotations

import functools
from pathlib import Path

import click

from pipeline import __version__
from pipeline.config.settings import Settings, load_settings
from pipeline.errors import CdrpipeError
from pipeline.keys.keyring import load_keyring
from pipeline.lifecycle.requests.chain import seal_with
from pipeline.store.permissions import exposed

EXIT_CONFIG = 2


def current_settings() -> Settings:
    """The settings from the environment (``CDRPIPE_*``); see the module contract."""
    settings = load_settings()
    seal_with(functools.partial(load_keyring, settings.numbers.keyring))
    if not settings.store.root.startswith("s3://"):
        readable = exposed(Path(settings.store.root), settings.store.group_read)
        if readable:
            click.echo(
                f"cdrpipe: warning: {len(readable)} files or directories of the store (e.g. {readable[0]}) "
                "can be read by other users: run `cdrpipe store fix-permissions`",
                err=True,
            )
    return settings


class _ConfigAwareGroup(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except CdrpipeError as exc:
            click.echo(f"cdrpipe: {exc}", err=True)
            ctx.exit(EXIT_CONFIG)


@click.group(cls=_ConfigAwareGroup)
@click.version_option(__version__, prog_name="cdrpipe")
def cli() -> None:
    """cdrpipe: CDRs from Kafka into pseudonymised Parquet partitions by call date.

    Configuration comes from CDRPIPE_* environment variables (see docs/configuration.md).
    """
