"""The shared-base model: γ, the extra lift of cells whose teacher and student share a base (or an init).

The model follows the replication notes (docs/research/replications.md, "Measurement lessons"):
``lift = μ + α_teacher + β_student + γ·1[shared] + ε``. Two fits:

* :func:`pair_fit` (LM track): one row per teacher replicate and pair; p by moving whole teacher-base blocks,
  a CR2 interval clustered by pair, leave-one-base-out (docs/research/statistics.md, "Second audit").
* :func:`shared_base_fit` (classifier track): one row per trained run, clustered by cell or base pair.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from benchmark.analysis.common import ALTERNATIVES, check_choice, mean_or_nan, ordered_levels, require_single
from benchmark.analysis.stats import bootstrap_ci
from benchmark.analysis.tidy import RELATIONS, relation_of
from benchmark.errors import UserError

__all__ = ["N_PERM_MIN", "PAIR_CLUSTERS", "pair_fit", "shared_base_fit"]

#: The statistics of a fit whose γ is not identifiable.
_NAN_STATS: dict[str, Any] = {
    "ci_low": np.nan,
    "ci_high": np.nan,
    "p_perm": np.nan,
    "loo_min": np.nan,
    "loo_max": np.nan,
    "loo_min_cluster": "",
    "loo_max_cluster": "",
    "se": np.nan,
    "df": np.nan,
    "n_boot_used": 0,
    "n_perm_used": 0,
}


def shared_base_fit(
    lifts: pd.DataFrame,
    order: Sequence[str] | None = None,
    n_boot: int = 2000,
    n_perm: int = 2000,
    seed: int = 0,
    indicator: str = "shared_init",
    *,
    alternative: str = "greater",
    perm: str = "cells",
    cluster: str = "pair",
    lineage: Mapping[str, str] | None = None,
    target_effects: bool = True,
    ci_method: str = "cr2",
) -> dict[str, Any]:
    """Fit ``lift = μ + α_teacher + β_student (+ δ_target) + γ·1[shared] + ε`` over all (cell, seed) rows.

    OLS with treatment (dummy) coding, the first base in ``order`` as reference; γ is computed by
    Frisch-Waugh-Lovell so that a one-level factor or a rank-deficient nuisance design is harmless.
    When γ is not identifiable (no shared cells, or the indicator is confounded with the base
    effects, e.g. a single teacher base, where "shared" is a function of the student base) γ and its
    statistics are NaN and ``identifiable`` is False; nothing raises.

    Inference treats the cluster, not the seed, as the unit:

    * ``cluster="pair"`` (default): one cluster per (teacher_base, student_base). Lifts of different
      targets in one pair share the neutral control student of each seed, so they are not
      independent. ``"cell"`` clusters by (teacher_base, student_base, target).
    * ``ci_method="cr2"`` (default): γ ± t(df, 0.975)·SE with the CR2 cluster-robust standard
      error and Bell-McCaffrey degrees of freedom (the small-cluster recommendation of Imbens &
      Kolesar 2016). ``"pairs"``: percentile cluster bootstrap - resample clusters with
      replacement, refit, skip resamples where γ is not identifiable (counted in ``n_boot_used``).
      Why CR2 is the default: on simulated 4×4 matrices (6 shared cells, 3 seeds, 1-2 targets,
      known γ, with and without cell-level noise; 300 replicates each) CR2 covered γ 95-98% of the
      time with intervals ~1.3× the true sampling spread, while the pairs bootstrap was ~1.7-2×
      (resampling 16 cells for 8+ parameters makes near-singular designs) and a Rademacher wild
      bootstrap under-covered (0.88-0.93).
    * ``perm="cells"`` (default): permute the indicator across clusters (each cluster keeps its rows),
      refitting α/β each time; the statistic is the OLS t of γ (studentized, so that permuted
      indicators nearly collinear with the base effects do not dominate the tail), and
      p = (1 + #{t* ≥ t}) / (1 + n_perm) for ``"greater"``. ``"labels"`` is the Mantel-style
      alternative: relabel the student bases (all k! permutations when k! ≤ n_perm) while the
      lineage map stays fixed. It keeps the matrix structure exactly but its
      resolution is poor for small zoos - with 4 student bases p ≥ 1/24, and permutations that swap
      siblings leave the pattern unchanged - so it is opt-in for large zoos.
    * Leave-one-cluster-out: γ refitted without each cluster; min/max show whether a single cell
      drives the result (the PolyPythia-410M lesson: 0.117 → 0.024 by dropping one cell).

    Args:
        lifts: Output of :func:`paired_lifts` (one suite, track and metric).
        order: Registry order of bases (reference level = first present base).
        n_boot: Bootstrap resamples (``ci_method="pairs"`` and the by-relation CIs).
        n_perm: Permutations (upper bound on enumerated relabelings for ``perm="labels"``).
        seed: Random seed.
        indicator: ``"shared_init"`` (relation same or sibling) or ``"same"`` (same base only).
        alternative: Direction of the permutation test.
        perm: ``"cells"`` or ``"labels"``.
        cluster: ``"pair"`` or ``"cell"``.
        lineage: Base -> init lineage id, used by ``perm="labels"``; inferred from the observed
            sibling relations when omitted.
        target_effects: Add δ_target fixed effects when several targets are present.
        ci_method: ``"cr2"`` or ``"pairs"`` (see above).

    Returns:
        Dict with keys ``gamma``, ``ci_low``, ``ci_high``, ``p_perm``, ``identifiable``, ``indicator``,
        ``alternative``, ``perm``, ``cluster``, ``loo_min``, ``loo_max``, ``loo_min_cluster``,
        ``loo_max_cluster`` (cluster labels "teacher→student[/target]"), ``n_cells``, ``n_clusters``,
        ``n_rows``, ``n_shared_clusters``, ``se`` and ``df`` (CR2; NaN for pairs), ``n_boot_used``,
        ``n_perm_used``, ``ci_method``, ``metric``, ``by_relation`` (relation -> {mean, ci_low,
        ci_high, n_cells, n_rows}: mean of per-cluster mean lifts with a percentile bootstrap over
        clusters - descriptive, optimistic with few cells; NaN when the relation is absent).

    Raises:
        UserError: Missing columns, several suites/tracks/metrics, or bad option values.
    """

    _check_fit_options(indicator, alternative, perm, cluster, ci_method)
    data = _fit_rows(lifts)
    des = _design(data, order, indicator, cluster, target_effects)
    result: dict[str, Any] = {
        "indicator": indicator,
        "ci_method": ci_method,
        "alternative": alternative,
        "perm": perm,
        "cluster": cluster,
        "metric": str(data["metric"].iloc[0]) if "metric" in data else "",
        "n_rows": len(data),
        "n_clusters": len(des.members),
        "n_cells": int(data[["teacher_base", "student_base", "target"]].drop_duplicates().shape[0]),
        "n_shared_clusters": int(sum(des.x[m[0]] for m in des.members)),
    }
    gamma = float(_gammas(des.z, des.x, des.y)[0])
    rng = np.random.default_rng([seed, 0])
    result["by_relation"] = _by_relation(
        data, des.codes, len(des.members), n_boot, np.random.default_rng([seed, 3])
    )
    if not np.isfinite(gamma):
        return {**result, "gamma": float("nan"), "identifiable": False, **_NAN_STATS}
    result.update(gamma=gamma, identifiable=True)
    result.update(_gamma_ci(des, ci_method, n_boot, rng))
    result.update(_leave_one_out(des))
    result.update(_permutation_p(des, perm, indicator, alternative, lineage, n_perm, seed))
    return result


def _check_fit_options(indicator: str, alternative: str, perm: str, cluster: str, ci_method: str) -> None:
    check_choice("indicator", indicator, ("shared_init", "same"))
    check_choice("alternative", alternative, ALTERNATIVES)
    check_choice("perm", perm, ("cells", "labels"))
    check_choice("cluster", cluster, ("pair", "cell"))
    check_choice("ci_method", ci_method, ("cr2", "pairs"))


def _fit_rows(lifts: pd.DataFrame) -> pd.DataFrame:
    """The lifts γ is fitted on (trained cells with a relation), after checking the table."""
    need = ("teacher_base", "student_base", "target", "relation", "lift")
    missing = [c for c in need if c not in lifts.columns]
    if missing:
        raise UserError(f"lifts table: missing column(s) {', '.join(missing)}; pass paired_lifts() output")
    require_single(lifts, ("suite", "track", "metric"), "lifts table")
    data = lifts[lifts["relation"].isin(RELATIONS)].reset_index(drop=True)
    if data.empty:
        raise UserError("lifts table: no rows with relation same/sibling/unrelated to fit")
    return data


@dataclass(frozen=True)
class _Design:
    """One fit's arrays: nuisance design ``z``, shared indicator ``x``, lifts ``y``, and the clusters."""

    data: pd.DataFrame
    z: np.ndarray
    x: np.ndarray
    y: np.ndarray
    tb: np.ndarray  # teacher base of each row
    sb: np.ndarray  # student base of each row
    s_levels: list[str]  # student bases, reference first
    codes: np.ndarray  # cluster index of each row
    members: list[np.ndarray]  # row indices of each cluster
    labels: list[str]  # "teacher→student[/target]" of each cluster


def _design(
    data: pd.DataFrame, order: Sequence[str] | None, indicator: str, cluster: str, target_effects: bool
) -> _Design:
    ckeys = ["teacher_base", "student_base"] + (["target"] if cluster == "cell" else [])
    n = len(data)
    y = data["lift"].to_numpy(dtype=float)
    shared_rel = ("same", "sibling") if indicator == "shared_init" else ("same",)
    x = data["relation"].isin(shared_rel).to_numpy(dtype=float)
    tb, sb, tg = (data[c].to_numpy(dtype=object) for c in ("teacher_base", "student_base", "target"))
    t_levels, s_levels = ordered_levels(tb, order), ordered_levels(sb, order)
    parts = [np.ones((n, 1)), _dummies(tb, t_levels), _dummies(sb, s_levels)]
    if target_effects:
        parts.append(_dummies(tg, sorted(set(tg))))
    z = np.hstack(parts)
    codes, uniques = pd.factorize(pd.MultiIndex.from_frame(data[ckeys]))
    members = [np.flatnonzero(codes == c) for c in range(len(uniques))]
    labels = ["→".join(map(str, u[:2])) + (f"/{u[2]}" if len(u) > 2 else "") for u in uniques]
    return _Design(data, z, x, y, tb, sb, s_levels, codes, members, labels)


def _gamma_ci(des: _Design, ci_method: str, n_boot: int, rng: np.random.Generator) -> dict[str, Any]:
    """95% CI of γ: CR2 with Bell-McCaffrey df, or the pairs cluster bootstrap (draws from ``rng``)."""
    if ci_method == "cr2":
        lo, hi, se, df = _cr2_ci(des.z, des.x, des.y, des.members)
        return {"ci_low": lo, "ci_high": hi, "se": se, "df": df, "n_boot_used": 0}
    lo, hi, used = _pairs_ci(des.z, des.x, des.y, des.members, n_boot, rng)
    return {"ci_low": lo, "ci_high": hi, "se": float("nan"), "df": float("nan"), "n_boot_used": used}


def _leave_one_out(des: _Design) -> dict[str, Any]:
    """γ refitted without each cluster: the smallest and largest, and which cluster was left out."""
    loo = []
    for c in range(len(des.members)):
        keep = des.codes != c
        loo.append(_gammas(des.z[keep], des.x[keep], des.y[keep])[0] if keep.any() else np.nan)
    loo_a = np.array(loo, dtype=float)
    if not np.isfinite(loo_a).any():
        return {"loo_min": np.nan, "loo_max": np.nan, "loo_min_cluster": "", "loo_max_cluster": ""}
    i_min, i_max = int(np.nanargmin(loo_a)), int(np.nanargmax(loo_a))
    return {
        "loo_min": float(loo_a[i_min]),
        "loo_max": float(loo_a[i_max]),
        "loo_min_cluster": des.labels[i_min],
        "loo_max_cluster": des.labels[i_max],
    }


def _permutation_p(
    des: _Design,
    perm: str,
    indicator: str,
    alternative: str,
    lineage: Mapping[str, str] | None,
    n_perm: int,
    seed: int,
) -> dict[str, Any]:
    """Permutation p of γ's t statistic (see :func:`shared_base_fit`), and how many permutations it used."""
    z, x, y = des.z, des.x, des.y
    prng = np.random.default_rng([seed, 1])
    if perm == "cells":
        cl_x = np.array([x[m[0]] for m in des.members])
        chunks = []
        for start in range(0, n_perm, 256):  # bounded memory: n_rows × 256 indicator columns at a time
            xs = np.column_stack([prng.permutation(cl_x)[des.codes] for _ in range(min(256, n_perm - start))])
            chunks.append(_t_stats(z, xs, y))
        t_perm = np.concatenate(chunks) if chunks else np.array([])
        exact = False
    else:
        lin = dict(lineage) if lineage is not None else _infer_lineage(des.data)
        xs, exact = _relabel_indicators(des.tb, des.sb, des.s_levels, lin, indicator, n_perm, prng)
        t_perm = _t_stats(z, xs, y)
    t_obs = _t_stats(z, x, y)[0]
    t_perm = t_perm[~np.isnan(t_perm)]
    tol = 1e-9 * max(1.0, abs(t_obs)) if np.isfinite(t_obs) else 0.0
    if alternative == "greater":
        hits = np.sum(t_perm >= t_obs - tol)
    elif alternative == "less":
        hits = np.sum(t_perm <= t_obs + tol)
    else:
        hits = np.sum(np.abs(t_perm) >= abs(t_obs) - tol)
    if exact:  # identity relabeling is among the enumerated ones
        p = hits / len(t_perm) if len(t_perm) else np.nan
    else:
        p = (1 + hits) / (1 + len(t_perm))
    return {"p_perm": float(p), "n_perm_used": len(t_perm)}


def _dummies(col: np.ndarray, levels: list[str]) -> np.ndarray:
    """Treatment coding: one 0/1 column per level except the first (the reference)."""
    if len(levels) <= 1:
        return np.zeros((len(col), 0))
    return np.column_stack([(col == lv).astype(float) for lv in levels[1:]])


def _gammas(z: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """γ for each indicator column of ``x``, by Frisch-Waugh-Lovell.

    Regress x on the nuisance design z; γ = <resid_x, y> / <resid_x, resid_x>. NaN where the
    indicator is (numerically) in the span of z, i.e. γ is not identifiable. Works for a
    rank-deficient z (the pseudo-inverse gives the projection regardless) and many columns at once.
    """
    x2 = x.reshape(len(x), -1)
    r = x2 - z @ (np.linalg.pinv(z) @ x2)
    rr = np.einsum("ij,ij->j", r, r)
    scale = np.maximum(1.0, np.einsum("ij,ij->j", x2, x2))
    with np.errstate(invalid="ignore", divide="ignore"):
        g = (r.T @ y) / rr
    return np.where(rr > 1e-9 * scale, g, np.nan)


def _infer_lineage(lifts: pd.DataFrame) -> dict[str, str]:
    """Lineage groups from observed sibling pairs (union-find); bases never seen as siblings stand alone."""
    parent: dict[str, str] = {}

    def find(a: str) -> str:
        parent.setdefault(a, a)
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for t, s, rel in lifts[["teacher_base", "student_base", "relation"]].itertuples(index=False):
        find(t), find(s)
        if rel == "sibling":
            parent[find(t)] = find(s)
    return {b: find(b) for b in parent}




def _t_stats(z: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """OLS t statistic of γ for each indicator column of ``x`` (homoskedastic standard error).

    The permutation test compares t rather than γ: γ* of a permuted indicator that is nearly
    collinear with the base effects has a large variance and would otherwise dominate the tail.
    Falls back to γ itself when the model leaves no residual degrees of freedom.
    """
    x2 = x.reshape(len(x), -1)
    g = _gammas(z, x2, y)
    dof = len(y) - np.linalg.matrix_rank(z) - 1
    if dof <= 0:
        return g
    ry = y - z @ np.linalg.lstsq(z, y, rcond=None)[0]
    r = x2 - z @ np.linalg.lstsq(z, x2, rcond=None)[0]
    rr = np.einsum("ij,ij->j", r, r)
    sse = np.maximum(ry @ ry - g**2 * rr, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return g * np.sqrt(rr) / np.sqrt(sse / dof)


def _cr2_ci(
    z: np.ndarray, x: np.ndarray, y: np.ndarray, members: list[np.ndarray]
) -> tuple[float, float, float, float]:
    """CR2 cluster-robust CI of γ with Bell-McCaffrey degrees of freedom.

    γ = Σ_i w_i y_i with w = r_x / <r_x, r_x>. CR2 (Bell & McCaffrey 2002) rescales each
    cluster's residuals by (I - H_cc)^(-1/2) to undo OLS shrinkage; the t reference distribution
    uses the Bell-McCaffrey df (Imbens & Kolesar 2016), which is what keeps coverage at few clusters.

    Returns:
        (low, high, se, df); NaNs when there are fewer than 2 clusters.
    """
    g_count = len(members)
    if g_count < 2:
        return float("nan"), float("nan"), float("nan"), float("nan")
    from scipy.special import stdtrit  # inverse Student t CDF

    cr2 = _cr2_parts(z, x, members)
    xfull, p_inv, w, a_pad, gm = cr2.xfull, cr2.p_inv, cr2.w, cr2.a_pad, cr2.gm
    e = y - xfull @ (p_inv @ (xfull.T @ y))
    terms = np.array([a_pad[idx, c] @ e[idx] for c, idx in enumerate(members)])
    se = float(np.sqrt(np.sum(terms**2)))
    m = gm.T @ gm
    denom = float(np.sum(m * m))
    if denom <= 0 or se == 0:
        return float("nan"), float("nan"), se, float("nan")
    df = float(np.trace(m) ** 2 / denom)
    q = float(stdtrit(df, 0.975))
    gamma = float(w @ y)
    return gamma - q * se, gamma + q * se, se, df


@dataclass(frozen=True)
class _CR2:
    """The parts of the CR2 standard error that depend on the design only (not on y).

    With ``e = (I - H) y`` the full model's residuals, γ = w·y and SE² = Σ_c (a_c·e_c)² = Σ_c (gm_c·y)², so
    γ and SE of any outcome vector are a dot product and a matrix product: what makes 10,000 permutations cheap.
    """

    xfull: np.ndarray  # [z, x]
    p_inv: np.ndarray  # (xfull' xfull)^+
    w: np.ndarray  # γ = w @ y
    a_pad: np.ndarray  # column c: A_c w_c on cluster c's rows (A_c = (I - H_cc)^(-1/2))
    gm: np.ndarray  # column c: (I - H) A_c w_c


def _cr2_parts(z: np.ndarray, x: np.ndarray, members: list[np.ndarray]) -> _CR2:
    """The design-only parts of CR2 (Bell & McCaffrey 2002) for the indicator ``x`` given nuisance design ``z``."""
    n, g_count = len(x), len(members)
    xfull = np.column_stack([z, x])
    p_inv = np.linalg.pinv(xfull.T @ xfull)
    rx = x - z @ np.linalg.lstsq(z, x, rcond=None)[0]
    w = rx / (rx @ rx)
    a_pad = np.zeros((n, g_count))
    for c, idx in enumerate(members):
        xc = xfull[idx]
        ev, v = np.linalg.eigh(np.eye(len(idx)) - xc @ p_inv @ xc.T)
        inv_sqrt = np.where(ev > 1e-10, 1.0 / np.sqrt(np.maximum(ev, 1e-10)), 0.0)
        a_pad[idx, c] = v @ (inv_sqrt * (v.T @ w[idx]))
    gm = a_pad - xfull @ (p_inv @ (xfull.T @ a_pad))  # (I - H) A_c w_c for every cluster
    return _CR2(xfull, p_inv, w, a_pad, gm)


def _pairs_ci(
    z: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    members: list[np.ndarray],
    n_boot: int,
    rng: np.random.Generator,
) -> tuple[float, float, int]:
    """Percentile CI from resampling clusters with replacement (degenerate resamples skipped)."""
    boots = []
    for _ in range(n_boot):
        idx = np.concatenate([members[c] for c in rng.integers(0, len(members), len(members))])
        # absent levels become zero columns, which the projection in _gammas ignores
        g = _gammas(z[idx], x[idx], y[idx])[0]
        if np.isfinite(g):
            boots.append(g)
    if len(boots) < 2:
        return float("nan"), float("nan"), len(boots)
    lo, hi = np.quantile(boots, [0.025, 0.975])
    return float(lo), float(hi), len(boots)


def _relabel_indicators(
    tb: np.ndarray,
    sb: np.ndarray,
    s_levels: list[str],
    lineage: Mapping[str, str],
    indicator: str,
    n_perm: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, bool]:
    """Indicator columns for student-label permutations (all of them when k! <= n_perm)."""
    k = len(s_levels)
    if math.factorial(k) <= n_perm:
        perms = [list(p) for p in itertools.permutations(range(k))]
        exact = True
    else:
        perms = [list(rng.permutation(k)) for _ in range(n_perm)]
        exact = False
    pos = {b: i for i, b in enumerate(s_levels)}
    s_idx = np.array([pos[b] for b in sb])
    cols = []
    for p in perms:
        new_sb = np.array(s_levels, dtype=object)[np.array(p)[s_idx]]
        rel = [relation_of(t, s, lineage) for t, s in zip(tb, new_sb, strict=True)]
        cols.append([r in (("same", "sibling") if indicator == "shared_init" else ("same",)) for r in rel])
    return np.array(cols, dtype=float).T.reshape(len(tb), -1), exact


def _by_relation(
    data: pd.DataFrame, codes: np.ndarray, n_clusters: int, n_boot: int, rng: np.random.Generator
) -> dict[str, dict[str, float]]:
    """Mean lift per relation: average of per-cluster means, with a bootstrap over clusters."""
    out: dict[str, dict[str, float]] = {}
    frame = data.assign(_cluster=codes)
    for rel in RELATIONS:
        sub = frame[frame["relation"] == rel]
        cm = sub.groupby("_cluster")["lift"].mean().to_numpy()
        lo, hi = bootstrap_ci(cm, n_boot, rng)
        out[rel] = {"mean": mean_or_nan(cm), "ci_low": lo, "ci_high": hi, "n_cells": len(cm), "n_rows": len(sub)}
    return out



# --------------------------------------------------------------------------------------------
# replicate-level fit (LM track)
# --------------------------------------------------------------------------------------------

#: Fewest permutations the LM report should run for γ (docs/research/statistics.md: "Run ≥ 10,000 permutations").
N_PERM_MIN = 10_000
#: Clusters of :func:`pair_fit`'s CR2 interval: the pair (published), or the previous (teacher base, replicate)
#: clusters, which ignore the drift a base's replicates share (kept to show that failure in the calibration test).
PAIR_CLUSTERS = ("pair", "teacher_replicate")
# --------------------------------------------------------------------------------------------
# pair-level fit (LM track): the design-respecting γ
# --------------------------------------------------------------------------------------------


def pair_fit(
    rows: pd.DataFrame,
    order: Sequence[str] | None = None,
    lineage: Mapping[str, str] | None = None,
    n_perm: int = N_PERM_MIN,
    seed: int = 0,
    indicator: str = "shared_init",
    *,
    alternative: str = "greater",
    value: str = "lift",
    cluster: str = "pair",
) -> dict[str, Any]:
    """γ of ``L = μ + α_teacher + β_student + γ·1[shared] + ε`` with inference that respects the cell drift.

    The four replicates of a teacher base share every pair's systematic drift (a random-sign effect that recurs in
    each replicate), so clustering by (teacher base, replicate) treats dependent rows as independent: under γ = 0
    with the observed drift that test rejects 9-16 % at a nominal 5 % (docs/research/statistics.md). Here:

    * Estimate: OLS on replicate-level lifts with teacher and student fixed effects (Frisch-Waugh-Lovell).
    * p (**primary**): a permutation test that moves whole teacher-base blocks. Each teacher base's rows, every
      pair and replicate with their drift, are relabelled as another teacher base's (the shared indicator is
      recomputed from the new label and the lineage); all k! relabellings when k! ≤ ``n_perm`` (exact, the
      identity counted), else ``n_perm`` random ones, p = (1 + #) / (1 + n). Exact under exchangeable teacher
      bases, whatever the dependence inside a base's block.
    * CI: γ ± t(df)·SE, CR2 cluster-robust SE clustered by pair (teacher base, student base) with Bell-McCaffrey
      df, and its own one-sided p (``p_cr2``).
    * Leave-one-base-out: γ refitted without every row whose teacher or student is that base (a base's pairs move
      together, so leaving out one cell hides a base that carries γ).

    Args:
        rows: Replicate-level rows: ``teacher_base``, ``student_base``, ``relation``, ``replicate`` and ``value``.
        order: Registry order of bases (reference levels).
        lineage: Base -> init lineage id (relabelled teachers' relations); inferred from sibling rows if None.
        n_perm: Most teacher relabellings.
        seed: Seed of random relabellings.
        indicator: ``"shared_init"`` (same or sibling) or ``"same"``.
        alternative: Direction of the permutation p.
        value: The outcome column.
        cluster: CR2 clusters, :data:`PAIR_CLUSTERS` (``"pair"`` is published).

    Returns:
        ``estimate``, ``ci_low``, ``ci_high``, ``se``, ``df``, ``p`` (teacher-block permutation), ``p_cr2``,
        ``n_perm_used``, ``exact``, ``p_floor`` (the smallest p the relabellings can give: a zoo of 4 teacher bases
        with one sibling pair cannot go below 2/24), ``leave_one_base_out`` (base -> γ), ``lobo_min``, ``lobo_max``,
        ``lobo_min_base``, ``lobo_max_base``, ``identifiable``, ``method``, ``indicator``, ``alternative``,
        ``n_rows``, ``n_pairs``, ``n_shared_pairs``, ``n_teachers``. NaN statistics when γ is not identifiable or
        a fit has fewer than 3 pair clusters or a zero standard error.
    """
    check_choice("indicator", indicator, ("shared_init", "same"))
    check_choice("alternative", alternative, ALTERNATIVES)
    check_choice("cluster", cluster, PAIR_CLUSTERS)
    data = _pair_rows(rows, value)
    shared = ("same", "sibling") if indicator == "shared_init" else ("same",)
    y = data[value].to_numpy(dtype=float)
    tb, sb = data["teacher_base"].to_numpy(dtype=object), data["student_base"].to_numpy(dtype=object)
    x = data["relation"].isin(shared).to_numpy(dtype=float)
    t_levels, s_levels = ordered_levels(tb, order), ordered_levels(sb, order)
    z = np.hstack([np.ones((len(y), 1)), _dummies(tb, t_levels), _dummies(sb, s_levels)])
    pair_codes, pairs = pd.factorize(pd.MultiIndex.from_frame(data[["teacher_base", "student_base"]]))
    ckeys = ["teacher_base", "student_base"] if cluster == "pair" else ["teacher_base", "replicate"]
    codes, clusters = pd.factorize(pd.MultiIndex.from_frame(data[ckeys]))
    members = [np.flatnonzero(codes == c) for c in range(len(clusters))]
    result: dict[str, Any] = {
        "method": f"teacher-block permutation (p); CR2 clustered by {cluster.replace('_', ' × ')} (CI)",
        "indicator": indicator, "alternative": alternative, "value": value, "n_rows": len(y),
        "n_pairs": len(pairs), "n_shared_pairs": int(sum(x[pair_codes == c][0] for c in range(len(pairs)))),
        "n_teachers": len(t_levels),
    }
    gamma = float(_gammas(z, x, y)[0])
    lin = dict(lineage) if lineage is not None else _infer_lineage(data)
    nan = {"estimate": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "se": float("nan"),
           "df": float("nan"), "p": float("nan"), "p_cr2": float("nan"), "n_perm_used": 0, "exact": False,
           "p_floor": float("nan"),
           "leave_one_base_out": {}, "lobo_min": float("nan"), "lobo_max": float("nan"), "lobo_min_base": "",
           "lobo_max_base": ""}
    if not np.isfinite(gamma) or len(members) < 3:
        return {**result, **nan, "identifiable": False}
    lo, hi, se, df = _cr2_ci(z, x, y, members)
    if not (np.isfinite(se) and se > 1e-12 * max(1.0, abs(gamma))):
        return {**result, **nan, "estimate": gamma, "identifiable": False}
    from scipy.special import stdtr

    t = gamma / se
    p_cr2 = float(stdtr(df, -t) if alternative == "greater" else stdtr(df, t) if alternative == "less"
                  else min(1.0, 2 * stdtr(df, -abs(t))))
    result.update(estimate=gamma, ci_low=lo, ci_high=hi, se=se, df=df, p_cr2=p_cr2, identifiable=True)
    result.update(_teacher_block_p(z, y, tb, sb, lin, shared, gamma, alternative, n_perm,
                                   np.random.default_rng([seed, 7])))
    result.update(_leave_one_base_out(z, x, y, tb, sb, order))
    return result


def _pair_rows(rows: pd.DataFrame, value: str) -> pd.DataFrame:
    need = ("teacher_base", "student_base", "relation", "replicate", value)
    missing = [c for c in need if c not in rows.columns]
    if missing:
        raise UserError(f"replicate rows: missing column(s) {', '.join(missing)}")
    data = rows[rows["relation"].isin(RELATIONS) & np.isfinite(rows[value].to_numpy(dtype=float))]
    if data.empty:
        raise UserError("replicate rows: no rows with relation same/sibling/unrelated and a finite value to fit")
    return data.reset_index(drop=True)


def _teacher_block_p(z: np.ndarray, y: np.ndarray, tb: np.ndarray, sb: np.ndarray, lineage: Mapping[str, str],
                     shared: tuple[str, ...], gamma: float, alternative: str, n_perm: int,
                     rng: np.random.Generator) -> dict[str, Any]:
    """p of γ over relabellings of whole teacher-base blocks (see :func:`pair_fit`)."""
    bases = sorted(set(tb), key=str)
    k = len(bases)
    if math.factorial(k) <= n_perm:
        perms = [np.array(p) for p in itertools.permutations(range(k))]
        exact = True
    else:
        perms = [np.arange(k)] + [rng.permutation(k) for _ in range(n_perm)]
        exact = False
    pos = {b: i for i, b in enumerate(bases)}
    t_idx = np.array([pos[b] for b in tb])
    students = sorted(set(sb), key=str)
    s_idx = np.array([students.index(s) for s in sb])
    # relation of (teacher label a, student b) for every label and student, once
    table = np.array([[relation_of(a, b, lineage) in shared for b in students] for a in bases], dtype=float)
    xs = np.column_stack([table[p[t_idx], s_idx] for p in perms])
    x_obs = table[t_idx, s_idx]
    g = _gammas(z, xs, y)
    # relabellings that leave the indicator as it is (e.g. swapping two bases of one lineage) always tie with the
    # observed γ: their share is the smallest p this design can give
    floor = float(np.mean(np.all(xs == x_obs[:, None], axis=0)[np.isfinite(g)])) if np.isfinite(g).any() else np.nan
    ok = np.isfinite(g)
    g = g[ok]
    tol = 1e-9 * max(1.0, abs(gamma))
    if alternative == "greater":
        hits = int(np.sum(g >= gamma - tol))
    elif alternative == "less":
        hits = int(np.sum(g <= gamma + tol))
    else:
        hits = int(np.sum(np.abs(g) >= abs(gamma) - tol))
    # exact: the identity is among the enumerated relabellings; Monte Carlo: it is the first column
    p = hits / len(g) if len(g) else float("nan")
    return {"p": float(p), "n_perm_used": int(len(g)), "exact": exact, "p_floor": floor}


def _leave_one_base_out(z: np.ndarray, x: np.ndarray, y: np.ndarray, tb: np.ndarray, sb: np.ndarray,
                        order: Sequence[str] | None) -> dict[str, Any]:
    """γ without every row whose teacher or student is a base, for each base (NaN where not identifiable)."""
    out: dict[str, float] = {}
    for base in ordered_levels([*tb, *sb], order):
        keep = (tb != base) & (sb != base)
        out[str(base)] = float(_gammas(z[keep], x[keep], y[keep])[0]) if keep.sum() > 2 else float("nan")
    finite = {b: v for b, v in out.items() if math.isfinite(v)}
    if not finite:
        return {"leave_one_base_out": out, "lobo_min": float("nan"), "lobo_max": float("nan"), "lobo_min_base": "",
                "lobo_max_base": ""}
    lo_b, hi_b = min(finite, key=finite.__getitem__), max(finite, key=finite.__getitem__)
    return {"leave_one_base_out": out, "lobo_min": finite[lo_b], "lobo_max": finite[hi_b], "lobo_min_base": lo_b,
            "lobo_max_base": hi_b}
