"""The ``cdrpipe`` command group, its one-line errors and the context line of the DPO commands.

Contract: cdrpipe's own errors (configuration, keyring, refused requests) and a
broker that cannot be reached end any command with exit status 2 and one line
that says what to fix; no traceback, no secret. Every DPO command starts with
:func:`dpo_context`: one line on standard error naming the store, the keyring
(path and key ids, never secrets) and the broker it uses; a command that reads
the store is refused when a local store root does not exist, rather than
answering "nothing found" about the wrong directory.
:func:`current_settings` also sets up the sealing of the audit trail and the
register with the keyring file (read when an entry is first written), and
warns on standard error about a local store whose files others may read
(a bounded check; ``cdrpipe store fix-permissions`` fixes them).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import click
from aiokafka.errors import KafkaConnectionError

from pipeline import __version__
from pipeline.config.settings import Settings, load_settings
from pipeline.errors import BrokerUnreachableError, CdrpipeError, ConfigError, KeyringError
from pipeline.keys.keyring import Keyring, load_keyring
from pipeline.lifecycle.requests.chain import seal_with
from pipeline.store.permissions import exposed

EXIT_CONFIG = 2


def current_settings(*, warn_exposed: bool = True) -> Settings:
    """The settings from the environment (``CDRPIPE_*``); see the module contract.

    ``warn_exposed=False`` leaves the store's permission warning to the caller (:func:`dpo_context`
    prints it after the context line, which comes first).
    """
    settings = load_settings()
    seal_with(functools.partial(load_keyring, settings.numbers.keyring))
    if warn_exposed:
        _warn_if_exposed(settings)
    return settings


def _warn_if_exposed(settings: Settings) -> None:
    """A warning on standard error when a local store grants more than its setting (a bounded check)."""
    if settings.store.root.startswith("s3://"):
        return
    readable = exposed(Path(settings.store.root), settings.store.group_read)
    if readable:
        click.echo(
            f"cdrpipe: warning: {len(readable)} files or directories of the store (e.g. {readable[0]}) "
            "can be read by other users: run `cdrpipe store fix-permissions`",
            err=True,
        )


def broker_unreachable(settings: Settings) -> BrokerUnreachableError:
    """The one-line error of a broker that does not answer at ``CDRPIPE_BROKER``."""
    return BrokerUnreachableError(
        f"cannot reach the Kafka broker at {settings.kafka.bootstrap_servers} (CDRPIPE_BROKER): "
        "start it with `make kafka-start` or fix the address"
    )


class _ConfigAwareGroup(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            try:
                return super().invoke(ctx)
            except KafkaConnectionError:
                raise broker_unreachable(current_settings()) from None
        except CdrpipeError as exc:
            click.echo(f"cdrpipe: {exc}", err=True)
            ctx.exit(EXIT_CONFIG)


@click.group(cls=_ConfigAwareGroup)
@click.version_option(__version__, prog_name="cdrpipe")
def cli() -> None:
    """cdrpipe: CDRs from Kafka into pseudonymised Parquet partitions by call date.

    Configuration comes from CDRPIPE_* environment variables (see docs/configuration.md).
    """


def _is_local(root: str) -> bool:
    """Whether ``CDRPIPE_STORE`` names a directory: anything but ``s3://``, as ``open_storage`` reads it."""
    return not root.startswith("s3://")


def store_keyring(settings: Settings, path: Path | None = None) -> Keyring:
    """The keyring at ``path`` (default ``CDRPIPE_KEYRING``) the store's pseudonyms were made with.

    A missing file is told to create one (``cdrpipe keys init``) only while no store exists: once
    rows are stored, a new key would make pseudonyms that match none of them.
    """
    keyring_path = path if path is not None else settings.numbers.keyring
    root = settings.store.root
    store_exists = not _is_local(root) or Path(root).exists()
    if store_exists and not keyring_path.exists():
        raise KeyringError(
            f"keyring {keyring_path} does not exist, but the store {root} does: point CDRPIPE_KEYRING "
            "at the keyring the store was written with (a new key would match none of its rows)"
        )
    return load_keyring(keyring_path)


@dataclass(frozen=True, slots=True)
class DpoContext:
    """What a DPO command acts on: the settings and, if it can be read, the keyring."""

    settings: Settings
    keyring: Keyring | None
    keyring_problem: KeyringError | None

    def keys(self) -> Keyring:
        """The keyring; its one-line problem is raised here, by the commands that need it."""
        if self.keyring is None:
            assert self.keyring_problem is not None
            raise self.keyring_problem
        return self.keyring


def dpo_context(*, reads_store: bool, keyring_path: Path | None = None) -> DpoContext:
    """The environment's settings, once their context line is on standard error.

    ``reads_store``: the command reads or writes the store itself, so a local store root that does
    not exist is refused (:class:`~pipeline.errors.ConfigError`). ``keyring_path`` overrides
    ``CDRPIPE_KEYRING`` (``keys list --keyring``).
    """
    settings = current_settings(warn_exposed=False)
    root = settings.store.root
    missing = _is_local(root) and not Path(root).is_dir()
    if reads_store and missing:
        raise ConfigError(f"store {root} does not exist: run from the project directory or set CDRPIPE_STORE")
    keyring_file = keyring_path if keyring_path is not None else settings.numbers.keyring
    try:
        keyring, problem = store_keyring(settings, keyring_file), None
    except KeyringError as exc:
        keyring, problem = None, exc
    if keyring is not None:
        ids = ", ".join(key.key_id for key in keyring.keys)
        keys = f"keys {ids}; active {keyring.active_id}"
    else:
        keys = "missing" if not keyring_file.exists() else "cannot be used"
    store = f"{Path(root).resolve()}{' (does not exist)' if missing else ''}" if _is_local(root) else root
    click.echo(
        f"using store {store}; keyring {keyring_file.resolve()} ({keys}); "
        f"broker {settings.kafka.bootstrap_servers}",
        err=True,
    )
    _warn_if_exposed(settings)
    return DpoContext(settings, keyring, problem)
