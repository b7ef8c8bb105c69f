"""Checks before the worker starts: its web port is free and the broker answers.

Contract: each check returns quietly or raises a :class:`~pipeline.errors.CdrpipeError` whose one
line names the setting and the fix, so a worker that cannot run stops before Faust starts (and
before any traceback). The checks see the state at start-up only: what fails later is the
worker's to report.
"""

from __future__ import annotations

import errno
import socket

from pipeline.cli.group import broker_unreachable
from pipeline.config.settings import Settings
from pipeline.errors import ConfigError

BROKER_CONNECT_TIMEOUT_S = 3.0
WEB_BIND = "0.0.0.0"
"""Where Faust's web server listens (its default ``web_bind``)."""


def check_web_port(settings: Settings) -> None:
    """Refuse a web port another process listens on (or that this user may not open)."""
    port = settings.runtime.web_port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp binds it
        try:
            probe.bind((WEB_BIND, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"web port {port} is taken by another process (CDRPIPE_WEB_PORT): stop that process "
                    "or set CDRPIPE_WEB_PORT to a free port"
                ) from None
            raise ConfigError(
                f"web port {port} cannot be opened ({exc.strerror}) (CDRPIPE_WEB_PORT): "
                "set CDRPIPE_WEB_PORT to a free port above 1023"
            ) from None


def check_broker(settings: Settings) -> None:
    """Refuse to start when no bootstrap server of ``CDRPIPE_BROKER`` accepts a connection."""
    for server in settings.kafka.bootstrap_servers.split(","):
        host, _, port = server.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), BROKER_CONNECT_TIMEOUT_S):
                return
        except (OSError, ValueError):
            continue
    raise broker_unreachable(settings)
