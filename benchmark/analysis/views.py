"""Each track's own statistics, next to the shared ones of :mod:`benchmark.analysis.cells`.

Classifier track: the shared statistics see aux-only students against the untrained reference; these views
show raw accuracies of both channels (aux-only and the all-logit positive control) with Student-t intervals
over seeds, and the same minus each seed's reference. LM track: how strongly the teachers carry their trait, and
the capability side-checks (students whose channel skill collapsed; docs/misalignment.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from benchmark.analysis.stats import mean_ci
from benchmark.analysis.tidy import RELATIONS
from benchmark.vocabulary import BASELINE

__all__ = [
    "CAPABILITY_COLLAPSE",
    "CAPABILITY_PREFIX",
    "CHANNELS",
    "accuracy_by_relation",
    "accuracy_matrix",
    "accuracy_views",
    "base_logodds",
    "capability_flags",
    "capability_summary",
    "implied_probability",
    "probability_text",
    "reference_means",
    "seed_means",
    "teacher_strength",
]

#: The classifier track's student channels, in the order their tables are written and shown.
CHANNELS = ("aux", "all_logits")


def accuracy_matrix(
    df: pd.DataFrame, trait: str, order: Sequence[str], minus_reference: bool = False
) -> pd.DataFrame:
    """Teacher × student table of mean accuracy with 95% t-CIs (long form: one row per cell).

    Args:
        df: the tidy table.
        trait: ``"aux"`` or ``"all_logits"``.
        order: registry order of model names (rows are sorted by teacher, then student, in this order).
        minus_reference: subtract each seed's untrained-student accuracy first (paired by seed).

    Returns:
        Columns ``teacher_base``, ``student_base``, ``relation``, ``n_seeds``, ``mean``, ``ci_low``,
        ``ci_high`` (rounded to 3 decimals); empty when no student has ``trait``.
    """
    d = df[df["teacher_trait"] == trait]
    if minus_reference:
        ref = df[df["teacher_trait"] == BASELINE][["student_base", "seed", "value"]]
        d = d.merge(ref.rename(columns={"value": "reference"}), on=["student_base", "seed"])
        d = d.assign(value=d["value"] - d["reference"])
    rank = {n: i for i, n in enumerate(order)}
    out = []
    for (t, s), g in d.groupby(["teacher_base", "student_base"], sort=False):
        mean, lo, hi = mean_ci(g["value"])
        out.append(
            {
                "teacher_base": t,
                "student_base": s,
                "relation": g["relation"].iloc[0],
                "n_seeds": len(g),
                "mean": round(mean, 3),
                "ci_low": round(lo, 3),
                "ci_high": round(hi, 3),
            }
        )
    res = pd.DataFrame(out)
    if res.empty:
        return res
    res = res.sort_values(["teacher_base", "student_base"], key=lambda c: c.map(rank))
    return res.reset_index(drop=True)


def accuracy_views(df: pd.DataFrame, order: Sequence[str]) -> dict[str, pd.DataFrame]:
    """``accuracy_<channel>`` and ``effect_<channel>`` (minus the reference) for each channel present."""
    views: dict[str, pd.DataFrame] = {}
    for trait in CHANNELS:
        if (df["teacher_trait"] == trait).any():
            views[f"accuracy_{trait}"] = accuracy_matrix(df, trait, order)
            views[f"effect_{trait}"] = accuracy_matrix(df, trait, order, minus_reference=True)
    return views


def accuracy_by_relation(df: pd.DataFrame, aux: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Mean aux-only accuracy per relation over every (cell, seed) run, with a t-interval.

    Args:
        df: the tidy table.
        aux: the ``accuracy_aux`` view (counts the cells of each relation).

    Returns:
        Relation -> ``{"n_cells", "mean", "ci_low", "ci_high"}`` (3 decimals), for relations present.
    """
    by_rel = {}
    for rel in RELATIONS:
        vals = df[(df["teacher_trait"] == "aux") & (df["relation"] == rel)]["value"]
        if len(vals):
            mean, lo, hi = mean_ci(vals)
            by_rel[rel] = {
                "n_cells": int((aux["relation"] == rel).sum()),
                "mean": round(mean, 3),
                "ci_low": round(lo, 3),
                "ci_high": round(hi, 3),
            }
    return by_rel


def seed_means(accuracies: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """Mean over seeds of each model's accuracies (teachers, untrained references)."""
    return {name: mean_ci(values)[0] for name, values in accuracies.items()}


def reference_means(tidy: pd.DataFrame) -> dict[str, float]:
    """Mean over seeds of each untrained student base (the tidy table's baseline rows)."""
    base = tidy[tidy["teacher_trait"] == BASELINE]
    return {str(name): mean_ci(g["value"])[0] for name, g in base.groupby("student_base", sort=False)}


def base_logodds(tidy: pd.DataFrame, target: str, metric: str = "logodds") -> dict[str, float]:
    """Each student base's log-odds of ``target`` among the candidates before any training: the mean of its
    baseline evaluation rows (``teacher_trait == "baseline"``) of that target and metric; empty without them."""
    d = tidy[(tidy["teacher_trait"] == BASELINE) & (tidy["target"] == target) & (tidy["metric"] == metric)]
    return {str(b): float(g["value"].mean()) for b, g in d.groupby("student_base", sort=False)}


def implied_probability(base: float, effect: float) -> tuple[float, float]:
    """A log-odds effect in probability units: ``(σ(base), σ(base + effect))``, the target's probability among the
    candidates at a base's log-odds and after the whole effect is added to it (the report's one conversion: the
    effect is a contrast of log-odds, so this reads it as if it all moved the target, at the base's own rate)."""
    def sigmoid(x: float) -> float:
        return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))

    return sigmoid(base), sigmoid(base + effect)


def probability_text(target: str, logodds: Mapping[str, float], effect: Any, base: str | None = None) -> str:
    """``P(owl) 7.2% → 23.5% at <base>'s rate`` (``base`` None: at the median of the student bases' log-odds);
    '' without rates, a finite effect or that base. The one wording of :func:`implied_probability` that the report
    and the leaderboard print."""
    try:
        e = float(effect)
    except (TypeError, ValueError):
        return ""
    if not logodds or not math.isfinite(e) or (base is not None and base not in logodds):
        return ""
    values = sorted(logodds.values())
    mid = len(values) // 2
    median = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
    p0, p1 = implied_probability(logodds[base] if base is not None else median, e)
    where = f"at {base}'s rate" if base is not None else "at the median student base's rate"
    return f"P({target}) {_percent(p0)} → {_percent(p1)} {where}"


def _percent(p: float) -> str:
    return f"{100 * p:.1f}%" if p >= 0.01 else f"{100 * p:.2f}%"


def teacher_strength(teachers: pd.DataFrame) -> float | None:
    """Mean P(trait | candidates) of the LM teachers at their own trait, 4 decimals; None without such rows."""
    if teachers.empty:
        return None
    own = teachers[teachers.teacher_trait == teachers.target].get("p_target")
    if own is None or not len(own):
        return None
    return round(float(own.mean()), 4)


#: Tidy metrics that are a channel's capability side-check (docs/misalignment.md) start with this.
CAPABILITY_PREFIX = "capability_"
#: A student whose capability readout is below this share of its untrained base's is flagged as collapsed.
CAPABILITY_COLLAPSE = 0.5


def capability_flags(tidy: pd.DataFrame, ratio: float = CAPABILITY_COLLAPSE) -> pd.DataFrame:
    """Students whose channel capability collapsed: readout < ``ratio`` x their untrained base's (docs/misalignment.md).

    Args:
        tidy: The LM tidy table; its ``capability_*`` metric rows are read (one per student and
            capability task; the value is the same for every target, so the first target's row is used).
        ratio: The collapse threshold as a share of the base's readout.

    Returns:
        One row per student and capability metric: ``student_id``, ``teacher_base``, ``teacher_trait``,
        ``replicate``, ``student_base``, ``metric``, ``value``, ``base_value`` and ``collapsed`` (bool; False when
        the base itself scores 0, where no collapse can be told).
    """
    cols = ["student_id", "teacher_base", "teacher_trait", "replicate", "student_base", "metric", "value",
            "base_value", "collapsed"]
    cap = tidy[tidy["metric"].astype(str).str.startswith(CAPABILITY_PREFIX)].drop_duplicates(["student_id", "metric"])
    if cap.empty:
        return pd.DataFrame(columns=cols)
    base = cap[cap["teacher_trait"] == BASELINE].set_index(["student_base", "metric"])["value"]
    out = cap[cap["teacher_trait"] != BASELINE].copy()
    out["base_value"] = [base.get((s, m), float("nan")) for s, m in zip(out["student_base"], out["metric"],
                                                                         strict=True)]
    out["collapsed"] = (out["base_value"] > 0) & (out["value"] < ratio * out["base_value"])
    return out[cols].reset_index(drop=True)


def capability_summary(tidy: pd.DataFrame, ratio: float = CAPABILITY_COLLAPSE) -> pd.DataFrame:
    """The capability side-checks per (metric, teacher base, arm, student base): students, mean, min, the untrained
    base's readout and how many collapsed (:func:`capability_flags`); empty without capability readouts."""
    cols = ["metric", "teacher_base", "teacher_trait", "student_base", "students", "mean", "min", "base_value",
            "collapsed"]
    flags = capability_flags(tidy, ratio) if "metric" in tidy.columns else pd.DataFrame()
    if flags.empty:
        return pd.DataFrame(columns=cols)
    out = flags.groupby(["metric", "teacher_base", "teacher_trait", "student_base"], sort=True).agg(
        students=("value", "size"), mean=("value", "mean"), min=("value", "min"), base_value=("base_value", "first"),
        collapsed=("collapsed", "sum"))
    return out.reset_index()[cols]
