"""Exact near-neighbour search on 64-bit fingerprints by multi-index hashing (Norouzi, Punjani & Fleet, "Fast exact
search in Hamming space with multi-index hashing", 2012/2014).

A fingerprint is split into three substrings of 21, 21 and 22 bits, each stored in its own indexed column. Two
codes within ``3t + 2`` bits of each other agree within ``t`` bits on at least one substring (pigeonhole), so
probing every substring at distances 0, 1, …, t through the ordinary indexes finds every code within ``3t + 2``
bits; the candidates are then checked exactly. The search goes nearest-first: stage t probes the substrings at
exactly distance t, and it stops as soon as the best code found is within ``3t + 2`` bits — nothing unseen can be
nearer. For aipic's radius (8 bits) stage 2 is the last: at most 1 + 21 + 210 (or 1 + 22 + 231) values per
substring. Perceptual hashes of real pictures cluster, so a probe can return many candidates; nearest-first keeps
a close match cheap.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import combinations

CHUNK_BITS = (21, 21, 22)  # from the most significant bit
SHIFTS = (43, 22, 0)


def as_int(fingerprint: str) -> int:
    return int(fingerprint, 16)


def as_signed(code: int) -> int:
    """The 64-bit code as a signed integer (SQL BIGINT)."""
    return code - (1 << 64) if code >= 1 << 63 else code


def chunks(code: int) -> tuple[int, int, int]:
    return tuple((code >> shift) & ((1 << bits) - 1) for shift, bits in zip(SHIFTS, CHUNK_BITS))  # type: ignore[return-value]


@lru_cache(maxsize=8)
def _flips(bits: int, t: int) -> tuple[int, ...]:
    """Every mask of ``bits`` bits with exactly ``t`` set."""
    return tuple(sum(1 << i for i in positions) for positions in combinations(range(bits), t))


def probes(code: int, t: int) -> list[list[int]]:
    """Per substring, the values at exactly ``t`` bits from this code's substring."""
    return [[value ^ mask for mask in _flips(bits, t)] for value, bits in zip(chunks(code), CHUNK_BITS)]


def stages(max_bits: int) -> int:
    """How many stages (t = 0, 1, …) find every code within ``max_bits``."""
    t = 0
    while 3 * t + 2 < max_bits:
        t += 1
    return t + 1


def complete_within(t: int) -> int:
    """After stage t, every code within this many bits has been seen."""
    return 3 * t + 2
