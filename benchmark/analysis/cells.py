"""Per-cell transfer effects: arm selection, paired lifts, the cell table and its matrix/relation views."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from benchmark.analysis.common import ALTERNATIVES, check_choice, mean_or_nan, ordered_levels, require_single
from benchmark.analysis.stats import bootstrap_ci, key_rng, min_attainable_p, permutation_test, welch_test
from benchmark.analysis.tidy import RELATIONS, RESERVED_TRAITS, validate_tidy
from benchmark.errors import UserError

__all__ = [
    "CELL_COLUMNS",
    "CELL_KEYS",
    "LIFT_COLUMNS",
    "DRIFT_GROUPS",
    "cell_table",
    "drift_summary",
    "matrix",
    "paired_lifts",
    "summary_by_relation",
]

#: Keys of one cell of the transfer matrix.
CELL_KEYS: tuple[str, ...] = ("suite", "track", "teacher_base", "student_base", "target")
#: Columns returned by :func:`paired_lifts`.
LIFT_COLUMNS: tuple[str, ...] = (
    *CELL_KEYS,
    "seed",
    "relation",
    "metric",
    "treated",
    "control",
    "treated_value",
    "control_value",
    "lift",
    "student_id",
)
#: Groups of cells in :func:`drift_summary`: name -> relations.
DRIFT_GROUPS: dict[str, tuple[str, ...]] = {"shared-init": ("same", "sibling"), "unrelated": ("unrelated",)}
#: Columns returned by :func:`cell_table`.
CELL_COLUMNS: tuple[str, ...] = (
    *CELL_KEYS,
    "relation",
    "metric",
    "treated",
    "control",
    "pooled_controls",
    "alternative",
    "n_seeds",
    "n_treated",
    "n_control",
    "n_other",
    "mean_treated",
    "mean_control",
    "mean_other",
    "mean_baseline",
    "effect",
    "ci_low",
    "ci_high",
    "p_perm",
    "p_welch",
    "p_min",
    "significant",
    "significant_01",
    "effect_vs_other",
    "ci_low_vs_other",
    "ci_high_vs_other",
    "p_perm_vs_other",
    "p_welch_vs_other",
)


# --------------------------------------------------------------------------------------------
# paired lifts
# --------------------------------------------------------------------------------------------


def paired_lifts(
    df: pd.DataFrame, metric: str, treated: str = "trait", control: str = "neutral"
) -> pd.DataFrame:
    """Per-seed lifts of treated students over matched control students.

    For each cell (teacher_base i, student_base j, target t) and seed s:
    ``lift = value(treated student) - value(control)`` with the same (i, j, t, s).

    Args:
        df: Tidy table (see :data:`benchmark.analysis.TIDY_COLUMNS`).
        metric: Readout to use (rows with other metrics are ignored).
        treated: ``"trait"`` (teacher_trait == target, the language-model track) or a teacher_trait
            label (e.g. ``"aux"`` on the classifier track).
        control: What to subtract:

            * a teacher_trait label, default ``"neutral"``: the student of the same base and seed
              trained on the neutral teacher (same teacher base) - the matched control of the
              replication notes;
            * ``"baseline"``: the untrained student_base j with the same seed, or, if no baseline row
              has that seed, the mean of all baseline rows of j for the target (baselines are usually
              evaluated once);
            * ``"other_trait"``: the mean, per seed, over students whose teacher (same base) had a
              real trait other than the target - the generic-drift control. Only with
              ``treated="trait"``; with a treated label there are no other-trait students.

    Returns:
        One row per (cell, seed) where both a treated and a control value exist, with columns
        :data:`LIFT_COLUMNS` (``treated``/``control`` echo the arguments). Unmatched seeds are dropped.

    Raises:
        UserError: Bad table, unknown metric, no treated students, or no (treated, control) pair.
    """
    out = _paired_lifts(_for_metric(df, metric), metric, treated, control)
    if out.empty:
        raise UserError(
            f"no (treated, control) pairs for metric {metric!r}: no {control!r} control student "
            "matches a treated student's teacher base, student base, target and seed"
        )
    return out


def _paired_lifts(d: pd.DataFrame, metric: str, treated: str, control: str) -> pd.DataFrame:
    """:func:`paired_lifts` on a validated, metric-filtered table; may return no rows."""
    check_choice("control", control, set(d["teacher_trait"]) | {"baseline", "other_trait", "neutral"})
    if control == treated:
        raise UserError(f"control and treated are both {control!r}")
    tr = _treated_rows(d, treated)
    keys = [*CELL_KEYS, "seed"]
    t = tr[[*keys, "relation", "value", "student_id"]].rename(columns={"value": "treated_value"})
    if control == "baseline":
        t = t.assign(control_value=_baseline_values(d, t))
        t = t[t["control_value"].notna()]
    else:
        c = _control_rows(d, treated, control, t)
        c = c.groupby(keys, as_index=False)["value"].mean().rename(columns={"value": "control_value"})
        t = t.merge(c, on=keys, how="inner")
    t = t.assign(metric=metric, treated=treated, control=control)
    t["lift"] = t["treated_value"] - t["control_value"]
    return t[list(LIFT_COLUMNS)].sort_values(keys, kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# per-cell table
# --------------------------------------------------------------------------------------------


def cell_table(
    df: pd.DataFrame,
    metric: str,
    control: str = "neutral",
    n_boot: int = 2000,
    seed: int = 0,
    alternative: str = "greater",
    *,
    treated: str = "trait",
    alpha: float = 0.05,
    pool_controls: bool = False,
) -> pd.DataFrame:
    """One row per cell (teacher_base, student_base, target) with the transfer effect and its tests.

    Defaults and why:
        * ``control="neutral"``: the matched control (same base, same seed, trained on the neutral
          teacher's data) removes the effect of fine-tuning on numbers at all; baselines differ by
          model, so raw values are never compared across bases.
        * ``effect`` is the mean paired lift (per seed, treated - control) and its 95% CI is a
          percentile bootstrap over seeds (NaN with one seed).
        * ``p_perm`` is an exact (or 20,000-draw Monte Carlo) permutation test of treated vs control
          *values*, unpaired: with 3 seeds a paired sign-flip test has only 2^3 = 8 assignments
          (p >= 0.125 one-sided), the unpaired test has C(6, 3) = 20 (p >= 0.05). ``p_min`` reports
          that resolution limit so an unreachable threshold is visible rather than silent.
        * ``alternative="greater"``: the hypothesis is directional (the teacher's trait rises).
        * ``pool_controls=False``: the control group of ``p_perm`` is the ``control`` students only.
          With ``True`` it also includes every other-trait student of the cell (each an individual
          run): under the null "the teacher's trait does not matter" they are exchangeable with the
          neutral students, and the test gains resolution (3 treated vs 12 controls: p >= 1/455).
          It is off by default because that null is stronger than "no lift over neutral": generic
          drift that moves every trait teacher's students also enters the pooled test. Either way
          the ``*_vs_other`` columns show that drift directly - the replication notes' lesson that
          every cell needs other-trait controls.
        * ``significant`` is ``p_perm < alpha``; ``significant_01`` is ``p_perm < 0.01``. No
          multiple-comparison correction: the matrix-level claim rests on γ
          (:func:`benchmark.analysis.shared_base_fit`).

    Args:
        df: Tidy table.
        metric: Readout to analyse.
        control: Control arm, see :func:`paired_lifts`.
        n_boot: Bootstrap resamples per CI.
        seed: Base seed; each cell's generator is derived from it and the cell key.
        alternative: ``"greater"``, ``"less"`` or ``"two-sided"`` for all tests.
        treated: ``"trait"`` or a teacher_trait label, see :func:`paired_lifts`.
        alpha: Significance threshold for ``significant``.
        pool_controls: Add other-trait students to the control group of ``p_perm``/``p_welch``.

    Returns:
        DataFrame with columns :data:`CELL_COLUMNS`: cell keys, relation, ``n_seeds`` (paired seeds),
        ``n_treated``/``n_control``/``n_other`` (students in each arm; n_control counts pooled
        students when pooling), arm means (``mean_other``/``mean_baseline`` NaN when absent),
        ``effect``, ``ci_low``, ``ci_high``, ``p_perm``, ``p_welch``, ``p_min``, the flags, and the
        same statistics of treated vs other-trait students (``effect_vs_other`` is the mean paired
        lift over the per-seed mean of other-trait students). Cells lacking a control have NaN stats.
    """
    check_choice("alternative", alternative, ALTERNATIVES)
    test = _Test(metric, treated, control, pool_controls, alternative, n_boot, seed, alpha)
    cells, arms = _collect_arms(_for_metric(df, metric), test)
    rows = [
        _cell_row(tuple(getattr(cell, k) for k in CELL_KEYS), cell.relation, arms, test)
        for cell in cells.itertuples(index=False)
    ]
    out = pd.DataFrame(rows, columns=list(CELL_COLUMNS))
    return out.sort_values(list(CELL_KEYS), kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class _Test:
    """How every cell of one :func:`cell_table` call is tested (its arguments, bundled)."""

    metric: str
    treated: str
    control: str
    pool_controls: bool
    alternative: str
    n_boot: int
    seed: int
    alpha: float


@dataclass(frozen=True)
class _Arms:
    """Per-cell arrays of every arm, keyed by the cell's :data:`CELL_KEYS` values."""

    treated: dict[tuple, np.ndarray]
    control: dict[tuple, np.ndarray]
    other: dict[tuple, np.ndarray]
    lifts: dict[tuple, np.ndarray]
    other_lifts: dict[tuple, np.ndarray]
    baseline_mean: dict[tuple, float]


def _collect_arms(d: pd.DataFrame, test: _Test) -> tuple[pd.DataFrame, _Arms]:
    """The cells to report (with their relation) and every arm's values per cell."""
    lifts = _paired_lifts(d, test.metric, test.treated, test.control)
    tr = _treated_rows(d, test.treated)
    cells = tr[[*CELL_KEYS, "relation"]].drop_duplicates(list(CELL_KEYS))
    ctrl = _control_rows(d, test.treated, test.control, tr)
    other = _other_rows(d, test.treated)
    other_lifts = _paired_lifts(d, test.metric, test.treated, "other_trait")
    base_mean = (
        d[d["teacher_trait"] == "baseline"]
        .groupby(["suite", "track", "student_base", "target"], as_index=False)["value"]
        .mean()
    )
    arms = _Arms(
        treated=_by_cell(tr, "value"),
        control=_by_cell(ctrl, "value"),
        other=_by_cell(other, "value"),
        lifts=_by_cell(lifts, "lift"),
        other_lifts=_by_cell(other_lifts, "lift"),
        baseline_mean={tuple(r[:4]): r[4] for r in base_mean.itertuples(index=False)},
    )
    return cells, arms


def _by_cell(frame: pd.DataFrame, col: str) -> dict[tuple, np.ndarray]:
    return {k: g[col].to_numpy() for k, g in frame.groupby(list(CELL_KEYS), sort=False)}


def _cell_row(key: tuple, relation: str, arms: _Arms, test: _Test) -> dict[str, Any]:
    """One row of the cell table. The draws of one generator follow a fixed order: lift CI, vs-other CI,
    p vs control, p vs other (changing it changes every published CI and p-value)."""
    empty = np.array([])
    x = arms.treated.get(key, empty)
    y = arms.control.get(key, empty)
    o = arms.other.get(key, empty)
    if test.pool_controls and test.control != "other_trait":
        y = np.concatenate([y, o])
    lv, ov = arms.lifts.get(key, empty), arms.other_lifts.get(key, empty)
    rng = key_rng(test.seed, key)
    ci = bootstrap_ci(lv, test.n_boot, rng)
    ci_o = bootstrap_ci(ov, test.n_boot, rng)
    p = permutation_test(x, y, test.alternative, rng=rng)
    return {
        **dict(zip(CELL_KEYS, key, strict=True)),
        "relation": relation,
        "metric": test.metric,
        "treated": test.treated,
        "control": test.control,
        "pooled_controls": bool(test.pool_controls),
        "alternative": test.alternative,
        "n_seeds": len(lv),
        "n_treated": len(x),
        "n_control": len(y),
        "n_other": len(o),
        "mean_treated": mean_or_nan(x),
        "mean_control": mean_or_nan(arms.control.get(key, empty)),
        "mean_other": mean_or_nan(o),
        "mean_baseline": float(arms.baseline_mean.get((key[0], key[1], key[3], key[4]), np.nan)),
        "effect": mean_or_nan(lv),
        "ci_low": ci[0],
        "ci_high": ci[1],
        "p_perm": p,
        "p_welch": welch_test(x, y, test.alternative),
        "p_min": min_attainable_p(len(x), len(y)),
        "significant": bool(p < test.alpha),
        "significant_01": bool(p < 0.01),
        "effect_vs_other": mean_or_nan(ov),
        "ci_low_vs_other": ci_o[0],
        "ci_high_vs_other": ci_o[1],
        "p_perm_vs_other": permutation_test(x, o, test.alternative, rng=rng),
        "p_welch_vs_other": welch_test(x, o, test.alternative),
    }


# --------------------------------------------------------------------------------------------
# arm selection
# --------------------------------------------------------------------------------------------


def _treated_rows(d: pd.DataFrame, treated: str) -> pd.DataFrame:
    """Rows of students whose teacher carries the treated trait (never baselines or neutral)."""
    if treated == "trait":
        mask = d["teacher_trait"] == d["target"]
    else:
        mask = d["teacher_trait"] == treated
    mask &= ~d["teacher_trait"].isin(RESERVED_TRAITS)
    out = d[mask]
    if out.empty:
        how = "teacher_trait == target" if treated == "trait" else f"teacher_trait == {treated!r}"
        labels = ", ".join(sorted(set(d["teacher_trait"])))
        raise UserError(
            f"no treated students ({how}) for metric {d['metric'].iloc[0]!r}; teacher_trait "
            f"values present: {labels} (classifier track: pass treated='aux')"
        )
    return out


def _other_rows(d: pd.DataFrame, treated: str) -> pd.DataFrame:
    """Rows of students whose teacher had a trait other than the one the readout measures.

    Only defined when ``treated == "trait"``: with a treated label (classifier track: "aux") the
    other labels are different *treatments* ("all_logits"), not other traits, so the arm is empty;
    compare with them explicitly through ``control=<label>``.
    """
    if treated != "trait":
        return d[:0]
    return d[~d["teacher_trait"].isin(RESERVED_TRAITS) & (d["teacher_trait"] != d["target"])]


def _baseline_values(d: pd.DataFrame, keys: pd.DataFrame) -> pd.Series:
    """Baseline value for each row of ``keys`` (needs student_base, target, seed, suite, track).

    The untrained student of the same base and seed if present; otherwise the mean of all baseline
    rows of that base (an untrained model is usually evaluated once, with any seed).
    """
    base = d[d["teacher_trait"] == "baseline"]
    by = ["suite", "track", "student_base", "target"]
    exact = base.groupby([*by, "seed"], as_index=False)["value"].mean()
    anyseed = base.groupby(by, as_index=False)["value"].mean().rename(columns={"value": "value_any"})
    m = keys[[*by, "seed"]].merge(exact, on=[*by, "seed"], how="left").merge(anyseed, on=by, how="left")
    return m["value"].fillna(m["value_any"]).set_axis(keys.index)


def _control_rows(d: pd.DataFrame, treated: str, control: str, cells: pd.DataFrame) -> pd.DataFrame:
    """Individual control students for each cell: CELL_KEYS + seed + value."""
    cols = [*CELL_KEYS, "seed", "value"]
    if control == "baseline":
        base = d[d["teacher_trait"] == "baseline"].drop(columns=["teacher_base"])
        out = (
            cells[list(CELL_KEYS)]
            .drop_duplicates()
            .merge(
                base[["suite", "track", "student_base", "target", "seed", "value"]],
                on=["suite", "track", "student_base", "target"],
            )
        )
        return out[cols]
    if control == "other_trait":
        return _other_rows(d, treated)[cols]
    return d[d["teacher_trait"] == control][cols]


def _for_metric(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The validated rows of one metric (the error names the metrics present)."""
    d = validate_tidy(df)
    sub = d[d["metric"] == metric]
    if sub.empty:
        raise UserError(
            f"tidy table: no rows with metric {metric!r}; available: {', '.join(sorted(set(d['metric'])))}"
        )
    return sub


# --------------------------------------------------------------------------------------------
# views of the cell table
# --------------------------------------------------------------------------------------------


def matrix(
    cells: pd.DataFrame, value: str = "effect", order: Sequence[str] | None = None, target: str | None = None
) -> pd.DataFrame:
    """Teacher-base × student-base matrix of one cell-table column.

    Args:
        cells: Output of :func:`cell_table` (one suite and track).
        value: Column to pivot (``"effect"``, ``"p_perm"``, ``"mean_treated"``, ...).
        order: Registry order of bases; rows and columns follow it (bases missing from it go last,
            sorted), never alphabetical order.
        target: Keep one target; ``None`` averages the column over targets (not meaningful for
            p-values: pass a target for those).

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
    piv = sub.pivot_table(
        index="teacher_base", columns="student_base", values=value, aggfunc="mean", dropna=False
    )
    rows = ordered_levels(sub["teacher_base"], order)
    cols = ordered_levels(sub["student_base"], order)
    out = piv.reindex(index=rows, columns=cols).astype(float)
    out.index.name, out.columns.name = "teacher_base", "student_base"
    return out


def summary_by_relation(cells: pd.DataFrame) -> pd.DataFrame:
    """Descriptive summary of cell effects by relation (no resampling; see ``shared_base_fit``).

    Args:
        cells: Output of :func:`cell_table`.

    Returns:
        One row per relation present, in the order same, sibling, unrelated, with columns
        ``relation``, ``n_cells``, ``mean_effect``, ``median_effect``, ``sd_effect``,
        ``mean_effect_vs_other``, ``n_significant``, ``frac_significant``, ``n_significant_01``.
    """
    cols = [
        "relation",
        "n_cells",
        "mean_effect",
        "median_effect",
        "sd_effect",
        "mean_effect_vs_other",
        "n_significant",
        "frac_significant",
        "n_significant_01",
    ]
    rows = []
    for rel in RELATIONS:
        sub = cells[cells["relation"] == rel]
        if sub.empty:
            continue
        eff = sub["effect"].dropna()
        rows.append(
            {
                "relation": rel,
                "n_cells": len(sub),
                "mean_effect": mean_or_nan(eff.to_numpy()),
                "median_effect": float(eff.median()) if len(eff) else np.nan,
                "sd_effect": float(eff.std(ddof=1)) if len(eff) > 1 else np.nan,
                "mean_effect_vs_other": mean_or_nan(sub["effect_vs_other"].dropna().to_numpy()),
                "n_significant": int(sub["significant"].sum()),
                "frac_significant": float(sub["significant"].mean()),
                "n_significant_01": int(sub["significant_01"].sum()),
            }
        )
    return pd.DataFrame(rows, columns=cols)


def drift_summary(cells: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Lift over the control next to lift over other-trait students, per group of cells (generic drift).

    If students of other-trait teachers gain as much as the treated ones, the lift is generic drift from
    training on a teacher's data, not the teacher's trait.

    Args:
        cells: Output of :func:`cell_table`.

    Returns:
        Group name (:data:`DRIFT_GROUPS`) -> ``n_cells``, ``effect`` and ``effect_vs_other`` (means over the
        cells having both), ``se_effect`` (standard error of the mean effect; NaN for one cell). Empty when
        no cell has other-trait students; groups without such cells are left out.
    """
    out: dict[str, dict[str, float]] = {}
    # the LM track's replicate-level cell table has no such column: its controls already are other-trait teachers
    if "effect_vs_other" not in cells.columns or not (len(cells) and cells["effect_vs_other"].notna().any()):
        return out
    for name, relations in DRIFT_GROUPS.items():
        sub = cells[cells["relation"].isin(relations) & cells["effect"].notna() & cells["effect_vs_other"].notna()]
        if sub.empty:
            continue
        out[name] = {
            "n_cells": len(sub),
            "effect": float(sub["effect"].mean()),
            "effect_vs_other": float(sub["effect_vs_other"].mean()),
            "se_effect": float(sub["effect"].std(ddof=1)) / math.sqrt(len(sub)) if len(sub) > 1 else float("nan"),
        }
    return out
