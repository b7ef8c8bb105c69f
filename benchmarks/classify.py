"""Number classification: µs per record in process, and the 10,000,000-input differential run.

Prints and writes (``benchmarks/results/classify.json``), in one run:

* ``compile``: seconds to compile the default region's rules, then every calling code's;
* the in-process stages, in µs per record (CPU time of this process, best of 3
  passes, garbage collector paused as ``timeit`` does), on 100,000 distinct
  numbers spelled as a Belgian operator's CDRs spell them (national, ``+32``,
  ``0032``, foreign, ``tel:``/``sip:``):

  - ``classify_first_seen_fast`` / ``classify_first_seen_full``: a number the
    classifier has never seen, with and without the fast path
    (``classify_first_seen_fast_gc_on``: with the collector running);
  - ``classify_respelled``: a known number in a new spelling (no parse either way);
  - ``classify_cached``: a party string seen before (the party cache in front of the classifier);

* the differential run (``tests/support/classify_differential.py``) on
  ``BENCH_CLASSIFY_INPUTS`` (default 10,000,000) inputs over both cores:
  mismatches (must be 0), and µs of CPU per input with and without the fast path.

Run: ``make bench-classify`` or ``python -m benchmarks.classify``.
"""

from __future__ import annotations

import gc
import json
import os
import random
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from pipeline.keys.keyring import Key
from pipeline.keys.pseudonym import PartyPseudonymizer, Pseudonymizer
from pipeline.numbers.msisdn import NumberClassifier, NumberKind
from pipeline.numbers.plan import NumberingPlan
from pipeline.numbers.types import CALLING_CODES
from tests.support.classify_differential import run

RESULTS = Path(__file__).resolve().parent / "results"
STAGE_NUMBERS = 100_000
REGION, EXTENSIONS = "BE", (2, 5)


def cdr_spellings(count: int, seed: int) -> tuple[list[str], list[str]]:
    """``count`` distinct valid numbers as CDRs spell them, and the same numbers spelled another way."""
    rng = random.Random(seed)
    check = NumberClassifier(REGION, EXTENSIONS, fast_path=False)
    first: list[str] = []
    other: list[str] = []
    while len(first) < count:
        subscriber = f"{rng.randrange(10**6):06d}"
        kind = len(first) % 8
        if kind < 3:  # Belgian mobile
            e164 = f"+324{rng.choice('6789')}{rng.randrange(10)}{subscriber}"
            spelled = f"0{e164[3:6]} {subscriber[:2]} {subscriber[2:4]} {subscriber[4:]}"
        elif kind == 3:  # Belgian fixed line
            e164 = f"+32{rng.randrange(2, 10)}{rng.randrange(10)}{subscriber}"
            spelled = f"0{e164[3:]}"
        elif kind == 4:
            e164 = f"+336{rng.randrange(10)}{subscriber}{rng.randrange(10)}"
            spelled = f"0033{e164[3:]}"
        elif kind == 5:
            e164 = f"+4915{rng.choice('1257')}{subscriber}{rng.randrange(10, 100)}"
            spelled = f"tel:{e164}"
        elif kind == 6:
            e164 = f"+1{rng.choice(['650', '212', '416'])}{rng.randrange(200, 1000)}{subscriber[:4]}"
            spelled = f"sip:{e164}@sbc.example;user=phone"
        else:
            e164 = f"+447{rng.randrange(400, 1000)}{subscriber}"
            spelled = e164
        number = check.classify(spelled)
        if number.kind is NumberKind.E164 and number.value == e164 and e164 not in other:
            first.append(spelled)
            other.append(e164)
    return first, other


Stage = Callable[[], Callable[[str], object]]


def us_per_call(make: Stage, values: list[str], collect: bool = False) -> float:
    """Best of 3 passes of a function from ``make()`` over ``values``, in µs of CPU per call.

    Like ``timeit``, the cyclic garbage collector is paused while a pass runs,
    unless ``collect``: its cost depends on everything else in the process
    (GC tuning is measured apart), not on the stage.
    """
    best = float("inf")
    for _ in range(3):
        function = make()
        gc.collect()
        if not collect:
            gc.disable()
        try:
            began = time.process_time_ns()
            for value in values:
                function(value)
            best = min(best, (time.process_time_ns() - began) / len(values) / 1000)
        finally:
            gc.enable()
    return best


def compile_seconds() -> dict[str, float]:
    """Seconds to compile the default region's rules, then every other calling code's."""
    began = time.perf_counter()
    NumberingPlan(REGION)
    default = time.perf_counter() - began
    began = time.perf_counter()
    for code in CALLING_CODES.values():
        _ = code.regions
    return {
        "default_region_s": round(default, 4),
        "all_calling_codes_s": round(time.perf_counter() - began, 3),
    }


def stages() -> dict[str, float]:
    """µs per record of each classification stage."""
    first, other = cdr_spellings(STAGE_NUMBERS, seed=14)

    def first_seen(fast_path: bool) -> Stage:
        return lambda: NumberClassifier(REGION, EXTENSIONS, fast_path=fast_path).classify

    def respelled() -> Callable[[str], object]:
        classifier = NumberClassifier(REGION, EXTENSIONS)
        for raw in first:
            classifier.classify(raw)
        return classifier.classify

    key = Key("k1", secrets.token_bytes(32), "bench")
    parties = PartyPseudonymizer(NumberClassifier(REGION, EXTENSIONS), Pseudonymizer(key), 2**18)
    return {
        "classify_first_seen_fast": us_per_call(first_seen(fast_path=True), first),
        "classify_first_seen_fast_gc_on": us_per_call(first_seen(fast_path=True), first, collect=True),
        "classify_first_seen_full": us_per_call(first_seen(fast_path=False), first),
        "classify_respelled": us_per_call(respelled, other),
        "classify_cached": us_per_call(lambda: parties.columns, first),  # passes 2 and 3 hit the cache
    }


def main() -> None:
    report: dict[str, object] = {"compile": compile_seconds()}
    measured = stages()
    report["stages_us_per_record"] = {name: round(us, 2) for name, us in measured.items()}
    report["first_seen_full_over_fast"] = round(
        measured["classify_first_seen_full"] / measured["classify_first_seen_fast"], 1
    )
    print(json.dumps(report, indent=2), flush=True)
    inputs = int(os.environ.get("BENCH_CLASSIFY_INPUTS", "10000000"))
    began = time.perf_counter()
    differential = run(inputs, seed=int(os.environ.get("BENCH_CLASSIFY_SEED", "2026")))
    report["differential"] = {
        "inputs": differential.inputs,
        "mismatches": differential.mismatches,
        "mismatch_examples": [
            f"{region} {raw!r}: {got} != {want}" for region, raw, got, want in differential.examples
        ],
        "kinds": dict(differential.kinds),
        "regions": len(differential.regions),
        "e164_decided_by_fast_path": round(differential.decided / differential.kinds[NumberKind.E164], 4),
        "fast_us_per_input": round(differential.fast_ns / differential.inputs / 1000, 2),
        "full_us_per_input": round(differential.full_ns / differential.inputs / 1000, 2),
        "wall_s": round(time.perf_counter() - began, 1),
    }
    print(json.dumps(report["differential"], indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "classify.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
