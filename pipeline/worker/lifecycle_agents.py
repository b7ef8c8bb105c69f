"""The lifecycle path of a worker: erasure and subject-request agents, retention and register timers.

Contract of :class:`LifecycleAgents`: every request on the lifecycle topics gets
a receipt (rejected and failed ones too), published keyed by its request id,
signed, and naming the digest of the request message it answers
(:func:`~pipeline.lifecycle.requests.receipts.receipt_message`). Both processors
have the same entry point (message bytes and key in, typed receipt out), get the
same ledger, passes and clock, and each request crosses one thread hand-off,
under the worker's lifecycle lock; the register and the receipt's paperwork
happen inside it. The processors' ledger writes and broker questions come back
to the event loop. Every store write of the lifecycle path passes the owner's
fence (:mod:`pipeline.worker.ownership`): a worker that lost the lifecycle to
another stops at its next write, sends no receipt and leaves the request to the
new owner. Retention and the register metrics act only in the worker that owns
the lifecycle topics; the register timer also verifies the audit trail and the
register. No timer's failure stops the worker
(:func:`~pipeline.worker.dpo_records.guarded`). Within :data:`LEDGER_GUARD_S` of
a refused ledger message published under a genuine entry's key, the lifecycle
owner writes that entry again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

import faust
from faust.types import TP

from pipeline.kafka.topics import (
    durability,
    durability_warning,
    ensure_topics,
    planned_retention_days,
    retention_days,
    retention_warnings,
    topic_plans,
)
from pipeline.keys.keyring_file import KeyringFile
from pipeline.lifecycle.erasure import ErasureProcessor
from pipeline.lifecycle.ledger import LedgerEntry
from pipeline.lifecycle.operations.restriction import Ledger, Passes
from pipeline.lifecycle.operations.retention import apply_retention, purge_dpo_records
from pipeline.lifecycle.requests.receipts import ResidualCopy, receipt_message
from pipeline.lifecycle.requests.register import load_register
from pipeline.lifecycle.requests.register_metrics import REQUEST_REGISTER
from pipeline.lifecycle.rights import RightsProcessor
from pipeline.observability.metrics import (
    ERASURE_SECONDS,
    ERASURES_COMPLETED,
    ERASURES_RECEIVED,
    RETENTION_PARTITIONS_DELETED,
    SUBJECT_REQUESTS,
)
from pipeline.store.fence import FencedStorage, OwnerFence, OwnershipLostError
from pipeline.worker.assembly import build_classifier
from pipeline.worker.context import WorkerContext
from pipeline.worker.dpo_records import CHAIN_HEALTH, guarded
from pipeline.worker.ownership import LifecycleOwnership

log = logging.getLogger(__name__)
BROKER_CALL_S = 30.0
REGISTER_READ_S = 60.0
LEDGER_GUARD_S = 5.0
T = TypeVar("T")
R = TypeVar("R")


class LifecycleAgents:
    """The lifecycle agents, tasks and timers of one worker (see the module contract)."""

    def __init__(self, context: WorkerContext) -> None:
        self._context = context
        self._settings = settings = context.settings
        owner = f"{socket.gethostname()} pid {os.getpid()}"
        self.ownership = LifecycleOwnership(
            OwnerFence(context.storage, owner), settings.lifecycle.owner_grace_s, context.owns_lifecycle
        )
        self.storage = FencedStorage(context.storage, self.ownership.guard)
        """The store as every lifecycle write of this worker sees it: through the owner's fence."""
        self._residual = (
            *((topic, "raw CDRs") for topic in settings.topics.raw_topics),
            (settings.topics.dlq_topic, "rejected raw CDRs"),
            # cdrpipe's CLI sends pseudonyms; a request signed by another tool may carry a number
            (settings.topics.erasure_topic, "erasure requests with the subject's pseudonyms (or number)"),
            (
                settings.topics.subject_requests_topic,
                "restriction and objection requests with the subject's pseudonyms (or number)",
            ),
        )

    def add_to_app(self) -> None:
        """Add the agents, tasks and timers to the app."""
        app, settings, topics = self._context.app, self._context.settings, self._context.topics
        # Explicit names: the agents' names stay what they were when they were module functions.
        app.agent(topics.erasure_requests, name="pipeline.app.erasures")(self.erasures)
        app.agent(topics.subject_requests, name="pipeline.app.subject_rights")(self.subject_rights)
        app.task(self.check_topics)
        # mode types its handlers as a union of callables that mypy matches no coroutine method to
        app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]
        app.timer(interval=settings.lifecycle.retention_interval_s, name="pipeline.app.retention")(
            guarded("retention", self.retention)
        )
        app.timer(interval=REGISTER_READ_S, name="pipeline.app.register_metrics")(
            guarded("register_metrics", self.register_metrics)
        )
        app.timer(interval=LEDGER_GUARD_S, name="pipeline.app.ledger_guard")(
            guarded("ledger_guard", self.rewrite_overshadowed)
        )

    async def _on_revoked(self, sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        """Faust waited for the request in flight: release the lifecycle claim if its partition goes."""
        del sender, signal, kwargs
        revoked: set[TP] = args[0]  # Faust's signal: sent with the revoked partitions
        if any(tp.topic == self._settings.topics.erasure_topic for tp in revoked):
            async with self._context.lifecycle_lock:
                await self.ownership.revoked()

    async def _handle(
        self, handle: Callable[[bytes, bytes | None], R], event: faust.EventT[bytes]
    ) -> R | None:
        """``handle``'s receipt of ``event``, in a thread under the lock; None if the lifecycle moved."""
        async with self._context.lifecycle_lock:
            if not await self.ownership.ensure():
                log.warning("a lifecycle request is left to the lifecycle owner: this worker no longer is")
                return None
            try:
                return await asyncio.to_thread(handle, event.value, event.key)
            except OwnershipLostError as exc:
                log.warning("%s; the request is left to the new lifecycle owner, which answers it", exc)
                return None

    async def residual_copies(self) -> list[ResidualCopy]:
        """The topics that still hold raw data, with the retention the broker applies to each."""
        planned = {plan.name: plan for plan in topic_plans(self._settings)}
        try:
            applied = await retention_days(self._context.connection, [topic for topic, _ in self._residual])
        except Exception as exc:  # any broker failure falls back to the settings, and the receipt says so
            log.warning("cannot read topic retention from the broker, receipts state the settings: %s", exc)
            applied = {}
        return [
            ResidualCopy(topic=topic, holds=holds, retention_days=applied[topic], retention_source="broker")
            if topic in applied
            else ResidualCopy(
                topic=topic,
                holds=holds,
                retention_days=planned_retention_days(planned[topic]),
                retention_source="settings",
            )
            for topic, holds in self._residual
        ]

    def _ledger_and_passes(self) -> tuple[Ledger, Passes]:
        """The ledger (its view, and writes acknowledged on the event loop) and passes both processors use."""
        on_loop = _OnLoop(asyncio.get_running_loop())

        def write(entry: LedgerEntry) -> None:  # called from the processor's thread
            on_loop(self._context.publish_ledger(entry))

        return Ledger(self._context.ledger, write), Passes(self._settings.settle_seconds, time.sleep)

    async def erasures(self, stream: faust.StreamT[bytes]) -> None:
        """Process erasure requests one at a time; publish each receipt (rejected and failed ones too)."""
        on_loop = _OnLoop(asyncio.get_running_loop())
        ledger, passes = self._ledger_and_passes()
        processor = ErasureProcessor(
            self.storage,
            KeyringFile(self._settings.numbers.keyring).current,
            build_classifier(self._settings),
            ledger=ledger,
            passes=passes,
            residual_copies=lambda: on_loop(self.residual_copies()),
            tenants=dict(self._settings.numbers.tenants),
        )
        async for event in stream.events():
            ERASURES_RECEIVED.inc()
            began = time.perf_counter()
            receipt = await self._handle(processor.handle, event)
            if receipt is None:
                continue
            ERASURE_SECONDS.observe(time.perf_counter() - began)
            outcome = "passed" if receipt.passed else "failed" if receipt.status != "rejected" else "rejected"
            ERASURES_COMPLETED.labels(verification=outcome).inc()
            message = receipt_message(receipt, event.value, self._context.keyring().active)
            await (await self._context.topics.receipts.send(key=receipt.request_id.encode(), value=message))

    async def subject_rights(self, stream: faust.StreamT[bytes]) -> None:
        """Process rectification, restriction, lift, objection and withdrawal requests; publish receipts."""
        ledger, passes = self._ledger_and_passes()
        processor = RightsProcessor(
            self.storage,
            KeyringFile(self._settings.numbers.keyring).current,
            build_classifier(self._settings),
            ledger=ledger,
            passes=passes,
            tenants=dict(self._settings.numbers.tenants),
        )
        await self._context.ledger_loaded.wait()  # a lift or withdrawal looks its entries up in the ledger
        async for event in stream.events():
            receipt = await self._handle(processor.handle, event)
            if receipt is None:
                continue
            SUBJECT_REQUESTS.labels(kind=receipt.kind or "unknown", status=receipt.status).inc()
            key = receipt.request_id.encode() if receipt.request_id else None
            message = receipt_message(receipt, event.value, self._context.keyring().active)
            await (await self._context.topics.subject_receipts.send(key=key, value=message))

    async def check_topics(self) -> None:
        """At start, warn about topics that keep raw data longer than their setting (or forever),
        and once about a ledger that one lost broker could take with it."""
        plans, connection = topic_plans(self._settings), self._context.connection
        ledger = self._settings.topics.ledger_topic
        try:
            await ensure_topics(connection, plans)
            applied = await retention_days(connection, [plan.name for plan in plans])
            replicas, min_insync = await durability(connection, ledger)
        except Exception as exc:  # the check only informs; a broker hiccup must not stop the worker
            log.warning("cannot check the topics' retention and replication on the broker: %s", exc)
            return
        for warning in retention_warnings(plans, applied):
            log.warning("%s", warning)
        durable = durability_warning(ledger, replicas, min_insync)
        if durable is not None:
            log.warning("%s", durable)

    async def retention(self) -> None:
        """Delete expired partitions and purge DPO records, in the lifecycle owner only."""
        if not self._context.owns_lifecycle():
            return
        async with self._context.lifecycle_lock:
            if not await self.ownership.ensure():
                return
            now = datetime.now(UTC)
            try:
                report = await asyncio.to_thread(
                    apply_retention, self.storage, now, self._settings.lifecycle.retention_days
                )
                purged = await asyncio.to_thread(
                    purge_dpo_records, self.storage, self._settings.lifecycle.dpo_record_days, now
                )
            except OwnershipLostError as exc:
                log.warning("retention stopped: %s", exc)
                return
        RETENTION_PARTITIONS_DELETED.inc(len(report.partitions))
        log.info("retention: %d partitions deleted, %d DPO records purged", len(report.partitions), purged)

    async def rewrite_overshadowed(self) -> None:
        """Write again the ledger entries a refused message was published over, in the lifecycle owner.

        The compacted topic keeps only the last message of a key, so a forged message under a
        genuine entry's key would, once compacted, hide that entry from every worker that reads
        the topic afterwards. Under the lifecycle lock, the entry written again is the latest one
        of its key (the owner writes every genuine entry under that lock).
        """
        if not self._context.owns_lifecycle():
            return
        async with self._context.lifecycle_lock:
            entries = self._context.ledger.take_overshadowed()
            for entry in entries:
                await self._context.publish_ledger(entry)
        if entries:
            log.warning(
                "wrote %d ledger entries again: refused messages had been published under their keys",
                len(entries),
            )

    async def register_metrics(self) -> None:
        """Read the register for the metrics and verify the DPO records, in the lifecycle owner only."""
        if not self._context.owns_lifecycle():
            REQUEST_REGISTER.forget()
            return
        try:
            REQUEST_REGISTER.update(await asyncio.to_thread(load_register, self.storage))
        finally:  # a register that cannot be read must not stop the chains from being verified
            await asyncio.to_thread(CHAIN_HEALTH.check, self.storage)


class _OnLoop:
    """Runs a coroutine on the worker's event loop from a processor's thread and waits for its result."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def __call__(self, coroutine: Coroutine[object, object, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(BROKER_CALL_S)
