"""The CDR hot path inside the Faust app: batches from an aiokafka consumer.

Contract: offsets move only forward past records that are durable elsewhere:
a partition's offset is committed after its Parquet files are published and
its dead letters acknowledged by the broker. Revoked partitions are flushed
and committed before they are released. A failure to publish leaves the
offset where it was, so the records are consumed again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.structs import OffsetAndMetadata
from mode import Service

from pipeline.config import Settings
from pipeline.dlq import dead_letter_headers
from pipeline.ingest import DeadLetter, Ingestor, PartitionFlush, RawRecord, TopicPartitionKey
from pipeline.sink.parquet import encode
from pipeline.sink.storage import Storage
from pipeline.topics import ensure_topics, topic_plans

log = logging.getLogger(__name__)

POLL_TIMEOUT_MS = 500
MAX_POLL_RECORDS = 20_000


class IngestService(Service):
    """Consumes the raw topics in batches and publishes Parquet before committing."""

    def __init__(self, settings: Settings, ingestor: Ingestor, storage: Storage, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._settings = settings
        self._ingestor = ingestor
        self._storage = storage
        self._lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None

    async def on_start(self) -> None:
        settings = self._settings
        created = await ensure_topics(settings.bootstrap_servers, topic_plans(settings))
        if created:
            log.info("created topics %s", ", ".join(created))
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers,
            client_id=f"{settings.app_id}-dlq",
            acks="all",
            enable_idempotence=True,
        )
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers,
            group_id=f"{settings.app_id}-ingest",
            client_id=f"{settings.app_id}-ingest",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=MAX_POLL_RECORDS,
            isolation_level="read_committed",
        )
        self._consumer.subscribe(list(settings.raw_topics), listener=_FlushOnRevoke(self))
        await self._consumer.start()
        log.info(
            "ingest started: topics=%s group=%s-ingest store=%s",
            ",".join(settings.raw_topics),
            settings.app_id,
            self._storage.describe(),
        )

    async def on_stop(self) -> None:
        if self._consumer is not None:
            async with self._lock:
                await self._flush(self._ingestor.held())
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()

    @Service.task
    async def _consume(self) -> None:
        consumer = self._require_consumer()
        while not self.should_stop:
            batches = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS, max_records=MAX_POLL_RECORDS)
            async with self._lock:
                owned = consumer.assignment()
                dead: list[DeadLetter] = []
                for tp, messages in batches.items():
                    if tp not in owned:
                        continue
                    for message in messages:
                        record = RawRecord(
                            tp.topic, tp.partition, message.offset, message.value, tuple(message.headers)
                        )
                        letter = self._ingestor.add(record)
                        if letter is not None:
                            dead.append(letter)
                await self._send_dead_letters(dead)
                await self._flush(self._ingestor.due())

    async def flush_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        """Publish and commit what is held for partitions being taken away."""
        keys = {(tp.topic, tp.partition) for tp in revoked}
        async with self._lock:
            await self._flush([key for key in self._ingestor.held() if key in keys])

    async def _send_dead_letters(self, letters: list[DeadLetter]) -> None:
        if not letters:
            return
        producer = self._require_producer()
        futures = [
            await producer.send(
                self._settings.dlq_topic,
                value=letter.record.value,
                headers=dead_letter_headers(letter),
            )
            for letter in letters
        ]
        await asyncio.gather(*futures)
        log.warning("dead-lettered %d records", len(letters))

    async def _flush(self, keys: list[TopicPartitionKey]) -> None:
        for key in keys:
            flush = self._ingestor.take(key)
            await asyncio.to_thread(self._publish, flush)
            await self._commit(flush)

    def _publish(self, flush: PartitionFlush) -> None:
        for pending in flush.files:
            self._storage.publish(pending.path, encode(pending.rows.to_table()))
        rows = sum(len(pending.rows) for pending in flush.files)
        log.info(
            "published %d files (%d rows) for %s[%d] up to offset %d",
            len(flush.files),
            rows,
            flush.topic,
            flush.partition,
            flush.commit_offset,
        )

    async def _commit(self, flush: PartitionFlush) -> None:
        tp = TopicPartition(flush.topic, flush.partition)
        try:
            await self._require_consumer().commit({tp: OffsetAndMetadata(flush.commit_offset, "")})
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning("commit of %s[%d] failed, records will be replayed: %s", tp.topic, tp.partition, exc)

    def _require_consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("ingest consumer used before the service started")
        return self._consumer

    def _require_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("dead-letter producer used before the service started")
        return self._producer


class _FlushOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: IngestService) -> None:
        self._service = service

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._service.flush_revoked(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("assigned %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(assigned)))
