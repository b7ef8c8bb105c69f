"""The lifecycle owner's compaction: a pass every ``CDRPIPE_COMPACT_INTERVAL_S``, and one on request.

Contract of :class:`CompactionTimer` (both timers act only in the worker that
owns the lifecycle topics, and only once the ledger is loaded):

* It writes through the lifecycle owner's fenced storage, after the same claim
  the lifecycle agents make (:mod:`pipeline.worker.ownership`): a worker that
  lost the lifecycle in a rebalance stops compacting before the new owner
  writes, as its erasures and restrictions do.

* Every :data:`REQUEST_POLL_S` it finishes or undoes a pass a crash cut short
  (:func:`~pipeline.compaction.compactor.recover`), and runs a pass for the
  ``cdrpipe compact`` requests waiting (:mod:`pipeline.compaction.requests`),
  answering each with what the pass did.
* Every ``CDRPIPE_COMPACT_INTERVAL_S`` it runs a pass by itself.
* A pass reads the ingest group's committed offsets first, then compacts one
  call date at a time under the worker's lifecycle lock, so an erasure or a
  restriction waits for at most one date, never for a whole pass, and never
  runs while a date is being swapped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from pipeline.compaction import requests
from pipeline.compaction.compactor import (
    DateReport,
    Policy,
    candidate_dates,
    compact_date,
    new_pass_id,
    read_horizons,
    recover,
)
from pipeline.kafka.lag import committed_offsets
from pipeline.observability.progress import NO_PROGRESS, Progress
from pipeline.store.fence import OwnershipLostError
from pipeline.store.storage import Storage
from pipeline.worker.context import WorkerContext
from pipeline.worker.dpo_records import guarded

log = logging.getLogger(__name__)

REQUEST_POLL_S = 2.0
"""How often the lifecycle owner looks for ``cdrpipe compact`` requests and for passes to recover."""


class CompactionTimer:
    """The compaction timers of one worker (see the module contract)."""

    def __init__(
        self,
        context: WorkerContext,
        storage: Storage,
        may_write: Callable[[], Awaitable[bool]],
        progress: Progress = NO_PROGRESS,
    ) -> None:
        """``storage`` is the owner's fenced storage; ``may_write`` claims the lifecycle (or says no)."""
        self._context = context
        self._storage = storage
        self._may_write = may_write
        lifecycle = context.settings.lifecycle
        self._policy = Policy(lifecycle.compact_target_rows, lifecycle.compact_quiet_s)
        self._progress = progress

    def add_to_app(self) -> None:
        """Add the timers to the app."""
        app, lifecycle = self._context.app, self._context.settings.lifecycle
        app.timer(interval=lifecycle.compact_interval_s, name="pipeline.app.compaction")(
            guarded("compaction", self.scheduled)
        )
        app.timer(interval=REQUEST_POLL_S, name="pipeline.app.compaction_requests")(
            guarded("compaction_requests", self.requested)
        )

    async def scheduled(self) -> None:
        """The pass of the interval, in the lifecycle owner."""
        await self._as_owner(self.run_pass, "compaction is")

    async def requested(self) -> None:
        """Recover a pass cut short, then run one pass for the requests waiting, in the lifecycle owner."""
        await self._as_owner(self._answer_requests, "compaction requests are")

    async def _as_owner(self, work: Callable[[], Awaitable[object]], what: str) -> None:
        """``work()`` if this worker owns the lifecycle and holds its claim; stop once fenced out."""
        try:
            if self._context.owns_lifecycle() and await self._may_write():
                await work()
        except OwnershipLostError as exc:
            log.warning("%s; %s left to the new lifecycle owner", exc, what)

    async def _answer_requests(self) -> None:
        async with self._context.lifecycle_lock:
            await asyncio.to_thread(recover, self._storage, datetime.now(UTC))
        waiting = await asyncio.to_thread(requests.pending, self._storage)
        if not waiting:
            return
        reports = await self.run_pass()
        for request_id in waiting:
            await asyncio.to_thread(requests.answer, self._storage, request_id, reports)

    async def run_pass(self) -> list[DateReport]:
        """One pass: recover, then compact every call date with settled files, a date at a time."""
        context, storage = self._context, self._storage
        await context.ledger_loaded.wait()  # the ledger is applied on the way out
        committed = await committed_offsets(context.settings, context.connection)
        now = datetime.now(UTC)
        async with context.lifecycle_lock:
            reports = await asyncio.to_thread(recover, storage, now)
        bounds = await asyncio.to_thread(read_horizons, storage, committed)
        dates = await asyncio.to_thread(candidate_dates, storage, bounds, now, self._policy)
        pass_id = new_pass_id(now)
        self._progress.start(len(dates), "call dates")
        for call_date in dates:
            async with context.lifecycle_lock:
                report = await asyncio.to_thread(
                    compact_date,
                    storage,
                    context.ledger,
                    call_date,
                    bounds=bounds,
                    now=datetime.now(UTC),
                    policy=self._policy,
                    pass_id=pass_id,
                )
            if report is not None:
                reports.append(report)
            self._progress.advance()
        log.info(
            "compaction pass %s: %d of %d candidate call dates compacted", pass_id, len(reports), len(dates)
        )
        return reports
