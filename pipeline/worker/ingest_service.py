"""The CDR hot path inside the Faust app: batches from an aiokafka consumer.

Contract: offsets move only forward past records that are durable elsewhere.
This service polls (``getmany``), hands records to the
:class:`~pipeline.ingest.ingestor.Ingestor`, sends dead letters and waits for the
broker's acknowledgement before the loop goes on, and runs each due batch
through :class:`~pipeline.sink.committer.BatchCommitter` (stale check, claim,
publish, commit, forget: the exactly-once decisions live there). Revoked
partitions are flushed and committed before they are released.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from mode import Service

from pipeline.config.settings import Settings
from pipeline.ingest.dead_letters import dead_letter_headers
from pipeline.ingest.ingestor import Ingestor
from pipeline.ingest.records import DeadLetter, RawRecord
from pipeline.kafka.connection import KafkaConnection
from pipeline.kafka.ledger_reader import LedgerReader
from pipeline.kafka.offsets import ConsumerOffsets
from pipeline.kafka.topics import ensure_topics, topic_plans
from pipeline.observability.metrics import (
    CONSUMER_LAG,
    RECORDS_CONSUMED,
    RECORDS_DEAD_LETTERED,
    RECORDS_EXPIRED,
)
from pipeline.sink.batch import TopicPartitionKey
from pipeline.sink.committer import BatchCommitter
from pipeline.sink.outcomes import Committed, Outcome
from pipeline.sink.publisher import BatchPublisher
from pipeline.worker.gc_tuning import tune_for_streaming

log = logging.getLogger(__name__)

POLL_TIMEOUT_MS = 500
MAX_POLL_RECORDS = 20_000


class IngestService(Service):
    """Consumes the raw topics in batches and publishes Parquet before committing."""

    def __init__(
        self,
        settings: Settings,
        connection: KafkaConnection,
        ingestor: Ingestor,
        publisher: BatchPublisher,
        ledger_reader: LedgerReader,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._settings = settings
        self._connection = connection
        self._ingestor = ingestor
        self._publisher = publisher
        self._ledger_reader = ledger_reader
        self._lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._committer: BatchCommitter | None = None
        self._offsets: ConsumerOffsets | None = None
        self._in_flight: asyncio.Task[list[Outcome]] | None = None

    async def on_start(self) -> None:
        settings = self._settings
        created = await ensure_topics(self._connection, topic_plans(settings))
        if created:
            log.info("created topics %s", ", ".join(created))
        self._producer = self._connection.producer(
            client_id=f"{settings.kafka.app_id}-dlq",
            acks="all",
            enable_idempotence=True,
        )
        await self._producer.start()
        await self._ledger_reader.start()
        self._consumer = self._connection.consumer(
            group_id=f"{settings.kafka.app_id}-ingest",
            client_id=f"{settings.kafka.app_id}-ingest",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=MAX_POLL_RECORDS,
            max_partition_fetch_bytes=settings.kafka.fetch_partition_bytes,
            isolation_level="read_committed",
            session_timeout_ms=int(settings.kafka.session_timeout_s * 1000),
            heartbeat_interval_ms=int(settings.kafka.session_timeout_s * 1000 / 3),
        )
        # Ready before the consumer joins the group: its first rebalance calls back into _flush.
        self._offsets = ConsumerOffsets(self._consumer, asyncio.get_running_loop())
        self._committer = BatchCommitter(self._publisher, self._offsets)
        self._consumer.subscribe(list(settings.topics.raw_topics), listener=_FlushOnRevoke(self))
        await self._consumer.start()
        tune_for_streaming()
        log.info(
            "ingest started: topics=%s group=%s-ingest store=%s",
            ",".join(settings.topics.raw_topics),
            settings.kafka.app_id,
            self._publisher.storage.describe(),
        )

    async def on_stop(self) -> None:
        if self._consumer is not None:
            async with self._lock:
                await self._settle()
                await self._flush(self._ingestor.held())
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
                    topic, partition = tp.topic, tp.partition
                    records = [
                        RawRecord(topic, partition, message.offset, message.value, tuple(message.headers))
                        for message in messages
                    ]
                    dead.extend(self._ingestor.add_batch(records))
                RECORDS_EXPIRED.inc(self._ingestor.expired_dropped - expired_before)
                if await self._send_dead_letters(dead):
                    await self._publish_due()

    async def flush_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        """Publish and commit what is held for partitions being taken away, then forget them."""
        keys = {(tp.topic, tp.partition) for tp in revoked}
        async with self._lock:
            await self._settle()
            await self._flush([key for key in self._ingestor.held() if key in keys])
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
                    self._settings.topics.dlq_topic,
                    value=letter.record.value,
                    headers=dead_letter_headers(letter),
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
        log.warning("dead-lettered %d records", len(letters), extra={"records": len(letters)})
        return True

    async def _publish_due(self) -> None:
        """Hand the due batches to the committing thread, and go on consuming meanwhile.

        One hand-over is in flight at a time, so each partition's batches commit
        in offset order. When the worker holds its memory limit of rows, it waits
        for the hand-over in flight instead of reading more.
        """
        if self._in_flight is not None:
            if not self._in_flight.done() and not self._ingestor.over_memory_limit():
                return
            await self._settle()
        due = self._ingestor.due()
        if due:
            # Parquet encoding and the store write release the GIL: they overlap the next
            # polls. The consumer calls the protocol makes are marshalled back to this loop.
            flushes = [self._ingestor.take(key) for key in due]
            self._in_flight = asyncio.create_task(
                asyncio.to_thread(self._require_committer().commit_batches, flushes)
            )

    async def _settle(self) -> None:
        """Wait for the hand-over in flight and apply its outcomes here, where the ingestor lives."""
        if self._in_flight is None:
            return
        in_flight, self._in_flight = self._in_flight, None
        offsets = self._require_offsets()
        for outcome in await in_flight:
            outcome.apply(self._ingestor, offsets)

    async def _flush(self, keys: list[TopicPartitionKey]) -> None:
        """Publish and commit everything held for ``keys`` now (revoke, stop), waiting for it."""
        committer = self._require_committer()
        offsets = self._require_offsets()
        for key in keys:
            while key in self._ingestor.held():
                outcome = await asyncio.to_thread(committer.commit_batch, self._ingestor.take(key))
                outcome.apply(self._ingestor, offsets)
                if not isinstance(outcome, Committed):
                    break

    def _seek(self, tp: TopicPartition, offset: int) -> None:
        consumer = self._require_consumer()
        if tp in consumer.assignment():
            consumer.seek(tp, offset)

    def _require_offsets(self) -> ConsumerOffsets:
        if self._offsets is None:
            raise RuntimeError("ingest offsets used before the service started")
        return self._offsets

    def _require_committer(self) -> BatchCommitter:
        if self._committer is None:
            raise RuntimeError("ingest committer used before the service started")
        return self._committer

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
