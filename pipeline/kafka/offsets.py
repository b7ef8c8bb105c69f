"""The consumer group's offsets as the commit protocol needs them (see pipeline.sink.outcomes.Offsets)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import OffsetAndMetadata

from pipeline.sink.batch import TopicPartitionKey
from pipeline.sink.outcomes import OffsetsUnavailableError

T = TypeVar("T")


class ConsumerOffsets:
    """:class:`~pipeline.sink.outcomes.Offsets` of an aiokafka consumer.

    aiokafka is not thread-safe: ``committed`` and ``commit`` (called from the
    committing thread) run on the consumer's event loop while the thread waits;
    ``seek`` is called on the loop.
    """

    def __init__(self, consumer: AIOKafkaConsumer, loop: asyncio.AbstractEventLoop) -> None:
        self._consumer = consumer
        self._loop = loop

    def committed(self, key: TopicPartitionKey) -> int | None:
        try:
            offset: int | None = self._run(self._consumer.committed(TopicPartition(*key)))
        except KafkaError as exc:
            raise OffsetsUnavailableError(str(exc)) from exc
        return offset

    def commit(self, key: TopicPartitionKey, offset: int) -> bool:
        try:
            self._run(self._consumer.commit({TopicPartition(*key): OffsetAndMetadata(offset, "")}))
        except (CommitFailedError, IllegalStateError):
            return False
        return True

    def seek(self, key: TopicPartitionKey, offset: int) -> None:
        # Called where outcomes are applied: on the loop itself, so no marshalling.
        tp = TopicPartition(*key)
        if tp in self._consumer.assignment():
            self._consumer.seek(tp, offset)

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()
