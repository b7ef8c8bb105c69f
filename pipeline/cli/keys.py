"""``cdrpipe keys``: create, rotate and list the keyring's keys (never their secrets)."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.cli.group import cli, current_settings, dpo_context
from pipeline.keys import keyring


@cli.group(short_help="Manage the keyring: init, rotate, list.")
def keys() -> None:
    """Manage the keyring (CDRPIPE_KEYRING): init, rotate, list. Secrets are never printed."""


def _keyring_path(path: Path | None) -> Path:
    return path if path is not None else current_settings().numbers.keyring


_KEYRING_OPTION = click.option(
    "--keyring",
    "keyring_path",
    type=click.Path(path_type=Path),
    help="Keyring file (default: CDRPIPE_KEYRING).",
)


@keys.command("init", short_help="Create a keyring with one random key.")
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


@keys.command("rotate", short_help="Add a new active key; old keys stay.")
@_KEYRING_OPTION
def keys_rotate(keyring_path: Path | None) -> None:
    """Add a new active key; old keys stay for erasure and export of older rows."""
    path = _keyring_path(keyring_path)
    rotated = keyring.rotate_keyring(path)
    click.echo(
        f"keyring {path}: active key is now {rotated.active_id}; "
        "running workers with this file switch to it within seconds"
    )


@keys.command("list", short_help="List key ids and creation times.")
@_KEYRING_OPTION
def keys_list(keyring_path: Path | None) -> None:
    """List key ids and creation times (never secrets)."""
    loaded = dpo_context(reads_store=False, keyring_path=keyring_path).keys()
    for key in loaded.keys:
        marker = "*" if key.key_id == loaded.active_id else " "
        click.echo(f"{marker} {key.key_id}\tcreated {key.created_at}\t{len(key.secret)} bytes")
