"""Per-pair transfer effects of the classifier track (seeds as the unit) and the teacher × student matrix view.

The classifier track's pair table (:func:`seed_pair_table`) has the LM pair table's column names wherever they mean
the same thing (:data:`SEED_PAIR_COLUMNS`, :data:`benchmark.analysis.pairs.PAIR_COLUMNS`), so ``pairs.csv`` of both
tracks is read with one vocabulary.

Vocabulary of the classifier pairs (declared before the data):
    seed: the independent unit. Seed s gives every base its own init, every teacher its own training run and noise
        stream, and every student its own distillation run; the untrained reference of student base j at seed s is
        the very init its seed-s students start from (docs/research/statistics.md: "The classifier track was
        sound: each seed had its own init and its own teacher").
    seed difference d_s of pair (teacher i, student j): the aux-only student's test accuracy (%) at seed s minus
        the untrained reference of j at seed s. Seeds without both are left out (``n_seeds`` counts the rest).
    effect: mean over seeds of d_s. ``se`` = SD(d) / √n.
    p: two-sided **sign-flip randomisation test** of the mean of d (all 2^n sign vectors up to 2^14 = 16,384 of
        them, else 20,000 random ones and the identity): under "aux distillation does not change accuracy" the
        trained student and the untrained reference of one seed are exchangeable, so each d_s is as likely to carry
        either sign. CI: the interval that inverts the same test (the shifts δ it does not reject, d − δ symmetric
        about 0), so p ≤ 0.05 exactly when the CI excludes 0 - the agreement the LM pair table has by inverting its
        two-sample test. ``p_min`` = 2 / 2^n (1/128 at 8 seeds); ``exact_size`` is the test's real size at α =
        0.05 (12/256 = 0.047 at 8 seeds); below 6 seeds no shift can be rejected and the CI is NaN.
        Why not a t-interval: accuracies are bounded and same-model seeds are far from normal (one pair's eight
        seeds span 47-81 %), and with 8 seeds a t-interval's coverage rests on that normality; the randomisation
        test is exact under the exchangeability the design creates, needs no distribution, and shares the LM
        track's permutation vocabulary (p_min, exact_size, inverted CI). Its cost is the symmetry assumption of
        the interval (a pure shift), which the t-interval makes too (and more).
    family: the relation (``same``, ``sibling``, ``unrelated``; :data:`benchmark.analysis.pairs.FAMILIES`); q is
        Benjamini-Hochberg within the family. The primary family is ``same``.
    drift: as on the LM track (:func:`benchmark.analysis.pairs.drift_tests`): τ² from the unrelated family, and
        p_drift / q_drift of same and sibling pairs against it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from benchmark.analysis.common import ALTERNATIVES, check_choice, ordered_levels, require_single
from benchmark.analysis.pairs import FAMILIES, drift_tests
from benchmark.analysis.stats import (
    MAX_EXACT,
    N_MC,
    bh_adjust,
    key_rng,
)
from benchmark.errors import UserError
from benchmark.vocabulary import BASELINE

__all__ = [
    "SEED_PAIR_COLUMNS",
    "SEED_PAIR_DEFINITION",
    "matrix",
    "seed_differences",
    "seed_pair_table",
    "sign_flip",
    "sign_flip_size",
]

#: Columns of the classifier track's pair table, in order: the LM pair table's names first (same meaning), then
#: the classifier's own.
SEED_PAIR_COLUMNS: tuple[str, ...] = (
    "teacher",
    "student",
    "relation",
    "family",
    "target",
    "placebo",  # always False: the classifier track has no A/A arm
    "effect",  # mean over seeds of (aux-only student − the same seed's untrained reference), accuracy points
    "ci_low",  # inverted sign-flip test, 95 %
    "ci_high",
    "p",  # two-sided sign-flip test against 0
    "q",  # BH within the family
    "p_drift",  # against the drift unrelated pairs show (same and sibling families)
    "q_drift",
    "se",  # SD of the seed differences / √n
    "se_df",  # its degrees of freedom, n − 1 (the drift test's Satterthwaite df)
    "n_treated",  # seeds with an aux-only student and a reference
    "n_control",
    "p_min",
    "exact_size",
    "mean_treated",  # aux-only student accuracy, mean over those seeds
    "mean_control",  # untrained reference accuracy, mean over the same seeds
    "sd_treated",
    "sd_control",
    "mean_baseline",  # the untrained student base over every seed it was evaluated at (context)
    "treated_arm",
    "control_arms",
    "metric",
    "suite",
    "track",
    "n_seeds",  # classifier: paired seeds (= n_treated = n_control)
    "sd_diff",  # classifier: SD of the seed differences
)
#: The one-sentence definition of a classifier pair's effect and tests (``fit.json``'s ``contrast_definition``).
SEED_PAIR_DEFINITION = (
    "Effect of pair (teacher i, student j) = mean over seeds s of d_s = the {treated} student's {metric} (i's seed-s "
    "teacher, j's seed-s init) minus j's untrained seed-s init's {metric}; p is a two-sided exact sign-flip test of "
    "the mean of d over seeds, the 95% CI inverts that test, q is Benjamini-Hochberg within the pair's family (same, "
    "sibling, unrelated); p_drift tests same and sibling pairs against the drift of unrelated pairs."
)
#: α of every count and verdict.
_ALPHA = 0.05


# --------------------------------------------------------------------------------------------
# the classifier track's pair table (seeds as the unit)
# --------------------------------------------------------------------------------------------


def seed_differences(tidy: pd.DataFrame, metric: str, treated: str = "aux", control: str = BASELINE) -> pd.DataFrame:
    """Per (teacher base, student base, seed): the treated student's value minus the same seed's untrained reference.

    Args:
        tidy: The classifier tidy table of one suite (validated; ``baseline`` rows are the references).
        metric: The readout (``accuracy``).
        treated: The channel whose students are tested (``aux``).
        control: Only ``"baseline"``: the untrained student base of the same seed.

    Returns:
        Columns ``teacher_base``, ``student_base``, ``relation``, ``replicate`` (the seed), ``treated_value``,
        ``control_value``, ``lift``; seeds without a reference are left out.

    Raises:
        UserError: Another control, no treated rows of ``metric``, or no treated seed with a reference.
    """
    check_choice("control (classifier track)", control, (BASELINE,))
    d = tidy[tidy["metric"] == metric]
    tr = d[d["teacher_trait"] == treated]
    if tr.empty:
        labels = ", ".join(sorted(set(tidy["teacher_trait"])))
        raise UserError(f"tidy table: no {treated!r} student rows with metric {metric!r}; teacher_trait values: "
                        f"{labels}")
    ref = (d[d["teacher_trait"] == BASELINE].groupby(["student_base", "seed"], as_index=False)["value"].mean()
           .rename(columns={"value": "control_value"}))
    t = tr.groupby(["teacher_base", "student_base", "relation", "seed"], as_index=False, sort=False)["value"].mean()
    m = t.rename(columns={"value": "treated_value"}).merge(ref, on=["student_base", "seed"], how="inner")
    if m.empty:
        raise UserError(f"tidy table: no {treated!r} student has an untrained reference (baseline row) of its "
                        "student base at its seed")
    m["lift"] = m["treated_value"] - m["control_value"]
    m = m.rename(columns={"seed": "replicate"})
    cols = ["teacher_base", "student_base", "relation", "replicate", "treated_value", "control_value", "lift"]
    return m[cols].sort_values(["teacher_base", "student_base", "replicate"], kind="stable").reset_index(drop=True)


def seed_pair_table(
    diffs: pd.DataFrame,
    *,
    metric: str,
    suite: str = "",
    order: Sequence[str] | None = None,
    seed: int = 0,
    treated: str = "aux",
    baselines: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per (teacher base, student base) pair of the classifier track (see the module docstring).

    Args:
        diffs: :func:`seed_differences`.
        metric: The readout's name (recorded in each row).
        suite: Suite name (recorded in each row).
        order: Registry order of bases (rows are sorted by teacher, then student, in it).
        seed: Seed of the Monte Carlo sign flips (only used beyond 2^14 sign vectors).
        treated: The treated channel (recorded as ``treated_arm``).
        baselines: The suite's ``baseline`` rows (``student_base``, ``value``) for ``mean_baseline``; None uses the
            references of the paired seeds.

    Returns:
        Columns :data:`SEED_PAIR_COLUMNS`; q within each family, p_drift and q_drift for same and sibling pairs.
    """
    base_mean = ({} if baselines is None else
                 {str(k): float(v) for k, v in baselines.groupby("student_base")["value"].mean().items()})
    rows: list[dict[str, Any]] = []
    for (i, j, rel), g in diffs.groupby(["teacher_base", "student_base", "relation"], sort=False):
        d = g["lift"].to_numpy(dtype=float)
        x, y = g["treated_value"].to_numpy(dtype=float), g["control_value"].to_numpy(dtype=float)
        n = len(d)
        p, lo, hi = sign_flip(d, "two-sided", rng=key_rng(seed, (str(i), str(j), treated)))
        rows.append({
            "teacher": str(i), "student": str(j), "relation": str(rel), "family": str(rel), "target": str(treated),
            "placebo": False, "effect": float(d.mean()), "ci_low": lo, "ci_high": hi, "p": p, "q": np.nan,
            "p_drift": np.nan, "q_drift": np.nan,
            "se": float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else np.nan, "se_df": float(n - 1) if n > 1 else np.nan,
            "n_treated": n, "n_control": n, "p_min": min(1.0, 2 / 2**n) if 2**n <= MAX_EXACT else 1 / (1 + N_MC),
            "exact_size": sign_flip_size(n), "mean_treated": float(x.mean()), "mean_control": float(y.mean()),
            "sd_treated": float(x.std(ddof=1)) if n > 1 else np.nan,
            "sd_control": float(y.std(ddof=1)) if n > 1 else np.nan,
            "mean_baseline": base_mean.get(str(j), float(y.mean())), "treated_arm": str(treated),
            "control_arms": BASELINE, "n_seeds": n, "sd_diff": float(d.std(ddof=1)) if n > 1 else np.nan,
        })
    out = pd.DataFrame(rows, columns=list(SEED_PAIR_COLUMNS))
    out["placebo"] = out["placebo"].astype(bool)
    out = out.assign(metric=metric, suite=suite, track="classifier")
    for fam in FAMILIES:
        sel = out["family"] == fam
        out.loc[sel, "q"] = bh_adjust(out.loc[sel, "p"].to_numpy(dtype=float))
    out = drift_tests(out)
    rank = {b: k for k, b in enumerate(ordered_levels([*out["teacher"], *out["student"]], order))}
    keyed = out.assign(_t=out["teacher"].map(rank), _s=out["student"].map(rank))
    return keyed.sort_values(["_t", "_s"], kind="stable").drop(columns=["_t", "_s"]).reset_index(drop=True)


def sign_flip_size(n: int, alpha: float = _ALPHA, max_exact: int = MAX_EXACT) -> float:
    """Real size of the two-sided sign-flip test of n paired differences at nominal ``alpha`` (continuous data):
    its p-values are multiples of 2/2^n (a sign vector and its mirror are equally extreme). 8 seeds: 12/256."""
    if n == 0:
        return float("nan")
    total = 2**n
    if total > max_exact:
        return alpha
    return math.floor(alpha * total / 2) * 2 / total


def _signs(n: int, max_exact: int, n_mc: int, rng: np.random.Generator | None) -> tuple[np.ndarray, bool]:
    """Sign vectors of a sign-flip test: all 2^n, or the identity and ``n_mc`` random ones (the identity first)."""
    if 2**n <= max_exact:
        grid = ((np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1).astype(float)
        return 1.0 - 2.0 * grid, True  # row 0 is all +1: the observed signs
    rng = rng if rng is not None else np.random.default_rng(0)
    draws = rng.choice(np.array([-1.0, 1.0]), size=(n_mc, n))
    return np.vstack([np.ones((1, n)), draws]), False


def sign_flip(
    d: Sequence[float] | np.ndarray,
    alternative: str = "two-sided",
    *,
    level: float = 0.95,
    max_exact: int = MAX_EXACT,
    n_mc: int = N_MC,
    rng: np.random.Generator | None = None,
) -> tuple[float, float, float]:
    """Sign-flip p of the mean of paired differences and the confidence interval that inverts the same test.

    Each sign vector e gives the statistic T_e(δ) = mean(e·(d − δ)) = a_e − δ·b_e with a_e = mean(e·d) and
    b_e = mean(e); the observed one (e = 1) is mean(d) − δ. p(δ) is the share of sign vectors at least as extreme,
    a step function of δ whose steps sit where T_e(δ) = ±(mean(d) − δ); the interval is the hull of the shifts
    with a two-sided p(δ) above ``1 - level`` (found exactly, as :func:`benchmark.analysis.shift_permutation`
    does for two samples).

    Args:
        d: Paired differences (one per seed).
        alternative: Direction of the returned p (the interval is always two-sided).
        level: Coverage of the interval.
        max_exact: Enumerate all 2^n sign vectors up to this many; else Monte Carlo.
        n_mc: Monte Carlo draws.
        rng: Generator of the Monte Carlo draws.

    Returns:
        (p, ci_low, ci_high); NaN p for no differences; a NaN interval when no shift can be rejected at this level
        (fewer than 6 differences at 95 %).
    """
    check_choice("alternative", alternative, ALTERNATIVES)
    da = np.asarray(d, dtype=float)
    n = len(da)
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    signs, exact = _signs(n, max_exact, n_mc, rng)
    a, b = signs @ da / n, signs.mean(axis=1)
    obs = float(da.mean())
    tol = 1e-9 * max(1.0, float(np.abs(da).max()))

    def p_at(delta: np.ndarray, alt: str) -> np.ndarray:
        t = a[None, :] - delta[:, None] * b[None, :]
        o = (obs - delta)[:, None]
        if alt == "two-sided":
            hits = np.abs(t) >= np.abs(o) - tol
        elif alt == "less":
            hits = t <= o + tol
        else:
            hits = t >= o - tol
        return hits.sum(axis=1) / len(a)  # Monte Carlo: the identity row makes it (1 + #) / (1 + n_mc)

    p = float(p_at(np.array([0.0]), alternative)[0])
    alpha = 1 - level
    p_floor = 2 / 2**n if exact else 1 / (1 + n_mc)
    if p_floor > alpha:
        return p, float("nan"), float("nan")
    with np.errstate(divide="ignore", invalid="ignore"):
        cuts = np.concatenate([(a - obs) / (b - 1), (a + obs) / (b + 1)])
    cuts = np.unique(cuts[np.isfinite(cuts)])
    if len(cuts) > 1000:  # Monte Carlo sizes: a grid of the cuts' quantiles is enough (a Monte Carlo p anyway)
        cuts = np.unique(np.quantile(cuts, np.linspace(0, 1, 1000)))
    spread = max(float(np.ptp(da)), 1e-6 * max(1.0, abs(obs)))  # above the tie tolerance: equal d's step too
    probe = np.concatenate([[cuts[0] - spread] if len(cuts) else [obs - spread], (cuts[:-1] + cuts[1:]) / 2,
                            [cuts[-1] + spread] if len(cuts) else [obs + spread], [obs]])
    step = max(1, 2_000_000 // len(a))  # probes per block: bounded memory with 20,001 Monte Carlo sign vectors
    p_probe = np.concatenate([p_at(probe[k:k + step], "two-sided") for k in range(0, len(probe), step)])
    keep = probe[p_probe > alpha + 1e-12]
    if not len(keep):
        return p, obs, obs
    below, above = cuts[cuts <= float(keep.min())], cuts[cuts >= float(keep.max())]
    lo = float(below.max()) if len(below) else float("-inf")
    hi = float(above.min()) if len(above) else float("inf")
    return p, lo, hi


# --------------------------------------------------------------------------------------------
# paired lifts
# --------------------------------------------------------------------------------------------


def matrix(
    cells: pd.DataFrame,
    value: str = "effect",
    order: Sequence[str] | None = None,
    target: str | None = None,
    *,
    rows: str = "teacher_base",
    cols: str = "student_base",
) -> pd.DataFrame:
    """Teacher-base × student-base matrix of one column of a cell or pair table.

    Args:
        cells: One suite and track's table: :func:`cell_table` or a pair table (then
            ``rows="teacher", cols="student"``).
        value: Column to pivot (``"effect"``, ``"p"``, ``"mean_treated"``, ...).
        order: Registry order of bases; rows and columns follow it (bases missing from it go last,
            sorted), never alphabetical order.
        target: Keep one target; ``None`` averages the column over targets (not meaningful for
            p-values: pass a target for those).
        rows: The teacher column of ``cells``.
        cols: The student column of ``cells``.

    Returns:
        DataFrame indexed by teacher_base (index name ``teacher_base``) with student_base columns
        (columns name ``student_base``); NaN where a cell is missing.

    Raises:
        UserError: Unknown column or target, or several suites/tracks.
    """
    if value not in cells.columns:
        raise UserError(f"matrix: unknown column {value!r}; available: {', '.join(map(str, cells.columns))}")
    require_single(cells, ("suite", "track"), "cell table")
    sub = cells
    if target is not None:
        sub = cells[cells["target"] == target]
        if sub.empty:
            raise UserError(
                f"matrix: no cells with target {target!r}; "
                f"available: {', '.join(sorted(map(str, cells['target'].unique())))}"
            )
    piv = sub.pivot_table(index=rows, columns=cols, values=value, aggfunc="mean", dropna=False)
    out = piv.reindex(index=ordered_levels(sub[rows], order), columns=ordered_levels(sub[cols], order)).astype(float)
    out.index.name, out.columns.name = "teacher_base", "student_base"
    return out
