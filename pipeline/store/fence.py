"""The lifecycle owner's fence: numbered claims in the store, checked before every write.

Only one worker at a time may change the store on the lifecycle path
(erasures, subject requests, retention). The consumer group says which one,
but a worker removed from the group does not learn it at once, and work
handed to a thread cannot be cancelled: without a fence, a revoked owner could
still rewrite files after the new owner began. The store itself is the one
place both see, so the fence lives there.

Contract:

* :meth:`OwnerFence.claim` takes the next *epoch*: it creates
  ``_cdrpipe/lifecycle-owner/<epoch, 12 digits>.json`` exclusively (of two
  claimants one wins, the other takes the number after). It says whether the
  epoch before was released: if it was not (its owner was killed, or removed
  from the group while still at work), the new owner must wait the grace
  period before its first write.
* :meth:`OwnerFence.check` raises :class:`OwnershipLostError` once a later
  epoch exists; :class:`FencedStorage` calls it before every publish,
  exclusive create, delete and sweep, so a superseded owner stops at its next
  write and writes nothing more.
* :meth:`OwnerFence.release` records that the owner has handed over with
  nothing in flight (``<epoch>.released``), so the next owner need not wait.
* The check and the write it guards are two steps: a write already past its
  check when the next claim is made can still land. The grace period covers
  it, so it must be longer than any one store write takes; a process frozen
  between its check and its write for longer than that is the limit of a
  fence that the store cannot enforce itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pipeline.errors import CdrpipeError
from pipeline.store.storage import ForwardingStorage, Stamp, Storage

OWNER_DIR = "_cdrpipe/lifecycle-owner"
_CLAIM = re.compile(r"^(\d{12})\.json$")
_CLAIM_ATTEMPTS = 100


class OwnershipLostError(CdrpipeError):
    """Another worker claimed the lifecycle after this one: this worker must not write any more."""


@dataclass(frozen=True, slots=True)
class Claim:
    """One owner's epoch, and whether the owner before it handed over."""

    epoch: int
    previous_released: bool


def _claim_path(epoch: int) -> str:
    return f"{OWNER_DIR}/{epoch:012d}.json"


def _released_path(epoch: int) -> str:
    return f"{OWNER_DIR}/{epoch:012d}.released"


class OwnerFence:
    """The numbered claims of one store (see the module contract)."""

    def __init__(self, storage: Storage, owner: str) -> None:
        self._storage = storage
        self._owner = owner

    def claim(self) -> Claim:
        """Take the next epoch; say whether the one before it was released (the first needs no wait)."""
        for _ in range(_CLAIM_ATTEMPTS):
            epochs = [
                int(match.group(1))
                for path in self._storage.list(OWNER_DIR)
                if (match := _CLAIM.match(path.removeprefix(OWNER_DIR + "/")))
            ]
            last = max(epochs, default=0)
            document = {"owner": self._owner, "claimed_at": datetime.now(UTC).isoformat()}
            if self._storage.create_exclusive(_claim_path(last + 1), json.dumps(document).encode()):
                released = last == 0 or self._storage.stamp(_released_path(last)) is not None
                return Claim(last + 1, released)
        raise OwnershipLostError("other workers kept claiming the lifecycle at the same time")

    def check(self, claim: Claim) -> None:
        """Raise :class:`OwnershipLostError` if a later epoch than ``claim``'s exists."""
        # Claims are taken in order, so any later claim means the next number exists.
        if self._storage.stamp(_claim_path(claim.epoch + 1)) is not None:
            raise OwnershipLostError(
                f"lifecycle epoch {claim.epoch + 1} was claimed by another worker after this one's "
                f"({claim.epoch}): it writes nothing more"
            )

    def release(self, claim: Claim) -> None:
        """Record that the owner of ``claim`` handed over with nothing in flight."""
        self._storage.create_exclusive(_released_path(claim.epoch), b"{}")


class FencedStorage(ForwardingStorage):
    """A :class:`~pipeline.store.storage.Storage` that calls ``guard`` before every write it passes on.

    ``guard`` raises :class:`OwnershipLostError` when this worker may not write
    (:meth:`OwnerFence.check` of its current claim); reads are not guarded.
    """

    def __init__(self, storage: Storage, guard: Callable[[], None]) -> None:
        super().__init__(storage)
        self._guard = guard

    def publish(self, relative_path: str, data: bytes) -> Stamp | None:
        self._guard()
        return super().publish(relative_path, data)

    def create_exclusive(self, relative_path: str, data: bytes) -> bool:
        self._guard()
        return super().create_exclusive(relative_path, data)

    def delete(self, relative_path: str) -> None:
        self._guard()
        super().delete(relative_path)

    def sweep_temporaries(self, relative_dir: str, older_than: datetime | None = None) -> int:
        self._guard()  # it removes files too: a superseded owner's sweep could fail a new owner's publish
        return super().sweep_temporaries(relative_dir, older_than)
