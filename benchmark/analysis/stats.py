"""Small-sample statistics: permutation, Welch and sign tests, inverted and Student-t intervals, keyed generators."""

from __future__ import annotations

import functools
import itertools
import math
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from benchmark.analysis.common import ALTERNATIVES, check_choice

__all__ = [
    "MAX_EXACT",
    "N_MC",
    "bh_adjust",
    "key_rng",
    "mean_ci",
    "min_attainable_p",
    "permutation_test",
    "welch_ci",
    "welch_test",
]

MAX_EXACT = 20_000  # enumerate all label assignments up to this many; else Monte Carlo
N_MC = 20_000  # Monte Carlo draws for large permutation tests


def permutation_test(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    alternative: str = "greater",
    *,
    max_exact: int = MAX_EXACT,
    n_mc: int = N_MC,
    rng: np.random.Generator | None = None,
) -> float:
    """Two-sample permutation p-value for the difference in means, mean(x) - mean(y).

    All C(n, len(x)) label assignments are enumerated when there are at most ``max_exact`` of them
    (exact p = share of assignments at least as extreme, observed one included); otherwise ``n_mc``
    random permutations give p = (1 + #extreme) / (1 + n_mc).

    Args:
        x: Treated values.
        y: Control values.
        alternative: ``"greater"`` (x larger), ``"less"``, or ``"two-sided"`` (|difference|).
        max_exact: Largest number of assignments to enumerate.
        n_mc: Monte Carlo draws otherwise.
        rng: Random generator for the Monte Carlo case (default: seeded with 0).

    Returns:
        The p-value, or NaN when either sample is empty.

    Example:
        Three treated students all above three controls: one of C(6, 3) = 20 assignments is as
        extreme, so ``permutation_test([4, 5, 6], [1, 2, 3]) == 0.05``.
    """
    check_choice("alternative", alternative, ALTERNATIVES)
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    k, m = len(xa), len(ya)
    if k == 0 or m == 0:
        return float("nan")
    pooled = np.concatenate([xa, ya])
    n, total = k + m, pooled.sum()
    tol = 1e-9 * max(1.0, float(np.abs(pooled).max()))  # float ties count as "as extreme"

    def stat(sum_x: np.ndarray) -> np.ndarray:
        d = sum_x / k - (total - sum_x) / m
        return np.abs(d) if alternative == "two-sided" else (-d if alternative == "less" else d)

    observed = stat(np.array([xa.sum()]))[0]
    if math.comb(n, k) <= max_exact:
        stats = stat(pooled[all_assignments(n, k)].sum(axis=1))
        return float(np.mean(stats >= observed - tol))
    rng = rng if rng is not None else np.random.default_rng(0)
    perms = rng.permuted(np.tile(pooled, (n_mc, 1)), axis=1)
    stats = stat(perms[:, :k].sum(axis=1))
    return float((1 + np.sum(stats >= observed - tol)) / (1 + n_mc))


def min_attainable_p(k: int, m: int, max_exact: int = MAX_EXACT, n_mc: int = N_MC) -> float:
    """Smallest attainable permutation p for group sizes k, m (a lower bound; ties only raise it)."""
    if k == 0 or m == 0:
        return float("nan")
    c = math.comb(k + m, k)
    return 1.0 / c if c <= max_exact else 1.0 / (1 + n_mc)


def welch_test(
    x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, alternative: str = "greater"
) -> float:
    """Welch's unequal-variance t-test p-value for mean(x) - mean(y).

    Args:
        x: Treated values.
        y: Control values.
        alternative: ``"greater"``, ``"less"`` or ``"two-sided"``.

    Returns:
        The p-value, or NaN when a sample has fewer than 2 values or both have zero variance.
    """
    check_choice("alternative", alternative, ALTERNATIVES)
    from scipy.special import stdtr  # Student t CDF; a plain ufunc, ~50x faster than stats.ttest_ind

    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(xa) < 2 or len(ya) < 2:
        return float("nan")
    vx, vy = xa.var(ddof=1) / len(xa), ya.var(ddof=1) / len(ya)
    se2 = vx + vy
    if se2 <= 0:
        return float("nan")
    t = (xa.mean() - ya.mean()) / math.sqrt(se2)
    dof = se2**2 / (vx**2 / (len(xa) - 1) + vy**2 / (len(ya) - 1))  # Welch-Satterthwaite
    if alternative == "greater":
        return float(stdtr(dof, -t))
    if alternative == "less":
        return float(stdtr(dof, t))
    return float(min(1.0, 2 * stdtr(dof, -abs(t))))


def welch_ci(
    x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, level: float = 0.95
) -> tuple[float, float]:
    """Welch t-interval of mean(x) - mean(y) (unequal variances, Welch-Satterthwaite df).

    Args:
        x: Treated values (e.g. one arm's replicate values).
        y: Control values.
        level: Coverage, 0.95 for a 95% interval.

    Returns:
        (low, high); NaNs when a sample has fewer than 2 values or both have zero variance (the df is then
        undefined, and a zero-width interval would claim a certainty no replicate showed).
    """
    from scipy.special import stdtrit  # inverse Student t CDF

    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(xa) < 2 or len(ya) < 2:
        return float("nan"), float("nan")
    vx, vy = xa.var(ddof=1) / len(xa), ya.var(ddof=1) / len(ya)
    se2 = vx + vy
    if se2 <= 0:
        return float("nan"), float("nan")
    dof = se2**2 / (vx**2 / (len(xa) - 1) + vy**2 / (len(ya) - 1))
    half = float(stdtrit(dof, 0.5 + level / 2)) * math.sqrt(se2)
    diff = float(xa.mean() - ya.mean())
    return diff - half, diff + half


def bh_adjust(p: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q), NaN where p is NaN.

    Args:
        p: p-values of one family of tests; NaNs are not counted as tests.

    Returns:
        q-values in the input order: q_(k) = min over l >= k of p_(l) * m / l, capped at 1.
    """
    pa = np.asarray(p, dtype=float)
    out = np.full(pa.shape, np.nan)
    ok = np.isfinite(pa)
    m = int(ok.sum())
    if m == 0:
        return out
    vals = pa[ok]
    order = np.argsort(vals, kind="stable")
    scaled = vals[order] * m / np.arange(1, m + 1)
    q = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    ranked = np.empty(m)
    ranked[order] = q
    out[ok] = ranked
    return out


def mean_ci(values: Any, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval over seeds.

    Args:
        values: The sample (anything :class:`pandas.Series` accepts); NaNs are dropped.
        level: Coverage, 0.95 for a 95% interval.

    Returns:
        (mean, low, high); the interval is NaN with fewer than 2 values, the mean too with none.
    """
    from scipy import stats as scipy_stats

    v = pd.Series(values, dtype=float).dropna()
    n = len(v)
    mean = float(v.mean()) if n else math.nan
    if n < 2:
        return mean, math.nan, math.nan
    half = float(scipy_stats.t.ppf(0.5 + level / 2, n - 1) * v.std(ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half


def key_rng(seed: int, key: Iterable[Any]) -> np.random.Generator:
    """A generator seeded by ``seed`` and a stable hash of ``key``.

    A cell's CI and p-value then do not depend on which other cells are in the table.
    """
    return np.random.default_rng([seed, zlib.crc32(repr(tuple(key)).encode())])


@functools.lru_cache(maxsize=64)
def all_assignments(n: int, k: int) -> np.ndarray:
    """Every choice of ``k`` treated positions among ``n``, one row each in lexicographic order (read-only; cached,
    since the tests of one table, and a power simulation's thousands, share a few group sizes)."""
    combos = np.array(list(itertools.combinations(range(n), k)), dtype=np.int64).reshape(-1, k)
    combos.setflags(write=False)
    return combos


def _assignments(k: int, m: int, max_exact: int, n_mc: int, rng: np.random.Generator | None) -> tuple[np.ndarray, bool]:
    """Treated-group index sets of a two-sample permutation test: all C(k+m, k) of them, or ``n_mc`` random ones
    (the observed assignment 0..k-1 first in both cases, so a Monte Carlo p counts it once)."""
    n = k + m
    if math.comb(n, k) <= max_exact:
        return all_assignments(n, k), True
    rng = rng if rng is not None else np.random.default_rng(0)
    draws = np.argsort(rng.random((n_mc, n)), axis=1)[:, :k]
    return np.vstack([np.arange(k)[None, :], draws]), False


def shift_permutation(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    alternative: str = "two-sided",
    *,
    level: float = 0.95,
    max_exact: int = MAX_EXACT,
    n_mc: int = N_MC,
    rng: np.random.Generator | None = None,
) -> tuple[float, float, float]:
    """Permutation p of mean(x) - mean(y) and the confidence interval that inverts the same test.

    The interval is every shift δ for which the test of ``x - δ`` against ``y`` does not reject at ``1 - level``
    (two-sided), so it excludes 0 exactly when the two-sided p is at most ``1 - level``: stars drawn from p and
    from the interval agree. For one assignment of labels the statistic is linear in δ (its treated mean loses
    δ·k_c/k where k_c of the original treated values stay treated, its control mean loses δ·(k - k_c)/m), so p(δ)
    is a step function whose steps are found exactly; the interval is the hull of {δ : p(δ) > 1 - level}.

    Args:
        x: Treated values.
        y: Control values.
        alternative: Direction of the returned p (the interval is always two-sided).
        level: Coverage of the interval.
        max_exact: Enumerate every assignment up to this many; else Monte Carlo with ``n_mc`` draws.
        n_mc: Monte Carlo draws.
        rng: Generator of the Monte Carlo draws.

    Returns:
        (p, ci_low, ci_high). NaN p for an empty group; a NaN interval when no shift can be rejected at this
        level (the smallest attainable two-sided p exceeds ``1 - level``, e.g. 3 vs 3).
    """
    check_choice("alternative", alternative, ALTERNATIVES)
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    k, m = len(xa), len(ya)
    if k == 0 or m == 0:
        return float("nan"), float("nan"), float("nan")
    pooled = np.concatenate([xa, ya])
    sets, exact = _assignments(k, m, max_exact, n_mc, rng)
    sums = pooled[sets].sum(axis=1)
    total = pooled.sum()
    d0 = sums / k - (total - sums) / m  # each assignment's difference of means at δ = 0
    kc = (sets < k).sum(axis=1)  # original treated values that stay treated
    slope = kc / k - (k - kc) / m  # d_c(δ) = d0_c - δ·slope_c; the observed assignment has slope 1
    obs = float(xa.mean() - ya.mean())
    scale = max(1.0, float(np.abs(pooled).max()))

    def p_at(delta: np.ndarray, alt: str) -> np.ndarray:
        d = d0[None, :] - delta[:, None] * slope[None, :]
        o = (obs - delta)[:, None]
        tol = 1e-9 * scale
        if alt == "two-sided":
            hits = np.abs(d) >= np.abs(o) - tol
        elif alt == "less":
            hits = d <= o + tol
        else:
            hits = d >= o - tol
        count = hits.sum(axis=1)
        return count / len(d0)  # exact: every assignment; Monte Carlo: the observed row is among them once

    p = float(p_at(np.array([0.0]), alternative)[0])
    alpha = 1 - level
    if min_attainable_p(k, m, max_exact, n_mc) * (2 if k == m and exact else 1) > alpha:
        return p, float("nan"), float("nan")
    # p(δ) only changes where |d_c(δ)| = |obs - δ| for some assignment c: at (d0_c ∓ obs) / (slope_c ∓ 1).
    with np.errstate(divide="ignore", invalid="ignore"):
        cuts = np.concatenate([(d0 - obs) / (slope - 1), (d0 + obs) / (slope + 1)])
    cuts = np.unique(cuts[np.isfinite(cuts)])
    if len(cuts) > 4000:  # Monte Carlo sizes: a fine grid between the cuts' quantiles is enough
        cuts = np.unique(np.quantile(cuts, np.linspace(0, 1, 4000)))
    spread = max(float(np.ptp(pooled)), 1e-12)
    probe = np.concatenate([[cuts[0] - spread] if len(cuts) else [obs - spread], (cuts[:-1] + cuts[1:]) / 2,
                            [cuts[-1] + spread] if len(cuts) else [obs + spread], [obs]])
    keep = probe[p_at(probe, "two-sided") > alpha + 1e-12]
    if not len(keep):
        return p, obs, obs
    # the hull's ends are the cuts next to the outermost accepted probes
    lo_probe, hi_probe = float(keep.min()), float(keep.max())
    below, above = cuts[cuts <= lo_probe], cuts[cuts >= hi_probe]
    lo = float(below.max()) if len(below) else float("-inf")
    hi = float(above.min()) if len(above) else float("inf")
    return p, lo, hi


def exact_size(k: int, m: int, alternative: str = "two-sided", alpha: float = 0.05,
               max_exact: int = MAX_EXACT) -> float:
    """The real size of the k-vs-m permutation test at nominal ``alpha`` with continuous data: the largest
    attainable p-value not above ``alpha`` (its values are multiples of 1/C(k+m, k); of 2/C two-sided with equal
    groups, where an assignment and its mirror are equally extreme). 4 vs 4 two-sided: 2/70 = 0.0286."""
    if k == 0 or m == 0:
        return float("nan")
    c = math.comb(k + m, k)
    if c > max_exact:
        return alpha
    step = 2 if alternative == "two-sided" and k == m else 1
    return math.floor(alpha * c / step) * step / c
