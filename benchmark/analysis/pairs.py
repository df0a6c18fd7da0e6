"""The language-model track's pair table: one target-specific contrast per (teacher base, student base) pair.

Why one contrast and not one cell per trait: with the other trait's arm as control, the owl cell's lift is
½(DD + G) and the cat cell's ½(DD − G), where DD is the arms' difference in L_owl − L_cat (target-specific) and G
their difference in L_owl + L_cat (a collateral shift toward both animals). Two "cells" per pair are one number
and its mirror plus a collateral term (docs/research/statistics.md, "Second audit"). The pair table tests DD and
reports G beside it, never as transfer.

Vocabulary (declared before the data; docs/statistics.md has the same words):
    primary trait t*: the suite's first trait. Its arm is the treated arm of every pair.
    contrast W of a student: L_{t*} − mean over the suite's other traits t of L_t (log-odds of each target among
        the candidates; with one trait, W = L_{t*}). Within one student, so whatever moves every animal alike
        (generic drift of distillation) cancels.
    collateral S of a student: Σ over the suite's traits of L_t. Its arms' difference is G.
    replicate value: the mean over one teacher replicate's students of W (or S): the unit (a teacher with its own
        dataset) is the replicate.
    control arms: every arm except t* and its own A/A arm (``controls: other_trait``: the other traits' arms and
        their A/A arms, made exactly like the treated arm), or the neutral arm (``controls: neutral``).
    effect of pair (i, j): mean of the t*-arm's replicate values minus the mean of the control arms' (4 vs 8 at
        K = 4 with an A/A arm). p: exact two-sided permutation test over replicate values (20,000 Monte Carlo
        draws beyond 20,000 arrangements); CI: the interval that inverts the same test, so p ≤ 0.05 exactly when
        the CI excludes 0.
    family: the relation of the pair (``same``, ``sibling``, ``unrelated``) or ``placebo``; q is
        Benjamini-Hochberg within the family. The primary family is ``same``.
    placebo row: an A/A arm against its twin (aa:cat vs cat) on the same W; judged against the test's exact size.
    drift: unrelated pairs carry systematic effects of random sign that recur in every replicate. τ² (their
        variance beyond replicate noise) is estimated from the unrelated family: τ² = max(0, mean(e²) − mean(se²)),
        centred at 0 (no transfer between unrelated bases). A same or sibling pair's drift-aware statistic is
        e / √(τ² + se²), referred to Student's t with Satterthwaite's df for the sum (τ̂² carries the variance of a
        mean of n_unrelated squares, se² the pair's Welch df: both are estimated); p_drift is two-sided and q_drift
        Benjamini-Hochberg within the family. The report's per-pair verdict uses it.
    teacher contrast: the same contrast on the teachers' own readouts (treated teachers minus control teachers of
        that teacher base); transfer ratio = pair effect ÷ teacher contrast, its CI the pair's CI divided by the
        teacher contrast (treated as known; its own CI is in the per-base table).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from benchmark.analysis.common import check_choice, mean_or_nan, ordered_levels
from benchmark.analysis.design import pair_floor
from benchmark.analysis.stats import (
    bh_adjust,
    exact_size,
    key_rng,
    mean_ci,
    shift_permutation,
    welch_ci,
)
from benchmark.analysis.tidy import RELATIONS
from benchmark.errors import UserError
from benchmark.vocabulary import AA_PREFIX, BASELINE, CONTROLS, NEUTRAL, OTHER_TRAIT

__all__ = [
    "AA_PREFIX",
    "CONTROLS",
    "FAMILIES",
    "PAIR_COLUMNS",
    "PairDesign",
    "base_table",
    "contrast_definition",
    "contrast_values",
    "drift_estimate",
    "drift_tests",
    "pair_design",
    "pair_lifts",
    "pair_table",
    "placebo_summary",
    "relation_summary",
    "teacher_contrasts",
    "verdict",
]

#: Families of the pair table, in order; BH runs within each.
FAMILIES = ("same", "sibling", "unrelated", "placebo")
#: Columns of the pair table (``pairs.csv``), in order.
PAIR_COLUMNS: tuple[str, ...] = (
    "teacher",
    "student",
    "relation",
    "family",
    "target",  # the primary trait, or "placebo:<trait>" for an A/A row
    "placebo",
    "effect",  # mean treated − mean control replicate value of W
    "ci_low",  # inverted permutation test, 95 %
    "ci_high",
    "p",  # two-sided exact permutation test against 0
    "q",  # BH within the family
    "p_drift",  # against the drift unrelated pairs show (same and sibling families)
    "q_drift",
    "collateral",  # G: the arms' difference in S (Σ of the traits' log-odds), Welch CI
    "collateral_ci_low",
    "collateral_ci_high",
    "transfer_ratio",  # effect ÷ teacher contrast
    "ratio_ci_low",
    "ratio_ci_high",
    "teacher_contrast",
    "se",  # Welch standard error of the effect
    "se_df",  # its Welch-Satterthwaite degrees of freedom
    "n_treated",  # replicates
    "n_control",
    "p_min",  # smallest attainable p
    "exact_size",  # the test's real size at α = 0.05
    "mean_treated",
    "mean_control",
    "sd_treated",
    "sd_control",
    "mean_baseline",  # W of the untrained student base (context; not used by any test)
    "profile_r",  # secondary, descriptive (analysis.profile)
    "profile_ci_low",
    "profile_ci_high",
    "treated_arm",
    "control_arms",  # "+"-joined
    "metric",
    "suite",
    "track",
)
#: α of every count and verdict in the tables.
ALPHA = 0.05


@dataclass(frozen=True)
class PairDesign:
    """Who is compared with whom in every pair.

    Attributes:
        traits: Trait arms in the suite's order; ``traits[0]`` is the primary trait.
        targets: The readout targets that enter W and S (the traits, in order).
        treated: The treated arm (the primary trait).
        controls: The control arms of the treated arm.
        placebo: (A/A arm, its twin) comparisons.
        control_rule: ``"other_trait"`` or ``"neutral"``.
    """

    traits: tuple[str, ...]
    targets: tuple[str, ...]
    treated: str
    controls: tuple[str, ...]
    placebo: tuple[tuple[str, str], ...]
    control_rule: str

    @property
    def primary(self) -> str:
        """The primary trait."""
        return self.traits[0]


def pair_design(labels: Sequence[str], controls: str = OTHER_TRAIT, traits: Sequence[str] = ()) -> PairDesign:
    """Sort a suite's ``teacher_trait`` labels into the treated arm, its controls and the placebo comparisons.

    Args:
        labels: The ``teacher_trait`` values present (``"baseline"`` is ignored).
        controls: ``"other_trait"`` or ``"neutral"``.
        traits: The suite's traits, for their order (the first is primary); labels not listed go last, sorted.

    Raises:
        UserError: An unknown ``controls``, no trait arm, a placebo arm whose trait has no arm, a neutral control
            without a neutral arm, or other-trait controls with a single trait.
    """
    check_choice("controls", controls, CONTROLS)
    present = set(labels) - {BASELINE}
    aa = tuple(sorted(a for a in present if a.startswith(AA_PREFIX)))
    trait_arms = tuple(ordered_levels(present - set(aa) - {NEUTRAL}, traits))
    if not trait_arms:
        raise UserError(f"tidy table: no trait arm among the teacher_trait values {sorted(present)}")
    for a in aa:
        if a[len(AA_PREFIX):] not in trait_arms:
            raise UserError(f"tidy table: placebo arm {a!r} repeats a trait with no arm; trait arms: {trait_arms}")
    if controls == NEUTRAL and NEUTRAL not in present:
        raise UserError("controls is 'neutral' but the tidy table has no neutral arm (teacher_trait 'neutral')")
    if controls == OTHER_TRAIT and len(trait_arms) < 2:
        raise UserError(f"controls is 'other_trait' but the suite has one trait arm ({trait_arms[0]!r}); a "
                        "single-trait suite needs controls: neutral")
    treated = trait_arms[0]
    if controls == NEUTRAL:
        ctrl: tuple[str, ...] = (NEUTRAL,)
    else:
        ctrl = tuple(a for a in (*trait_arms[1:], *aa) if a != f"{AA_PREFIX}{treated}")
    placebo = tuple((a, a[len(AA_PREFIX):]) for a in aa)
    return PairDesign(traits=trait_arms, targets=trait_arms, treated=treated, controls=ctrl, placebo=placebo,
                      control_rule=controls)


def contrast_definition(design: PairDesign, metric: str) -> str:
    """The one-sentence definition of a pair's effect and tests, as :func:`pair_table` computes them."""
    others = [t for t in design.targets if t != design.primary]
    w = f"L({design.primary})" + (f" − mean of L({'), L('.join(others)})" if others else "")
    return (
        f"Effect of pair (teacher i, student j) = mean over i's {design.treated}-teacher replicates minus mean over "
        f"i's {' ∪ '.join(design.controls)} replicates of W = {w}, each replicate's W the mean over its students "
        f"on j of the {metric} contrast; p is a two-sided exact permutation test over replicate values, the 95% CI "
        f"inverts that test, q is Benjamini-Hochberg within the pair's family (same, sibling, unrelated, placebo); "
        f"p_drift tests same and sibling pairs against the drift of unrelated pairs."
    )


# --------------------------------------------------------------------------------------------
# replicate values of W and S
# --------------------------------------------------------------------------------------------


def contrast_values(tidy: pd.DataFrame, metric: str, design: PairDesign) -> pd.DataFrame:
    """Per teacher replicate and student base: the mean over its students of W and S (and baselines' W, S).

    Args:
        tidy: The LM tidy table of one suite (rows of ``metric`` for every target in ``design.targets``).
        metric: The readout (``logodds``).
        design: The suite's pair design.

    Returns:
        Columns ``teacher_base``, ``arm``, ``replicate``, ``student_base``, ``relation``, ``w``, ``s``,
        ``n_students``; baselines have arm ``"baseline"`` (teacher_base "", replicate -1). Students missing a
        target's readout are left out.
    """
    d = tidy[(tidy["metric"] == metric) & tidy["target"].isin(design.targets)]
    if d.empty:
        return pd.DataFrame(columns=["teacher_base", "arm", "replicate", "student_base", "relation", "w", "s",
                                     "n_students"])
    wide = d.pivot_table(index=["student_id", "teacher_base", "teacher_trait", "replicate", "student_base",
                                "relation"], columns="target", values="value", aggfunc="mean", dropna=False)
    wide = wide.dropna(subset=[t for t in design.targets if t in wide.columns])
    if any(t not in wide.columns for t in design.targets):
        missing = [t for t in design.targets if t not in wide.columns]
        raise UserError(f"tidy table: no {metric} rows for target(s) {', '.join(missing)}; W needs every trait's")
    prim = wide[design.primary].to_numpy(dtype=float)
    others = [t for t in design.targets if t != design.primary]
    w = prim - wide[others].to_numpy(dtype=float).mean(axis=1) if others else prim
    s = wide[list(design.targets)].to_numpy(dtype=float).sum(axis=1)
    per_student = wide.reset_index()[["teacher_base", "teacher_trait", "replicate", "student_base", "relation"]]
    per_student = per_student.assign(w=w, s=s)
    keys = ["teacher_base", "teacher_trait", "replicate", "student_base", "relation"]
    out = per_student.groupby(keys, sort=True, as_index=False, dropna=False).agg(
        w=("w", "mean"), s=("s", "mean"), n_students=("w", "size"))
    return out.rename(columns={"teacher_trait": "arm"})


def teacher_contrasts(teachers: pd.DataFrame, design: PairDesign) -> dict[str, dict[str, float]]:
    """Teacher base -> its teachers' own contrast: treated minus control teachers' W, with a Welch CI.

    Args:
        teachers: The teachers table (``teacher_base``, ``teacher_trait``, ``replicate``, ``target``, ``logodds``).
        design: The suite's pair design.

    Returns:
        Base -> ``contrast``, ``ci_low``, ``ci_high``, ``n_treated``, ``n_control``; bases whose teachers were not
        read out are left out.
    """
    need = {"teacher_base", "teacher_trait", "replicate", "target", "logodds"}
    if teachers is None or teachers.empty or not need <= set(teachers.columns):
        return {}
    t = teachers[teachers["target"].isin(design.targets)].copy()
    t["logodds"] = pd.to_numeric(t["logodds"], errors="coerce")
    wide = t.pivot_table(index=["teacher_base", "teacher_trait", "replicate"], columns="target", values="logodds",
                         aggfunc="mean").dropna()
    if wide.empty or any(c not in wide.columns for c in design.targets):
        return {}
    others = [x for x in design.targets if x != design.primary]
    w = wide[design.primary] - (wide[others].mean(axis=1) if others else 0.0)
    frame = w.rename("w").reset_index()
    out: dict[str, dict[str, float]] = {}
    for base, g in frame.groupby("teacher_base", sort=True):
        x = g.loc[g["teacher_trait"] == design.treated, "w"].to_numpy(dtype=float)
        y = g.loc[g["teacher_trait"].isin(design.controls), "w"].to_numpy(dtype=float)
        if len(x) and len(y):
            lo, hi = welch_ci(x, y)
            out[str(base)] = {"contrast": float(x.mean() - y.mean()), "ci_low": lo, "ci_high": hi,
                              "n_treated": len(x), "n_control": len(y)}
    return out


# --------------------------------------------------------------------------------------------
# the pair table
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Arm:
    replicate: np.ndarray
    w: np.ndarray
    s: np.ndarray
    n_students: np.ndarray


def _index(values: pd.DataFrame) -> dict[tuple[str, str, str], _Arm]:
    """(teacher_base, arm, student_base) -> that arm's replicate values, sorted by replicate."""
    out: dict[tuple[str, str, str], _Arm] = {}
    v = values[values["arm"] != BASELINE].sort_values(["teacher_base", "arm", "student_base", "replicate"])
    for (i, a, j), g in v.groupby(["teacher_base", "arm", "student_base"], sort=False):
        out[(str(i), str(a), str(j))] = _Arm(g["replicate"].to_numpy(), g["w"].to_numpy(dtype=float),
                                             g["s"].to_numpy(dtype=float), g["n_students"].to_numpy())
    return out


def pair_table(
    values: pd.DataFrame,
    design: PairDesign,
    *,
    metric: str,
    teacher_contrast: Mapping[str, Mapping[str, float]] | None = None,
    order: Sequence[str] | None = None,
    seed: int = 0,
    suite: str = "",
    profile: Mapping[tuple[str, str], tuple[float, float, float]] | None = None,
) -> pd.DataFrame:
    """One row per (teacher base, student base) pair and, with A/A arms, one placebo row per pair and A/A arm.

    Args:
        values: :func:`contrast_values`.
        design: The suite's pair design.
        metric: The readout's name (recorded in each row).
        teacher_contrast: :func:`teacher_contrasts` (transfer ratios are NaN without it).
        order: Registry order of bases (rows are sorted by it).
        seed: Base seed of the Monte Carlo permutations (only used beyond 20,000 arrangements).
        suite: Suite name (recorded in each row).
        profile: (teacher, student) -> (profile r, CI low, CI high), the secondary readout.

    Returns:
        Columns :data:`PAIR_COLUMNS`: trait pairs first (registry order), then placebo rows; q within each
        family, p_drift and q_drift for the same and sibling families (see the module docstring).
    """
    index = _index(values)
    base_w = {str(r.student_base): float(r.w) for r in values[values["arm"] == BASELINE].itertuples()}
    pairs = values.loc[values["arm"] != BASELINE, ["teacher_base", "student_base", "relation"]].drop_duplicates()
    rows: list[dict[str, Any]] = []
    tc = teacher_contrast or {}
    for i, j, rel in pairs.itertuples(index=False):
        i, j = str(i), str(j)
        x = index.get((i, design.treated, j))
        ys = [index[(i, c, j)] for c in design.controls if (i, c, j) in index]
        if x is not None and ys:
            ctrl = [c for c in design.controls if (i, c, j) in index]
            row = _row(i, j, str(rel), design.primary, x, ys, ctrl, design.treated, seed, base_w.get(j, np.nan))
            teach = tc.get(i, {}).get("contrast", np.nan)
            row.update(_ratio(row, teach))
            prof = (profile or {}).get((i, j), (np.nan, np.nan, np.nan))
            row.update(profile_r=prof[0], profile_ci_low=prof[1], profile_ci_high=prof[2])
            rows.append(row)
        for aa, twin in design.placebo:
            xa, ya = index.get((i, aa, j)), index.get((i, twin, j))
            if xa is not None and ya is not None:
                row = _row(i, j, str(rel), f"placebo:{twin}", xa, [ya], [twin], aa, seed, base_w.get(j, np.nan))
                rows.append({**row, "family": "placebo", "placebo": True})
    out = pd.DataFrame(rows, columns=list(PAIR_COLUMNS))
    out["placebo"] = out["placebo"].astype(bool)
    out = out.assign(metric=metric, suite=suite, track="lm")
    for fam in FAMILIES:
        sel = out["family"] == fam
        out.loc[sel, "q"] = bh_adjust(out.loc[sel, "p"].to_numpy(dtype=float))
    out = drift_tests(out)
    return _sort(out, order)


def _row(i: str, j: str, rel: str, target: str, x: _Arm, ys: list[_Arm], ctrl: list[str], treated: str, seed: int,
         baseline_w: float) -> dict[str, Any]:
    xv, yv = x.w, np.concatenate([y.w for y in ys])
    xs, ys_ = x.s, np.concatenate([y.s for y in ys])
    p, lo, hi = shift_permutation(xv, yv, "two-sided", rng=key_rng(seed, (i, j, treated, target)))
    g_lo, g_hi = welch_ci(xs, ys_)
    se, se_df = _welch_se(xv, yv)
    return {
        "teacher": i, "student": j, "relation": rel, "family": rel, "target": target, "placebo": False,
        "effect": float(xv.mean() - yv.mean()), "ci_low": lo, "ci_high": hi, "p": p, "q": np.nan,
        "p_drift": np.nan, "q_drift": np.nan,
        "collateral": float(xs.mean() - ys_.mean()), "collateral_ci_low": g_lo, "collateral_ci_high": g_hi,
        "transfer_ratio": np.nan, "ratio_ci_low": np.nan, "ratio_ci_high": np.nan, "teacher_contrast": np.nan,
        "se": se, "se_df": se_df, "n_treated": len(xv), "n_control": len(yv), "p_min": pair_floor(len(xv), len(yv)),
        "exact_size": exact_size(len(xv), len(yv), "two-sided", ALPHA),
        "mean_treated": float(xv.mean()), "mean_control": float(yv.mean()),
        "sd_treated": float(np.std(xv, ddof=1)) if len(xv) > 1 else np.nan,
        "sd_control": float(np.std(yv, ddof=1)) if len(yv) > 1 else np.nan,
        "mean_baseline": baseline_w, "profile_r": np.nan, "profile_ci_low": np.nan, "profile_ci_high": np.nan,
        "treated_arm": treated, "control_arms": "+".join(ctrl),
    }


def _welch_se(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Welch's standard error of mean(x) − mean(y) and its Welch-Satterthwaite df (NaN without spread)."""
    if len(x) < 2 or len(y) < 2:
        return float("nan"), float("nan")
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    if vx + vy <= 0:
        return 0.0, float("nan")
    return float(math.sqrt(vx + vy)), float((vx + vy) ** 2 / (vx**2 / (len(x) - 1) + vy**2 / (len(y) - 1)))


def _ratio(row: Mapping[str, Any], teacher: float) -> dict[str, float]:
    """Transfer ratio and its CI: the pair's effect and CI over the teacher contrast (NaN when it is not > 0)."""
    if not (isinstance(teacher, float) and math.isfinite(teacher) and teacher > 0):
        return {"teacher_contrast": teacher, "transfer_ratio": np.nan, "ratio_ci_low": np.nan, "ratio_ci_high": np.nan}
    return {"teacher_contrast": teacher, "transfer_ratio": row["effect"] / teacher,
            "ratio_ci_low": row["ci_low"] / teacher, "ratio_ci_high": row["ci_high"] / teacher}


def drift_estimate(pairs: pd.DataFrame) -> dict[str, Any]:
    """τ², the variance of unrelated pairs' effects beyond their replicate noise (see the module docstring).

    Returns:
        ``tau`` (√τ²), ``tau2``, ``n_unrelated``, ``mean_unrelated`` (the unrelated family's mean effect; the
        null is centred at 0, not at it), ``rms_unrelated`` (√mean(e²)), ``mean_se2`` and ``method``; NaN τ
        without at least 2 unrelated pairs with a standard error.
    """
    u = pairs[(pairs["family"] == "unrelated") & pairs["effect"].notna() & pairs["se"].notna()]
    n = len(u)
    base: dict[str, Any] = {"n_unrelated": n, "method": "moments: tau2 = max(0, mean(e^2) - mean(se^2)) over "
                            "unrelated pairs, centred at 0"}
    if n < 2:
        return {**base, "tau": np.nan, "tau2": np.nan, "mean_unrelated": mean_or_nan(u["effect"].to_numpy()),
                "rms_unrelated": np.nan, "mean_se2": np.nan}
    e, se = u["effect"].to_numpy(dtype=float), u["se"].to_numpy(dtype=float)
    tau2 = max(0.0, float(np.mean(e**2) - np.mean(se**2)))
    return {**base, "tau": math.sqrt(tau2), "tau2": tau2, "mean_unrelated": float(e.mean()),
            "rms_unrelated": float(np.sqrt(np.mean(e**2))), "mean_se2": float(np.mean(se**2))}


def drift_tests(pairs: pd.DataFrame) -> pd.DataFrame:
    """p_drift and q_drift for the same and sibling families: e / √(τ² + se²) against t with Satterthwaite's df.

    ``pairs`` needs ``family``, ``effect``, ``se`` and ``se_df`` (the pair's Welch df; where absent, it is treated
    as known)."""
    from scipy.special import stdtr

    drift = drift_estimate(pairs)
    out = pairs.copy()
    if not math.isfinite(drift["tau2"]):
        return out
    # Var(τ̂²) ≈ 2(τ² + mean se²)² / n_unrelated (the variance of a mean of squares), so in Satterthwaite's sum
    # the τ² term counts τ⁴/df_τ = (τ² + mean se²)² / n_unrelated: few or noisy unrelated pairs lower the df.
    tau2, n_u, se2_u = drift["tau2"], drift["n_unrelated"], drift["mean_se2"]
    for fam in ("same", "sibling"):
        sel = (out["family"] == fam) & out["se"].notna()
        if not sel.any():
            continue
        se2 = out.loc[sel, "se"].to_numpy(dtype=float) ** 2
        df_se = out.loc[sel, "se_df"].to_numpy(dtype=float) if "se_df" in out.columns else np.full(len(se2), np.inf)
        df_se = np.where(np.isfinite(df_se), df_se, np.inf)
        with np.errstate(divide="ignore", invalid="ignore"):
            df = (tau2 + se2) ** 2 / ((tau2 + se2_u) ** 2 / n_u + se2**2 / df_se)
        df = np.where(np.isfinite(df) & (df > 0), df, n_u)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = out.loc[sel, "effect"].to_numpy(dtype=float) / np.sqrt(tau2 + se2)
        out.loc[sel, "p_drift"] = np.minimum(1.0, 2 * stdtr(df, -np.abs(z)))
        out.loc[sel, "q_drift"] = bh_adjust(out.loc[sel, "p_drift"].to_numpy(dtype=float))
    return out


def _sort(pairs: pd.DataFrame, order: Sequence[str] | None) -> pd.DataFrame:
    """Trait pairs before placebo rows; then teacher and student in registry order."""
    rank = {b: k for k, b in enumerate(ordered_levels([*pairs["teacher"], *pairs["student"]], order))}
    keyed = pairs.assign(_t=pairs["teacher"].map(rank), _s=pairs["student"].map(rank))
    keyed = keyed.sort_values(["placebo", "_t", "_s", "target"], kind="stable")
    return keyed.drop(columns=["_t", "_s"]).reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# replicate-level lifts (for γ) and summaries
# --------------------------------------------------------------------------------------------


def pair_lifts(values: pd.DataFrame, design: PairDesign) -> pd.DataFrame:
    """Replicate-level lifts of every trait pair: L(i, j, r) = W of treated replicate r minus the mean over control
    arms of their replicate r's W (an arm's mean where it has no replicate r). Their mean over r is the pair's
    effect when every arm has the same replicates (the design).

    Returns:
        Columns ``teacher_base``, ``student_base``, ``relation``, ``replicate``, ``lift``.
    """
    index = _index(values)
    pairs = values.loc[values["arm"] != BASELINE, ["teacher_base", "student_base", "relation"]].drop_duplicates()
    rows = []
    for i, j, rel in pairs.itertuples(index=False):
        x = index.get((str(i), design.treated, str(j)))
        ctrl = [index[(str(i), c, str(j))] for c in design.controls if (str(i), c, str(j)) in index]
        if x is None or not ctrl:
            continue
        by_rep = [dict(zip(c.replicate.tolist(), c.w.tolist(), strict=True)) for c in ctrl]
        means = [float(c.w.mean()) for c in ctrl]
        for r, v in zip(x.replicate.tolist(), x.w.tolist(), strict=True):
            c = float(np.mean([m.get(r, mu) for m, mu in zip(by_rep, means, strict=True)]))
            rows.append((str(i), str(j), str(rel), int(r), float(v) - c))
    return pd.DataFrame(rows, columns=["teacher_base", "student_base", "relation", "replicate", "lift"])


def relation_summary(pairs: pd.DataFrame, lifts: pd.DataFrame, column: str = "effect") -> dict[str, dict[str, Any]]:
    """Per relation: the mean pair effect with two CIs, both labelled.

    * ``ci_low``/``ci_high`` (**conditional on these pairs**): for each replicate index r, the mean over the
      relation's pairs of the replicate lifts, then a t-interval over r. It says how well these pairs' mean is
      measured, not how the relation behaves in other models.
    * ``base_ci_low``/``base_ci_high`` (**bases as units**): each teacher base's mean over its pairs of the
      relation, then a t-interval over teacher bases (``n_bases``): what these models say about the relation.

    Also ``n_pairs``, ``n_p05``, ``n_q05`` and (same and sibling) ``n_qdrift05``.
    """
    trait = pairs[~pairs["placebo"].astype(bool)]
    out: dict[str, dict[str, Any]] = {}
    for rel in RELATIONS:
        sub = trait[trait["relation"] == rel]
        if sub.empty:
            continue
        rows = lifts[lifts["relation"] == rel]
        per_rep = rows.groupby("replicate")["lift"].mean() if len(rows) else pd.Series(dtype=float)
        _, lo, hi = mean_ci(per_rep)
        per_base = sub.groupby("teacher")[column].mean()
        _, blo, bhi = mean_ci(per_base)
        entry: dict[str, Any] = {
            "n_pairs": len(sub), "mean": mean_or_nan(sub[column].dropna().to_numpy(dtype=float)),
            "ci_low": lo, "ci_high": hi, "n_reps": len(per_rep),
            "base_ci_low": blo, "base_ci_high": bhi, "n_bases": int(per_base.notna().sum()),
        }
        if column == "effect":
            entry.update(n_p05=int((sub["p"] <= ALPHA).sum()), n_q05=int((sub["q"] <= ALPHA).sum()))
            if rel in ("same", "sibling"):
                entry["n_qdrift05"] = int((sub["q_drift"] <= ALPHA).sum())
        out[rel] = entry
    return out


def placebo_summary(pairs: pd.DataFrame, alpha: float = ALPHA) -> dict[str, Any]:
    """The A/A calibration check, judged against the test's exact size (not the nominal α).

    Returns:
        ``n_rows``, ``n_p05`` (rows at p ≤ α), ``rate`` (their share), ``exact_size`` (the mean over rows of the
        test's real size at α: what the rate should be), ``n_q05`` and ``arms``.
    """
    rows = pairs[pairs["placebo"].astype(bool) & pairs["p"].notna()]
    n, hits = len(rows), int((rows["p"] <= alpha).sum())
    return {
        "n_rows": n,
        "n_p05": hits,
        "rate": hits / n if n else float("nan"),
        "exact_size": float(rows["exact_size"].mean()) if n else float("nan"),
        "alpha": alpha,
        "n_q05": int((rows["q"] <= alpha).sum()),
        "arms": sorted(map(str, rows["treated_arm"].unique())),
    }


def base_table(pairs: pd.DataFrame, teacher_contrast: Mapping[str, Mapping[str, float]],
               order: Sequence[str] | None = None) -> pd.DataFrame:
    """Per base: its same-model pair (effect, CI, p, p_drift, q_drift, transfer ratio with CI) and its teachers'
    contrast: the first table a reader needs to see which bases transfer (``bases.csv``)."""
    same = pairs[(pairs["family"] == "same")]
    cols = ["base", "effect", "ci_low", "ci_high", "p", "q", "p_drift", "q_drift", "transfer_ratio", "ratio_ci_low",
            "ratio_ci_high", "teacher_contrast", "teacher_ci_low", "teacher_ci_high", "collateral", "profile_r",
            "verdict"]
    rows = []
    for r in same.to_dict(orient="records"):
        tc = teacher_contrast.get(r["teacher"], {})
        rows.append({"base": r["teacher"], **{c: r[c] for c in cols[1:12] if c in r},
                     "teacher_ci_low": tc.get("ci_low", np.nan), "teacher_ci_high": tc.get("ci_high", np.nan),
                     "collateral": r["collateral"], "profile_r": r["profile_r"], "verdict": verdict(r)})
    frame = pd.DataFrame(rows, columns=cols)
    rank = {b: k for k, b in enumerate(ordered_levels(frame["base"], order))}
    return frame.sort_values("base", key=lambda s: s.map(rank), kind="stable").reset_index(drop=True)


def verdict(row: Mapping[str, Any], alpha: float = ALPHA) -> str:
    """A same or sibling pair's verdict, from the drift-aware test (q_drift within its family):
    ``transfer`` (q_drift ≤ α, effect > 0), ``reverse`` (q_drift ≤ α, effect < 0), ``within drift`` (p ≤ α
    against 0 but not beyond the drift of unrelated pairs), ``none`` otherwise; ``n/a`` without a test."""
    qd, p, e = row.get("q_drift"), row.get("p"), row.get("effect")
    if qd is None or not isinstance(qd, float) or not math.isfinite(qd):
        return "n/a"
    if qd <= alpha:
        return "transfer" if isinstance(e, float | int) and e > 0 else "reverse"
    if isinstance(p, float) and math.isfinite(p) and p <= alpha:
        return "within drift"
    return "none"
