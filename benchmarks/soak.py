"""Soak: ``BENCH_SOAK_COUNT`` records (default 10,000,000) through one worker (``make bench-soak``).

Produces the records once into a fresh topic, starts one ``cdrpipe worker``
and samples, every ``BENCH_SOAK_SAMPLE_S`` seconds (default 5), the records
its group has committed (offsets are committed only after the Parquet is
published) and the worker's resident memory from ``/proc``. It reports the
rate of each tenth of the run (each million records at the default count;
the moment a tenth is reached is interpolated between the two samples around
it) and the RSS over the run, and checks that the rate does not decay as the
store grows (ninth tenth against the second: the first holds the start-up,
the last the drain, where the last partial batches wait for their age flush
once the topic is empty) and that RSS stays flat (its peak over the second
half against the first).
Writes ``benchmarks/results/soak.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks.processes import bootstrap, free_port, produce, stop, worker_env
from benchmarks.throughput import REPO, RESULTS
from pipeline.config.settings import load_settings
from pipeline.kafka.lag import ingest_lag
from pipeline.keys.keyring import init_keyring

SEGMENTS = 10
"""The rate is reported per tenth of the run: per million records at the default count."""


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc")


def soak(count: int, partitions: int, sample_s: float) -> dict[str, object]:
    """Run the soak; return its samples and verdicts."""
    work = Path(tempfile.mkdtemp(prefix="cdrpipe-soak-"))
    topic = f"soak.raw.{uuid.uuid4().hex[:8]}"
    keyring = work / "keyring.json"
    init_keyring(keyring)
    print(f"producing {count:,} CDRs into {topic} ...", flush=True)
    asyncio.run(produce(topic, count, partitions))
    base = {key: value for key, value in os.environ.items() if not key.startswith("CDRPIPE_")}
    base.update({"CDRPIPE_BROKER": f"kafka://{bootstrap()}", "CDRPIPE_KEYRING": str(keyring),
                 "CDRPIPE_FLUSH_SECONDS": "2", "CDRPIPE_WEB_PORT": str(free_port())})  # fmt: skip
    env = worker_env(base, f"soak-{uuid.uuid4().hex[:8]}", work, topic)
    settings = load_settings(env)
    samples: list[tuple[float, int, float]] = []
    began = time.perf_counter()
    with (work / "worker.log").open("wb") as log:
        worker = subprocess.Popen([sys.executable, "-m", "pipeline", "worker", "--loglevel", "warn"],
                                  env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        done = 0
        while done < count:
            time.sleep(sample_s)
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited; see {work}/worker.log")
            try:
                done = count - asyncio.run(ingest_lag(settings))
            except LookupError:
                done = 0
            samples.append((time.perf_counter() - began, done, _rss_mib(worker.pid)))
            print(
                f"  {samples[-1][0]:7.0f} s {done:>12,} committed  RSS {samples[-1][2]:6.0f} MiB", flush=True
            )
    finally:
        stop(worker)
    return _verdicts(samples, count)


def _verdicts(samples: list[tuple[float, int, float]], count: int) -> dict[str, object]:
    crossings = [_crossing(samples, count * tenth // SEGMENTS) for tenth in range(SEGMENTS + 1)]
    rates = [(count // SEGMENTS) / (crossings[tenth + 1] - crossings[tenth]) for tenth in range(SEGMENTS)]
    half = len(samples) // 2
    first_half = max(sample[2] for sample in samples[:half]) if half else float("nan")
    second_half = max(sample[2] for sample in samples[half:])
    return {
        "records": count,
        "rate_per_tenth": [round(rate) for rate in rates],
        "ninth_vs_second_tenth": round(rates[-2] / rates[1], 3),
        "peak_rss_mib": round(max(sample[2] for sample in samples)),
        "rss_second_half_vs_first": round(second_half / first_half, 3),
        "samples": [{"s": round(s, 1), "committed": done, "rss_mib": round(rss)} for s, done, rss in samples],
    }


def _crossing(samples: list[tuple[float, int, float]], committed: int) -> float:
    """When the committed count reached ``committed``, interpolated between the two samples around it."""
    earlier = (0.0, 0)
    for moment, done, _ in samples:
        if done >= committed:
            if done == earlier[1]:
                return moment
            return earlier[0] + (moment - earlier[0]) * (committed - earlier[1]) / (done - earlier[1])
        if done > earlier[1]:
            earlier = (moment, done)
    raise ValueError(f"no sample reached {committed} committed records")


def main() -> None:
    count = int(os.environ.get("BENCH_SOAK_COUNT", "10000000"))
    report = soak(
        count, int(os.environ.get("BENCH_PARTITIONS", "4")), float(os.environ.get("BENCH_SOAK_SAMPLE_S", "5"))
    )
    print(f"records/s per tenth of the run: {report['rate_per_tenth']}")
    print(f"ninth / second tenth: {report['ninth_vs_second_tenth']}  (goal: no decay, >= 0.9)")
    print(f"peak RSS {report['peak_rss_mib']} MiB (goal <= 512), second half / first half "
          f"{report['rss_second_half_vs_first']} (goal: flat, <= 1.1)")  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
