"""The language-model track's cell statistics, with the teacher replicate as the unit (the honest matrix).

Why the replicate: several students trained on one teacher's dataset measure that one dataset several times; they
are sub-samples, not experiments (docs/research/statistics.md, "Pseudo-replication"). Every number here is
therefore computed from replicate values, and students are averaged inside their replicate first.

Vocabulary:
    arm: the ``teacher_trait`` label of a teacher base's teachers: a trait (``"owl"``), ``"neutral"``, or an
        A/A placebo arm ``"aa:<trait>"`` (a second, independent set of replicates of that trait's recipe).
    replicate value v(i, a, r, j, t): the mean over replicate r's students on student base j of the metric read
        out at target t (teacher base i, arm a).
    control arms of trait t: every other trait arm (``controls="other_trait"``, built exactly like arm t) or the
        neutral arm (``controls="neutral"``, single-trait suites).
    cell (i, j, t): treated = the replicate values of arm t, control = the pooled replicate values of the control
        arms, both read out at t. effect = mean(treated) - mean(control).
    replicate lift L(i, j, t, r) = v(i, t, r, j) - mean over control arms c of v(i, c, r, j), the control
        replicate with the same index r (or the arm's mean when it has no replicate r). When every arm has the
        same replicates (the design), the mean of a cell's lifts is its effect: one definition everywhere.
    placebo row: treated = the ``aa:T`` arm, control = arm T, same statistic; both arms follow one recipe, so
        its p-values must be uniform.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from benchmark.analysis.common import ALTERNATIVES, check_choice, mean_or_nan, ordered_levels
from benchmark.analysis.stats import (
    MAX_EXACT,
    bh_adjust,
    key_rng,
    mean_ci,
    min_attainable_p,
    permutation_test,
    welch_ci,
)
from benchmark.analysis.tidy import RELATIONS
from benchmark.errors import UserError

__all__ = [
    "AA_PREFIX",
    "CONTROLS",
    "LM_CELL_COLUMNS",
    "LMArms",
    "PROFILE_METRICS",
    "REPLICATE_COLUMNS",
    "lift_definition",
    "lm_arms",
    "placebo_summary",
    "profile_rows",
    "relation_summary",
    "pair_summary",
    "replicate_cells",
    "replicate_lifts",
    "replicate_values",
]

#: Prefix of an A/A placebo arm's label: ``aa:cat`` repeats the cat recipe with independent replicates.
AA_PREFIX = "aa:"
#: What a trait arm is compared with.
CONTROLS = ("other_trait", "neutral")
#: Whole-profile readouts (students of trait arms only; target = the arm's trait).
PROFILE_METRICS = ("profile_r", "profile_r_ex")
#: Columns of :func:`replicate_values`.
REPLICATE_COLUMNS: tuple[str, ...] = (
    "teacher_base",
    "arm",
    "replicate",
    "student_base",
    "relation",
    "target",
    "value",
    "n_students",
)
#: Columns of the LM cell table (``cells.csv``), in order.
LM_CELL_COLUMNS: tuple[str, ...] = (
    "teacher",
    "student",
    "trait",  # the treated trait, or "placebo:<target>" for an A/A row
    "relation",
    "placebo",
    "n_reps",  # treated replicates
    "effect",  # mean(treated) - mean(control), over replicate values
    "ci_low",  # Welch t-interval of that difference
    "ci_high",
    "p",  # exact (or 20,000-draw) permutation test over replicate values
    "q",  # Benjamini-Hochberg within the family (trait cells, or placebo rows)
    "mean_treated",
    "mean_control",
    "n_control_reps",
    "profile_r",  # mean over replicates of the students' whole-profile correlation
    "profile_ci_low",
    "profile_ci_high",
    "profile_r_ex",  # the same without the suite's traits among the animals
    "profile_ex_ci_low",
    "profile_ex_ci_high",
    "target",  # readout target
    "treated_arm",
    "control_arms",  # "+"-joined
    "sd_treated",  # SD of the treated replicate values
    "sd_control",
    "p_min",  # smallest p the permutation test can give with these group sizes (a lower bound)
    "n_students",  # treated students over all replicates
    "mean_baseline",  # the untrained student base at the target (context; not used by any test)
    "metric",
    "alternative",
    "suite",
    "track",
)
_PROFILE_NAN = {
    "profile_r": np.nan,
    "profile_ci_low": np.nan,
    "profile_ci_high": np.nan,
    "profile_r_ex": np.nan,
    "profile_ex_ci_low": np.nan,
    "profile_ex_ci_high": np.nan,
}


# --------------------------------------------------------------------------------------------
# arms
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LMArms:
    """The arms of one suite and what each trait arm is compared with.

    Attributes:
        traits: Trait arms, in the suite's order.
        placebo: A/A arms (``aa:<trait>``).
        controls: ``"other_trait"`` or ``"neutral"``.
    """

    traits: tuple[str, ...]
    placebo: tuple[str, ...]
    controls: str

    def controls_of(self, trait: str) -> tuple[str, ...]:
        """The control arms of a trait arm."""
        if self.controls == "neutral":
            return ("neutral",)
        return tuple(t for t in self.traits if t != trait)


def lm_arms(labels: Iterable[str], controls: str = "other_trait", traits: Sequence[str] = ()) -> LMArms:
    """Sort a suite's ``teacher_trait`` labels into trait, placebo and control arms.

    Args:
        labels: The ``teacher_trait`` values present (``"baseline"`` is ignored).
        controls: ``"other_trait"`` (the other trait arms, made exactly like the treated one) or ``"neutral"``.
        traits: The suite's traits, for their order; labels not listed go last, sorted.

    Returns:
        The arms.

    Raises:
        UserError: An unknown ``controls``, no trait arm, a placebo arm whose trait has no arm, a neutral control
            without a neutral arm, or other-trait controls with a single trait.
    """
    check_choice("controls", controls, CONTROLS)
    present = set(labels) - {"baseline"}
    placebo = tuple(sorted(a for a in present if a.startswith(AA_PREFIX)))
    trait_arms = tuple(ordered_levels(present - set(placebo) - {"neutral"}, traits))
    if not trait_arms:
        raise UserError(f"tidy table: no trait arm among the teacher_trait values {sorted(present)}")
    for aa in placebo:
        if aa[len(AA_PREFIX) :] not in trait_arms:
            raise UserError(f"tidy table: placebo arm {aa!r} repeats a trait with no arm; trait arms: {trait_arms}")
    if controls == "neutral" and "neutral" not in present:
        raise UserError("controls is 'neutral' but the tidy table has no neutral arm (teacher_trait 'neutral')")
    if controls == "other_trait" and len(trait_arms) < 2:
        raise UserError(
            f"controls is 'other_trait' but the suite has one trait arm ({trait_arms[0]!r}); a single-trait suite "
            "needs controls: neutral"
        )
    return LMArms(traits=trait_arms, placebo=placebo, controls=controls)


def lift_definition(arms: LMArms, metric: str, alternative: str) -> str:
    """The one-sentence definition of a cell's lift and tests, as :func:`replicate_cells` computes them."""
    if arms.controls == "neutral":
        control = "i's neutral-teacher replicates"
    else:
        control = f"the pooled replicates of i's teachers of every other trait among {', '.join(arms.traits)}"
    return (
        f"Lift of cell (teacher i, student j, trait t) = the mean over i's t-teacher replicates minus the mean over "
        f"{control} of the replicate value (the {metric} of t averaged over that replicate's students on j); "
        f"its CI is Welch's t-interval and p a {alternative} permutation test (exact up to {MAX_EXACT:,} "
        f"arrangements) over replicate values, q is Benjamini-Hochberg over the suite's cells."
    )


# --------------------------------------------------------------------------------------------
# replicate values and lifts
# --------------------------------------------------------------------------------------------


def replicate_values(tidy: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean over each replicate's students of one metric: v(i, a, r, j, t).

    Args:
        tidy: A validated LM tidy table of one suite (with the ``replicate`` column).
        metric: The readout to average.

    Returns:
        One row per (teacher_base, arm, replicate, student_base, target) with columns
        :data:`REPLICATE_COLUMNS`; baselines are left out. Empty when the metric is absent.
    """
    if "replicate" not in tidy.columns:
        raise UserError("LM tidy table: missing column replicate (the teacher replicate of each student)")
    d = tidy[(tidy["metric"] == metric) & (tidy["teacher_trait"] != "baseline")]
    keys = ["teacher_base", "teacher_trait", "replicate", "student_base", "relation", "target"]
    out = d.groupby(keys, sort=False, as_index=False).agg(value=("value", "mean"), n_students=("value", "size"))
    out = out.rename(columns={"teacher_trait": "arm"})
    return out[list(REPLICATE_COLUMNS)].sort_values(keys[:1] + ["arm", "student_base", "target", "replicate"])


@dataclass(frozen=True)
class _ArmValues:
    """One arm's replicate values in one (teacher, student, target), sorted by replicate."""

    replicate: np.ndarray
    value: np.ndarray
    n_students: np.ndarray
    relation: str


def _by_key(values: pd.DataFrame) -> dict[tuple[str, str, str, str], _ArmValues]:
    """(teacher_base, arm, student_base, target) -> that arm's replicate values (plain arrays: this runs per cell)."""
    keys = ["teacher_base", "arm", "student_base", "target"]
    d = values.sort_values([*keys, "replicate"], kind="stable")
    key_arr = d[keys].to_numpy(dtype=object)
    rep, val = d["replicate"].to_numpy(), d["value"].to_numpy(dtype=float)
    n_st, rel = d["n_students"].to_numpy(), d["relation"].to_numpy(dtype=object)
    out: dict[tuple[str, str, str, str], _ArmValues] = {}
    if not len(d):
        return out
    change = np.flatnonzero((key_arr[1:] != key_arr[:-1]).any(axis=1)) + 1  # first row of each key
    for lo, hi in zip(np.r_[0, change], np.r_[change, len(d)], strict=True):
        i, arm, j, t = (str(v) for v in key_arr[lo])
        out[(i, arm, j, t)] = _ArmValues(rep[lo:hi], val[lo:hi], n_st[lo:hi], str(rel[lo]))
    return out


def replicate_lifts(values: pd.DataFrame, arms: LMArms) -> pd.DataFrame:
    """Replicate-level lifts L(i, j, t, r) of every trait cell (see the module docstring).

    Args:
        values: :func:`replicate_values` of the headline metric.
        arms: The suite's arms.

    Returns:
        Columns ``teacher_base``, ``student_base``, ``target`` (= the trait), ``relation``, ``replicate``,
        ``treated_value``, ``control_value``, ``lift``; one row per treated replicate of a cell with a control.
    """
    index = _by_key(values)
    rows = []
    for (i, arm, j, t), g in index.items():
        if arm != t or arm not in arms.traits:
            continue
        controls = [index[(i, c, j, t)] for c in arms.controls_of(t) if (i, c, j, t) in index]
        if not controls:
            continue
        by_rep = [dict(zip(c.replicate.tolist(), c.value.tolist(), strict=True)) for c in controls]
        means = [float(c.value.mean()) for c in controls]
        rel = g.relation
        for r, v in zip(g.replicate.tolist(), g.value.tolist(), strict=True):
            ctrl = float(np.mean([m.get(r, mean) for m, mean in zip(by_rep, means, strict=True)]))
            rows.append((i, j, t, rel, int(r), float(v), ctrl, float(v) - ctrl))
    cols = ["teacher_base", "student_base", "target", "relation", "replicate", "treated_value", "control_value", "lift"]
    return pd.DataFrame(rows, columns=cols)


def profile_rows(values: pd.DataFrame, arms: LMArms) -> pd.DataFrame:
    """The whole-profile readout as replicate-level rows for γ: the replicate value itself is the lift.

    The profile correlation is already a contrast (a student's change against its teacher's change), so nothing
    is subtracted.

    Args:
        values: :func:`replicate_values` of ``profile_r`` (or ``profile_r_ex``).
        arms: The suite's arms (only trait arms read out at their own trait are kept).

    Returns:
        Columns ``teacher_base``, ``student_base``, ``target``, ``relation``, ``replicate``, ``lift``.
    """
    own = values[(values["arm"] == values["target"]) & values["arm"].isin(arms.traits)]
    return own.rename(columns={"value": "lift"})[
        ["teacher_base", "student_base", "target", "relation", "replicate", "lift"]
    ].reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# cell table
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CellTest:
    metric: str
    alternative: str
    seed: int
    suite: str
    track: str


def replicate_cells(
    values: pd.DataFrame,
    arms: LMArms,
    *,
    metric: str,
    alternative: str = "two-sided",
    seed: int = 0,
    order: Sequence[str] | None = None,
    profile: Mapping[str, pd.DataFrame] | None = None,
    baseline: Mapping[tuple[str, str], float] | None = None,
    suite: str = "",
) -> pd.DataFrame:
    """The cell table: one row per trait cell (i, j, t) and, with an A/A arm, one placebo row per (i, j, target).

    Args:
        values: :func:`replicate_values` of the headline metric.
        arms: The suite's arms.
        metric: Name of the headline metric (recorded in each row).
        alternative: Direction of every permutation test (two-sided by default: per-cell effects of random sign
            exist, docs/research/statistics.md).
        seed: Base seed; each row's generator is derived from it and the row's key (Monte Carlo case only).
        order: Registry order of bases (rows are sorted by it).
        profile: Profile metric name -> its :func:`replicate_values` (absent metrics give NaN columns).
        baseline: (student_base, target) -> the untrained base's mean value.
        suite: Suite name (recorded in each row).

    Returns:
        Columns :data:`LM_CELL_COLUMNS`; trait cells first, then placebo rows; ``q`` is Benjamini-Hochberg
        within each of the two families.
    """
    check_choice("alternative", alternative, ALTERNATIVES)
    test = _CellTest(metric, alternative, seed, suite, "lm")
    index = _by_key(values)
    prof = {name: _by_key(v) for name, v in (profile or {}).items()}
    pairs = values[["teacher_base", "student_base", "relation"]].drop_duplicates()
    rows: list[dict[str, Any]] = []
    for i, j, rel in pairs.itertuples(index=False):
        for t in arms.traits:
            x = index.get((i, t, j, t))
            if x is None:
                continue
            ctrl = [c for c in arms.controls_of(t) if (i, c, j, t) in index]
            ys = [index[(i, c, j, t)] for c in ctrl]
            row = _cell_row((i, j, rel, t, t, t, ctrl), x, ys, test, baseline)
            rows.append({**row, **_profile_columns(prof, (i, t, j, t))})
        for aa in arms.placebo:
            trait = aa[len(AA_PREFIX) :]
            for t in arms.traits:
                x, y = index.get((i, aa, j, t)), index.get((i, trait, j, t))
                if x is None or y is None:
                    continue
                row = _cell_row((i, j, rel, f"placebo:{t}", t, aa, [trait]), x, [y], test, baseline)
                rows.append({**row, **_PROFILE_NAN, "placebo": True})
    out = pd.DataFrame(rows, columns=list(LM_CELL_COLUMNS))
    out["placebo"] = out["placebo"].astype(bool)
    for flag in (False, True):
        fam = out["placebo"] == flag
        out.loc[fam, "q"] = bh_adjust(out.loc[fam, "p"].to_numpy())
    return _sort_cells(out, order)


def _cell_row(
    key: tuple[str, str, str, str, str, str, list[str]],
    x: _ArmValues,
    ys: list[_ArmValues],
    test: _CellTest,
    baseline: Mapping[tuple[str, str], float] | None,
) -> dict[str, Any]:
    """One row: difference of means of replicate values, its Welch CI and its permutation p."""
    i, j, rel, trait, target, treated_arm, control_arms = key
    xv = x.value
    yv = np.concatenate([y.value for y in ys]) if ys else np.array([])
    effect = mean_or_nan(xv) - mean_or_nan(yv) if len(yv) else float("nan")
    lo, hi = welch_ci(xv, yv)
    # the generator only matters above 20,000 arrangements (Monte Carlo); keyed so a row's p does not depend
    # on which other rows are in the table
    p = permutation_test(xv, yv, test.alternative, rng=key_rng(test.seed, (i, j, treated_arm, target)))
    return {
        "teacher": i,
        "student": j,
        "trait": trait,
        "relation": rel,
        "placebo": False,
        "n_reps": len(xv),
        "effect": effect,
        "ci_low": lo,
        "ci_high": hi,
        "p": p,
        "q": np.nan,
        "mean_treated": mean_or_nan(xv),
        "mean_control": mean_or_nan(yv),
        "n_control_reps": len(yv),
        "target": target,
        "treated_arm": treated_arm,
        "control_arms": "+".join(control_arms),
        "sd_treated": float(np.std(xv, ddof=1)) if len(xv) > 1 else np.nan,
        "sd_control": float(np.std(yv, ddof=1)) if len(yv) > 1 else np.nan,
        "p_min": _p_min(len(xv), len(yv), test.alternative),
        "n_students": int(x.n_students.sum()),
        "mean_baseline": float((baseline or {}).get((j, target), np.nan)),
        "metric": test.metric,
        "alternative": test.alternative,
        "suite": test.suite,
        "track": test.track,
    }


def _p_min(k: int, m: int, alternative: str) -> float:
    """Smallest attainable permutation p (a lower bound; ties only raise it).

    Two-sided with equal groups, the mirrored split is as extreme as the observed one, so the bound doubles.
    """
    p = min_attainable_p(k, m)
    return min(1.0, 2 * p) if alternative == "two-sided" and k == m and math.comb(k + m, k) <= MAX_EXACT else p


def _profile_columns(prof: Mapping[str, Mapping[tuple, _ArmValues]], key: tuple) -> dict[str, float]:
    """Mean profile correlation over a cell's replicates with a t-interval over replicates (NaN when absent)."""
    out = dict(_PROFILE_NAN)
    names = {"profile_r": ("profile_r", "profile_ci_low", "profile_ci_high"),
             "profile_r_ex": ("profile_r_ex", "profile_ex_ci_low", "profile_ex_ci_high")}
    for metric, cols in names.items():
        g = prof.get(metric, {}).get(key)
        if g is not None:
            out.update(zip(cols, mean_ci(g.value), strict=True))
    return out


def _sort_cells(cells: pd.DataFrame, order: Sequence[str] | None) -> pd.DataFrame:
    """Trait cells before placebo rows; then teacher and student in registry order, then trait."""
    rank = {b: k for k, b in enumerate(ordered_levels([*cells["teacher"], *cells["student"]], order))}
    keyed = cells.assign(_t=cells["teacher"].map(rank), _s=cells["student"].map(rank))
    keyed = keyed.sort_values(["placebo", "_t", "_s", "trait"], kind="stable")
    return keyed.drop(columns=["_t", "_s"]).reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# summaries
# --------------------------------------------------------------------------------------------


def relation_summary(
    cells: pd.DataFrame, per_replicate: pd.DataFrame, cell_column: str = "effect", alpha: float = 0.05
) -> dict[str, dict[str, Any]]:
    """Per relation: mean over cells, a CI with the replicate as unit, and (for effects) the share of small p/q.

    The CI: for each replicate index r, the mean over the relation's cells of the replicate-level rows; then a
    t-interval over r. Replicates with one index are independent of those with another, cells within one
    index are not (they share teachers), hence r is the unit.

    Args:
        cells: :func:`replicate_cells` output (placebo rows are ignored).
        per_replicate: :func:`replicate_lifts` (or :func:`profile_rows`) output, column ``lift``.
        cell_column: Cell-table column averaged for ``mean`` (``"effect"`` or ``"profile_r"``).
        alpha: Threshold of the p/q shares (only when ``cell_column == "effect"``).

    Returns:
        Relation -> ``n_cells``, ``mean`` (of the cells' ``cell_column``), ``ci_low``, ``ci_high``, ``n_reps``
        and, for effects, ``n_p05``, ``frac_p05``, ``n_q05``, ``frac_q05``; only relations with cells.
    """
    trait_cells = cells[~cells["placebo"].astype(bool)]
    out: dict[str, dict[str, Any]] = {}
    for rel in RELATIONS:
        sub = trait_cells[trait_cells["relation"] == rel]
        if not sub.empty:
            rows = per_replicate[per_replicate["relation"] == rel]
            out[rel] = _group_summary(sub, rows, cell_column, alpha)
    return out


def pair_summary(
    cells: pd.DataFrame, per_replicate: pd.DataFrame, relation: str = "sibling", cell_column: str = "effect",
    alpha: float = 0.05,
) -> dict[str, dict[str, Any]]:
    """The cells of one relation split by base pair (both directions), e.g. each kind of sibling on its own.

    A lineage gradient has several kinds of shared-init pairs (a data-order sibling, a continued checkpoint): each
    pair "a ↔ b" (bases sorted) gets the same summary as :func:`relation_summary`.
    """
    trait_cells = cells[~cells["placebo"].astype(bool) & (cells["relation"] == relation)]
    rows = per_replicate[per_replicate["relation"] == relation]
    cell_pair = [" ↔ ".join(sorted(p)) for p in zip(trait_cells["teacher"], trait_cells["student"], strict=True)]
    row_pair = [" ↔ ".join(sorted(p)) for p in zip(rows["teacher_base"], rows["student_base"], strict=True)]
    out: dict[str, dict[str, Any]] = {}
    for pair in sorted(set(cell_pair)):
        sub = trait_cells[[c == pair for c in cell_pair]]
        out[pair] = _group_summary(sub, rows[[r == pair for r in row_pair]], cell_column, alpha)
    return out


def _group_summary(sub: pd.DataFrame, rows: pd.DataFrame, cell_column: str, alpha: float) -> dict[str, Any]:
    """Mean of a group of cells, its CI over replicate indices, and (for effects) the shares of small p and q."""
    per_rep = rows.groupby("replicate")["lift"].mean()
    _, lo, hi = mean_ci(per_rep)
    entry: dict[str, Any] = {
        "n_cells": len(sub),
        "mean": mean_or_nan(sub[cell_column].dropna().to_numpy()),
        "ci_low": lo,
        "ci_high": hi,
        "n_reps": len(per_rep),
    }
    if cell_column == "effect":
        n_p, n_q = int((sub["p"] < alpha).sum()), int((sub["q"] < alpha).sum())
        entry.update(n_p05=n_p, frac_p05=n_p / len(sub), n_q05=n_q, frac_q05=n_q / len(sub))
    return entry


def placebo_summary(cells: pd.DataFrame, alpha: float = 0.05) -> dict[str, Any]:
    """The A/A calibration check: how many placebo rows reach p < alpha (nominally a share alpha of them).

    Returns:
        ``placebo_n_rows`` (rows with a p-value), ``placebo_n_p05``, ``placebo_fpr`` (their share; NaN without
        placebo rows), ``placebo_n_q05`` and ``placebo_arms``.
    """
    rows = cells[cells["placebo"].astype(bool) & cells["p"].notna()]
    n, hits = len(rows), int((rows["p"] < alpha).sum())
    return {
        "placebo_n_rows": n,
        "placebo_n_p05": hits,
        "placebo_fpr": hits / n if n else float("nan"),
        "placebo_n_q05": int((rows["q"] < alpha).sum()),
        "placebo_arms": sorted(map(str, rows["treated_arm"].unique())),
    }
