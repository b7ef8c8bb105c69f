"""Hash chains of sealed entries: the tamper evidence of the audit trail and of the register.

A chain lives in one store directory, one entry per file named by its
sequence number (``<directory>/<seq, 12 digits>.json``). Each entry holds its
``seq``, ``prev`` (the SHA-256 of the previous entry's bytes, or 64 zeros for
the first), the ``key_id`` of the keyring key it is sealed under and ``mac``,
an HMAC-SHA-256 of everything else under a key derived from that key's secret
in the chain's own domain (HKDF info ``cdrpipe audit chain v1``), so the
pseudonym keys and the chain key tell nothing of each other.

Contract:

* :meth:`Chain.append` allocates the next sequence number by creating its
  file exclusively: of two writers, one wins and the other retries with the
  next number, so the chain never forks silently. Entries are sealed under the
  keyring's active key; older entries stay verifiable while their key is in
  the keyring.
* :meth:`Chain.verify` names every break, first break first: an entry
  rewritten (its MAC fails), deleted (a gap), inserted or reordered (its
  ``seq`` or ``prev`` does not follow), or sealed under a key the keyring no
  longer holds. A checkpoint counts only in its own slot (its ``seq`` is its
  name's, after what it purged), and the entries a purge cut short left behind
  it must chain up to the hash it sealed, so a sealed checkpoint copied from
  another chain under the same keyring hides nothing. A run of missing numbers
  is one break (a planted entry far ahead cannot make verification loop).
* :meth:`Chain.purge` deletes the oldest entries that have expired after
  appending a checkpoint entry (``purged_through``, ``through_hash``), so what
  remains still verifies; an entry that cannot be read stops the purge (it is
  kept as evidence).
* The keyring comes from :func:`seal_with`, which the worker and the CLI call
  once with the way to read the keyring file.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import ConfigError
from pipeline.keys.keyring import Key, Keyring
from pipeline.keys.macs import MacDomain, MacProblem
from pipeline.store.errors import StorageError
from pipeline.store.storage import Storage

GENESIS = "0" * 64
CHECKPOINT = "chain-checkpoint"
"""The ``kind`` of the entry a purge appends before it deletes older entries."""
_CHAIN_MACS = MacDomain(salt=b"cdrpipe/audit/v1", info=b"cdrpipe audit chain v1", key_field="key_id")
_CHAIN_FIELDS = ("seq", "prev", "key_id", "mac")
_APPEND_ATTEMPTS = 100
_NAME = re.compile(r"^(\d{12})\.json$")

_keyring_source: Callable[[], Keyring] | None = None


def seal_with(source: Callable[[], Keyring] | None) -> None:
    """Seal this process's chain entries with the keyring ``source`` returns (None: no sealing set up)."""
    global _keyring_source  # noqa: PLW0603 - one keyring file per process, set at its start
    _keyring_source = source


def sealing_keyring() -> Keyring:
    """The keyring chain entries are sealed and verified with."""
    if _keyring_source is None:
        raise ConfigError("the audit trail is sealed with the keyring, but no keyring was set up for it")
    return _keyring_source()


@functools.lru_cache(maxsize=16)  # every entry sealed or verified needs it: derived once per key
def chain_key(key: Key) -> bytes:
    """The MAC key of the chains under keyring key ``key``."""
    return _CHAIN_MACS.derive(key)


def seal(document: dict[str, Any], key: Key) -> dict[str, Any]:
    """``document`` (JSON types only) with ``key_id`` and the ``mac`` that seals it under ``key``."""
    return _CHAIN_MACS.seal(document, key)


_PROBLEM_WORDS = {
    MacProblem.UNSIGNED: "it is not sealed",
    MacProblem.MISMATCH: "its MAC does not match: it was rewritten",
}


def seal_problem(document: dict[str, Any], keyring: Keyring) -> str | None:
    """Why ``document``'s seal does not hold (no MAC, unknown key, MAC mismatch), or None if it holds."""
    problem = _CHAIN_MACS.check(document, keyring)
    if problem is MacProblem.UNKNOWN_KEY:
        return f"it is sealed under key {document.get('key_id')!r}, which the keyring does not hold"
    return _PROBLEM_WORDS[problem] if problem is not None else None


def digest(data: bytes) -> str:
    """The SHA-256 of an entry's bytes, as the next entry's ``prev`` holds it."""
    return hashlib.sha256(data).hexdigest()


def normalised(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` in JSON types only (instants and other values as text), as it will be read back."""
    parsed: dict[str, Any] = json.loads(json.dumps(document, sort_keys=True, default=str))
    return parsed


@dataclass(frozen=True, slots=True)
class ChainReport:
    """What :meth:`Chain.verify` found: the entries it checked, the purge checkpoint and every break."""

    directory: str
    checked: int
    last_seq: int
    purged_through: int
    breaks: list[str] = field(default_factory=list)
    documents: list[dict[str, Any]] = field(default_factory=list)
    """The entries after the checkpoint that could be read, in sequence order."""
    foreign: list[str] = field(default_factory=list)
    """Files in the directory that are not chain entries (reported, not verified)."""

    @property
    def intact(self) -> bool:
        """True when no break was found."""
        return not self.breaks


def _parse(data: bytes | None) -> dict[str, Any] | None:
    try:
        document = json.loads(data) if data is not None else None
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: crafted deep nesting
        return None
    return document if isinstance(document, dict) else None


_TAILS: dict[tuple[str, str], tuple[int, str]] = {}
"""The last entry this process appended, per store and chain: (seq, digest). The next append tries
the number after it without listing the directory (a listing per append is quadratic over a
register's life); if that entry is gone or changed, or another writer took the number, it lists."""


class Chain:
    """The chain of sealed entries in one store directory (see the module contract)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def path(self, seq: int) -> str:
        """The store path of entry ``seq``."""
        return f"{self.directory}/{seq:012d}.json"

    def seq_of(self, path: str) -> int | None:
        """The sequence number of the entry at ``path``, or None if ``path`` is not an entry's."""
        rest = path.removeprefix(self.directory + "/")
        match = _NAME.match(rest) if rest != path else None
        return int(match.group(1)) if match else None

    def _numbered(self, storage: Storage) -> tuple[dict[int, str], list[str]]:
        entries: dict[int, str] = {}
        others = []
        for path in storage.list(self.directory):
            seq = self.seq_of(path)
            if seq is None:
                others.append(path)
            else:
                entries[seq] = path
        return entries, others

    def append(self, storage: Storage, document: dict[str, Any]) -> str:
        """Seal ``document`` as the next entry under the active key; return its path."""
        key = sealing_keyring().active
        body = normalised(document)
        store = (storage.describe(), self.directory)
        for attempt in range(_APPEND_ATTEMPTS):
            tail = _TAILS.get(store) if attempt == 0 else None
            known = storage.read(self.path(tail[0])) if tail is not None else None
            if tail is not None and known is not None and digest(known) == tail[1]:
                last, prev = tail
            else:
                entries, _ = self._numbered(storage)
                last = max(entries, default=0)
                data = storage.read(entries[last]) if last else None
                prev = digest(data) if data is not None else GENESIS
            sealed = seal({**body, "seq": last + 1, "prev": prev}, key)
            path = self.path(last + 1)
            encoded = json.dumps(sealed, sort_keys=True).encode()
            if storage.create_exclusive(path, encoded):
                _TAILS[store] = (last + 1, digest(encoded))
                return path
        raise StorageError(f"appending to {self.directory} failed: other writers kept taking the next entry")

    def verify(self, storage: Storage, keyring: Keyring) -> ChainReport:
        """Check every entry after the last checkpoint, and those a purge left behind it (module contract)."""
        entries, foreign = self._numbered(storage)
        raw = {seq: storage.read(path) for seq, path in entries.items()}
        parsed = {seq: _parse(data) for seq, data in raw.items()}
        # A checkpoint counts only in its own slot and behind its own entry: one copied from
        # another store sealed with the same keyring must not make verification skip this chain.
        checkpoints = [
            seq
            for seq, document in parsed.items()
            if document is not None
            and document.get("kind") == CHECKPOINT
            and document.get("seq") == seq
            and isinstance(document.get("purged_through"), int)
            and 0 <= document["purged_through"] < seq
            and seal_problem(document, keyring) is None
        ]
        newest = parsed[max(checkpoints)] if checkpoints else None
        through = int(newest["purged_through"]) if newest else 0
        last = max(entries, default=0)
        breaks: list[str] = []
        documents: list[dict[str, Any]] = []
        behind = sorted(seq for seq in entries if seq <= through)
        if newest is not None and behind:
            # a purge cut short: what it left is the newest part of what it purged, ending at
            # ``through``, whose hash the checkpoint holds
            if behind[-1] != through:
                breaks.append(self._missing(behind[-1] + 1, through, "behind the checkpoint"))
            walked = self._walk(
                behind, raw, parsed, keyring, prev=None, breaks=breaks, documents=[], expected=behind[0]
            )
            if behind[-1] == through and walked != str(newest["through_hash"]):
                breaks.append(
                    f"entry {through} ({self.path(through)}) is not the one the checkpoint sealed: "
                    "replaced, or the checkpoint was copied from another chain"
                )
        prev = str(newest["through_hash"]) if newest else GENESIS
        after = sorted(seq for seq in entries if seq > through)
        self._walk(
            after, raw, parsed, keyring, prev=prev, breaks=breaks, documents=documents, expected=through + 1
        )
        return ChainReport(self.directory, last - through, last, through, breaks, documents, foreign)

    def _missing(self, first: int, last: int, where: str = "") -> str:
        where = f" {where}" if where else ""
        if first == last:
            return f"entry {first} ({self.path(first)}){where} is missing: it was deleted"
        return f"entries {first} to {last} ({self.path(first)}...){where} are missing: they were deleted"

    def _walk(
        self,
        seqs: list[int],
        raw: dict[int, bytes | None],
        parsed: dict[int, dict[str, Any] | None],
        keyring: Keyring,
        *,
        prev: str | None,
        breaks: list[str],
        documents: list[dict[str, Any]],
        expected: int | None = None,
    ) -> str | None:
        """Check the entries ``seqs`` (ascending) in turn, starting after ``prev`` (None: unknown).

        A run of missing numbers is one break, so a planted entry far ahead cannot make this loop
        for ever. Returns the digest of the last entry walked.
        """
        for seq in seqs:
            if expected is not None and seq > expected:
                breaks.append(self._missing(expected, seq - 1))
                prev = ""
            expected = seq + 1
            data, document = raw.get(seq), parsed.get(seq)
            name = self.path(seq)
            if document is None:
                breaks.append(f"entry {seq} ({name}) cannot be read as an entry")
            else:
                problem = seal_problem(document, keyring)
                if problem is not None:
                    breaks.append(f"entry {seq} ({name}): {problem}")
                elif document.get("seq") != seq:
                    breaks.append(f"entry {seq} ({name}) says it is entry {document.get('seq')}: reordered")
                elif prev is not None and document.get("prev") != prev:
                    breaks.append(
                        f"entry {seq} ({name}) does not follow entry {seq - 1}: inserted or reordered"
                    )
                documents.append(document)
            prev = digest(data) if data is not None else ""
        return prev

    def purge(self, storage: Storage, expired: Callable[[dict[str, Any]], bool], now_text: str) -> int:
        """Delete the oldest entries for which ``expired`` holds, behind a checkpoint; return how many.

        The checkpoint entry is recorded at ``now_text`` (an ISO instant), so it expires in turn.
        """
        entries, _ = self._numbered(storage)
        doomed: list[tuple[int, dict[str, Any], bytes]] = []
        for seq in sorted(entries):
            data = storage.read(entries[seq])
            document = _parse(data)
            if data is None or document is None or not expired(document):
                break
            doomed.append((seq, document, data))
        if not doomed or all(document.get("kind") == CHECKPOINT for _, document, _ in doomed):
            return 0  # nothing but checkpoints: keep the newest one rather than churn
        through, _, data = doomed[-1]
        checkpoint = {"kind": CHECKPOINT, "purged_through": through, "through_hash": digest(data)}
        self.append(storage, {**checkpoint, "recorded_at": now_text})
        for seq, _, _ in doomed:
            storage.delete(entries[seq])
        return len(doomed)
