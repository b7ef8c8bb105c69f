"""Attacks on the keyring's randomness rule and on its symlink chain check (each once broke it)."""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path

import pytest

from pipeline.errors import KeyringError
from pipeline.keys.keyring import init_keyring, load_keyring

PASSPHRASE = "my dog rex was born in brussels in 2015"


def _keyring_with(tmp_path: Path, secret: bytes) -> Path:
    path = tmp_path / "keyring.json"
    key = {"id": "k1", "secret": base64.b64encode(secret).decode(), "created_at": "2026-01-01T00:00:00+00:00"}
    path.write_text(json.dumps({"format": 1, "active": "k1", "keys": [key]}))
    path.chmod(0o600)
    return path


def test_a_random_text_secret_longer_than_72_characters_loads(tmp_path: Path) -> None:
    # zxcvbn raises ValueError beyond 72 characters: `openssl rand -base64 64` made load_keyring crash
    secret = secrets.token_urlsafe(70).encode()
    assert load_keyring(_keyring_with(tmp_path, secret)).active.secret == secret


@pytest.mark.parametrize(
    "secret",
    [
        (PASSPHRASE + "\n").encode(),  # `echo "..." | base64`: the newline made it binary
        (PASSPHRASE + "\x00").encode(),
        PASSPHRASE.replace(" ", "\t").encode(),
        PASSPHRASE.encode("utf-16-le"),
        PASSPHRASE.encode("utf-16-be"),
        "Grüße aus Köln, mein Passwort 2015".encode("latin-1"),
        PASSPHRASE.encode().hex().encode(),  # `xxd -p`: hex digits look random to zxcvbn
        base64.b64encode(PASSPHRASE.encode()),
    ],
    ids=["newline", "nul", "tabs", "utf-16-le", "utf-16-be", "latin-1", "hex", "base64"],
)
def test_a_passphrase_in_disguise_is_refused(tmp_path: Path, secret: bytes) -> None:
    with pytest.raises(KeyringError, match=r"k1 secret is not random") as raised:
        load_keyring(_keyring_with(tmp_path, secret))
    for word in ("brussels", "rex", "2015"):
        assert word not in str(raised.value)


@pytest.mark.xfail(
    strict=True,
    reason="zxcvbn rates a long well-known sentence above 2^128: no estimator knows every quotation",
)
def test_a_famous_sentence_is_refused(tmp_path: Path) -> None:
    secret = b"It was the best of times, it was the worst of times, it was the age of wisdom"
    with pytest.raises(KeyringError, match=r"not random"):
        load_keyring(_keyring_with(tmp_path, secret))


def _private_keyring(tmp_path: Path) -> Path:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    target = private / "keyring.json"
    init_keyring(target)
    return private


def test_a_directory_symlink_kept_in_a_world_writable_directory_is_refused(tmp_path: Path) -> None:
    # `open` is the directory holding the link `keys`: its stat follows the link, so it was never checked
    private = _private_keyring(tmp_path)
    shared = tmp_path / "open"
    shared.mkdir()
    (shared / "keys").symlink_to(private, target_is_directory=True)
    shared.chmod(0o777)
    with pytest.raises(KeyringError, match=r"open is writable by group or others"):
        load_keyring(shared / "keys" / "keyring.json")


def test_a_world_writable_grandparent_is_refused(tmp_path: Path) -> None:
    # whoever can write to the grandparent can rename the keyring's directory and put another there
    # between the check and the read
    grandparent = tmp_path / "open"
    grandparent.mkdir()
    _private_keyring(grandparent)
    grandparent.chmod(0o777)
    with pytest.raises(KeyringError, match=r"open is writable by group or others"):
        load_keyring(grandparent / "private" / "keyring.json")


def test_a_relative_link_into_a_world_writable_directory_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "open"
    shared.mkdir()
    (shared / "real").symlink_to("../private/keyring.json")
    _private_keyring(tmp_path)
    (tmp_path / "link").mkdir(mode=0o700)
    (tmp_path / "link" / "keyring.json").symlink_to("../open/real")
    shared.chmod(0o777)
    with pytest.raises(KeyringError, match=r"open is writable by group or others"):
        load_keyring(tmp_path / "link" / "keyring.json")


def test_a_sticky_world_writable_ancestor_is_allowed(tmp_path: Path) -> None:
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    private = _private_keyring(sticky)
    sticky.chmod(0o1777)
    assert load_keyring(private / "keyring.json").active_id == "k1"


def test_a_symlink_loop_is_the_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(KeyringError, match=r"cannot be read|symbolic links"):
        load_keyring(tmp_path / "a")
