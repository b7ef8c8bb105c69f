"""``cdrpipe keys``: create, rotate and list the keyring's keys (never their secrets).

``init`` and ``rotate`` ask the store (``CDRPIPE_STORE``) which keys it knows
(:mod:`pipeline.lifecycle.operations.store_keys`) and never give a new key the
id or the fingerprint of one of them: the keyring may be a restored backup
that lacks its newest keys. Both record the new key in the store's key register
before they write the keyring, and refuse it when a rotation running at the same
moment took its id; then they record the keyring's other keys too. For
``init``, a local store that does not exist yet knows no key and gets no
register (its first files record their keys). ``rotate`` refuses, in one line,
a local store that does not exist or is no directory: a keyring to rotate has a
store, and one not found (the wrong working directory for the default
``./data/store``, a volume not mounted) could not say which ids are taken.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from pipeline.cli.group import cli, current_settings, dpo_context
from pipeline.errors import ConfigError
from pipeline.keys import keyring
from pipeline.keys.fingerprint import KeyRef
from pipeline.lifecycle.operations.store_keys import claim_key, conflicts, known_keys, register_keys
from pipeline.store.object_storage import open_storage
from pipeline.store.storage import Storage


@cli.group(short_help="Manage the keyring: init, rotate, list.")
def keys() -> None:
    """Manage the keyring (CDRPIPE_KEYRING): init, rotate, list. Secrets are never printed."""


def _keyring_path(path: Path | None) -> Path:
    return path if path is not None else current_settings().numbers.keyring


def _store(*, required: bool = False) -> Storage | None:
    """The configured store, or None when it is a local directory that does not exist yet
    (:class:`ConfigError` instead when it is ``required``)."""
    settings = current_settings(warn_exposed=False)
    root = settings.store.root
    if not root.startswith("s3://") and not Path(root).is_dir():
        if required:
            raise ConfigError(
                f"store {root} is not a directory, so the key ids it knows cannot be checked and the new "
                "key could take one of them: run where the store is (set CDRPIPE_STORE)"
            )
        return None
    return open_storage(root, group_read=settings.store.group_read)


def _known(storage: Storage | None) -> frozenset[KeyRef]:
    return known_keys(storage) if storage is not None else frozenset()


def _register(storage: Storage | None, ring: keyring.Keyring) -> None:
    if storage is not None:
        register_keys(storage, ring)


def _claim(storage: Storage | None) -> Callable[[keyring.Key], None]:
    """Record a new key in the store's register before the keyring holds it (see ``claim_key``)."""
    if storage is None:
        return keyring.no_claim  # no store yet: its first files will record the key
    return lambda key: claim_key(storage, key)


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
    storage = _store()
    created = keyring.init_keyring(path, _known(storage), _claim(storage))
    _register(storage, created)
    click.echo(f"created keyring {path} with active key {created.active.ref.describe()}")


@keys.command("rotate", short_help="Add a new active key; old keys stay.")
@_KEYRING_OPTION
def keys_rotate(keyring_path: Path | None) -> None:
    """Add a new active key; old keys stay for erasure and export of older rows.

    The new key's id follows every key id the store knows, not only the keyring's.
    """
    path = _keyring_path(keyring_path)
    storage = _store(required=True)
    known = _known(storage)
    for other in conflicts(keyring.load_keyring(path), known):
        click.echo(
            f"cdrpipe: warning: the store knows a key {other.describe()} that is not the keyring's "
            f"{other.key_id}: its rows cannot be erased or exported with this keyring, and erasures "
            "fail on them by name; restore the keyring backup that holds it",
            err=True,
        )
    rotated = keyring.rotate_keyring(path, known, _claim(storage))
    _register(storage, rotated)
    click.echo(
        f"keyring {path}: active key is now {rotated.active.ref.describe()}; "
        "running workers with this file switch to it within seconds"
    )


@keys.command("list", short_help="List key ids and creation times.")
@_KEYRING_OPTION
def keys_list(keyring_path: Path | None) -> None:
    """List key ids, fingerprints and creation times (never secrets)."""
    loaded = dpo_context(reads_store=False, keyring_path=keyring_path).keys()
    for key in loaded.keys:
        marker = "*" if key.key_id == loaded.active_id else " "
        click.echo(
            f"{marker} {key.key_id}\tfingerprint {key.fingerprint}\tcreated {key.created_at}\t"
            f"{len(key.secret)} bytes"
        )
