"""The Faust app: settings, services, agents and timers. Glue only.

Faust settings are passed explicitly and Faust's own environment lookup is
disabled (``env={}``): only ``CDRPIPE_*`` variables configure the worker.

* The ingest path is a service with its own aiokafka consumer (batches).
* The lifecycle path is the erasure agent on the single-partition request
  topic plus the retention timer. Faust declares the lifecycle topics itself
  (as internal topics), so the agent's subscription never misses its topic.
  Both run under one lock, and the timer only acts in the worker that owns
  the request partition, so erasures, retention and purges never touch the
  same files at once, even with several workers.
* The erasure agent runs the synchronous :class:`ErasureProcessor` in a
  thread; it loads the keyring again when the file changed, so keys added
  by a rotation are searched without a restart. The ingest path notices a
  rotated keyring within :data:`KEYRING_CHECK_S` and writes under its new
  active key.
* At start the worker warns about topics that keep raw data longer than
  their setting; receipts name the retention the broker applies.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import faust
import mode
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipeline import log_scrub
from pipeline.config import load_settings
from pipeline.errors import KeyringError
from pipeline.ingest_service import IngestService
from pipeline.keyring import KeyringFile
from pipeline.lifecycle.erasure import ErasureProcessor
from pipeline.lifecycle.erasure_register import close_erasure, register_erasure
from pipeline.lifecycle.ledger import ErasureLedger, LedgerEntry, encode_entry
from pipeline.lifecycle.ledger_reader import LedgerReader
from pipeline.lifecycle.receipts import ResidualCopy, encode_receipt
from pipeline.lifecycle.register import load_register
from pipeline.lifecycle.restriction import Ledger, Passes
from pipeline.lifecycle.retention import apply_retention, purge_dpo_records
from pipeline.lifecycle.rights import RightsProcessor
from pipeline.lifecycle.subject_request import parse_request
from pipeline.log_json import logging_config
from pipeline.metrics import (
    ERASURE_SECONDS,
    ERASURES_COMPLETED,
    ERASURES_RECEIVED,
    HEALTH,
    REGISTRY,
    REQUEST_REGISTER,
    RETENTION_PARTITIONS_DELETED,
    SUBJECT_REQUESTS,
    watch_cache_hit_ratio,
)
from pipeline.runtime import build_classifier, build_ingestor, build_keys
from pipeline.sink.publisher import BatchPublisher
from pipeline.sink.storage import open_storage
from pipeline.topics import (
    ensure_topics,
    planned_retention_days,
    retention_days,
    retention_warnings,
    topic_plans,
)

log_scrub.install()
log = logging.getLogger(__name__)
settings = load_settings()

app = faust.App(
    settings.app_id,
    broker=settings.broker,
    web_port=settings.web_port,
    datadir=str(settings.state_dir),
    store="memory://",
    autodiscover=False,
    topic_replication_factor=1,
    broker_session_timeout=settings.session_timeout_s,
    broker_heartbeat_interval=settings.session_timeout_s / 3,
    logging_config=logging_config() if settings.log_format == "json" else None,
    env={},
)
storage = open_storage(settings.store)
ledger = ErasureLedger()
lifecycle_lock = asyncio.Lock()
ledger_loaded = asyncio.Event()
"""Set once the ingest service has read the whole ledger: a lift or withdrawal looks entries up in it."""
ingest_keyring = KeyringFile(settings.keyring)
KEYRING_CHECK_S = 5.0
BROKER_CALL_S = 30.0
T = TypeVar("T")


def _lifecycle_topic(name: str, retention_days: float | None) -> faust.TopicT:
    """A single-partition internal topic of raw bytes (compacted when it has no retention)."""
    return app.topic(
        name,
        key_serializer="raw",
        value_serializer="raw",
        partitions=1,
        internal=True,
        retention=timedelta(days=retention_days) if retention_days is not None else None,
        compacting=retention_days is None,
        deleting=retention_days is not None,
    )


erasure_requests = _lifecycle_topic(settings.erasure_topic, settings.request_retention_days)
ledger_topic = _lifecycle_topic(settings.ledger_topic, None)
receipts_topic = _lifecycle_topic(settings.receipts_topic, settings.dpo_record_days)
# One partition like the erasure topic: Faust assigns partition 0 of co-subscribed
# single-partition topics to the same worker, so these requests run in the
# lifecycle owner, under the same lock as erasures.
subject_requests = _lifecycle_topic(settings.subject_requests_topic, settings.request_retention_days)
subject_receipts = _lifecycle_topic(settings.subject_receipts_topic, settings.dpo_record_days)


@app.service
class CdrIngest(IngestService):
    """The ingest service bound to this app's settings and erasure ledger."""

    def __init__(self, **kwargs: object) -> None:
        publisher = BatchPublisher(
            storage,
            row_filter=ledger.route,
            on_storage_failure=HEALTH.failed,
        )
        reader = LedgerReader(settings.bootstrap_servers, settings.ledger_topic, ledger)
        ingestor = build_ingestor(settings, ingest_keyring.current())  # one read: no rotation slips between
        # looked up on each scrape: a rotated keyring brings a new cache
        watch_cache_hit_ratio(lambda: ingestor.parties.columns.cache_info())  # noqa: PLW0108
        super().__init__(settings, ingestor, publisher, reader, **kwargs)

    async def on_start(self) -> None:
        await super().on_start()
        ledger_loaded.set()

    @mode.Service.timer(KEYRING_CHECK_S)
    async def _follow_keyring(self) -> None:
        """Write under the new active key once the keyring file is rotated (no restart needed).

        ``Ingestor.add`` runs on the event loop, so the switch falls between two records.
        """
        try:
            keyring = ingest_keyring.changed()
        except KeyringError as exc:
            log.error("the rotated keyring cannot be used, still writing under the old key: %s", exc)
            return
        if keyring is not None:
            self._ingestor.rekey(*build_keys(settings, keyring))
            log.info(
                "keyring changed: now writing under key %s (%d keys)", keyring.active_id, len(keyring.keys)
            )


@app.page("/metrics")
async def metrics(view: View, request: Request) -> Response:
    """Prometheus metrics of this worker."""
    del request
    return view.bytes(generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


@app.page("/health")
async def health(view: View, request: Request) -> Response:
    """200 while the worker can publish and commit, 503 while it cannot."""
    del request
    if HEALTH.healthy:
        return view.json({"status": "ok"})
    failing = {"status": "failing", "failing_since": HEALTH.failing_since, "problem": HEALTH.problem}
    return view.json(failing, status=503)


async def _publish_ledger(entry: LedgerEntry) -> None:
    ledger.add(entry)
    await (await ledger_topic.send(key=entry.request_id.encode(), value=encode_entry(entry)))


_RESIDUAL = (
    *((topic, "raw CDRs") for topic in settings.raw_topics),
    (settings.dlq_topic, "rejected raw CDRs"),
    (settings.erasure_topic, "erasure requests with the subject's number"),
    (settings.subject_requests_topic, "restriction and objection requests with the subject's number"),
)


async def _residual_copies() -> list[ResidualCopy]:
    """The topics that still hold raw data, with the retention the broker applies to each."""
    planned = {plan.name: plan for plan in topic_plans(settings)}
    try:
        applied = await retention_days(settings.bootstrap_servers, [topic for topic, _ in _RESIDUAL])
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
        for topic, holds in _RESIDUAL
    ]


def _erasure_processor(loop: asyncio.AbstractEventLoop) -> ErasureProcessor:
    """The processor, whose ledger writes and broker questions run on the worker's event loop."""

    def on_loop(coroutine: Coroutine[object, object, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(BROKER_CALL_S)

    return ErasureProcessor(
        storage,
        KeyringFile(settings.keyring).current,
        build_classifier(settings),
        write_ledger=lambda entry: on_loop(_publish_ledger(entry)),
        settle_seconds=settings.settle_seconds,
        residual_copies=lambda: on_loop(_residual_copies()),
    )


@app.agent(erasure_requests)
async def erasures(stream: faust.StreamT[bytes]) -> None:
    """Process erasure requests one at a time; publish each receipt (rejected ones too)."""
    processor = _erasure_processor(asyncio.get_running_loop())
    async for payload in stream:
        ERASURES_RECEIVED.inc()
        await asyncio.to_thread(register_erasure, storage, payload)
        began = time.perf_counter()
        async with lifecycle_lock:
            receipt = await asyncio.to_thread(processor.handle, payload)
        ERASURE_SECONDS.observe(time.perf_counter() - began)
        outcome = "rejected" if receipt.status == "rejected" else "passed" if receipt.passed else "failed"
        ERASURES_COMPLETED.labels(verification=outcome).inc()
        await asyncio.to_thread(close_erasure, storage, receipt, datetime.now(UTC))
        await (await receipts_topic.send(key=receipt.request_id.encode(), value=encode_receipt(receipt)))


@app.task  # type: ignore[untyped-decorator]
async def check_topic_retention() -> None:
    """Warn about existing topics that keep raw data longer than their setting (or forever)."""
    plans = topic_plans(settings)
    try:
        await ensure_topics(settings.bootstrap_servers, plans)
        applied = await retention_days(settings.bootstrap_servers, [plan.name for plan in plans])
    except Exception as exc:  # the check only informs; a broker hiccup must not stop the worker
        log.warning("cannot check the topics' retention on the broker: %s", exc)
        return
    for warning in retention_warnings(plans, applied):
        log.warning("%s", warning)


@app.agent(subject_requests)
async def subject_rights(stream: faust.StreamT[bytes]) -> None:
    """Process rectification, restriction, lift, objection and withdrawal requests; publish receipts.

    Every message gets a receipt, a malformed one too (``status: rejected``).
    """
    loop = asyncio.get_running_loop()

    def write_ledger(entry: LedgerEntry) -> None:  # called from the processor's thread
        asyncio.run_coroutine_threadsafe(_publish_ledger(entry), loop).result(BROKER_CALL_S)

    processor = RightsProcessor(
        storage,
        KeyringFile(settings.keyring).current,
        build_classifier(settings),
        ledger=Ledger(ledger, write_ledger),
        passes=Passes(settings.settle_seconds, time.sleep),
    )
    await ledger_loaded.wait()
    async for event in stream.events():
        request = parse_request(event.key, event.value)
        async with lifecycle_lock:
            receipt = await asyncio.to_thread(processor.process, request)
        SUBJECT_REQUESTS.labels(kind=receipt["kind"] or "unknown", status=receipt["status"]).inc()
        key = receipt["request_id"].encode() if receipt["request_id"] else None
        body = json.dumps(receipt, sort_keys=True).encode()
        await (await subject_receipts.send(key=key, value=body))


def _owns_lifecycle() -> bool:
    return any(tp.topic == settings.erasure_topic for tp in app.consumer.assignment())


@app.timer(interval=settings.retention_interval_s)  # type: ignore[untyped-decorator]
async def retention() -> None:
    """Delete expired partitions and purge DPO records, in the lifecycle owner only."""
    if not _owns_lifecycle():
        return
    async with lifecycle_lock:
        now = datetime.now(UTC)
        report = await asyncio.to_thread(apply_retention, storage, now, settings.retention_days)
        purged = await asyncio.to_thread(purge_dpo_records, storage, settings.dpo_record_days, now)
    RETENTION_PARTITIONS_DELETED.inc(len(report.partitions))
    log.info("retention: %d partitions deleted, %d DPO records purged", len(report.partitions), purged)


@app.timer(interval=60.0)  # type: ignore[untyped-decorator]
async def register_metrics() -> None:
    """Read the register of requests for the metrics, in the lifecycle owner only."""
    if not _owns_lifecycle():
        REQUEST_REGISTER.forget()
        return
    REQUEST_REGISTER.update(await asyncio.to_thread(load_register, storage))
