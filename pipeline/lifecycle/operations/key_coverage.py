"""Which of the store's files a subject could be searched in, judged by the keys they were written under.

A subject's pseudonyms are computed under keys (a :class:`~pipeline.keys.fingerprint.KeyRef`
each: id and fingerprint). Rows pseudonymised under another secret hold other
pseudonyms, so a search under that key finds nothing in them whatever they
hold; the search cannot see this by itself, the keys must say it.

Contract of :func:`key_coverage` (``searched``: the keys the pseudonyms were
computed under; a fingerprint of None means the key is known by id only, as
in a ledger entry older than fingerprints):

* a file key with a fingerprint is covered when a searched key has the same
  id and the same fingerprint; the same id with another fingerprint is
  another secret that happens to carry the name, and is *not searched*;
* a file key recorded without fingerprint (a file written before
  fingerprints were recorded), or matched by a searched key known by id
  only, is *searched by id only*: the rows were searched under the key of
  that id, which cannot be proven to be the one they were written with;
* a file key whose id no searched key has is not searched.

A file with a key not searched fails a verification, by name (path and key);
a file searched by id only does not, but its receipt says how many there are
and under which ids, so it never claims a binding it could not check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.keys.fingerprint import KeyRef, sorted_refs


@dataclass(frozen=True, slots=True)
class UnsearchedFile:
    """A data file holding rows under a key the subject was not searched under."""

    path: str
    key: KeyRef


@dataclass(frozen=True, slots=True)
class KeyCoverage:
    """The keys of the store's files, and the files the subject's search could not cover."""

    keys_in_store: frozenset[KeyRef]
    not_searched: tuple[UnsearchedFile, ...]
    by_id_only: frozenset[str]
    """Paths of files with a key searched by id only."""
    ids_by_id_only: frozenset[str]

    @property
    def key_ids_not_searched(self) -> list[str]:
        """The ids of the keys not searched (an id may also name a key that was)."""
        return sorted({unsearched.key.key_id for unsearched in self.not_searched})

    def failure(self, searched: frozenset[KeyRef]) -> str:
        """The ``FAILED:`` sentence of a receipt when files were not searched, else ""."""
        if not self.not_searched:
            return ""
        files = "; ".join(f"{item.path} under key {item.key.describe()}" for item in self.not_searched)
        return (
            f" FAILED: {len(self.not_searched)} data files hold rows pseudonymised under keys the subject "
            f"was not searched under ({files}); the keyring searched {_described(searched)}. Rows under "
            "those keys may still hold the subject: load the keyring that holds them (the backup from "
            "before the keys were confused) and request it again."
        )

    def caveat(self) -> str:
        """The sentence of a receipt about files searched by key id only, else ""."""
        if not self.by_id_only:
            return ""
        return (
            f" {len(self.by_id_only)} data files carry keys {', '.join(sorted(self.ids_by_id_only))} "
            "by id only (written before fingerprints were recorded, or searched under keys known by id "
            "only): they were searched under the keyring's key of that id, which could not be checked "
            "to be the key they were written with."
        )


def key_coverage(files: Mapping[str, frozenset[KeyRef]], searched: frozenset[KeyRef]) -> KeyCoverage:
    """Judge the keys of ``files`` (path to the keys its footer records) against the ``searched`` ones."""
    fingerprints: dict[str, set[str | None]] = {}
    for key in searched:
        fingerprints.setdefault(key.key_id, set()).add(key.fingerprint)
    not_searched: list[UnsearchedFile] = []
    by_id_only: set[str] = set()
    ids_by_id_only: set[str] = set()
    for path, keys in sorted(files.items()):
        for key in sorted_refs(keys):
            known = fingerprints.get(key.key_id)
            if known is None or (
                key.fingerprint is not None and None not in known and key.fingerprint not in known
            ):
                not_searched.append(UnsearchedFile(path, key))
            elif key.fingerprint is None or key.fingerprint not in known:
                by_id_only.add(path)
                ids_by_id_only.add(key.key_id)
    return KeyCoverage(
        frozenset().union(*files.values()),
        tuple(not_searched),
        frozenset(by_id_only),
        frozenset(ids_by_id_only),
    )


def _described(keys: frozenset[KeyRef]) -> str:
    return ", ".join(key.describe() for key in sorted_refs(keys)) or "no key"
