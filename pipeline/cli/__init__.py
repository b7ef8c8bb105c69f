"""The ``cdrpipe`` command: worker, keys, demo traffic, the data subjects' rights and the register.

One module per group of commands; each adds its commands to :data:`~pipeline.cli.group.cli`.
"""

from __future__ import annotations

from pipeline.cli import audit, keys, store, subjects, worker
from pipeline.cli.group import cli
from pipeline.cli.requests import requests_group
from pipeline.cli.rights import COMMANDS as RIGHTS_COMMANDS
from pipeline.observability import log_scrub

__all__ = ["audit", "cli", "keys", "main", "store", "subjects", "worker"]

cli.add_command(requests_group)
for _command in RIGHTS_COMMANDS:
    cli.add_command(_command)


def main() -> None:
    """Console-script entry point."""
    log_scrub.install()
    cli(prog_name="cdrpipe")
