"""Key fingerprints: computed from the secret, written beside it, never trusted from the file."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import pytest

from pipeline.errors import KeyringError
from pipeline.keys.fingerprint import FINGERPRINT_LABEL, FINGERPRINT_PATTERN, KeyRef, fingerprint
from pipeline.keys.keyring import Key, init_keyring, load_keyring, new_key, rotate_keyring

SECRET = bytes.fromhex("ce1cc10629f9797ba28167d939ae0697d40af6276e7f587c94c6055a66f7c164")
OTHER = bytes.fromhex("4f1b9a7e22c05d3186e9aa07b1c4f05e9d2e3b7a6c81f4d0925e7b3c1a6d8e2f")


def test_a_fingerprint_is_the_truncated_hmac_of_a_fixed_label_and_reveals_no_secret() -> None:
    expected = hmac.new(SECRET, FINGERPRINT_LABEL, hashlib.sha256).digest()[:16].hex()
    assert fingerprint(SECRET) == expected and FINGERPRINT_PATTERN.fullmatch(expected)
    assert fingerprint(OTHER) != expected
    assert SECRET.hex()[:8] not in expected and Key("k1", SECRET, "t").ref == KeyRef("k1", expected)


def test_the_keyring_file_records_each_fingerprint_and_refuses_one_that_does_not_match(
    tmp_path: Path,
) -> None:
    path = tmp_path / "keyring.json"
    created = init_keyring(path)
    document = json.loads(path.read_text())
    assert document["keys"][0]["fingerprint"] == created.active.fingerprint
    document["keys"][0]["fingerprint"] = fingerprint(OTHER)  # pieced together from two backups
    path.write_text(json.dumps(document))
    with pytest.raises(
        KeyringError, match=r"key k1 has a fingerprint that does not match its secret"
    ) as raised:
        load_keyring(path)
    assert "\n" not in str(raised.value) and document["keys"][0]["secret"] not in str(raised.value)


def test_a_keyring_without_recorded_fingerprints_still_loads_and_computes_them(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    key = {"id": "k1", "secret": base64.b64encode(SECRET).decode(), "created_at": "2026-01-01T00:00:00+00:00"}
    path.write_text(json.dumps({"format": 1, "active": "k1", "keys": [key]}))
    path.chmod(0o600)
    assert load_keyring(path).active.fingerprint == fingerprint(SECRET)


def test_one_secret_under_two_key_ids_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    keys = [
        {"id": key_id, "secret": base64.b64encode(SECRET).decode(), "created_at": "2026-01-01T00:00:00+00:00"}
        for key_id in ("k1", "k2")
    ]
    path.write_text(json.dumps({"format": 1, "active": "k2", "keys": keys}))
    path.chmod(0o600)
    with pytest.raises(KeyringError, match="one secret under two key ids"):
        load_keyring(path)


def test_a_new_key_takes_no_id_and_no_fingerprint_the_store_knows(tmp_path: Path) -> None:
    known = [KeyRef("k3", fingerprint(OTHER)), KeyRef("k7", None)]
    assert new_key((Key("k1", SECRET, "t"),), known).key_id == "k8"
    path = tmp_path / "keyring.json"
    assert init_keyring(path, known).active_id == "k8"
    rotated = rotate_keyring(path, known)
    assert rotated.active_id == "k9" and rotated.active.fingerprint not in {ref.fingerprint for ref in known}
