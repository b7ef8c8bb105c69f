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
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime, timedelta

import faust
import msgspec
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipeline import log_scrub
from pipeline.config import load_settings
from pipeline.ingest_service import IngestService
from pipeline.keyring import load_keyring
from pipeline.lifecycle.audit import purge_audit
from pipeline.lifecycle.erasure import ErasureProcessor, ErasureRequest, ResidualCopy
from pipeline.lifecycle.ledger import ErasureLedger, LedgerEntry, encode_entry
from pipeline.lifecycle.ledger_reader import LedgerReader
from pipeline.lifecycle.receipts import purge_receipts
from pipeline.lifecycle.retention import apply_retention
from pipeline.log_json import logging_config
from pipeline.metrics import (
    ERASURE_SECONDS,
    ERASURES_COMPLETED,
    ERASURES_RECEIVED,
    HEALTH,
    REGISTRY,
    RETENTION_PARTITIONS_DELETED,
    watch_cache_hit_ratio,
)
from pipeline.runtime import build_classifier, build_ingestor
from pipeline.sink.publisher import BatchPublisher
from pipeline.sink.storage import open_storage

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


@app.service
class CdrIngest(IngestService):
    """The ingest service bound to this app's settings and erasure ledger."""

    def __init__(self, **kwargs: object) -> None:
        publisher = BatchPublisher(storage, row_filter=ledger.apply, on_storage_failure=HEALTH.failed)
        reader = LedgerReader(settings.bootstrap_servers, settings.ledger_topic, ledger)
        ingestor = build_ingestor(settings)
        watch_cache_hit_ratio(ingestor.parties.columns.cache_info)
        super().__init__(settings, ingestor, publisher, reader, **kwargs)


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


def _erasure_processor() -> ErasureProcessor:
    residual = [
        *(ResidualCopy(topic, "raw CDRs", settings.raw_retention_days) for topic in settings.raw_topics),
        ResidualCopy(settings.dlq_topic, "rejected raw CDRs", settings.dlq_retention_days),
        ResidualCopy(
            settings.erasure_topic,
            "erasure requests with the subject's number",
            settings.request_retention_days,
        ),
    ]
    return ErasureProcessor(
        storage,
        load_keyring(settings.keyring),
        build_classifier(settings),
        publish_ledger=_publish_ledger,
        settle_seconds=settings.settle_seconds,
        residual_copies=residual,
    )


@app.agent(erasure_requests)
async def erasures(stream: faust.StreamT[bytes]) -> None:
    """Process erasure requests one at a time; publish each receipt."""
    processor = _erasure_processor()
    async for payload in stream:
        try:
            request = msgspec.json.decode(payload, type=ErasureRequest)
        except msgspec.DecodeError:
            log.error("skipping an erasure request that does not match schemas/erasure-request.schema.json")
            continue
        ERASURES_RECEIVED.inc()
        began = time.perf_counter()
        async with lifecycle_lock:
            receipt = await processor.process(request)
        ERASURE_SECONDS.observe(time.perf_counter() - began)
        verification = "passed" if receipt["verification"]["passed"] else "failed"
        ERASURES_COMPLETED.labels(verification=verification).inc()
        body = json.dumps(receipt, sort_keys=True).encode()
        await (await receipts_topic.send(key=request.request_id.encode(), value=body))


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
        purged = await asyncio.to_thread(purge_audit, storage, settings.dpo_record_days, now.date())
        purged += await asyncio.to_thread(purge_receipts, storage, settings.dpo_record_days, now)
    RETENTION_PARTITIONS_DELETED.inc(len(report.partitions))
    log.info("retention: %d partitions deleted, %d DPO records purged", len(report.partitions), purged)
