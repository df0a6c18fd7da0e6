"""A sweep's dose–response statistics: how much of the diagonal transfer survives at each level of one setting.

Vocabulary (declared before the data; docs/statistics.md, "Sweeps", has the same words):
    level: one value of the swept setting; each level is an ordinary suite (its own pair table, γ, bundle).
    reference level: the sweep's first level (``none`` for a defense sweep), or the level its ``reference`` names.
    unit: a teacher replicate u = (teacher base b, arm a, replicate r), as in the pair tests. Levels that share
        teachers (every defense level does) read the same units, so a unit's values at two levels are paired.
    W_ℓ(u): the replicate value of the contrast W (benchmark.analysis.pairs) of u's students on the teacher's own
        base (the diagonal pair), at level ℓ.
    D_ℓ: the diagonal transfer at level ℓ: the mean over bases b of [mean over b's treated units of W_ℓ − mean
        over b's control units of W_ℓ] (the mean of the same-model pairs' effects).
    transfer remaining R_ℓ = D_ℓ / D_ref.
    CI of R_ℓ (Fieller, inverting a t-test over units): ρ is in the 95 % interval when the paired contrast
        U(ρ) = D_ℓ − ρ·D_ref, a linear combination of the units' Z_u(ρ) = W_ℓ(u) − ρ·W_ref(u), is not rejected:
        U(ρ)² ≤ t²·V(ρ), V(ρ) = Σ over (base, group) cells g of var_g(Z(ρ)) / (n_g · B²), with t the 97.5 %
        quantile of Student's t with Σ_g (n_g − 1) degrees of freedom (groups: each base's treated and control
        units). V is quadratic in ρ, so the interval is the solution of a quadratic inequality: bounded when the
        reference transfer itself is distinguishable from 0 (D_ref² > t²·V_ref), else unbounded (reported as
        −inf/+inf: "the reference shows no transfer to take a share of"). Units are replicates, so the interval is
        conditional on these bases, like the pair tests (a base's shared drift is not in it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from benchmark.vocabulary import BASELINE

__all__ = ["Remaining", "diagonal_units", "remaining", "remaining_table"]


def diagonal_units(values: pd.DataFrame, treated: str, controls: Sequence[str]) -> pd.DataFrame:
    """The diagonal replicate values of one level: ``teacher_base``, ``group`` (treated/control), ``arm``,
    ``replicate``, ``w``, from :func:`benchmark.analysis.pairs.contrast_values`'s table."""
    v = values[(values["arm"] != BASELINE) & (values["teacher_base"] == values["student_base"])]
    v = v[v["arm"].isin([treated, *controls])]
    out = v[["teacher_base", "arm", "replicate", "w"]].copy()
    out.insert(1, "group", np.where(out["arm"] == treated, "treated", "control"))
    return out.reset_index(drop=True)


@dataclass(frozen=True)
class Remaining:
    """R = D_level / D_ref with its Fieller interval (see the module docstring)."""

    estimate: float
    ci_low: float
    ci_high: float
    d_level: float
    d_ref: float
    df: int
    n_units: int
    bounded: bool


def _moments(units: pd.DataFrame) -> tuple[float, float, float, float, float, int]:
    """A = D_level, B = D_ref, and the quadratic's V_ll, V_lr, V_rr, with the residual df."""
    bases = sorted(units["teacher_base"].unique())
    n_b = len(bases)
    a = b = v_ll = v_lr = v_rr = 0.0
    df = 0
    for base in bases:
        g_base = units[units["teacher_base"] == base]
        sign = {"treated": 1.0, "control": -1.0}
        for group, g in g_base.groupby("group"):
            x = g["w_level"].to_numpy(dtype=float)
            y = g["w_ref"].to_numpy(dtype=float)
            n = len(x)
            a += sign[str(group)] * x.mean() / n_b
            b += sign[str(group)] * y.mean() / n_b
            if n > 1:
                c = np.cov(x, y, ddof=1)
                w = 1.0 / (n * n_b * n_b)
                v_ll += w * c[0, 0]
                v_lr += w * c[0, 1]
                v_rr += w * c[1, 1]
                df += n - 1
    return a, b, v_ll, v_lr, v_rr, df


def remaining(level: pd.DataFrame, ref: pd.DataFrame, level_alpha: float = 0.05) -> Remaining:
    """Transfer remaining at a level relative to the reference, paired over the units both have.

    Args:
        level: :func:`diagonal_units` of the level.
        ref: :func:`diagonal_units` of the reference level.
        level_alpha: 1 − the interval's coverage.
    """
    from scipy.special import stdtrit

    keys = ["teacher_base", "group", "arm", "replicate"]
    units = level.merge(ref, on=keys, suffixes=("_level", "_ref"))
    if units.empty or set(units["group"]) != {"treated", "control"}:
        nan = float("nan")
        return Remaining(nan, nan, nan, nan, nan, 0, len(units), False)
    a, b, v_ll, v_lr, v_rr, df = _moments(units)
    est = a / b if b != 0 else float("nan")
    if df < 1:
        return Remaining(est, float("-inf"), float("inf"), a, b, df, len(units), False)
    t2 = float(stdtrit(df, 1 - level_alpha / 2)) ** 2
    qa = b * b - t2 * v_rr
    qb = -2.0 * (a * b - t2 * v_lr)
    qc = a * a - t2 * v_ll
    disc = qb * qb - 4 * qa * qc
    if qa > 0 and disc >= 0:
        root = math.sqrt(disc)
        lo, hi = (-qb - root) / (2 * qa), (-qb + root) / (2 * qa)
        return Remaining(est, lo, hi, a, b, df, len(units), True)
    return Remaining(est, float("-inf"), float("inf"), a, b, df, len(units), False)


def remaining_table(levels: Mapping[str, pd.DataFrame], reference: str) -> dict[str, Remaining]:
    """:func:`remaining` of every level against ``reference``; the reference against itself is exactly 1 with the
    interval [1, 1] (whether or not its own transfer is distinguishable from 0)."""
    out = {name: remaining(units, levels[reference]) for name, units in levels.items()}
    ref = out[reference]
    out[reference] = Remaining(1.0, 1.0, 1.0, ref.d_level, ref.d_ref, ref.df, ref.n_units, True)
    return out
