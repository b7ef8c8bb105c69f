"""Draw docs/calls-per-queue.png from a store: inbound calls per day and queue, and the ASR.

Run: ``make chart`` (after ``make run``), or
``python docs/make_chart.py [STORE] [OUT]`` (defaults: ./data/store, docs/calls-per-queue.png).
"""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb
import matplotlib.pyplot as plt


def main() -> None:
    store = sys.argv[1] if len(sys.argv) > 1 else "./data/store"
    out = Path(sys.argv[2] if len(sys.argv) > 2 else "docs/calls-per-queue.png")
    cdr = f"read_parquet('{store}/cdr/*/*.parquet', hive_partitioning = true)"
    per_queue = duckdb.sql(
        f"SELECT call_date, queue, count(*) AS calls FROM {cdr} WHERE direction = 'inbound' "
        "GROUP BY ALL ORDER BY call_date, queue"
    ).fetchall()
    asr = duckdb.sql(
        f"SELECT call_date, count(*) FILTER (WHERE disposition = 'answered') / count(*) FROM {cdr} "
        "GROUP BY ALL ORDER BY call_date"
    ).fetchall()
    days = [row[0] for row in asr]
    queues = sorted({row[1] for row in per_queue})
    calls = {(row[0], row[1]): row[2] for row in per_queue}
    figure, axis = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / len(queues)
    for index, queue in enumerate(queues):
        positions = [day_index + index * width for day_index in range(len(days))]
        axis.bar(positions, [calls.get((day, queue), 0) for day in days], width, label=queue)
    axis.set_xticks([day_index + 0.4 - width / 2 for day_index in range(len(days))])
    axis.set_xticklabels([day.isoformat() for day in days])
    axis.set_ylabel("inbound calls")
    axis.set_title("Demo contact centre: inbound calls per day and queue, answer-seizure ratio")
    ratio_axis = axis.twinx()
    ratio_axis.plot([day_index + 0.4 - width / 2 for day_index in range(len(days))],
                    [row[1] for row in asr], color="black", marker="o", label="ASR (all calls)")  # fmt: skip
    ratio_axis.set_ylim(0, 1)
    ratio_axis.set_ylabel("answer-seizure ratio")
    axis.legend(loc="upper left", fontsize="small")
    ratio_axis.legend(loc="upper right", fontsize="small")
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
