"""Exact near-neighbour search on 64-bit fingerprints by multi-index hashing (Norouzi, Punjani & Fleet, "Fast exact
search in Hamming space with multi-index hashing", 2012/2014), kept as posting lists.

A fingerprint is split into three substrings ("parts") of 21, 21 and 22 bits. Two codes within ``3t + 2`` bits of
each other agree within ``t`` bits on at least one part (pigeonhole), so probing every part at distances 0, 1, …, t
finds every code within ``3t + 2`` bits; the candidates are then checked exactly. The search goes nearest-first:
stage t probes the parts at exactly distance t, and it stops as soon as the best code found is within ``3t + 2``
bits — nothing unseen can be nearer. For aipic's radius (8 bits) stage 2 is the last: at most 1 + 21 + 210 (or
1 + 22 + 231) values per part.

Perceptual hashes of real pictures cluster: one value of a part can be shared by thousands of codes. Reading those
as rows costs a microsecond each, so the index keeps, per (part, value), a posting list — the codes as one packed
array of little-endian 64-bit integers — and a probe reads one posting per value, whatever its length. A record
adds its codes to a small pending table (indexed by part) in its own transaction, so it is findable at once;
compaction moves pending codes into the postings in one transaction (the registry does it at start and every few
hundred records). A lookup reads the postings and the pending rows in one statement, so a code is seen exactly
once, whichever side of a compaction it is on.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import combinations

import numpy as np

from aipic.common.errors import BadInput

CHUNK_BITS = (21, 21, 22)  # from the most significant bit
SHIFTS = (43, 22, 0)
PARTS = len(CHUNK_BITS)
CODE_DTYPE = np.dtype("<i8")  # a posting: the codes as signed 64-bit integers, little-endian, concatenated


def as_int(fingerprint: str) -> int:
    return int(fingerprint, 16)


def parse(fingerprint: str) -> int:
    """A fingerprint as given to a lookup: 16 hex digits (64 bits), nothing else."""
    if not isinstance(fingerprint, str) or len(fingerprint) != 16 or any(c not in "0123456789abcdefABCDEF" for c in fingerprint):
        raise BadInput("A fingerprint is 16 hexadecimal digits (a 64-bit perceptual hash).")
    return int(fingerprint, 16)


def as_signed(code: int) -> int:
    """The 64-bit code as a signed integer (SQL BIGINT)."""
    return code - (1 << 64) if code >= 1 << 63 else code


def chunks(code: int) -> tuple[int, int, int]:
    return tuple((code >> shift) & ((1 << bits) - 1) for shift, bits in zip(SHIFTS, CHUNK_BITS))  # type: ignore[return-value]


def chunk_arrays(codes: np.ndarray) -> list[np.ndarray]:
    """Each part's values for an array of signed codes (vectorised ``chunks``)."""
    unsigned = codes.astype(CODE_DTYPE).view(np.uint64)
    return [((unsigned >> np.uint64(shift)) & np.uint64((1 << bits) - 1)).astype(np.int64) for shift, bits in zip(SHIFTS, CHUNK_BITS)]


@lru_cache(maxsize=8)
def _flips(bits: int, t: int) -> tuple[int, ...]:
    """Every mask of ``bits`` bits with exactly ``t`` set."""
    return tuple(sum(1 << i for i in positions) for positions in combinations(range(bits), t))


def probes(code: int, t: int) -> list[list[int]]:
    """Per part, the values at exactly ``t`` bits from this code's value."""
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


def unpack(postings: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(postings), dtype=CODE_DTYPE)


def distances(codes: np.ndarray, query: int) -> np.ndarray:
    """Hamming distances from ``query`` (signed) to each code: the XOR counted unsigned (a signed count is of |x|)."""
    return np.bitwise_count(np.bitwise_xor(codes.astype(np.int64), np.int64(query)).view(np.uint64))


def group(codes: np.ndarray, values: np.ndarray) -> list[tuple[int, bytes]]:
    """(value, packed codes) for each distinct value of one part: what compaction adds to the postings. A code
    recorded many times (the same picture again and again) is added once per compaction: a lookup needs each
    distinct code once (the registry resolves a code to its outputs by its own index)."""
    pairs = np.unique(np.stack([values.astype(np.int64), codes.astype(np.int64)], axis=1), axis=0)  # sorted by value, then code
    values, codes = pairs[:, 0], pairs[:, 1].astype(CODE_DTYPE)
    keys, starts = np.unique(values, return_index=True)
    ends = np.append(starts[1:], len(values))
    return [(int(key), codes[start:end].tobytes()) for key, start, end in zip(keys, starts, ends)]
