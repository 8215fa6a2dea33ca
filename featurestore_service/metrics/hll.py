"""A HyperLogLog distinct counter fed with numpy arrays of 64-bit hashes.

DataSketches' HLL takes one Python value per call, which costs about a microsecond each: a
million-row numeric column would spend a second there. Hashing and register updates are
vectorised here instead; the estimator is the classic one (Flajolet et al. 2007) with linear
counting for small cardinalities. 2^14 registers: standard error 1.04 / 128 ≈ 0.8 %.
"""

from __future__ import annotations

import hashlib

import numpy as np

P = 14
M = 1 << P
_ALPHA = 0.7213 / (1 + 1.079 / M)
_C1 = np.uint64(0x9E3779B97F4A7C15)
_C2 = np.uint64(0xBF58476D1CE4E5B9)
_C3 = np.uint64(0x94D049BB133111EB)


def mix64(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser over uint64 values: equal inputs give equal, well-spread hashes."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64, copy=True) + _C1
        z = (z ^ (z >> np.uint64(30))) * _C2
        z = (z ^ (z >> np.uint64(27))) * _C3
        return z ^ (z >> np.uint64(31))


def hash_strings(values: list[str | bytes]) -> np.ndarray:
    """64-bit hashes of distinct strings (callers pass each batch's unique values only)."""
    out = np.empty(len(values), dtype=np.uint64)
    for i, value in enumerate(values):
        data = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
        out[i] = int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")
    return out


class HyperLogLog:
    def __init__(self) -> None:
        self.registers = np.zeros(M, dtype=np.uint8)

    def add_hashes(self, hashes: np.ndarray) -> None:
        if hashes.size == 0:
            return
        index = (hashes >> np.uint64(64 - P)).astype(np.intp)
        rest = hashes & np.uint64((1 << (64 - P)) - 1)
        # rank = position of the first 1 bit in the remaining 50 bits, counted from the left.
        nonzero = rest != 0
        bits = np.zeros(rest.shape, dtype=np.float64)
        bits[nonzero] = np.floor(np.log2(rest[nonzero].astype(np.float64)))
        rank = np.where(nonzero, (64 - P) - bits, 64 - P + 1).astype(np.uint8)
        np.maximum.at(self.registers, index, rank)

    def add_numbers(self, values: np.ndarray) -> None:
        """Float64 values, by their bit pattern (so 1 and 1.0 are one value, -0.0 and 0.0 two)."""
        self.add_hashes(mix64(np.ascontiguousarray(values, dtype=np.float64).view(np.uint64)))

    def estimate(self) -> int:
        registers = self.registers.astype(np.float64)
        raw = _ALPHA * M * M / float(np.sum(np.exp2(-registers)))
        zeros = int(np.count_nonzero(self.registers == 0))
        if raw <= 2.5 * M and zeros:
            return round(M * np.log(M / zeros))
        return round(raw)
