"""Differential run: the classifier with its fast path against the full phonenumbers path.

:func:`run` classifies ``count`` generated party strings (:mod:`tests.support.number_inputs`)
with two :class:`NumberClassifier` per default region, one with the fast path
(:mod:`pipeline.numbers.plan`) and one without, and compares every result
(kind, value, region, line type). The work is cut into tasks of fixed seeds, so
a run gives the same inputs whatever the number of processes. It is the test
``tests/test_numbering_plan.py`` runs at 1,000,000 inputs and ``make
bench-classify`` at 10,000,000; each task also times both classifiers on its
inputs (first seen: every input is a new string to them), in CPU time of its
process, with phonenumbers' pattern cache on (see :func:`run`).
"""

from __future__ import annotations

import itertools
import multiprocessing
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

from phonenumbers import re_util

from pipeline.numbers.dialled import dialled_key
from pipeline.numbers.msisdn import NumberClassifier, NumberKind, PartyNumber
from pipeline.numbers.plan import UNDECIDED, NumberingPlan
from tests.support.number_inputs import party_strings

TASK_SIZE = 100_000
EXTENSION_DIGITS = (2, 5)
MISMATCHES_KEPT = 20


@dataclass
class Report:
    """What a differential run found."""

    inputs: int = 0
    mismatches: int = 0
    examples: list[tuple[str, str, PartyNumber, PartyNumber]] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)
    regions: set[str] = field(default_factory=set)
    decided: int = 0  # E.164 results whose dialled digits the fast path decides itself
    fast_ns: int = 0
    full_ns: int = 0

    def add(self, other: Report) -> None:
        self.inputs += other.inputs
        self.mismatches += other.mismatches
        self.examples += other.examples[: MISMATCHES_KEPT - len(self.examples)]
        self.kinds.update(other.kinds)
        self.regions |= other.regions
        self.decided += other.decided
        self.fast_ns += other.fast_ns
        self.full_ns += other.full_ns


def run_task(seed: int, task: int, size: int) -> Report:
    """Compare both classifiers on the ``size`` inputs of task ``task`` of ``seed``."""
    inputs = list(itertools.islice(party_strings(seed * 1_000_003 + task), size))
    report = Report(inputs=size)
    by_region: dict[str, list[str]] = {}
    for region, raw in inputs:
        by_region.setdefault(region, []).append(raw)
    for region, raws in sorted(by_region.items()):
        fast = NumberClassifier(region, EXTENSION_DIGITS)
        full = NumberClassifier(region, EXTENSION_DIGITS, fast_path=False)
        began = time.process_time_ns()
        fast_results = [fast.classify(raw) for raw in raws]
        report.fast_ns += time.process_time_ns() - began
        began = time.process_time_ns()
        full_results = [full.classify(raw) for raw in raws]
        report.full_ns += time.process_time_ns() - began
        plan = NumberingPlan(region)
        for raw, got, expected in zip(raws, fast_results, full_results, strict=True):
            report.kinds[expected.kind] += 1
            if expected.kind is NumberKind.E164 and expected.region is not None:
                report.regions.add(expected.region)
                report.decided += plan.decide(dialled_key(raw)) is not UNDECIDED
            if got != expected:
                report.mismatches += 1
                if len(report.examples) < MISMATCHES_KEPT:
                    report.examples.append((region, raw, got, expected))
    return report


def run(count: int, seed: int, processes: int = 2) -> Report:
    """Compare both classifiers on ``count`` generated inputs (a multiple of :data:`TASK_SIZE` or less)."""
    sizes = [min(TASK_SIZE, count - start) for start in range(0, count, TASK_SIZE)]
    report = Report()
    context = multiprocessing.get_context("spawn")
    # phonenumbers then keeps its compiled patterns instead of recompiling those
    # the re module's cache dropped: only faster, the same patterns either way.
    with ProcessPoolExecutor(processes, context, initializer=re_util.enable_pattern_cache) as pool:
        for part in pool.map(run_task, itertools.repeat(seed), range(len(sizes)), sizes):
            report.add(part)
    return report
