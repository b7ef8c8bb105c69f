"""Raw records as the ingest stage reads them, the decoder it reads them with, and dead letters.

Contract: a :class:`DeadLetter`'s ``message`` never contains input values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from pipeline.record import CanonicalCdr, RejectReason


class RecordDecoder(Protocol):
    """Chooses a message's format and decodes it (see ``FormatSelector``).

    Both methods raise only :class:`~pipeline.record.RecordRejectedError`.
    """

    def choose(self, topic: str, headers: Sequence[tuple[str, bytes]], payload: bytes) -> str: ...

    def decode_as(self, name: str, payload: bytes) -> CanonicalCdr: ...


class RawRecord(NamedTuple):
    """The parts of a Kafka message the ingest path uses.

    A named tuple, not a frozen dataclass: one is made per consumed message,
    and a tuple is built in C (a frozen dataclass sets each field in Python).
    """

    topic: str
    partition: int
    offset: int
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record rejected with a reason; ``message`` never contains input values."""

    record: RawRecord
    reason: RejectReason
    message: str
    format_name: str
