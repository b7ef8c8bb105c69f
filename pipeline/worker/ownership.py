"""This worker's claim on the lifecycle: taken after an assignment, checked before every write.

Contract of :class:`LifecycleOwnership` (all of it on the worker's event
loop, under the lifecycle lock, except :meth:`~LifecycleOwnership.guard`):

* :meth:`~LifecycleOwnership.ensure` is awaited before each request and
  retention run. While the worker holds the lifecycle partition and has no
  claim, it claims the next epoch of the store's fence
  (:mod:`pipeline.store.fence`); when the previous owner did not hand over,
  it waits ``grace_s`` first, so a write that owner had already begun has
  landed. It answers False when the worker may not write: it does not hold
  the partition, or it lost its claim since the last assignment (a worker
  removed from the group still believes it holds the partition until it
  rejoins, and must not claim it back from the new owner).
* :meth:`~LifecycleOwnership.guard` runs in the processors' threads before
  every store write (:class:`~pipeline.store.fence.FencedStorage`): it raises
  :class:`~pipeline.store.fence.OwnershipLostError` when the worker holds no
  claim or a later one exists, and from then on the worker writes nothing on
  the lifecycle path until its next assignment.
* :meth:`~LifecycleOwnership.revoked` is awaited when the lifecycle partition
  is revoked, after Faust has waited for the request in flight: it releases a
  claim still in force, so the next owner starts without waiting.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from pipeline.store.fence import Claim, OwnerFence, OwnershipLostError

log = logging.getLogger(__name__)


class LifecycleOwnership:
    """The claim of one worker (see the module contract)."""

    def __init__(self, fence: OwnerFence, grace_s: float, holds_partition: Callable[[], bool]) -> None:
        self._fence = fence
        self._grace_s = grace_s
        self._holds_partition = holds_partition
        self._claim: Claim | None = None
        self._lost = False

    async def ensure(self) -> bool:
        """Claim the lifecycle if this worker holds its partition and has no claim; whether it may write."""
        if self._claim is not None:
            return True  # whether it still holds is checked at each write, where it matters
        if self._lost or not self._holds_partition():
            return False
        claim = await asyncio.to_thread(self._fence.claim)
        if not claim.previous_released:
            log.warning(
                "lifecycle epoch %d claimed; the previous owner did not hand over, so this worker "
                "waits %.0fs for any write it had begun before writing",
                claim.epoch,
                self._grace_s,
            )
            await asyncio.sleep(self._grace_s)
        else:
            log.info("lifecycle epoch %d claimed", claim.epoch)
        self._claim = claim
        return True

    def guard(self) -> None:
        """Raise :class:`OwnershipLostError` unless this worker's claim is the newest (before a write)."""
        claim = self._claim
        if claim is None:
            raise OwnershipLostError("this worker holds no lifecycle claim: it writes nothing")
        try:
            self._fence.check(claim)
        except OwnershipLostError:
            self._claim, self._lost = None, True
            raise

    async def revoked(self) -> None:
        """The lifecycle partition was revoked with nothing in flight: release the claim, if still held."""
        claim, self._claim, self._lost = self._claim, None, False
        if claim is None:
            return
        try:
            await asyncio.to_thread(self._fence.check, claim)
        except OwnershipLostError:
            return  # the next owner has claimed already: there is nothing to hand over
        await asyncio.to_thread(self._fence.release, claim)
        log.info("lifecycle epoch %d released", claim.epoch)
