"""Simulated transfer matrices with the dependence the published data show, to measure each test's size and power.

A matrix holds, for every teacher base i, arm a (the treated arm and two control arms), replicate r and student
base j, one replicate value of the contrast W (:mod:`benchmark.analysis.pairs`):

    W(i, a, r, j) = α_i + β_j + u(i, a, r) + ε(i, a, r, j) + 1[a treated]·(d_ij + γ·shared_ij + δ·same_ij)

* u(i, a, r) ~ N(0, teacher_sd): a teacher replicate's dataset moves all its students alike;
* ε ~ N(0, rep_sd): replicate noise (0.27 log-odds on the published default);
* d_ij ~ N(0, τ): **cell drift**, a random-sign effect of pair (i, j) that recurs in every replicate
  (τ ≈ 0.14-0.27 among unrelated pairs of the published default, docs/research/statistics.md);
* γ: planted extra transfer of shared-init pairs; δ: planted extra transfer of same-model pairs only.

:func:`calibrate` runs the published tests on many seeded matrices and returns their rejection rates: under
γ = δ = 0 those are the tests' real sizes under drift. ``benchmarks/sim_pair_stats.py`` prints them with
planted-γ power; ``tests/test_pair_stats.py`` checks the sizes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from benchmark.analysis.fit import pair_fit
from benchmark.analysis.pairs import drift_tests
from benchmark.analysis.tidy import relation_of

__all__ = ["DEFAULT_BASES", "DEFAULT_LINEAGE", "SimDesign", "calibrate", "simulate_values"]

#: The embedded default's six bases and their init lineage (a sibling and a continued checkpoint of zoo-qwen-a).
DEFAULT_BASES: tuple[str, ...] = ("a", "a-sib", "a-cont", "b", "llama", "gpt2")
DEFAULT_LINEAGE: dict[str, str] = {"a": "a", "a-sib": "a", "a-cont": "a", "b": "b", "llama": "llama", "gpt2": "gpt2"}


@dataclass(frozen=True)
class SimDesign:
    """One simulated design (sizes in log-odds of the contrast W)."""

    bases: tuple[str, ...] = DEFAULT_BASES
    lineage: Mapping[str, str] | None = None
    replicates: int = 4
    n_control_arms: int = 2  # the other trait's arm and the A/A arm: 4 vs 8 at K = 4
    tau: float = 0.14
    rep_sd: float = 0.27
    teacher_sd: float = 0.1
    gamma: float = 0.0
    same_extra: float = 0.0


def simulate_values(design: SimDesign, rng: np.random.Generator) -> pd.DataFrame:
    """One matrix of replicate values, in the columns :func:`benchmark.analysis.pairs.contrast_values` returns."""
    lineage = dict(design.lineage or DEFAULT_LINEAGE)
    b = design.bases
    n, k, n_arms = len(b), design.replicates, 1 + design.n_control_arms
    rel = np.array([[relation_of(i, j, lineage) for j in b] for i in b], dtype=object)
    planted = design.gamma * np.isin(rel, ("same", "sibling")) + design.same_extra * (rel == "same")
    alpha, beta = rng.normal(0, 0.3, n), rng.normal(0, 0.3, n)
    drift = rng.normal(0, design.tau, (n, n))
    u = rng.normal(0, design.teacher_sd, (n, n_arms, k))
    eps = rng.normal(0, design.rep_sd, (n, n_arms, k, n))
    w = alpha[:, None, None, None] + beta[None, None, None, :] + u[..., None] + eps  # (i, arm, r, j)
    w[:, 0] += (drift + planted)[:, None, :]
    arms = np.array(["treated"] + [f"control{c}" for c in range(design.n_control_arms)], dtype=object)
    ii, aa, rr, jj = np.meshgrid(np.arange(n), np.arange(n_arms), np.arange(k), np.arange(n), indexing="ij")
    ii, aa, rr, jj = ii.ravel(), aa.ravel(), rr.ravel(), jj.ravel()
    return pd.DataFrame({"teacher_base": np.array(b, dtype=object)[ii], "arm": arms[aa], "replicate": rr,
                         "student_base": np.array(b, dtype=object)[jj], "relation": rel[ii, jj], "w": w.ravel(),
                         "s": 0.0, "n_students": 1})


def _pairs_and_lifts(values: pd.DataFrame, design: SimDesign) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pair effects with Welch SEs (no permutation CI: what the drift test needs) and replicate lifts."""
    n, k, n_arms = len(design.bases), design.replicates, 1 + design.n_control_arms
    w = values["w"].to_numpy().reshape(n, n_arms, k, n)
    rel = values["relation"].to_numpy().reshape(n, n_arms, k, n)[:, 0, 0, :]
    treated, control = w[:, 0], w[:, 1:].reshape(n, (n_arms - 1) * k, n)
    effect = treated.mean(axis=1) - control.mean(axis=1)
    m = (n_arms - 1) * k
    vx, vy = treated.var(axis=1, ddof=1) / k, control.var(axis=1, ddof=1) / m
    se, se_df = np.sqrt(vx + vy), (vx + vy) ** 2 / (vx**2 / (k - 1) + vy**2 / (m - 1))
    b = np.array(design.bases, dtype=object)
    ti, sj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    pairs = pd.DataFrame({"teacher": b[ti.ravel()], "student": b[sj.ravel()], "relation": rel.ravel(),
                          "family": rel.ravel(), "effect": effect.ravel(), "se": se.ravel(),
                          "se_df": se_df.ravel()})
    lift = treated - w[:, 1:].mean(axis=1)  # (i, r, j): treated replicate r minus the control arms' replicate r
    ii, rr, jj = np.meshgrid(np.arange(n), np.arange(k), np.arange(n), indexing="ij")
    lifts = pd.DataFrame({"teacher_base": b[ii.ravel()], "student_base": b[jj.ravel()],
                          "relation": rel[ii.ravel(), jj.ravel()], "replicate": rr.ravel(), "lift": lift.ravel()})
    return pairs, lifts


def calibrate(design: SimDesign, n_matrices: int, seed: int = 0, alpha: float = 0.05,
              methods: Sequence[str] = ("teacher_block", "cr2_pair", "old_cr2", "pair_zero", "pair_drift"),
              ) -> dict[str, float]:
    """Rejection rates at ``alpha`` of the published tests over ``n_matrices`` seeded matrices.

    Methods:
        ``teacher_block``: γ's primary p (teacher-block permutation, one-sided);
        ``cr2_pair``: γ's CR2 t-test clustered by pair (one-sided);
        ``old_cr2``: the previous γ interval's clusters, (teacher base, replicate), as a one-sided CR2 t-test:
        shown failing;
        ``pair_zero``: same-model pairs, Welch-z against 0 (two-sided), the naive per-pair verdict;
        ``pair_drift``: same-model pairs, the drift-aware test (two-sided), the report's verdict.

    Returns:
        Method -> share of rejections (per matrix for γ, per same-model pair for the pair tests).
    """
    from scipy.special import stdtr

    lineage = dict(design.lineage or DEFAULT_LINEAGE)
    hits = dict.fromkeys(methods, 0)
    pair_tests = 0
    for m in range(n_matrices):
        values = simulate_values(design, np.random.default_rng([seed, m]))
        pairs, lifts = _pairs_and_lifts(values, design)
        if "teacher_block" in methods or "cr2_pair" in methods:
            fit = pair_fit(lifts, order=design.bases, lineage=lineage, n_perm=10_000)
            if "teacher_block" in methods:
                hits["teacher_block"] += int(fit["p"] <= alpha)
            if "cr2_pair" in methods:
                hits["cr2_pair"] += int(fit["p_cr2"] <= alpha)
        if "old_cr2" in methods:
            old = pair_fit(lifts, order=design.bases, lineage=lineage, n_perm=0, cluster="teacher_replicate")
            hits["old_cr2"] += int(old["p_cr2"] <= alpha)
        same = pairs["family"] == "same"
        pair_tests += int(same.sum())
        if "pair_zero" in methods:
            z = pairs.loc[same, "effect"] / pairs.loc[same, "se"]
            df = design.replicates * (1 + design.n_control_arms) - 2
            hits["pair_zero"] += int((2 * stdtr(df, -np.abs(z.to_numpy())) <= alpha).sum())
        if "pair_drift" in methods:
            tested = drift_tests(pairs)
            hits["pair_drift"] += int((tested.loc[same, "p_drift"] <= alpha).sum())
    out = {}
    for name in methods:
        per_pair = name.startswith("pair_")
        out[name] = hits[name] / (pair_tests if per_pair else n_matrices)
    return out
