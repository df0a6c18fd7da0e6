"""The shared-base model: γ, the extra lift of cells whose teacher and student share a base (or an init).

The model follows the replication notes (docs/research/replications.md, "Measurement lessons"):
``lift = μ + α_teacher + β_student + γ·1[shared] + ε``, fitted by :func:`pair_fit` for both tracks on their unit's
rows (LM: teacher replicates; classifier: seeds): p by moving whole teacher-base blocks, a CR2 interval clustered
by pair, leave-one-base-out (docs/research/statistics.md, "Second audit").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from benchmark.analysis.common import ALTERNATIVES, check_choice, ordered_levels
from benchmark.analysis.design import shared_table, teacher_relabellings
from benchmark.analysis.tidy import RELATIONS
from benchmark.errors import UserError

__all__ = ["N_PERM_MIN", "PAIR_CLUSTERS", "pair_fit"]


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
    perms, exact = teacher_relabellings(len(bases), n_perm, rng)
    pos = {b: i for i, b in enumerate(bases)}
    t_idx = np.array([pos[b] for b in tb])
    students = sorted(set(sb), key=str)
    s_idx = np.array([students.index(s) for s in sb])
    # relation of (teacher label a, student b) for every label and student, once
    table = shared_table(bases, students, lineage, shared)
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
