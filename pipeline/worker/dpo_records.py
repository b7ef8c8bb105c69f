"""The worker's watch over the DPO's records, and timers that cannot stop the worker.

Contract: :meth:`ChainHealth.check` verifies the audit trail and the register
(the lifecycle owner runs it with the register reading), sets
``cdrpipe_audit_chain_intact`` and remembers the first break for ``/health``;
a chain that became shorter than this worker last saw it (its newest entries
removed, which a hash chain alone cannot show) is a break too.
:func:`guarded` wraps a timer so that a failed run is logged once (until a run
succeeds again), counted in ``cdrpipe_timer_failures``, and the timer runs
again at its next interval: no timer's exception reaches Faust, which would
stop the worker.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pipeline.lifecycle.requests.audit import verify_audit
from pipeline.lifecycle.requests.chain import sealing_keyring
from pipeline.lifecycle.requests.register import verify_register
from pipeline.observability.metrics import AUDIT_CHAIN_INTACT, TIMER_FAILURES
from pipeline.store.storage import Storage

log = logging.getLogger(__name__)


@dataclass
class ChainHealth:
    """The state of the audit trail and the register as this worker last verified them."""

    first_break: str | None = None
    _last_seen: dict[str, int] = field(default_factory=dict)

    def check(self, storage: Storage) -> None:
        """Verify both chains; record the first break (it stays until the worker restarts)."""
        keyring = sealing_keyring()
        for report in (verify_audit(storage, keyring), verify_register(storage, keyring)):
            breaks = list(report.breaks)
            seen = self._last_seen.get(report.directory, 0)
            if report.last_seq < seen:
                breaks.append(
                    f"{report.directory} ends at entry {report.last_seq}, but entry {seen} was seen"
                )
            self._last_seen[report.directory] = max(seen, report.last_seq)
            if breaks and self.first_break is None:
                self.first_break = breaks[0]
                log.error("the DPO's records were tampered with: %s (run `cdrpipe audit verify`)", breaks[0])
        AUDIT_CHAIN_INTACT.set(self.first_break is None)


CHAIN_HEALTH = ChainHealth()


def guarded(name: str, timer: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    """``timer`` that logs a failed run once, counts it and lets the next interval run (module contract)."""
    failing = False

    @functools.wraps(timer)
    async def run() -> None:
        nonlocal failing
        try:
            await timer()
        except Exception:  # any failure: the timer must run again at its next interval
            TIMER_FAILURES.labels(timer=name).inc()
            if not failing:
                log.exception("the %s timer failed; it runs again at its next interval", name)
            failing = True
            return
        if failing:
            log.info("the %s timer runs again", name)
        failing = False

    return run
