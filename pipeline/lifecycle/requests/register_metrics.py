"""Prometheus view of the register of subject requests: open by kind, overdue, oldest open age."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pipeline.lifecycle.requests.register import KINDS, RequestRecord
from pipeline.observability.metrics import REGISTRY


class RequestRegisterMetrics(Collector):
    """Open, overdue and oldest open subject requests, from the last reading of the register.

    Nothing is exposed until :meth:`update` has been given a reading (a worker
    that does not own the lifecycle path never claims a count it did not read).
    Overdue and age are computed at scrape time, so they stay right between readings.
    """

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._clock = clock
        self._open: list[RequestRecord] | None = None

    def update(self, records: list[RequestRecord]) -> None:
        """Remember the open requests of a fresh reading of the register."""
        self._open = [record for record in records if record.status == "open"]

    def forget(self) -> None:
        """Stop exposing the register (this worker no longer owns the lifecycle path)."""
        self._open = None

    def collect(self) -> Iterator[Metric]:
        if self._open is None:
            return
        now = self._clock()
        by_kind = GaugeMetricFamily("cdrpipe_requests_open", "Open subject requests", labels=["kind"])
        for kind in KINDS:
            by_kind.add_metric([kind], sum(record.kind == kind for record in self._open))
        yield by_kind
        overdue = sum(record.overdue(now.date()) for record in self._open)
        yield GaugeMetricFamily("cdrpipe_requests_overdue", "Open requests past their due date", overdue)
        oldest = min((record.received_at for record in self._open), default=now)
        yield GaugeMetricFamily(
            "cdrpipe_requests_oldest_open_age_seconds",
            "Age of the oldest open request (0 when none is open)",
            (now - oldest).total_seconds(),
        )


REQUEST_REGISTER = RequestRegisterMetrics()
REGISTRY.register(REQUEST_REGISTER)
