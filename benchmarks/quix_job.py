"""Baseline (d): the same job in Quix Streams, one record at a time.

Started by the throughput benchmark as ``python -m benchmarks.quix_job`` with
``BENCH_APP_ID``, ``BENCH_TOPIC``, ``BENCH_TARGET``, ``BENCH_OUT`` and the
``CDRPIPE_*`` settings of the run; it stops once ``BENCH_TARGET`` records are
written (see :mod:`benchmarks.record_job`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from quixstreams import Application

from benchmarks.record_job import RecordJob


def main() -> None:
    """Run the Quix Streams application until the target count is written."""
    out = Path(os.environ["BENCH_OUT"])
    broker = os.environ.get("CDRPIPE_BROKER", "kafka://127.0.0.1:9092").removeprefix("kafka://")
    app = Application(
        broker_address=broker,
        consumer_group=os.environ["BENCH_APP_ID"],
        auto_offset_reset="earliest",
        state_dir=str(out / "state"),
        loglevel="WARNING",
    )
    topic = app.topic(os.environ["BENCH_TOPIC"], value_deserializer="bytes")
    job = RecordJob(out, int(os.environ["BENCH_TARGET"]))

    def pseudonymise(value: bytes, key: Any, timestamp: int, headers: Any) -> None:
        del key, timestamp, headers
        if job.process(topic.name, (), value):
            app.stop()

    app.dataframe(topic).update(pseudonymise, metadata=True)
    app.run()


if __name__ == "__main__":
    main()
