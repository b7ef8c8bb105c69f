"""Keyring file: creation, rotation, and one clear refusal per problem."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from pipeline.errors import KeyringError
from pipeline.keyring import init_keyring, load_keyring, rotate_keyring


def test_init_creates_a_private_file_with_one_32_byte_key(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    created = init_keyring(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = load_keyring(path)
    assert loaded == created
    assert loaded.active_id == "k1" and len(loaded.active.secret) == 32


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    init_keyring(path)
    with pytest.raises(KeyringError, match="already exists"):
        init_keyring(path)


def test_rotate_adds_an_active_key_and_keeps_the_old_one(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    first = init_keyring(path)
    rotated = rotate_keyring(path)
    assert rotated.active_id == "k2"
    assert [key.key_id for key in rotated.keys] == ["k1", "k2"]
    assert rotated.keys[0].secret == first.active.secret
    assert rotated.active.secret != first.active.secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_repr_never_shows_secret(tmp_path: Path) -> None:
    keyring = init_keyring(tmp_path / "keyring.json")
    secret = keyring.active.secret
    text = repr(keyring)
    assert secret.hex() not in text and base64.b64encode(secret).decode() not in text


def _write(path: Path, document: object, mode: int = 0o600) -> Path:
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    path.chmod(mode)
    return path


def _key(key_id: str, size: int = 32) -> dict[str, str]:
    return {
        "id": key_id,
        "secret": base64.b64encode(b"x" * size).decode(),
        "created_at": "2026-01-01T00:00:00Z",
    }


@pytest.mark.parametrize(
    ("document", "mode", "message"),
    [
        (
            {"format": 1, "active": "k1", "keys": [_key("k1")]},
            0o640,
            r"accessible to group or others.*chmod 600",
        ),
        ({"format": 1, "active": "k1", "keys": [_key("k1")]}, 0o604, r"accessible to group or others"),
        ({"format": 1, "active": "k1", "keys": [_key("k1", 16)]}, 0o600, r"has 16 bytes, at least 32"),
        ('{"format": 1, "active": ', 0o600, r"not valid JSON"),
        ({"format": 1, "active": "k9", "keys": [_key("k1")]}, 0o600, r"active key id 'k9' is not among"),
        ({"format": 1, "keys": [_key("k1")]}, 0o600, r"active key id None is not among"),
        ({"format": 1, "active": "k1", "keys": []}, 0o600, r"no \"keys\" list"),
        ({"format": 1, "active": "k1", "keys": [_key("k1"), _key("k1")]}, 0o600, r"key id twice"),
        ({"format": 1, "active": "k1", "keys": [{**_key("k1"), "secret": "!!"}]}, 0o600, r"not valid base64"),
        ({"active": "k1", "keys": [_key("k1")]}, 0o600, r"\"format\": 1"),
    ],
)
def test_each_problem_has_its_own_message(tmp_path: Path, document: object, mode: int, message: str) -> None:
    path = _write(tmp_path / "keyring.json", document, mode)
    with pytest.raises(KeyringError, match=message) as raised:
        load_keyring(path)
    assert str(path) in str(raised.value)
    assert base64.b64encode(b"x" * 32).decode() not in str(raised.value)


def test_missing_file_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="cdrpipe keys init"):
        load_keyring(tmp_path / "absent.json")
