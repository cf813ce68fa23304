"""The statistics audit reports rest on, as small functions that return numbers (rendering is elsewhere): Wilson
intervals for shares, Newcombe's interval for a difference of shares, the exact binomial test against a
reference, Holm's step-down correction, and the sample sizes a width of interval needs.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy.stats import MonteCarloMethod, binomtest, chi2, chi2_contingency, norm
from statsmodels.stats.contingency_tables import StratifiedTable

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


# --- Tests across strata and small tables -------------------------------------------------------------------------

MONTE_CARLO_RESAMPLES = 20_000
EXACT_TABLE_LIMIT = 200_000  # 2×C tables enumerated for an exact test; beyond that, a seeded Monte Carlo test
SEED = 20240601  # every resampling in a report is seeded: the same rows give the same report


def small_expected(table) -> bool:
    """Cochran's rule: more than 20% of the cells expect fewer than 5 (or any expects less than 1)."""
    t = np.asarray(table, dtype=float)
    expected = np.outer(t.sum(axis=1), t.sum(axis=0)) / t.sum()
    return bool((expected < 5).mean() > 0.2 or (expected < 1).any())


def association_test(table) -> dict:
    """Association in a R×C table of counts: Pearson's chi-square when the expected counts allow it, otherwise an
    exact test (Fisher–Freeman–Halton, by enumeration for two rows) or, when there are too many tables to
    enumerate, a seeded Monte Carlo test of the Pearson statistic. Says which test ran."""
    t = np.asarray(table, dtype=float)
    t = t[:, t.sum(axis=0) > 0]
    t = t[t.sum(axis=1) > 0]
    if t.shape[0] < 2 or t.shape[1] < 2:
        return {"test": "none (a single label or group)", "p": None, "chi2": None, "dof": 0}
    chi2, p, dof, _ = chi2_contingency(t, correction=False)
    if not small_expected(t):
        return {"test": "Pearson chi-square", "chi2": float(chi2), "dof": int(dof), "p": float(p)}
    if t.shape[0] == 2 and math.prod(int(c) + 1 for c in t.sum(axis=0)[:-1]) <= EXACT_TABLE_LIMIT:
        return {"test": "Fisher–Freeman–Halton exact test (expected counts too small for chi-square)", "chi2": float(chi2), "dof": int(dof), "p": exact_two_row_p(t.astype(int))}
    method = MonteCarloMethod(n_resamples=MONTE_CARLO_RESAMPLES, rng=np.random.default_rng(SEED))
    p_mc = chi2_contingency(t, correction=False, method=method).pvalue
    return {"test": f"Monte Carlo test of the chi-square statistic ({MONTE_CARLO_RESAMPLES:,} resamples; expected counts too small for chi-square)",
            "chi2": float(chi2), "dof": int(dof), "p": float(p_mc)}


def exact_two_row_p(table) -> float:
    """Fisher–Freeman–Halton exact p for a 2×C table: the probability, given the margins, of every table no more
    likely than the observed one (hypergeometric, enumerated)."""
    columns = [int(c) for c in table.sum(axis=0)]
    first_row, total = int(table[0].sum()), sum(columns)
    log_norm = _log_choose(total, first_row)

    def log_p(row: tuple) -> float:
        return sum(_log_choose(c, x) for c, x in zip(columns, row)) - log_norm

    observed = log_p(tuple(int(x) for x in table[0]))
    p = 0.0
    for head in itertools.product(*(range(c + 1) for c in columns[:-1])):
        last = first_row - sum(head)
        if 0 <= last <= columns[-1]:
            value = log_p((*head, last))
            if value <= observed + 1e-7:
                p += math.exp(value)
    return min(1.0, p)


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def cmh_binary(tables: list) -> dict:
    """Cochran–Mantel–Haenszel test of a common odds ratio of 1 over 2×2 strata (with continuity correction),
    e.g. one label's count in report A vs B, stratified by prompt. Strata with a single image carry no information."""
    kept = [np.asarray(t, dtype=float) for t in tables if np.asarray(t).sum() > 1]
    pooled = np.sum(kept, axis=0) if kept else np.zeros((2, 2))
    if not kept or (pooled.sum(axis=0) == 0).any() or (pooled.sum(axis=1) == 0).any():
        # one label (or one group) only, in every stratum: nothing varies, so nothing is tested
        return {"test": "Cochran–Mantel–Haenszel: not tested (one label only)", "statistic": None, "dof": 1, "p": None, "strata": len(kept)}
    with np.errstate(divide="ignore", invalid="ignore"):
        result = StratifiedTable(np.stack(kept, axis=-1)).test_null_odds(correction=True)
    statistic = float(result.statistic)
    if not math.isfinite(statistic):
        return {"test": "Cochran–Mantel–Haenszel: not tested (no variation within the strata)", "statistic": None, "dof": 1, "p": None, "strata": len(kept)}
    return {"test": "Cochran–Mantel–Haenszel (continuity-corrected)", "statistic": statistic, "dof": 1, "p": float(result.pvalue), "strata": len(kept)}


def generalized_cmh(tables: list) -> dict:
    """The generalised Cochran–Mantel–Haenszel test of general association over R×C strata (Landis, Heyman &
    Koch 1978; Agresti 2002 §7.5): Q = (Σ(n − m))ᵀ (Σ V)⁻¹ (Σ(n − m)) on the first (R−1)(C−1) cells, chi-square
    with (R−1)(C−1) degrees of freedom. Labels no stratum has are dropped first."""
    stacked = np.stack([np.asarray(t, dtype=float) for t in tables])
    stacked = stacked[:, stacked.sum(axis=(0, 2)) > 0][:, :, stacked.sum(axis=(0, 1)) > 0]
    rows, columns = stacked.shape[1:]
    if rows < 2 or columns < 2:
        return {"test": "generalised Cochran–Mantel–Haenszel", "statistic": None, "dof": 0, "p": None, "strata": 0}
    size = (rows - 1) * (columns - 1)
    difference, variance, strata = np.zeros(size), np.zeros((size, size)), 0
    for t in stacked:
        n = t.sum()
        if n <= 1:
            continue
        strata += 1
        row_share, column_share = t.sum(axis=1) / n, t.sum(axis=0) / n
        expected = n * np.outer(row_share, column_share)
        difference += (t - expected)[:-1, :-1].ravel()
        r, c = row_share[:-1], column_share[:-1]
        variance += n * n / (n - 1) * np.kron(np.diag(r) - np.outer(r, r), np.diag(c) - np.outer(c, c))
    dof = int(np.linalg.matrix_rank(variance)) if strata else 0
    if not dof:
        return {"test": "generalised Cochran–Mantel–Haenszel", "statistic": None, "dof": 0, "p": None, "strata": strata}
    statistic = float(difference @ np.linalg.pinv(variance) @ difference)
    return {"test": "generalised Cochran–Mantel–Haenszel (general association)", "statistic": statistic, "dof": dof, "p": float(chi2.sf(statistic, dof)), "strata": strata}


def stratified_reference_test(counts: list[int], totals: list[int], references: list[float]) -> dict:
    """One test of many per-stratum counts against their own reference shares at once (a stratified score test,
    the one-sample analogue of Cochran–Mantel–Haenszel): z = Σ(x − n·p) / √Σ n·p·(1 − p), two-sided. It asks
    whether the counts lean one way across the strata; strata with no image or a reference of 0 or 1 add nothing
    to the variance but still to the difference."""
    expected = sum(n * p for n, p in zip(totals, references))
    variance = sum(n * p * (1 - p) for n, p in zip(totals, references))
    difference = sum(counts) - expected
    if variance <= 0:
        return {"test": "stratified score test", "z": None, "p": None if difference == 0 else 0.0, "observed": sum(counts), "expected": expected}
    z = difference / math.sqrt(variance)
    return {"test": "stratified score test (per-prompt counts against per-prompt references)", "z": z, "p": float(2 * norm.sf(abs(z))), "observed": sum(counts), "expected": expected}


def mcnemar_p(only_first: int, only_second: int) -> float:
    """Exact McNemar test (two-sided) on the discordant pairs of a paired comparison."""
    discordant = only_first + only_second
    return float(binomtest(only_first, discordant, 0.5).pvalue) if discordant else 1.0


def equal_weight_interval(shares: list[float], totals: list[int], z: float = Z_95) -> tuple[float, float]:
    """A 95% interval for the mean of independent per-prompt shares: the mean ± z·√(Σ varₖ)/K, each variance from
    the prompt's Wilson-adjusted share (so a prompt at 0% or 100% still carries its uncertainty), clipped to [0, 1]."""
    k = len(shares)
    variance = 0.0
    for share, n in zip(shares, totals):
        adjusted = (share * n + z * z / 2) / (n + z * z)
        variance += adjusted * (1 - adjusted) / (n + z * z)
    mean, half = sum(shares) / k, z * math.sqrt(variance) / k
    return max(0.0, mean - half), min(1.0, mean + half)
