"""Keyring file: creation, rotation, and one clear refusal per problem."""

from __future__ import annotations

import base64
import json
import secrets
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.errors import KeyringError
from pipeline.keys.keyring import init_keyring, load_keyring, rotate_keyring


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


SECRET = bytes.fromhex(
    "ce1cc10629f9797ba28167d939ae0697d40af6276e7f587c94c6055a66f7c164"
)  # fixed random bytes


def _write(path: Path, document: object, mode: int = 0o600) -> Path:
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    path.chmod(mode)
    return path


def _key(key_id: str, size: int = 32) -> dict[str, str]:
    return {
        "id": key_id,
        "secret": base64.b64encode(SECRET[:size]).decode(),
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
    assert base64.b64encode(SECRET).decode() not in str(raised.value)


def test_missing_file_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="cdrpipe keys init"):
        load_keyring(tmp_path / "absent.json")


@pytest.mark.parametrize("secret", [bytes(32), b"password" * 4, bytes([1, 2]) * 16, bytes(range(15)) * 3])
def test_low_entropy_secrets_are_refused(tmp_path: Path, secret: bytes) -> None:
    key = {**_key("k1"), "secret": base64.b64encode(secret).decode()}
    path = _write(tmp_path / "keyring.json", {"format": 1, "active": "k1", "keys": [key]})
    with pytest.raises(KeyringError, match=r"k1 secret is not random.*cdrpipe keys rotate"):
        load_keyring(path)


def test_rotate_through_a_symlink_updates_the_shared_target(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o700)
    target = shared / "keyring.json"
    init_keyring(target)
    link = tmp_path / "keyring.json"
    link.symlink_to(target)
    rotated = rotate_keyring(link)
    assert link.is_symlink() and link.resolve() == target
    assert load_keyring(target).active_id == rotated.active_id == "k2"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [entry.name for entry in shared.iterdir()] == ["keyring.json"]


def test_a_file_of_another_user_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "keyring.json"
    init_keyring(path)
    monkeypatch.setattr("pipeline.keys.keyring.os.geteuid", lambda: 4242)
    with pytest.raises(KeyringError, match=r"belongs to uid \d+, not to the worker's uid 4242: run `chown"):
        load_keyring(path)


@pytest.mark.parametrize(("mode", "refused"), [(0o777, True), (0o770, True), (0o755, False), (0o1777, False)])
def test_a_directory_others_can_write_to_is_refused(tmp_path: Path, mode: int, refused: bool) -> None:
    directory = tmp_path / "keys"
    directory.mkdir()
    path = directory / "keyring.json"
    init_keyring(path)
    directory.chmod(mode)
    try:
        if refused:
            with pytest.raises(KeyringError, match=r"writable by group or others.*chmod go-w"):
                load_keyring(path)
        else:
            assert load_keyring(path).active_id == "k1"
    finally:
        directory.chmod(0o700)


def test_a_directory_is_not_a_keyring(tmp_path: Path) -> None:
    directory = tmp_path / "keyring.json"
    directory.mkdir(mode=0o700)
    with pytest.raises(KeyringError, match="not a regular file"):
        load_keyring(directory)


@pytest.mark.parametrize(
    "text",
    ["[" * 100_000, '{"format": 1, "keys": ' + "[" * 50_000, '{"format": true, "active": "k1", "keys": []}'],
)
def test_pathological_documents_end_in_the_one_line_error(tmp_path: Path, text: str) -> None:
    path = _write(tmp_path / "keyring.json", text)
    with pytest.raises(KeyringError) as raised:
        load_keyring(path)
    assert "\n" not in str(raised.value) and str(path) in str(raised.value)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.one_of(
        _JSON,
        st.fixed_dictionaries(
            {
                "format": st.just(1),
                "active": _JSON | st.just("k1"),
                "keys": st.lists(_JSON | st.just(_key("k1"))),
            }
        ),
    )
)
def test_any_json_document_is_a_keyring_or_the_one_line_error(tmp_path: Path, document: object) -> None:
    path = _write(tmp_path / "keyring.json", json.dumps(document))
    try:
        load_keyring(path)
    except KeyringError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)


@pytest.mark.parametrize(
    "secret",
    [
        b"acme-telecom-cdrpipe-secret-2026",
        b"correct horse battery staple 2026!!",
        b"2026-11-01-2026-11-01-2026-11-01-20",
        b"Xk9#mQ2$vL7@pR4&nW8*jT5!hY3^bF6(",  # typed, so worth far fewer than 2^128 guesses
        bytes(range(32)),
        bytes(range(7, 7 + 32 * 7, 7)),
    ],
)
def test_secrets_a_person_chose_are_refused(tmp_path: Path, secret: bytes) -> None:
    key = {**_key("k1"), "secret": base64.b64encode(secret).decode()}
    path = _write(tmp_path / "keyring.json", {"format": 1, "active": "k1", "keys": [key]})
    with pytest.raises(KeyringError, match=r"k1 secret is not random.*cdrpipe keys rotate") as raised:
        load_keyring(path)
    assert secret.decode("latin-1") not in str(raised.value)


@pytest.mark.parametrize(
    "secret",
    [secrets.token_bytes(32), secrets.token_hex(32).encode(), secrets.token_urlsafe(32).encode()],
    ids=["bytes", "hex", "urlsafe"],  # fresh secrets each run, named alike for every test worker
)
def test_random_secrets_pass_whether_bytes_or_text(tmp_path: Path, secret: bytes) -> None:
    key = {**_key("k1"), "secret": base64.b64encode(secret).decode()}
    path = _write(tmp_path / "keyring.json", {"format": 1, "active": "k1", "keys": [key]})
    assert load_keyring(path).active.secret == secret


def test_a_writable_directory_in_the_middle_of_a_symlink_chain_is_refused(tmp_path: Path) -> None:
    private, middle = tmp_path / "private", tmp_path / "middle"
    private.mkdir(mode=0o700)
    middle.mkdir(mode=0o700)
    target = private / "keyring.json"
    init_keyring(target)
    (middle / "keyring.json").symlink_to(target)
    link = tmp_path / "keyring.json"
    link.symlink_to(middle / "keyring.json")
    assert load_keyring(link).active_id == "k1"
    middle.chmod(0o777)  # whoever can write here can point the chain at a keyring of theirs
    try:
        with pytest.raises(KeyringError, match=r"middle is writable by group or others"):
            load_keyring(link)
    finally:
        middle.chmod(0o700)
