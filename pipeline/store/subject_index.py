"""A per-file subject index in the Parquet footer: which pseudonyms a file may hold.

Pseudonyms are HMAC outputs, uniformly random, so their own bits serve as the
positions of a Bloom filter (4 positions, 16 bits per distinct pseudonym,
about 0.25% false positives). The filter is stored base64-encoded in the
footer's key-value metadata under ``cdrpipe.subjects``; reading a footer is a
small ranged read, so finding a subject's files never reads their data.

Contract: :func:`might_contain` and :meth:`Probe.might_hold` are never False
for a pseudonym that the file holds in any pseudonym column; a file without an
index might contain anything. A :class:`Probe` tests many files' indexes for
the same pseudonyms: it computes their bit positions once per index size and
reads only those bytes of each index (a search probes every file of the store).
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
    return Probe(pseudonyms).might_hold(base64.b64decode(index))


def decode(index: bytes) -> bytes:
    """The bit set of an index as stored in a footer (base64), as :meth:`Probe.might_hold` takes it."""
    return base64.b64decode(index)


class Probe:
    """Tests bit sets (decoded indexes) for a fixed list of pseudonyms."""

    def __init__(self, pseudonyms: Iterable[str]) -> None:
        self._pseudonyms = list(dict.fromkeys(pseudonyms))
        self._masks: dict[int, list[tuple[tuple[int, int], ...]]] = {}

    def _masks_for(self, size: int) -> list[tuple[tuple[int, int], ...]]:
        """Per pseudonym, the (byte, bit mask) pairs of its positions in a bit set of ``size`` bytes."""
        masks = self._masks.get(size)
        if masks is None:
            masks = []
            for pseudonym in self._pseudonyms:
                positions = _positions([pseudonym], size * 8)
                masks.append(tuple((position >> 3, 1 << (position & 7)) for position in positions))
            self._masks[size] = masks
        return masks

    def might_hold(self, bitset: bytes) -> bool:
        """False only if the file whose index is ``bitset`` certainly holds none of the pseudonyms."""
        if not bitset:
            return True  # not an index this module built: it rules nothing out
        return any(all(bitset[byte] & bit for byte, bit in pairs) for pairs in self._masks_for(len(bitset)))
