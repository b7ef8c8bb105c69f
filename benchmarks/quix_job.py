"""Baseline (d): the same job in Quix Streams, one record at a time.

Started by the throughput benchmark as ``python -m benchmarks.quix_job`` with
``BENCH_APP_ID``, ``BENCH_TOPIC``, ``BENCH_TARGET``, ``BENCH_OUT`` and the
``CDRPIPE_*`` settings of the run; it stops once ``BENCH_TARGET`` records are
written (see :mod:`benchmarks.record_job`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from pathlib import Path

from quixstreams import Application

from benchmarks.record_job import RecordJob


def run_quix(make_job: Callable[[Path, int], Callable[[bytes], bool]]) -> None:
    """Run a Quix Streams application over ``BENCH_TOPIC`` until the job says its target is written.

    ``make_job(out_dir, target)`` returns the per-record function (True once done).
    """
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
    process = make_job(out, int(os.environ["BENCH_TARGET"]))

    def handle(value: bytes) -> None:
        if process(value):
            app.stop()

    app.dataframe(topic).update(handle)
    app.run()


def main() -> None:
    """Run cdrpipe's per-record code in Quix Streams until the target count is written."""
    run_quix(lambda out, target: partial(RecordJob(out, target).process, os.environ["BENCH_TOPIC"], ()))


if __name__ == "__main__":
    main()
