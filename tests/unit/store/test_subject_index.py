"""The per-file subject index: never a miss, few false positives."""

from __future__ import annotations

import random
import secrets

from pipeline.store import subject_index


def test_subject_index_never_misses_and_rarely_lies() -> None:
    present = [secrets.token_hex(16) for _ in range(5_000)]
    index = subject_index.build(present)
    assert all(subject_index.might_contain(index, pseudonym) for pseudonym in present)
    absent = [secrets.token_hex(16) for _ in range(20_000)]
    false_positives = sum(subject_index.might_contain(index, pseudonym) for pseudonym in absent)
    assert false_positives < 0.01 * len(absent)


def test_a_probe_tests_exactly_the_four_bits_of_each_pseudonym() -> None:
    # The reference: bit p of a bit set is bit p & 7 of byte p >> 3, p being each of the
    # pseudonym's four big-endian 32-bit words modulo the bit set's size.
    rng = random.Random(11)
    bitset = bytes(rng.getrandbits(8) & rng.getrandbits(8) for _ in range(256))  # about a quarter set
    pseudonyms = [f"{rng.getrandbits(128):032x}" for _ in range(3_000)]

    def reference(pseudonym: str) -> bool:
        words = [int(pseudonym[start : start + 8], 16) % (len(bitset) * 8) for start in range(0, 32, 8)]
        return all(bitset[word >> 3] & (1 << (word & 7)) for word in words)

    answers = [subject_index.Probe([pseudonym]).might_hold(bitset) for pseudonym in pseudonyms]
    assert answers == [reference(pseudonym) for pseudonym in pseudonyms]
    assert 0 < sum(answers) < len(answers)
    assert subject_index.Probe(pseudonyms[:2]).might_hold(bitset) == any(answers[:2])
