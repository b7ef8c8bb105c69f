"""Baseline (c): the idiomatic Faust agent, one event at a time.

Started by the throughput benchmark as ``python -m benchmarks.faust_agent worker``
with ``BENCH_APP_ID``, ``BENCH_TOPIC``, ``BENCH_TARGET``, ``BENCH_OUT`` and the
``CDRPIPE_*`` settings of the run. It stops taking work once ``BENCH_TARGET``
records are written (see :mod:`benchmarks.record_job`).
"""

from __future__ import annotations

import os
from pathlib import Path

import faust

from benchmarks.record_job import RecordJob

app = faust.App(
    os.environ.get("BENCH_APP_ID", "bench-faust"),
    broker=os.environ.get("CDRPIPE_BROKER", "kafka://127.0.0.1:9092"),
    value_serializer="raw",
    web_enabled=False,
    datadir=os.environ.get("BENCH_OUT", "."),
)
topic = app.topic(os.environ.get("BENCH_TOPIC", "bench.raw"), value_type=bytes, value_serializer="raw")
job = RecordJob(Path(os.environ.get("BENCH_OUT", ".")), int(os.environ.get("BENCH_TARGET", "0")))


@app.agent(topic)
async def pseudonymise(stream: faust.StreamT[bytes]) -> None:
    """Decode, pseudonymise and buffer each CDR as it comes."""
    async for value in stream:
        job.process(topic.get_topic_name(), (), value)


if __name__ == "__main__":
    app.main()
