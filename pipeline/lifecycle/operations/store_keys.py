"""The keys the store knows, so that a new key never takes the id or fingerprint of one of them.

A keyring can be restored from a backup that lacks its newest keys; the store
cannot lose them that way. So the store, not the keyring, says which keys
exist: every key its data files were written under (their footers, read
through the manifests where these are fresh), and every key its key register
lists.

Contract:

* :func:`known_keys` returns both, as :class:`~pipeline.keys.fingerprint.KeyRef`\\ s. Files
  written before fingerprints were recorded give their key ids without one.
  It reads manifests and footers like any search of the store (no data), and
  writes no manifest: it runs outside the lifecycle path.
* :func:`register_keys` records keys in the register
  ``_cdrpipe/keys/<key id>.<fingerprint>.json`` (id, fingerprint and creation
  time; never the secret), each created exclusively and never rewritten, so
  a key is known even before it wrote a row. The register is read from the
  names alone (one listing); a name that is not ``<id>.<fingerprint>.json``
  is skipped and reported.
* :func:`claim_key` records a new key before a keyring holds it, and refuses
  it when a concurrent rotation gave its id to another secret.
* :func:`conflicts` names the keys the store knows under an id of the
  keyring but another fingerprint: rows under them were written with a
  secret this keyring does not hold (a restored backup rotated by an older
  version, or an edited file), so it cannot erase or export them.
"""

from __future__ import annotations

import json
import re

from pipeline.errors import KeyringError
from pipeline.keys.fingerprint import KeyRef, sorted_refs
from pipeline.keys.keyring import Key, Keyring
from pipeline.lifecycle.operations.finder import search
from pipeline.lifecycle.requests import skipped
from pipeline.store.storage import Storage

KEY_REGISTER_DIR = "_cdrpipe/keys"
_REGISTERED = re.compile(r"([A-Za-z0-9]+)\.([0-9a-f]{32})\.json")


def known_keys(storage: Storage) -> frozenset[KeyRef]:
    """Every key the store's data files were written under, and every key of its register."""
    in_files = search(storage, (), save_manifests=False).all_keys()
    return in_files | registered_keys(storage)


def registered_keys(storage: Storage) -> frozenset[KeyRef]:
    """The keys of the store's key register."""
    keys = set()
    for path in storage.list(KEY_REGISTER_DIR):
        match = _REGISTERED.fullmatch(path.rsplit("/", 1)[-1])
        if match is None:
            skipped.skip("keys", path, "not a key register entry (<key id>.<fingerprint>.json)")
            continue
        keys.add(KeyRef(match[1], match[2]))
    return frozenset(keys)


def register_keys(storage: Storage, keyring: Keyring) -> list[str]:
    """Record every key of ``keyring`` in the store's key register; the ids newly recorded."""
    return [key.key_id for key in keyring.keys if _register(storage, key)]


def _register(storage: Storage, key: Key) -> bool:
    """Record ``key`` in the register; False if it was already there."""
    entry = {"key_id": key.key_id, "fingerprint": key.fingerprint, "created_at": key.created_at}
    path = f"{KEY_REGISTER_DIR}/{key.key_id}.{key.fingerprint}.json"
    return storage.create_exclusive(path, json.dumps(entry).encode())


def claim_key(storage: Storage, key: Key) -> None:
    """Record a new ``key`` in the register before any keyring holds it, and refuse it
    (:class:`~pipeline.errors.KeyringError`) when another secret took its id meanwhile.

    Two rotations that asked the store at the same moment chose the same id. Each records
    its key before it looks, so the later of the two sees the other's and gives up (both may,
    and then neither wrote a keyring); a refused key stays in the register, unused, and its
    id is never handed out again. On S3, whose creates are a check and a PUT, two claims
    within milliseconds may both pass.
    """
    _register(storage, key)
    if any(
        ref.key_id == key.key_id and ref.fingerprint != key.fingerprint for ref in registered_keys(storage)
    ):
        raise KeyringError(
            f"another rotation took key id {key.key_id} for another secret at the same time; "
            "nothing was written: run the command again (once) to take the next id"
        )


def conflicts(keyring: Keyring, known: frozenset[KeyRef]) -> list[KeyRef]:
    """The keys of ``known`` with the id of a key of ``keyring`` and another fingerprint."""
    fingerprints = {key.key_id: key.fingerprint for key in keyring.keys}
    return sorted_refs(
        ref
        for ref in known
        if ref.key_id in fingerprints and ref.fingerprint not in (None, fingerprints[ref.key_id])
    )
