"""What the Faust app's parts share in one worker: settings, broker connection, store, ledger, topics, lock.

Contract: one :class:`WorkerContext` per app (:func:`pipeline.worker.app.create_app`).
``lifecycle_lock`` serialises every lifecycle operation of the worker
(erasures, subject requests, retention), and ``ledger_loaded`` is set once the
ingest service has read the whole ledger.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import faust

from pipeline.config.settings import Settings
from pipeline.kafka.connection import KafkaConnection
from pipeline.kafka.topics import BROKER_DEFAULT, lifecycle_config
from pipeline.keys.keyring import Keyring
from pipeline.lifecycle.ledger import LedgerEntry, SubjectLedger, encode_entry
from pipeline.lifecycle.requests.signing import sign_message
from pipeline.store.storage import Storage


@dataclass(frozen=True, slots=True)
class LifecycleTopics:
    """The single-partition lifecycle topics, declared by Faust itself (so subscriptions never miss them)."""

    erasure_requests: faust.TopicT
    ledger: faust.TopicT
    receipts: faust.TopicT
    subject_requests: faust.TopicT
    subject_receipts: faust.TopicT

    @classmethod
    def declare(cls, app: faust.App, settings: Settings) -> LifecycleTopics:
        """Declare the topics on ``app`` (compacted when they keep no time limit), as the topic plans do."""
        config = lifecycle_config(settings)
        replicas = settings.topics.topic_replication or BROKER_DEFAULT

        def topic(name: str, retention_days: float | None) -> faust.TopicT:
            return app.topic(
                name,
                key_serializer="raw",
                value_serializer="raw",
                partitions=1,
                replicas=replicas,
                internal=True,
                config=config,
                retention=timedelta(days=retention_days) if retention_days is not None else None,
                compacting=retention_days is None,
                deleting=retention_days is not None,
            )

        # One partition each: Faust assigns partition 0 of co-subscribed single-partition
        # topics to the same worker, so all lifecycle requests run in one worker, under one lock.
        return cls(
            erasure_requests=topic(settings.topics.erasure_topic, settings.topics.request_retention_days),
            ledger=topic(settings.topics.ledger_topic, None),
            receipts=topic(settings.topics.receipts_topic, settings.lifecycle.dpo_record_days),
            subject_requests=topic(
                settings.topics.subject_requests_topic, settings.topics.request_retention_days
            ),
            subject_receipts=topic(
                settings.topics.subject_receipts_topic, settings.lifecycle.dpo_record_days
            ),
        )


@dataclass(frozen=True, slots=True)
class WorkerContext:
    """The parts of one worker's app."""

    settings: Settings
    connection: KafkaConnection
    app: faust.App
    storage: Storage
    topics: LifecycleTopics
    keyring: Callable[[], Keyring]
    """The keyring file as it is now: lifecycle messages are signed and checked with it."""
    ledger: SubjectLedger = field(default_factory=SubjectLedger)
    lifecycle_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    ledger_loaded: asyncio.Event = field(default_factory=asyncio.Event)

    async def publish_ledger(self, entry: LedgerEntry) -> None:
        """Apply ``entry`` in this worker and write it, signed, to the ledger topic (acknowledged)."""
        self.ledger.add(entry)
        signed = sign_message(encode_entry(entry), self.keyring().active)
        await (await self.topics.ledger.send(key=entry.key.encode(), value=signed))

    def owns_lifecycle(self) -> bool:
        """Whether this worker holds the lifecycle topics (the erasure request partition)."""
        return any(tp.topic == self.settings.topics.erasure_topic for tp in self.app.consumer.assignment())
