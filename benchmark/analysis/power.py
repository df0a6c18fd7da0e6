"""Power of the pair test: what a design of K treated against M control replicates can detect.

The LM pair test (:mod:`benchmark.analysis.pairs`) compares a pair's K treated replicate values of the contrast W with
its M control values by an exact two-sided permutation test of the difference in means. Its power depends on the
effect only through the standardised effect δ = effect / σ, σ the replicate-level standard deviation of W (one
teacher replicate with its own dataset and its students: the independent unit). :func:`pair_power` estimates it by
simulation — normal replicate values, the same permutation test the published tables use — and
:func:`detectable_effect` inverts it: the smallest effect the design finds with the given power.

Used for the power statement of a null or weak result (``benchmarks/power_pairs.py`` prints it for a published
suite from its ``pairs.csv``). Normal replicate values are an assumption; the permutation test itself needs none,
so sizes are exact whatever the distribution, and power is what the assumption makes of it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from benchmark.analysis.stats import permutation_test

__all__ = ["PowerRow", "detectable_effect", "pair_power", "pooled_sd", "power_table"]

ALPHA = 0.05


def pair_power(delta: float, k: int, m: int, *, alpha: float = ALPHA, n_sim: int = 2000, n_mc: int = 2000,
               seed: int = 0) -> float:
    """Share of simulated designs in which the exact two-sided pair test rejects at ``alpha``.

    Args:
        delta: Standardised effect: the difference in means over the replicate standard deviation.
        k: Treated replicates.
        m: Control replicates.
        alpha: Level of the test.
        n_sim: Simulated designs (the estimate's standard error is at most 0.5 / √n_sim).
        n_mc: Relabellings per design when C(k + m, k) exceeds :data:`~benchmark.analysis.stats.MAX_EXACT`.
        seed: Seed of the simulation (the same seed gives the same estimate).

    Returns:
        The estimated power (at ``delta = 0``: the test's real size, at most ``alpha``).

    Example:
        3 treated against 6 control replicates cannot reject when the effect is nothing:
        ``pair_power(0.0, 3, 6) <= 0.05``; a tenfold effect it finds almost always.
    """
    if k < 1 or m < 1:
        raise ValueError(f"pair_power needs k >= 1 and m >= 1 replicates, got k={k}, m={m}")
    rng = np.random.default_rng(seed)
    x = rng.normal(delta, 1.0, (n_sim, k))
    y = rng.normal(0.0, 1.0, (n_sim, m))
    rejected = [permutation_test(xr, yr, "two-sided", n_mc=n_mc, rng=rng) <= alpha
                for xr, yr in zip(x, y, strict=True)]
    return float(np.mean(rejected))


def detectable_effect(k: int, m: int, *, power: float = 0.8, alpha: float = ALPHA, n_sim: int = 2000,
                      seed: int = 0, hi: float = 20.0, tol: float = 0.02) -> float:
    """Smallest standardised effect δ the exact pair test finds with ``power`` (bisection on :func:`pair_power`).

    Every evaluation uses the same ``seed``, so the simulated power is monotone in δ and the bisection well defined.

    Returns:
        δ in units of the replicate standard deviation; ``inf`` when even ``hi`` falls short (a design whose
        smallest attainable p exceeds ``alpha`` never rejects).
    """
    if pair_power(hi, k, m, alpha=alpha, n_sim=n_sim, seed=seed) < power:
        return math.inf
    lo_d, hi_d = 0.0, hi
    while hi_d - lo_d > tol:
        mid = (lo_d + hi_d) / 2
        if pair_power(mid, k, m, alpha=alpha, n_sim=n_sim, seed=seed) >= power:
            hi_d = mid
        else:
            lo_d = mid
    return hi_d


def pooled_sd(sd_treated: float, sd_control: float, k: int, m: int) -> float:
    """The pooled replicate standard deviation of a pair's two groups (NaN when neither has spread)."""
    num = (k - 1) * sd_treated**2 + (m - 1) * sd_control**2
    den = k + m - 2
    return float(math.sqrt(num / den)) if den > 0 and math.isfinite(num) else float("nan")


@dataclass(frozen=True)
class PowerRow:
    """One design size's power for a pair: at the pair's σ, the effects asked about and the 80 % detectable one."""

    k: int
    m: int
    sd: float
    power: dict[str, float]
    detectable: float  # in the readout's units (δ × σ)


def power_table(sd: float, effects: dict[str, float], designs: Sequence[tuple[int, int]], *, alpha: float = ALPHA,
                n_sim: int = 2000, seed: int = 0) -> list[PowerRow]:
    """For each (k, m): the power at each named effect (readout units) and the effect found with 80 % power."""
    rows = []
    for k, m in designs:
        pw = {name: pair_power(e / sd, k, m, alpha=alpha, n_sim=n_sim, seed=seed) for name, e in effects.items()}
        rows.append(PowerRow(k=k, m=m, sd=sd, power=pw,
                             detectable=detectable_effect(k, m, alpha=alpha, n_sim=n_sim, seed=seed) * sd))
    return rows
