"""The ``cdrpipe`` command group: configuration problems end it with exit status 2 and one line.

Contract: configuration and keyring problems end any command with exit status
2 and one line that says what to fix; no traceback, no secret.
"""

from __future__ import annotations

import click

from pipeline import __version__
from pipeline.config.settings import Settings, load_settings
from pipeline.errors import CdrpipeError

EXIT_CONFIG = 2


def current_settings() -> Settings:
    """The settings from the environment (``CDRPIPE_*``)."""
    return load_settings()


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
