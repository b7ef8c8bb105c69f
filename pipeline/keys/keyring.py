"""The keyring file: versioned HMAC secrets, one of them active.

File format (``schemas/keyring.schema.json``)::

    {"format": 1, "active": "k2",
     "keys": [{"id": "k1", "secret": "<base64, >= 32 bytes>", "created_at": "<RFC 3339>",
               "fingerprint": "<32 hex>"}, ...]}

Contract: :func:`load_keyring` returns a validated :class:`Keyring` or raises
:class:`~pipeline.errors.KeyringError` naming the file and the fix, whatever
the file holds. It refuses a file that is not the worker user's own, is
readable or writable by others, lies in a directory others can write to, or
holds a secret that is short or visibly not random. A key's fingerprint
(:mod:`pipeline.keys.fingerprint`) is always computed from its secret; the
file's copy (written for people and backups to compare) is optional, and one
that does not match its secret is refused. Messages never contain
secret bytes. Writers create files with mode 0600 atomically; a symlinked
keyring is updated at its target, so every link to it sees the new keys.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pipeline.errors import KeyringError
from pipeline.keys.fingerprint import KeyRef, fingerprint

MIN_SECRET_BYTES = 32
MIN_DISTINCT_SECRET_BYTES = 16
"""A secret with fewer distinct byte values is refused (32 random bytes have about 30; fewer
than 16 has a probability below 1e-9): all-equal bytes or ``"password" * 4`` are not keys."""
MIN_TEXT_SECRET_GUESSES_LOG10 = 38.5
"""A secret that is printable text was chosen or typed by a person (32 random bytes are all
printable with a probability near 1e-14); it must then be worth 2^128 guesses by zxcvbn's estimate,
which knows words, names, dates, keyboard walks, sequences and repeats. Phone numbers are few
enough to enumerate, so a guessable key gives every pseudonym away."""
_ASCII_DIGITS = re.compile(r"[0-9]+")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")
MAX_SYMLINK_HOPS = 40
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

    @property
    def fingerprint(self) -> str:
        """The fingerprint of the secret (computed, never read from a file)."""
        return fingerprint(self.secret)

    @property
    def ref(self) -> KeyRef:
        """The key as stored data names it: id and fingerprint."""
        return KeyRef(self.key_id, self.fingerprint)


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
    for directory in _directories_along(path):
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


def _directories_along(path: Path) -> list[Path]:
    """Every directory in which a name on the way to the keyring is looked up, as the kernel walks
    ``path`` (each ancestor up to ``/``, every directory holding a symlink to a file or a
    directory, and the keyring's own): whoever can write to any of them can rename an entry and
    point the walk at a keyring of theirs."""
    directories: list[Path] = []
    current = "/"
    names = os.path.join(os.getcwd(), path).split("/")[::-1]  # a stack of names, next one last
    hops = 0
    while names:
        name = names.pop()
        if name in ("", "."):
            continue
        if name == "..":
            current = os.path.dirname(current)
            continue
        if Path(current) not in directories:
            directories.append(Path(current))
        candidate = os.path.join(current, name)
        if not os.path.islink(candidate):
            current = candidate
            continue
        hops += 1
        if hops > MAX_SYMLINK_HOPS:
            raise KeyringError(
                f"keyring {path}: more than {MAX_SYMLINK_HOPS} symbolic links lead to it: point at the file"
            )
        target = os.readlink(candidate)
        if target.startswith("/"):
            current = "/"
        names.extend(target.split("/")[::-1])
    return directories


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
    if writable_by_others and not status.st_mode & stat.S_ISVTX and not _read_only(directory):
        raise KeyringError(
            f"keyring {path}: its directory {directory} is writable by group or others "
            f"(mode {stat.S_IMODE(status.st_mode):04o}): run `chmod go-w {directory}`"
        )


def _read_only(directory: Path) -> bool:
    """Whether ``directory`` is on a read-only mount (a Kubernetes emptyDir mounted ``readOnly``
    is mode 0777, yet nobody can rename anything in it)."""
    try:
        return bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except OSError:
        return False


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
    if len({key.fingerprint for key in keys}) != len(keys):
        raise KeyringError(
            f"keyring {path} lists one secret under two key ids: each key needs its own secret"
        )
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
    problem = _not_random(secret_bytes)
    if problem is not None:
        raise KeyringError(
            f"keyring {path}: key {key_id} secret is not random ({problem}): "
            "let `cdrpipe keys rotate` generate one"
        )
    key = Key(key_id=key_id, secret=secret_bytes, created_at=created_at)
    recorded = entry.get("fingerprint")
    if recorded is not None and recorded != key.fingerprint:
        raise KeyringError(
            f"keyring {path}: key {key_id} has a fingerprint that does not match its secret: "
            "the file was edited or pieced together from two backups; restore it from one backup"
        )
    return key


def _not_random(secret: bytes) -> str | None:
    """Why ``secret`` visibly did not come from a random generator, or None.

    Binary secrets must have :data:`MIN_DISTINCT_SECRET_BYTES` distinct byte values and as many
    distinct steps between neighbours (which refuses repeats and sequences such as ``0, 1, 2, ...``);
    text secrets (:func:`_text_in`: also with a newline or NUL, in UTF-16 or Latin-1, and the text
    a hex or base64 secret encodes) must pass zxcvbn's estimate
    (:data:`MIN_TEXT_SECRET_GUESSES_LOG10`). The reason
    names counts, never the secret.
    """
    text = _text_in(secret)
    if text is not None:
        problem = _guessable(text)
        inner = _decoded(text.strip())
        inner_text = _text_in(inner) if inner is not None else None
        # the decoded bytes of a random hex or base64 text may be short: only text a person
        # would write (printable, whitespace) is checked, or 20 random bytes would be refused 1e-5
        written = inner_text is not None and all(c.isprintable() or c.isspace() for c in inner_text)
        return problem or (_guessable(inner_text) if written and inner_text is not None else None)
    distinct = len(set(secret))
    steps = len({(later - earlier) % 256 for earlier, later in itertools.pairwise(secret)})
    if min(distinct, steps) < MIN_DISTINCT_SECRET_BYTES:
        return (
            f"{distinct} distinct byte values and {steps} distinct steps in {len(secret)} bytes; "
            "random bytes have about 30 of each in 32"
        )
    return None


def _guessable(text: str) -> str | None:
    """Why zxcvbn finds ``text`` guessable, or None."""
    # Imported here: its word lists take a noticeable part of a second to load, and generated
    # secrets (binary) never need it. Its cost grows with length; 100 characters hold far more
    # than 128 bits (zxcvbn refuses longer input unless told).
    from zxcvbn import zxcvbn  # noqa: PLC0415

    printable = "".join(character for character in text if character.isprintable())[:100]
    guesses_log10 = float(zxcvbn(printable, max_length=100)["guesses_log10"]) if printable else 0.0
    if guesses_log10 < MIN_TEXT_SECRET_GUESSES_LOG10:
        return (
            f"it is text a person could choose, worth about 2^{guesses_log10 * 3.32:.0f} guesses; "
            "at least 2^128 are required"
        )
    return None


def _decoded(text: str) -> bytes | None:
    """The bytes ``text`` encodes in hex or base64 (a passphrase run through ``xxd -p`` or
    ``base64`` looks random to zxcvbn), or None."""
    try:
        if _HEX.fullmatch(text):
            return bytes.fromhex(text)
        return base64.b64decode(text, validate=True) if _BASE64.fullmatch(text) else None
    except ValueError:
        return None


def _text_in(secret: bytes) -> str | None:
    """The text ``secret`` spells, or None when it does not look like text at all.

    Text is UTF-8 of any characters (a trailing newline or NUL must not hide a passphrase: 32
    random bytes are valid UTF-8 with a probability of 1e-8), UTF-16 of Latin-1 characters (the
    high bytes all zero), or bytes of which 90% are printable ASCII or whitespace, as Latin-1 or
    Windows-1252 write accented words (1.7e-9 for 32 random bytes).
    """
    try:
        return secret.decode("utf-8")
    except UnicodeDecodeError:
        pass
    for encoding in ("utf-16-le", "utf-16-be"):
        try:
            text = secret.decode(encoding)
        except UnicodeDecodeError:
            continue
        if all(ord(character) < 0x100 for character in text):
            return text
    asciiish = sum(0x20 <= byte < 0x7F or byte in b"\t\n\r\v\f" for byte in secret)
    return secret.decode("latin-1") if asciiish >= 0.9 * len(secret) else None


def new_key(existing: tuple[Key, ...], known: Iterable[KeyRef] = ()) -> Key:
    """A fresh random key whose id follows the existing ones and the ``known`` ones (``k1``, ``k2``, ...).

    ``known`` are the keys the store has seen (its files, its key register): the keyring may have
    been restored from a backup that lacks some of them, and a new key must never take the id or
    the fingerprint of one, or rows under the old key would look searched under the new one.
    """
    taken = [*(key.ref for key in existing), *known]
    # ASCII digits only: an id such as "k²" is alphanumeric, yet int() cannot read its digit
    numbers = [int(ref.key_id[1:]) for ref in taken if _ASCII_DIGITS.fullmatch(ref.key_id[1:])]
    fingerprints = {ref.fingerprint for ref in taken}
    while True:
        key = Key(
            key_id=f"k{max(numbers, default=0) + 1}",
            secret=secrets.token_bytes(MIN_SECRET_BYTES),
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        if key.fingerprint not in fingerprints:  # 2^-128 for random secrets; checked anyway
            return key


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
                "fingerprint": key.fingerprint,
            }
            for key in keyring.keys
        ],
    }
    if path.is_symlink():
        path = path.resolve()  # replace the shared target, not the link
    _make_private_dirs(path.parent)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)


def _make_private_dirs(directory: Path) -> None:
    """Create ``directory`` and its missing parents owner-only (``0700``) whatever the umask.

    Directories that exist keep their mode (the keyring's checks report a loose one).
    """
    missing = []
    while not directory.is_dir():
        missing.append(directory)
        directory = directory.parent
    for created in reversed(missing):
        try:
            created.mkdir(0o700)
        except FileExistsError:
            continue
        os.chmod(created, 0o700)  # mkdir's mode is filtered by the umask, never widened by it


def no_claim(key: Key) -> None:
    """Keep no record of a new key anywhere but the keyring (a keyring without a store)."""


def init_keyring(
    path: Path, known: Iterable[KeyRef] = (), claim: Callable[[Key], None] = no_claim
) -> Keyring:
    """Create a keyring with one active key (none of ``known``, see :func:`new_key`); never overwrites.

    ``claim`` records the new key before the file is written, and may refuse it by raising.
    """
    if path.exists():
        raise KeyringError(f"keyring {path} already exists: use `cdrpipe keys rotate` to add a key")
    key = new_key((), known)
    claim(key)
    keyring = Keyring(active_id=key.key_id, keys=(key,))
    write_keyring(path, keyring)
    return keyring


def rotate_keyring(
    path: Path, known: Iterable[KeyRef] = (), claim: Callable[[Key], None] = no_claim
) -> Keyring:
    """Add a new active key (none of ``known``, see :func:`new_key`) to the keyring at ``path``.

    ``claim`` records the new key before the file is written, and may refuse it by raising.
    """
    current = load_keyring(path)
    key = new_key(current.keys, known)
    claim(key)
    rotated = Keyring(active_id=key.key_id, keys=(*current.keys, key))
    write_keyring(path, rotated)
    return rotated
