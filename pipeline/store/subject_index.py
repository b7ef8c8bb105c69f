"""A per-file subject index in the Parquet footer: which pseudonyms a file may hold.

Pseudonyms are HMAC outputs, uniformly random, so their own bits serve as the
positions of a Bloom filter (4 positions, 16 bits per distinct pseudonym,
about 0.25% false positives). The filter is stored base64-encoded in the
footer's key-value metadata under ``cdrpipe.subjects``; reading a footer is a
small ranged read, so finding a subject's files never reads their data.

Contract: :func:`might_contain` is never False for a pseudonym that the file
holds in any pseudonym column; a file without an index might contain anything.
"""

from __future__ import annotations

import base64
import sys
from array import array
from collections.abc import Iterable

METADATA_KEY = b"cdrpipe.subjects"
BITS_PER_ENTRY = 16
MIN_BITS = 1024


def _positions(pseudonyms: list[str], bits: int) -> array[int]:
    """Bit positions of each pseudonym: its four big-endian 32-bit words modulo ``bits`` (a power of 2)."""
    words = array("I", bytes.fromhex("".join(pseudonyms)))
    if sys.byteorder == "little":
        words.byteswap()
    mask = bits - 1
    return array("I", (word & mask for word in words))


def build(pseudonyms: Iterable[str]) -> bytes:
    """The index of ``pseudonyms`` (32-hex-character strings), base64-encoded."""
    distinct = list(set(pseudonyms))
    bits = MIN_BITS
    while bits < len(distinct) * BITS_PER_ENTRY:
        bits *= 2
    bitset = bytearray(bits // 8)
    for position in _positions(distinct, bits):
        bitset[position >> 3] |= 1 << (position & 7)
    return base64.b64encode(bytes(bitset))


def might_contain(index: bytes, pseudonym: str) -> bool:
    """False only if the indexed file certainly holds no row with ``pseudonym``."""
    return might_contain_any(index, [pseudonym])


def might_contain_any(index: bytes, pseudonyms: Iterable[str]) -> bool:
    """False only if the indexed file certainly holds no row with any of ``pseudonyms``."""
    bitset = base64.b64decode(index)
    bits = len(bitset) * 8
    return any(
        all(bitset[position >> 3] & (1 << (position & 7)) for position in _positions([pseudonym], bits))
        for pseudonym in pseudonyms
    )
