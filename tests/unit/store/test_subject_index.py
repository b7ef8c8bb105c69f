"""The per-file subject index: never a miss, few false positives."""

from __future__ import annotations

import secrets

from pipeline.store import subject_index


def test_subject_index_never_misses_and_rarely_lies() -> None:
    present = [secrets.token_hex(16) for _ in range(5_000)]
    index = subject_index.build(present)
    assert all(subject_index.might_contain(index, pseudonym) for pseudonym in present)
    absent = [secrets.token_hex(16) for _ in range(20_000)]
    false_positives = sum(subject_index.might_contain(index, pseudonym) for pseudonym in absent)
    assert false_positives < 0.01 * len(absent)
