"""The statistics audit reports rest on, as small functions that return numbers (rendering is elsewhere): Wilson
intervals for shares, Newcombe's interval for a difference of shares, the exact binomial test against a
reference, Holm's step-down correction, and the sample sizes a width of interval needs.
"""

from __future__ import annotations

import math

from scipy.stats import binomtest

Z_95 = 1.959963984540054
ALPHA = 0.05


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion; (0, 1) when n is 0."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(count_a: int, n_a: int, count_b: int, n_b: int) -> tuple[float, float, float]:
    """(difference, low, high) of p_a − p_b with Newcombe's hybrid score 95% interval."""
    p_a, p_b = count_a / n_a, count_b / n_b
    low_a, high_a = wilson_interval(count_a, n_a)
    low_b, high_b = wilson_interval(count_b, n_b)
    difference = p_a - p_b
    return difference, difference - math.sqrt((p_a - low_a) ** 2 + (high_b - p_b) ** 2), difference + math.sqrt((high_a - p_a) ** 2 + (p_b - low_b) ** 2)


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def binomial_p(count: int, n: int, expected: float | None) -> float | None:
    """The exact two-sided binomial test of a count against an expected share (None without a reference)."""
    if expected is None or not n:
        return None
    return float(binomtest(count, n, expected).pvalue)


def holm_into(cells: list[dict], p_key: str, adjusted_key: str) -> None:
    """Holm's correction across one family of tests, in place: each cell's ``p_key`` adjusted into ``adjusted_key``."""
    for cell, adjusted in zip(cells, holm([cell[p_key] for cell in cells])):
        cell[adjusted_key] = adjusted


def with_holm(rows: list, tests: list) -> None:
    """Holm's correction, in place, across a report's per-label rows and, separately, across its per-attribute tests."""
    holm_into(rows, "p", "p_holm")
    for row in rows:
        row["significant"] = row["p_holm"] < ALPHA
    holm_into(tests, "p", "p_holm")


def interval_width(n: int) -> float:
    """The widest 95% Wilson interval for a share among n images (at a share of 0.5)."""
    low, high = wilson_interval(n // 2, n) if n else (0.0, 1.0)
    return high - low


def seeds_for_width(width: float, prompts: int = 1) -> int:
    """Seeds per prompt so that a pooled share over all prompts has a 95% interval at most ``width`` wide."""
    n = 1
    while interval_width(n * prompts) > width and n < 100_000:
        n += 1
    return n
