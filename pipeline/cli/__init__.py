"""The ``cdrpipe`` command: worker, keys, demo traffic, the data subjects' rights and the register.

One module per group of commands; each adds its commands to :data:`~pipeline.cli.group.cli`.
"""

from __future__ import annotations

import logging

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
    """Console-script entry point.

    The Kafka client's own log lines (retries while a fresh topic elects its leader, a broker that
    does not answer) stay off the terminal unless logging is set up (as the worker does): the
    commands report what failed in one line of their own.
    """
    log_scrub.install()
    logging.getLogger("aiokafka").addHandler(logging.NullHandler())
    cli(prog_name="cdrpipe")
