"""The whole-profile readout: does a student inherit its teacher's change over every candidate, not only the target?

A secondary, **descriptive** readout (docs/research/statistics.md): the pair's W is the primary test. One profile
number per pair, from the per-candidate table (``candidates.csv``):

    x_c(r) = teacher replicate r of the treated arm, log-odds of candidate c, minus the mean over the control arms
             of their replicate r's teachers (matched replicate index: the teachers' shared drift cancels);
    y_c(r) = the same for the students of those teachers on student base j (each replicate's students averaged);
    r(i, j, r) = Pearson's correlation of x and y over the candidates;
    profile of pair (i, j) = tanh of the mean over replicates of atanh r, with a t-interval over replicates on that
             Fisher-z scale, back-transformed (so it stays inside [-1, 1]).

γ on this readout uses the same design-respecting fit as the primary one, on the replicates' atanh r.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from benchmark.analysis.stats import mean_ci

__all__ = ["CANDIDATE_COLUMNS", "profile_pairs", "profile_rows"]

#: Columns of the per-candidate table (``candidates.csv``): one row per evaluated model and candidate.
CANDIDATE_COLUMNS: tuple[str, ...] = ("role", "teacher_base", "teacher_trait", "replicate", "student_base", "seed",
                                      "model_id", "candidate", "logodds", "base_logodds")
_CLIP = 0.999999  # atanh of ±1 is infinite: a perfect correlation over 15 candidates is clipped, not dropped


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or a.std() == 0 or b.std() == 0 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def profile_rows(candidates: pd.DataFrame, treated: str, controls: tuple[str, ...],
                 relations: dict[tuple[str, str], str]) -> pd.DataFrame:
    """Per trait pair and replicate index: the profile correlation r and its Fisher z.

    Args:
        candidates: The per-candidate table (columns :data:`CANDIDATE_COLUMNS`).
        treated: The treated arm.
        controls: Its control arms.
        relations: (teacher base, student base) -> relation.

    Returns:
        Columns ``teacher_base``, ``student_base``, ``relation``, ``replicate``, ``r``, ``lift`` (= atanh r,
        clipped); empty when the table has no teacher or student rows.
    """
    cols = ["teacher_base", "student_base", "relation", "replicate", "r", "lift"]
    if candidates is None or candidates.empty:
        return pd.DataFrame(columns=cols)
    c = candidates.copy()
    c["logodds"] = pd.to_numeric(c["logodds"], errors="coerce")
    teach = c[c["role"] == "teacher"].pivot_table(index=["teacher_base", "teacher_trait", "replicate"],
                                                  columns="candidate", values="logodds", aggfunc="mean")
    stud = c[c["role"] == "student"].pivot_table(index=["teacher_base", "teacher_trait", "replicate", "student_base"],
                                                 columns="candidate", values="logodds", aggfunc="mean")
    if teach.empty or stud.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for (i, arm, r, j), y_own in stud.iterrows():
        if arm != treated or (i, arm, r) not in teach.index:
            continue
        t_ctrl = [teach.loc[(i, a, r)] for a in controls if (i, a, r) in teach.index]
        s_ctrl = [stud.loc[(i, a, r, j)] for a in controls if (i, a, r, j) in stud.index]
        if not t_ctrl or not s_ctrl:
            continue
        x = teach.loc[(i, arm, r)] - pd.concat(t_ctrl, axis=1).mean(axis=1)
        y = y_own - pd.concat(s_ctrl, axis=1).mean(axis=1)
        both = pd.concat([x, y], axis=1).dropna()
        rho = _pearson(both.iloc[:, 0].to_numpy(dtype=float), both.iloc[:, 1].to_numpy(dtype=float))
        if math.isfinite(rho):
            rows.append((str(i), str(j), relations.get((str(i), str(j)), ""), int(r), rho,
                         math.atanh(max(-_CLIP, min(_CLIP, rho)))))
    return pd.DataFrame(rows, columns=cols)


def profile_pairs(rows: pd.DataFrame) -> dict[tuple[str, str], tuple[float, float, float]]:
    """(teacher, student) -> (profile r, CI low, CI high) from :func:`profile_rows` (Fisher z, t over replicates)."""
    out: dict[tuple[str, str], tuple[float, float, float]] = {}
    for (i, j), g in rows.groupby(["teacher_base", "student_base"], sort=True):
        m, lo, hi = mean_ci(g["lift"])
        out[(str(i), str(j))] = (math.tanh(m), math.tanh(lo) if math.isfinite(lo) else float("nan"),
                                 math.tanh(hi) if math.isfinite(hi) else float("nan"))
    return out


def profile_summary(rows: pd.DataFrame) -> dict[str, Any]:
    """Mean profile r per relation (tanh of the mean z over the relation's pairs), descriptive."""
    out: dict[str, Any] = {}
    for rel, g in rows.groupby("relation", sort=True):
        per_pair = g.groupby(["teacher_base", "student_base"])["lift"].mean()
        m, lo, hi = mean_ci(per_pair)
        out[str(rel)] = {"mean_r": math.tanh(m), "ci_low": math.tanh(lo) if math.isfinite(lo) else float("nan"),
                         "ci_high": math.tanh(hi) if math.isfinite(hi) else float("nan"), "n_pairs": len(per_pair)}
    return out
