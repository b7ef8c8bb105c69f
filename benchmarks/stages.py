"""In-process cost of each ingest stage, in µs per record (``make bench-stages``).

No broker: ``BENCH_STAGE_COUNT`` demo CDRs (default 200,000; about 20% distinct
subscribers) are encoded once, then each stage is timed on them with the
process's CPU clock, best of three:

* ``decode``: the canonical JSON decoder with its validation;
* ``classify_first_seen`` / ``classify_cached``: number classification of a
  number never seen by the classifier, and of a number seen before (its columns cached);
* ``pseudonymise``: one keyed HMAC pseudonym;
* ``build_rows``: decoded CDRs to Arrow rows, numbers already known;
* ``encode_parquet``: Arrow rows to Parquet bytes (zstd, bloom filters, index);
* ``ingest_known``: the whole in-process path of a record whose numbers are
  known (choose format, decode, check, build rows, split by date, encode);
* ``ingest_cold``: the same path from empty caches, so each number is
  classified and pseudonymised when the demo data first brings it (what a
  worker meets: about a third of the records bring a number not seen before).

Prints the table and writes ``benchmarks/results/stages.json``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from pipeline.cli import demo
from pipeline.formats import canonical_json
from pipeline.formats.selection import FormatSelector, builtin_decoders
from pipeline.ingest.ingestor import Ingestor
from pipeline.ingest.records import RawRecord
from pipeline.ingest.rows import build_rows
from pipeline.keys.keyring import Key
from pipeline.keys.pseudonym import Domain, PartyPseudonymizer, Pseudonymizer
from pipeline.numbers.msisdn import NumberClassifier
from pipeline.store.parquet import encode
from tests.support.samples import decode_context

RESULTS = Path(__file__).resolve().parent / "results"
CHUNK = 5_000


def _best_us_per_item(items: int, run: Callable[[], object], repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        began = time.process_time()
        run()
        best = min(best, time.process_time() - began)
    return best / items * 1e6


def measure(count: int) -> dict[str, float]:
    """µs per record of every stage over ``count`` demo CDRs."""
    cdrs = list(demo.generate(count, seed=5))
    payloads = [demo.encode(cdr) for cdr in cdrs]
    key = Key("k1", b"b" * 32, "2026-01-01")
    parties = PartyPseudonymizer(NumberClassifier("BE", (2, 5)), Pseudonymizer(key), 262_144)
    context = decode_context()
    numbers = sorted({cdr.caller for cdr in cdrs})
    results: dict[str, float] = {}
    results["decode"] = _best_us_per_item(
        count, lambda: [canonical_json.decode(payload, context) for payload in payloads]
    )
    fresh = NumberClassifier("BE", (2, 5))  # has seen none of the numbers: each one is first seen once
    results["classify_first_seen"] = _best_us_per_item(
        len(numbers), lambda: [fresh.classify(number) for number in numbers], repeats=1
    )
    parties.cache_clear()
    tenant = "contact-centre"  # a subscriber number's columns do not depend on it
    for number in numbers:
        parties.columns(number, tenant)
    results["classify_cached"] = _best_us_per_item(
        len(numbers), lambda: [parties.columns(n, tenant) for n in numbers]
    )
    pseudonymizer = Pseudonymizer(key)
    results["pseudonymise"] = _best_us_per_item(
        len(numbers), lambda: [pseudonymizer.pseudonym(Domain.SUBSCRIBER, number) for number in numbers]
    )
    build_rows(cdrs, parties)  # every number known from here on
    results["build_rows"] = _best_us_per_item(
        count, lambda: [build_rows(cdrs[start : start + CHUNK], parties) for start in range(0, count, CHUNK)]
    )
    table = build_rows(cdrs, parties)
    results["encode_parquet"] = _best_us_per_item(count, lambda: encode(table, [parties.key_ref]))
    records = [RawRecord("bench", 0, offset, payload) for offset, payload in enumerate(payloads)]

    def ingest(with_parties: PartyPseudonymizer) -> None:
        selector = FormatSelector(builtin_decoders({}), {}, context)
        ingestor = Ingestor(selector, with_parties, 10**9, 3600.0)
        for start in range(0, count, CHUNK):
            ingestor.add_batch(records[start : start + CHUNK])
        for pending in ingestor.take(("bench", 0)).files:
            encode(pending.table, pending.keys)

    results["ingest_known"] = _best_us_per_item(count, lambda: ingest(parties))
    results["ingest_cold"] = _best_us_per_item(
        count, lambda: ingest(PartyPseudonymizer(NumberClassifier("BE", (2, 5)), Pseudonymizer(key), 262_144))
    )
    return results


def main() -> None:
    count = int(os.environ.get("BENCH_STAGE_COUNT", "200000"))
    results = measure(count)
    for stage, micros in results.items():
        print(f"{stage:20s} {micros:8.2f} µs")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "stages.json").write_text(json.dumps({"records": count, "us_per_record": results}, indent=2))


if __name__ == "__main__":
    main()
