"""Pseudonym hot path: cost per value against OpenSSL's own HMAC-SHA-256, in one run.

Prints and writes (``benchmarks/results/pseudonym_hot_path.json``) the cost per
value of:

* ``openssl``: ``openssl speed -hmac sha256 -bytes 16`` (the baseline);
* ``hmac_one_shot``: ``hmac.digest`` per value (what a naive implementation does);
* ``pseudonym``: :meth:`Pseudonymizer.pseudonym` (copied HMAC state + encoding);
* ``party_miss``: classify + normalise + pseudonymise a number never seen;
* ``party_respelled``: a new spelling of a number the classifier has seen
  (no parse: the remembered number is found from the digits);
* ``party_hit``: the same raw string again (bounded-cache hit);

and each as a ratio to ``openssl``. Run: ``make bench`` or
``python -m benchmarks.pseudonym_hot_path``.
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from pipeline.keys.keyring import Key
from pipeline.keys.pseudonym import Domain, PartyPseudonymizer, Pseudonymizer, derive_subkey
from pipeline.numbers.msisdn import NumberClassifier

RESULTS = Path(__file__).resolve().parent / "results"
VALUES = 200_000


def openssl_ns_per_hmac() -> float:
    """Nanoseconds per 16-byte HMAC-SHA-256 as measured by ``openssl speed``."""
    output = subprocess.run(
        ["openssl", "speed", "-seconds", "2", "-bytes", "16", "-hmac", "sha256"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"^hmac\(sha256\)\s+([\d.]+)k", output, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"unexpected openssl speed output:\n{output}")
    bytes_per_second = float(match.group(1)) * 1000
    return 1e9 / (bytes_per_second / 16)


PARTY = ("bench", False)  # tenant, and whether the party can be a service number (a caller cannot)


def ns_per_call(
    function: Callable[..., object], values: list[str], passes: int = 3, extra: tuple[object, ...] = ()
) -> float:
    """Best of ``passes`` passes over ``values`` (each called with ``extra`` after it), in ns per call."""
    best = float("inf")
    for _ in range(passes):
        began = time.perf_counter_ns()
        for value in values:
            function(value, *extra)
        best = min(best, (time.perf_counter_ns() - began) / len(values))
    return best


def main() -> None:
    key = Key("k1", secrets.token_bytes(32), "bench")
    numbers = [f"+32475{n:06d}" for n in range(VALUES)]
    spellings = [f"0475 {n // 10000:02d} {n // 100 % 100:02d} {n % 100:02d}" for n in range(VALUES)]
    subkey = derive_subkey(key.secret, Domain.SUBSCRIBER)
    pseudonymizer = Pseudonymizer(key)

    def one_shot(value: str) -> bytes:
        return hmac.digest(subkey, value.encode(), "sha256")

    def pseudonym(value: str) -> str:
        return pseudonymizer.pseudonym(Domain.SUBSCRIBER, value)

    sample = VALUES // 10

    def fresh_parties() -> PartyPseudonymizer:
        return PartyPseudonymizer(NumberClassifier("BE", (2, 5)), pseudonymizer, cache_size=16)

    respelled_parties = fresh_parties()
    for number in numbers[:sample]:
        respelled_parties.columns(number, *PARTY)
    hit_parties = PartyPseudonymizer(NumberClassifier("BE", (2, 5)), pseudonymizer, cache_size=VALUES)
    for spelling in spellings:
        hit_parties.columns(spelling, *PARTY)

    baseline = openssl_ns_per_hmac()
    measured = {
        "openssl": baseline,
        "hmac_one_shot": ns_per_call(one_shot, numbers),
        "pseudonym": ns_per_call(pseudonym, numbers),
        "party_miss": min(
            ns_per_call(fresh_parties().columns, spellings[:sample], 1, PARTY) for _ in range(3)
        ),
        "party_respelled": ns_per_call(respelled_parties.columns, spellings[:sample], extra=PARTY),
        "party_hit": ns_per_call(hit_parties.columns, spellings, extra=PARTY),
    }
    report = {
        name: {"ns_per_value": round(ns, 1), "ratio_to_openssl": round(ns / baseline, 2)}
        for name, ns in measured.items()
    }
    for name, row in report.items():
        print(f"{name:14s} {row['ns_per_value']:10.1f} ns/value  {row['ratio_to_openssl']:6.2f}x openssl")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pseudonym_hot_path.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
