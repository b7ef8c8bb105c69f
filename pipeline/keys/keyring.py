"""The keyring file: versioned HMAC secrets, one of them active.

File format (``schemas/keyring.schema.json``)::

    {"format": 1, "active": "k2",
     "keys": [{"id": "k1", "secret": "<base64, >= 32 bytes>", "created_at": "<RFC 3339>"}, ...]}

Contract: :func:`load_keyring` returns a validated :class:`Keyring` or raises
:class:`~pipeline.errors.KeyringError` naming the file and the fix, whatever
the file holds. It refuses a file that is not the worker user's own, is
readable or writable by others, lies in a directory others can write to, or
holds a secret that is short or visibly not random. Messages never contain
secret bytes. Writers create files with mode 0600 atomically; a symlinked
keyring is updated at its target, so every link to it sees the new keys.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pipeline.errors import KeyringError

MIN_SECRET_BYTES = 32
MIN_DISTINCT_SECRET_BYTES = 16
"""A secret with fewer distinct byte values is refused (32 random bytes have about 30; fewer
than 16 has a probability below 1e-9): all-equal bytes or ``"password" * 4`` are not keys."""
MAX_KEYRING_BYTES = 1 << 20
FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Key:
    """One versioned secret. ``repr`` never shows the secret."""

    key_id: str
    secret: bytes
    created_at: str

    def __repr__(self) -> str:
        return f"Key(key_id={self.key_id!r}, created_at={self.created_at!r})"


@dataclass(frozen=True, slots=True)
class Keyring:
    """All keys still in use, and the id of the one new rows are written with."""

    active_id: str
    keys: tuple[Key, ...]

    @property
    def active(self) -> Key:
        """The key new pseudonyms are computed with."""
        return next(key for key in self.keys if key.key_id == self.active_id)


def load_keyring(path: Path) -> Keyring:
    """Read and validate the keyring at ``path`` (a symlink is followed; its target is checked)."""
    try:
        status = path.stat()
    except FileNotFoundError:
        raise KeyringError(
            f"keyring {path} does not exist: create one with `cdrpipe keys init` "
            "or point CDRPIPE_KEYRING at it"
        ) from None
    except OSError as exc:
        raise KeyringError(f"keyring {path} cannot be read ({exc.strerror}): check the path") from None
    _check_file(path, status)
    for directory in {path.parent, path.resolve().parent}:
        _check_directory(path, directory)
    try:
        document = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise KeyringError(
            f"keyring {path} is not valid JSON (line {getattr(exc, 'lineno', '?')}): "
            "restore it from backup or fix the syntax"
        ) from None
    except RecursionError:
        message = f"keyring {path} is nested too deeply to be a keyring: restore it from backup"
        raise KeyringError(message) from None
    except OSError as exc:
        raise KeyringError(f"keyring {path} cannot be read ({exc.strerror}): check the path") from None
    return _parse(path, document)


def _check_file(path: Path, status: os.stat_result) -> None:
    """A regular file of this process's user, of sane size, that nobody else can read or write."""
    if not stat.S_ISREG(status.st_mode):
        raise KeyringError(f"keyring {path} is not a regular file: point CDRPIPE_KEYRING at the keyring file")
    if status.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyringError(
            f"keyring {path} is accessible to group or others (mode {stat.S_IMODE(status.st_mode):04o}): "
            f"run `chmod 600 {path}`"
        )
    if status.st_uid != os.geteuid():
        raise KeyringError(
            f"keyring {path} belongs to uid {status.st_uid}, not to the worker's uid {os.geteuid()}: "
            f"run `chown {os.geteuid()} {path}`"
        )
    if status.st_size > MAX_KEYRING_BYTES:
        raise KeyringError(f"keyring {path} is larger than {MAX_KEYRING_BYTES} bytes: it is not a keyring")


def _check_directory(path: Path, directory: Path) -> None:
    """The keyring's directory: nobody but its owner (this user or root) may replace files in it.

    A group- or world-writable directory lets another user swap the keyring
    for one whose keys they know, unless its sticky bit stops them.
    """
    try:
        status = directory.stat()
    except OSError as exc:
        message = f"keyring {path}: its directory {directory} cannot be read ({exc.strerror})"
        raise KeyringError(message) from None
    if status.st_uid not in (0, os.geteuid()):
        raise KeyringError(
            f"keyring {path}: its directory {directory} belongs to uid {status.st_uid}: "
            "keep the keyring in a directory of the worker's user or root"
        )
    writable_by_others = status.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if writable_by_others and not status.st_mode & stat.S_ISVTX:
        raise KeyringError(
            f"keyring {path}: its directory {directory} is writable by group or others "
            f"(mode {stat.S_IMODE(status.st_mode):04o}): run `chmod go-w {directory}`"
        )


def _parse(path: Path, document: object) -> Keyring:
    version = document.get("format") if isinstance(document, dict) else None
    if not isinstance(document, dict) or type(version) is not int or version != FORMAT_VERSION:
        raise KeyringError(f'keyring {path} must be a JSON object with "format": {FORMAT_VERSION}')
    entries = document.get("keys")
    if not isinstance(entries, list) or not entries:
        raise KeyringError(f'keyring {path} has no "keys" list: add at least one key')
    keys = tuple(_parse_key(path, index, entry) for index, entry in enumerate(entries))
    ids = [key.key_id for key in keys]
    if len(set(ids)) != len(ids):
        raise KeyringError(f"keyring {path} lists a key id twice: each key id must be unique")
    active = document.get("active")
    if not isinstance(active, str) or active not in ids:
        raise KeyringError(
            f"keyring {path}: active key id {active!r} is not among the keys {ids}: "
            'set "active" to one of them'
        )
    return Keyring(active_id=active, keys=keys)


def _parse_key(path: Path, index: int, entry: object) -> Key:
    if not isinstance(entry, dict):
        raise KeyringError(f"keyring {path}: keys[{index}] must be an object")
    key_id, secret, created_at = entry.get("id"), entry.get("secret"), entry.get("created_at")
    if not isinstance(key_id, str) or not key_id or not key_id.isalnum():
        raise KeyringError(f"keyring {path}: keys[{index}].id must be a non-empty alphanumeric string")
    if not isinstance(created_at, str):
        raise KeyringError(f"keyring {path}: key {key_id} has no created_at timestamp")
    try:
        secret_bytes = base64.b64decode(secret if isinstance(secret, str) else "", validate=True)
    except binascii.Error:
        raise KeyringError(f"keyring {path}: key {key_id} secret is not valid base64") from None
    if len(secret_bytes) < MIN_SECRET_BYTES:
        raise KeyringError(
            f"keyring {path}: key {key_id} secret has {len(secret_bytes)} bytes, "
            f"at least {MIN_SECRET_BYTES} random bytes are required: "
            "rotate with `cdrpipe keys rotate`"
        )
    distinct = len(set(secret_bytes))
    if distinct < MIN_DISTINCT_SECRET_BYTES:
        raise KeyringError(
            f"keyring {path}: key {key_id} secret is not random ({distinct} distinct byte values in "
            f"{len(secret_bytes)} bytes; random bytes have about 30 in 32): rotate with `cdrpipe keys rotate`"
        )
    return Key(key_id=key_id, secret=secret_bytes, created_at=created_at)


def new_key(existing: tuple[Key, ...]) -> Key:
    """A fresh random key whose id follows the existing ones (``k1``, ``k2``, ...)."""
    numbers = [int(key.key_id[1:]) for key in existing if key.key_id[1:].isdigit()]
    return Key(
        key_id=f"k{max(numbers, default=0) + 1}",
        secret=secrets.token_bytes(MIN_SECRET_BYTES),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def write_keyring(path: Path, keyring: Keyring) -> None:
    """Write ``keyring`` to ``path`` atomically with mode 0600."""
    document = {
        "format": FORMAT_VERSION,
        "active": keyring.active_id,
        "keys": [
            {
                "id": key.key_id,
                "secret": base64.b64encode(key.secret).decode("ascii"),
                "created_at": key.created_at,
            }
            for key in keyring.keys
        ],
    }
    if path.is_symlink():
        path = path.resolve()  # replace the shared target, not the link
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)


def init_keyring(path: Path) -> Keyring:
    """Create a keyring with one active key; refuses to overwrite an existing file."""
    if path.exists():
        raise KeyringError(f"keyring {path} already exists: use `cdrpipe keys rotate` to add a key")
    key = new_key(())
    keyring = Keyring(active_id=key.key_id, keys=(key,))
    write_keyring(path, keyring)
    return keyring


def rotate_keyring(path: Path) -> Keyring:
    """Add a new active key to the keyring at ``path``, keeping the old ones."""
    current = load_keyring(path)
    key = new_key(current.keys)
    rotated = Keyring(active_id=key.key_id, keys=(*current.keys, key))
    write_keyring(path, rotated)
    return rotated
