"""The CDR hot path inside the Faust app: batches from an aiokafka consumer.

Contract: offsets move only forward past records that are durable elsewhere.
For each batch, in this order: the worker checks nobody committed past the
batch (a stale owner drops it), records the batch's offset range (or adopts
the range recorded by an earlier owner, rewinding to rebuild that exact
batch), publishes its Parquet files, and only then commits. Dead letters are
acknowledged by the broker before the loop goes on. Revoked partitions are
flushed and committed before they are released. A failed publish commits
nothing and rewinds the partition, so its records are consumed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import OffsetAndMetadata
from mode import Service

from pipeline.config import Settings
from pipeline.dlq import dead_letter_headers
from pipeline.ingest import DeadLetter, Ingestor, PartitionFlush, RawRecord, TopicPartitionKey
from pipeline.lifecycle.ledger_reader import LedgerReader
from pipeline.metrics import (
    BYTES_PUBLISHED,
    CONSUMER_LAG,
    FILES_PUBLISHED,
    HEALTH,
    PUBLISH_SECONDS,
    RECORDS_CONSUMED,
    RECORDS_DEAD_LETTERED,
    RECORDS_EXPIRED,
    RECORDS_WRITTEN,
)
from pipeline.sink.publisher import BatchPublisher
from pipeline.sink.storage import StorageError
from pipeline.topics import ensure_topics, topic_plans

log = logging.getLogger(__name__)

POLL_TIMEOUT_MS = 500
MAX_POLL_RECORDS = 20_000


class IngestService(Service):
    """Consumes the raw topics in batches and publishes Parquet before committing."""

    def __init__(
        self,
        settings: Settings,
        ingestor: Ingestor,
        publisher: BatchPublisher,
        ledger_reader: LedgerReader,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._settings = settings
        self._ingestor = ingestor
        self._publisher = publisher
        self._ledger_reader = ledger_reader
        self._lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._committed_batch: dict[TopicPartitionKey, int] = {}

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
        await self._ledger_reader.start()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers,
            group_id=f"{settings.app_id}-ingest",
            client_id=f"{settings.app_id}-ingest",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=MAX_POLL_RECORDS,
            isolation_level="read_committed",
            session_timeout_ms=int(settings.session_timeout_s * 1000),
            heartbeat_interval_ms=int(settings.session_timeout_s * 1000 / 3),
        )
        self._consumer.subscribe(list(settings.raw_topics), listener=_FlushOnRevoke(self))
        await self._consumer.start()
        log.info(
            "ingest started: topics=%s group=%s-ingest store=%s",
            ",".join(settings.raw_topics),
            settings.app_id,
            self._publisher.storage.describe(),
        )

    async def on_stop(self) -> None:
        if self._consumer is not None:
            async with self._lock:
                await self._flush(self._ingestor.held(), until_empty=True)
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()
        await self._ledger_reader.stop()

    @Service.task
    async def _follow_ledger(self) -> None:
        while not self.should_stop:
            await self._ledger_reader.poll(timeout_ms=500)

    @Service.task
    async def _consume(self) -> None:
        consumer = self._require_consumer()
        while not self.should_stop:
            batches = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS, max_records=MAX_POLL_RECORDS)
            async with self._lock:
                owned = consumer.assignment()
                dead: list[DeadLetter] = []
                expired_before = self._ingestor.expired_dropped
                for tp, messages in batches.items():
                    if tp not in owned or not messages:
                        continue
                    RECORDS_CONSUMED.inc(len(messages))
                    highwater = consumer.highwater(tp)
                    if highwater is not None:
                        lag = max(highwater - messages[-1].offset - 1, 0)
                        CONSUMER_LAG.labels(topic=tp.topic, partition=str(tp.partition)).set(lag)
                    for message in messages:
                        record = RawRecord(
                            tp.topic, tp.partition, message.offset, message.value, tuple(message.headers)
                        )
                        letter = self._ingestor.add(record)
                        if letter is not None:
                            dead.append(letter)
                RECORDS_EXPIRED.inc(self._ingestor.expired_dropped - expired_before)
                if await self._send_dead_letters(dead):
                    await self._flush(self._ingestor.due())

    async def flush_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        """Publish and commit what is held for partitions being taken away, then forget them."""
        keys = {(tp.topic, tp.partition) for tp in revoked}
        async with self._lock:
            await self._flush([key for key in self._ingestor.held() if key in keys], until_empty=True)
            self._ingestor.discard(keys)
        for topic, partition in keys:
            with contextlib.suppress(KeyError):
                CONSUMER_LAG.remove(topic, str(partition))

    async def _send_dead_letters(self, letters: list[DeadLetter]) -> bool:
        """Send and await the dead letters; on failure rewind their partitions and return False."""
        if not letters:
            return True
        producer = self._require_producer()
        try:
            futures = [
                await producer.send(
                    self._settings.dlq_topic, value=letter.record.value, headers=dead_letter_headers(letter)
                )
                for letter in letters
            ]
            await asyncio.gather(*futures)
        except KafkaError as exc:
            log.error("the dead-letter topic cannot be written, replaying those partitions: %s", exc)
            for key in {(letter.record.topic, letter.record.partition) for letter in letters}:
                restart = self._ingestor.restart(key)
                if restart is not None:
                    self._seek(TopicPartition(*key), restart)
            return False
        for letter in letters:
            RECORDS_DEAD_LETTERED.labels(reason=letter.reason.value).inc()
        log.warning("dead-lettered %d records", len(letters))
        return True

    async def _flush(self, keys: list[TopicPartitionKey], until_empty: bool = False) -> None:
        for key in keys:
            while key in self._ingestor.held():
                if not await self._flush_one(self._ingestor.take(key)) or not until_empty:
                    break

    async def _flush_one(self, flush: PartitionFlush) -> bool:
        """Publish and commit one batch; False if the partition was rewound or dropped instead."""
        key = (flush.topic, flush.partition)
        tp = TopicPartition(flush.topic, flush.partition)
        consumer = self._require_consumer()
        try:
            committed = await consumer.committed(tp)
        except KafkaError as exc:
            log.warning("cannot read the committed offset of %s[%d], replaying: %s", *key, exc)
            HEALTH.failed()
            self._rewind(key, flush.first_offset, flush.commit_offset)
            return False
        if committed is not None and committed > flush.first_offset:
            log.warning(
                "%s[%d]: offsets from %d are already committed by another owner; dropping a stale batch",
                *key,
                flush.first_offset,
            )
            self._ingestor.discard([key])
            self._seek(tp, committed)
            return False
        began = time.perf_counter()
        try:
            recorded_end = await asyncio.to_thread(self._publisher.claim, flush)
            if recorded_end != flush.commit_offset:
                log.info(
                    "%s[%d]: offset %d was first cut at %d; rebuilding that batch",
                    *key,
                    flush.first_offset,
                    recorded_end,
                )
                self._rewind(key, flush.first_offset, recorded_end)
                return False
            written = await asyncio.to_thread(self._publisher.publish, flush)
        except StorageError as exc:
            log.error("%s[%d]: publishing failed, nothing committed, will replay: %s", *key, exc)
            self._rewind(key, flush.first_offset, flush.commit_offset)
            return False
        # thousands separators: the log scrubber replaces plain runs of 7+ digits (pipeline.number_text)
        log.info(
            "published %d files (%s rows, %s bytes) for %s[%d] offsets %s..%s",
            len(flush.files),
            f"{flush.rows:,}",
            f"{written:,}",
            flush.topic,
            flush.partition,
            f"{flush.first_offset:,}",
            f"{flush.commit_offset:,}",
        )
        if not await self._commit(key, tp, flush):
            return False
        HEALTH.recovered()
        RECORDS_WRITTEN.inc(flush.rows)
        FILES_PUBLISHED.inc(len(flush.files))
        BYTES_PUBLISHED.inc(written)
        PUBLISH_SECONDS.observe(time.perf_counter() - began)
        return True

    async def _commit(self, key: TopicPartitionKey, tp: TopicPartition, flush: PartitionFlush) -> bool:
        try:
            await self._require_consumer().commit({tp: OffsetAndMetadata(flush.commit_offset, "")})
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning("commit of %s[%d] failed, its new owner replays the batch: %s", *key, exc)
            self._ingestor.discard([key])
            return False
        previous = self._committed_batch.get(key)
        if previous is not None:
            await asyncio.to_thread(self._publisher.forget, flush.topic, flush.partition, previous)
        self._committed_batch[key] = flush.first_offset
        return True

    def _rewind(self, key: TopicPartitionKey, first_offset: int, end_offset: int) -> None:
        self._ingestor.rewind(key, first_offset, end_offset)
        self._seek(TopicPartition(*key), first_offset)

    def _seek(self, tp: TopicPartition, offset: int) -> None:
        consumer = self._require_consumer()
        if tp in consumer.assignment():
            consumer.seek(tp, offset)

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
