"""The Faust app, built by :func:`create_app` from validated settings. Glue only.

Importing this module does nothing: ``faust -A pipeline.app`` and ``cdrpipe
worker`` read its ``app`` attribute, which builds the app from the
environment's settings on first access. Tests call :func:`create_app` with
their own settings.

Faust settings are passed explicitly and Faust's own environment lookup is
disabled (``env={}``): only ``CDRPIPE_*`` variables configure the worker.

* The ingest path is a service with its own aiokafka consumer (batches); it
  notices a rotated keyring within :data:`KEYRING_CHECK_S` and writes under
  its new active key.
* The lifecycle path (:mod:`pipeline.worker.lifecycle_agents`) is the erasure and
  subject-request agents on single-partition topics plus the retention
  and compaction timers (:mod:`pipeline.worker.compaction_timer`), under one
  lock, in the worker that owns those topics.
* ``/metrics`` (Prometheus) and ``/health`` are served by Faust's web server, bound to
  ``CDRPIPE_WEB_HOST``; Faust's own views (``/router/``, ``/table/``, stats, graph) are off:
  only its index page (``{"status": "OK"}``) remains besides ours.
  ``/health`` also names the bucket's default encryption of an ``s3://``
  store, and the first break of the audit trail or the register once the
  lifecycle owner has found one (a break does not make the worker unhealthy:
  restarting it cannot repair the records).
* At start the store is checked: a local store whose files others may read is
  reported (a bounded check); an ``s3://`` bucket without default encryption
  is refused unless ``CDRPIPE_S3_ALLOW_UNENCRYPTED`` allows it, loudly. A
  bucket whose encryption cannot be read (not created yet, say) is reported
  as unknown and the worker starts: its writes fail until the bucket exists;
  credentials that may not read it (AccessDenied) are refused like an
  unencrypted bucket.
* The audit trail and the register are sealed with the keyring file, and so are the
  lifecycle messages (:mod:`pipeline.lifecycle.requests.signing`): requests and ledger entries are
  checked with it, ledger entries and receipts signed with it.
* Every broker client, Faust's own included, connects through
  :func:`~pipeline.kafka.connection.kafka_connection` (TLS, SASL).
"""

from __future__ import annotations

import functools
import logging

import faust
import mode
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipeline.config.settings import Settings, StoreSettings, load_settings
from pipeline.errors import ConfigError, KeyringError
from pipeline.kafka.connection import kafka_connection
from pipeline.kafka.ledger_reader import LedgerReader
from pipeline.keys.keyring_file import KeyringFile
from pipeline.lifecycle.requests.chain import seal_with
from pipeline.observability import log_scrub
from pipeline.observability.log_json import logging_config
from pipeline.observability.metrics import HEALTH, REGISTRY, watch_cache_hit_ratio
from pipeline.sink.publisher import BatchPublisher
from pipeline.store.errors import StorageError
from pipeline.store.object_storage import EncryptionUnreadableError, ObjectStorage, open_storage
from pipeline.store.permissions import exposed
from pipeline.store.storage import LocalStorage, Storage
from pipeline.worker.assembly import build_ingestor, build_keys
from pipeline.worker.compaction_timer import CompactionTimer
from pipeline.worker.context import LifecycleTopics, WorkerContext
from pipeline.worker.dpo_records import CHAIN_HEALTH
from pipeline.worker.ingest_service import IngestService
from pipeline.worker.lifecycle_agents import LifecycleAgents

log = logging.getLogger(__name__)
KEYRING_CHECK_S = 5.0


def create_app(settings: Settings) -> faust.App:
    """The worker's Faust app: ingest service, lifecycle agents and timers, web pages."""
    log_scrub.install()
    connection = kafka_connection(settings)
    app = faust.App(
        settings.kafka.app_id,
        broker=settings.kafka.broker,
        broker_credentials=connection.faust_credentials(),
        web_port=settings.runtime.web_port,
        web_bind=settings.runtime.web_host,
        web_router_enabled=False,
        web_tables_enabled=False,
        web_stats_enabled=False,
        web_graph_enabled=False,
        datadir=str(settings.runtime.state_dir),
        store="memory://",
        autodiscover=False,
        # Faust's own leader topic only: Faust refuses -1 here; the lifecycle topics pass it themselves
        topic_replication_factor=settings.topics.topic_replication or 1,
        broker_session_timeout=settings.kafka.session_timeout_s,
        broker_heartbeat_interval=settings.kafka.session_timeout_s / 3,
        broker_rebalance_timeout=settings.kafka.rebalance_timeout_s,
        logging_config=logging_config() if settings.runtime.log_format == "json" else None,
        env={},
    )
    storage = open_storage(settings.store.root, group_read=settings.store.group_read)
    _check_store(storage, settings.store)
    keyring = KeyringFile(settings.numbers.keyring).current
    seal_with(keyring)
    topics = LifecycleTopics.declare(app, settings)
    context = WorkerContext(settings, connection, app, storage, topics, keyring)
    app.service(_ingest_service(context))
    lifecycle = LifecycleAgents(context)
    lifecycle.add_to_app()
    CompactionTimer(context, lifecycle.storage, lifecycle.ownership.ensure).add_to_app()
    app.page("/metrics")(_metrics)
    app.page("/health")(_health)
    return app


_store_encryption: dict[str, str] = {}
"""What ``/health`` says of the store's encryption at rest (``s3://`` stores only)."""


def _check_store(storage: Storage, settings: StoreSettings) -> None:
    """Report a local store others may read; refuse an unencrypted bucket unless allowed (module doc)."""
    if isinstance(storage, LocalStorage):
        readable = exposed(storage.root, settings.group_read)
        if readable:
            log.warning(
                "%d files or directories of the store (e.g. %s) can be used by other users: "
                "run `cdrpipe store fix-permissions`",
                len(readable),
                readable[0],
            )
    if not isinstance(storage, ObjectStorage):
        return
    try:
        algorithm = storage.default_encryption()
    except EncryptionUnreadableError as exc:  # a missing permission must not wave the check through
        if not settings.s3_allow_unencrypted:
            allow = "or set CDRPIPE_S3_ALLOW_UNENCRYPTED=true for a local test store"
            raise ConfigError(f"{exc}, {allow}") from exc
        log.warning("cannot read the default encryption of the store's bucket: %s", exc)
        _store_encryption["store_encryption"] = "unknown (could not be read at start)"
        return
    except StorageError as exc:  # e.g. a bucket not created yet: the store reports it as it does for writes
        log.warning("cannot read the default encryption of the store's bucket: %s", exc)
        _store_encryption["store_encryption"] = "unknown (could not be read at start)"
        return
    if algorithm is None and not settings.s3_allow_unencrypted:
        raise ConfigError(
            f"the bucket of {storage.describe()} has no default encryption: enable it (SSE-S3 or SSE-KMS), "
            "or set CDRPIPE_S3_ALLOW_UNENCRYPTED=true for a local test store"
        )
    if algorithm is None:
        log.warning(
            "THE BUCKET OF %s DOES NOT ENCRYPT AT REST: allowed by CDRPIPE_S3_ALLOW_UNENCRYPTED; "
            "never use this for real CDRs",
            storage.describe(),
        )
    else:
        log.info("the bucket of %s encrypts at rest by default with %s", storage.describe(), algorithm)
    _store_encryption["store_encryption"] = algorithm or "none (allowed by CDRPIPE_S3_ALLOW_UNENCRYPTED)"


def _ingest_service(context: WorkerContext) -> type[IngestService]:
    settings, ledger = context.settings, context.ledger
    keyring_file = KeyringFile(settings.numbers.keyring)

    class CdrIngest(IngestService):
        """The ingest service bound to this app's settings and erasure ledger."""

        def __init__(self, **kwargs: object) -> None:
            publisher = BatchPublisher(
                context.storage, row_filter=ledger.route, on_storage_failure=HEALTH.failed
            )
            reader = LedgerReader(context.connection, settings.topics.ledger_topic, ledger, context.keyring)
            ingestor = build_ingestor(settings, keyring_file.current())  # one read: no rotation slips between
            # looked up on each scrape: a rotated keyring brings a new cache
            watch_cache_hit_ratio(lambda: ingestor.parties.cache_info())  # noqa: PLW0108
            super().__init__(settings, context.connection, ingestor, publisher, reader, **kwargs)

        async def on_start(self) -> None:
            await super().on_start()
            context.ledger_loaded.set()

        @mode.Service.timer(KEYRING_CHECK_S)
        async def _follow_keyring(self) -> None:
            """Write under the new active key once the keyring file is rotated (no restart needed).

            ``Ingestor.add_batch`` runs on the event loop, so the switch falls between two polls.
            """
            try:
                keyring = keyring_file.changed()
            except KeyringError as exc:
                log.error("the rotated keyring cannot be used, still writing under the old key: %s", exc)
                return
            if keyring is not None:
                self._ingestor.rekey(*build_keys(settings, keyring))
                log.info(
                    "keyring changed: now writing under key %s (%d keys)",
                    keyring.active_id,
                    len(keyring.keys),
                )

    return CdrIngest


async def _metrics(view: View, request: Request) -> Response:
    """Prometheus metrics of this worker."""
    del request
    return view.bytes(generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _health(view: View, request: Request) -> Response:
    """200 while the worker can publish and commit, 503 while it cannot (with what to fix, if known)."""
    del request
    records = {"audit_chain_break": CHAIN_HEALTH.first_break} if CHAIN_HEALTH.first_break else {}
    if HEALTH.healthy:
        return view.json({"status": "ok", **_store_encryption, **records})
    failing = {"status": "failing", "failing_since": HEALTH.failing_since, "problem": HEALTH.problem}
    return view.json({**failing, **_store_encryption, **records}, status=503)


@functools.cache
def _environment_app() -> faust.App:
    return create_app(load_settings())


def __getattr__(name: str) -> faust.App:
    """``app``: the app of the environment's settings, built on first access (for ``faust -A``)."""
    if name == "app":
        return _environment_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
