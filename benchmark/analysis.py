"""Statistics on the tidy results table: per-cell transfer effects and the shared-base effect γ.

Both tracks (language-model and classifier) feed one long-format table, one row per
(evaluated model, readout), with the columns in :data:`TIDY_COLUMNS`. Everything here is pure
pandas/numpy (scipy only for the Welch t distribution), deterministic given ``seed``, and does no I/O.

Vocabulary:
    cell: one (teacher_base, student_base, target) combination within a suite and track.
    treated student: a student trained on data from a teacher that carries the trait the readout
        measures (``teacher_trait == target`` by default).
    control student: a student of the same base, trained with the same seed on the same teacher
        base's data, but from the neutral teacher (default), or the untrained base (``"baseline"``),
        or the mean over teachers with a different trait (``"other_trait"``).
    lift: treated value minus control value for one seed.

The shared-base model follows the replication notes (research/replications.md, "Measurement
lessons"): ``lift = μ + α_teacher + β_student + γ·1[shared] + ε``, with the trained run as the unit
and inference clustered by cell.
"""

from __future__ import annotations

import itertools
import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from benchmark.errors import UserError

__all__ = [
    "CELL_COLUMNS",
    "CELL_KEYS",
    "LIFT_COLUMNS",
    "RELATIONS",
    "RESERVED_TRAITS",
    "TIDY_COLUMNS",
    "bootstrap_ci",
    "cell_table",
    "matrix",
    "paired_lifts",
    "permutation_test",
    "relation_of",
    "shared_base_fit",
    "summary_by_relation",
    "validate_tidy",
    "welch_test",
]

#: Columns of the tidy table, with their meaning.
TIDY_COLUMNS: tuple[str, ...] = (
    "suite",  # suite name (str)
    "track",  # "lm" | "classifier"
    "teacher_base",  # base model of the teacher; "" for untrained baselines
    "teacher_trait",  # trait name, "neutral" (control teacher), "aux"/"all_logits", or "baseline"
    "student_base",  # base model of the evaluated student
    "seed",  # student training seed (int)
    "target",  # trait the readout measures ("owl"; classifier: "digits")
    "metric",  # readout name ("logodds", "p_target", "rate", "tv", "accuracy")
    "value",  # readout value (finite float)
    "relation",  # "same" | "sibling" | "unrelated" | "" for baselines
    "student_id",  # artifact id of the student ("" allowed)
    "teacher_id",  # artifact id of the teacher ("" allowed)
)
TRACKS = ("lm", "classifier")
RELATIONS = ("same", "sibling", "unrelated")
#: teacher_trait labels that are never "a trait": the control teacher and the untrained student.
RESERVED_TRAITS = ("neutral", "baseline")
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

_STR_COLUMNS = (
    "suite",
    "track",
    "teacher_base",
    "teacher_trait",
    "student_base",
    "target",
    "metric",
    "relation",
    "student_id",
    "teacher_id",
)
_ROW_KEY = ("suite", "track", "teacher_base", "teacher_trait", "student_base", "seed", "target", "metric")
_ALTERNATIVES = ("greater", "less", "two-sided")
_MAX_EXACT = 20_000  # enumerate all label assignments up to this many; else Monte Carlo
_N_MC = 20_000  # Monte Carlo draws for large permutation tests


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def validate_tidy(df: pd.DataFrame) -> pd.DataFrame:
    """Check a tidy table and return a normalized copy.

    Missing string cells (as read back from CSV) become ``""``; ``seed`` becomes int and ``value``
    float.

    Args:
        df: A table with at least the columns in :data:`TIDY_COLUMNS` (extra columns are kept).

    Returns:
        A normalized copy of ``df``.

    Raises:
        UserError: Missing columns, bad ``track``/``relation`` values, non-integer seeds,
            non-finite values, duplicate rows for one (model, readout), or a ``relation`` that
            contradicts the bases.
    """
    if not isinstance(df, pd.DataFrame):
        raise UserError(f"tidy table: expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in TIDY_COLUMNS if c not in df.columns]
    if missing:
        raise UserError(
            f"tidy table: missing column(s) {', '.join(missing)}; required: {', '.join(TIDY_COLUMNS)}"
        )
    out = df.copy()
    for col in _STR_COLUMNS:
        out[col] = out[col].fillna("").astype(str)
    seeds = pd.to_numeric(out["seed"], errors="coerce")
    bad = seeds.isna() | (seeds != np.round(seeds))
    if bad.any():
        raise UserError(f"tidy table: column seed must hold integers; bad value {out['seed'][bad].iloc[0]!r}")
    out["seed"] = seeds.astype(np.int64)
    values = pd.to_numeric(out["value"], errors="coerce").astype(float)
    bad = ~np.isfinite(values.to_numpy())
    if bad.any():
        row = out[bad].iloc[0]
        raise UserError(
            f"tidy table: column value must be finite; got {row['value']!r} for student "
            f"{row['student_id'] or row['student_base']!r}, metric {row['metric']!r}"
        )
    out["value"] = values
    for col, allowed in (("track", TRACKS), ("relation", (*RELATIONS, ""))):
        bad_vals = sorted(set(out[col]) - set(allowed))
        if bad_vals:
            raise UserError(
                f"tidy table: column {col} has {bad_vals[0]!r}; allowed: "
                f"{', '.join(repr(a) for a in allowed)}"
            )
    trained = out["teacher_trait"] != "baseline"
    unlabeled = trained & (out["relation"] == "")
    if unlabeled.any():
        row = out[unlabeled].iloc[0]
        who = row["student_id"] or row["student_base"]
        raise UserError(
            f"tidy table: relation is empty for trained student {who!r}; only baseline rows may leave it "
            "empty (allowed: same, sibling, unrelated)"
        )
    same_base = out["teacher_base"] == out["student_base"]
    contradicts = trained & ((out["relation"] == "same") != same_base)
    if contradicts.any():
        row = out[contradicts].iloc[0]
        raise UserError(
            f"tidy table: relation {row['relation']!r} contradicts teacher_base "
            f"{row['teacher_base']!r} / student_base {row['student_base']!r}"
        )
    dup = out.duplicated(list(_ROW_KEY), keep=False)
    if dup.any():
        row = out[dup].iloc[0]
        key = ", ".join(f"{k}={row[k]!r}" for k in _ROW_KEY)
        raise UserError(f"tidy table: {int(dup.sum())} duplicate rows for one (model, readout), e.g. {key}")
    return out


def relation_of(teacher_base: str, student_base: str, lineage: Mapping[str, str] | None = None) -> str:
    """Classify a (teacher, student) base pair.

    Args:
        teacher_base: Teacher's base model name.
        student_base: Student's base model name.
        lineage: Base name -> init lineage id. Bases absent from the map are their own lineage.

    Returns:
        ``"same"`` if the bases are equal, ``"sibling"`` if they differ but share an init lineage,
        else ``"unrelated"``.
    """
    if teacher_base == student_base:
        return "same"
    lineage = lineage or {}
    if lineage.get(teacher_base, teacher_base) == lineage.get(student_base, student_base):
        return "sibling"
    return "unrelated"


def _check_choice(name: str, value: str, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise UserError(f"{name} must be one of {', '.join(repr(a) for a in allowed)}; got {value!r}")


def _for_metric(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    d = validate_tidy(df)
    sub = d[d["metric"] == metric]
    if sub.empty:
        raise UserError(
            f"tidy table: no rows with metric {metric!r}; available: {', '.join(sorted(set(d['metric'])))}"
        )
    return sub


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
        df: Tidy table (see :data:`TIDY_COLUMNS`).
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
    _check_choice("control", control, set(d["teacher_trait"]) | {"baseline", "other_trait", "neutral"})
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
# small-sample statistics
# --------------------------------------------------------------------------------------------


def permutation_test(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    alternative: str = "greater",
    *,
    max_exact: int = _MAX_EXACT,
    n_mc: int = _N_MC,
    rng: np.random.Generator | None = None,
) -> float:
    """Two-sample permutation p-value for the difference in means, mean(x) - mean(y).

    All C(n, len(x)) label assignments are enumerated when there are at most ``max_exact`` of them
    (exact p = share of assignments at least as extreme, observed one included); otherwise ``n_mc``
    random permutations give p = (1 + #extreme) / (1 + n_mc).

    Args:
        x: Treated values.
        y: Control values.
        alternative: ``"greater"`` (x larger), ``"less"``, or ``"two-sided"`` (|difference|).
        max_exact: Largest number of assignments to enumerate.
        n_mc: Monte Carlo draws otherwise.
        rng: Random generator for the Monte Carlo case (default: seeded with 0).

    Returns:
        The p-value, or NaN when either sample is empty.

    Example:
        Three treated students all above three controls: one of C(6, 3) = 20 assignments is as
        extreme, so ``permutation_test([4, 5, 6], [1, 2, 3]) == 0.05``.
    """
    _check_choice("alternative", alternative, _ALTERNATIVES)
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    k, m = len(xa), len(ya)
    if k == 0 or m == 0:
        return float("nan")
    pooled = np.concatenate([xa, ya])
    n, total = k + m, pooled.sum()
    tol = 1e-9 * max(1.0, float(np.abs(pooled).max()))  # float ties count as "as extreme"

    def stat(sum_x: np.ndarray) -> np.ndarray:
        d = sum_x / k - (total - sum_x) / m
        return np.abs(d) if alternative == "two-sided" else (-d if alternative == "less" else d)

    observed = stat(np.array([xa.sum()]))[0]
    if math.comb(n, k) <= max_exact:
        combos = np.array(list(itertools.combinations(range(n), k)), dtype=np.int64)
        stats = stat(pooled[combos].sum(axis=1))
        return float(np.mean(stats >= observed - tol))
    rng = rng if rng is not None else np.random.default_rng(0)
    perms = rng.permuted(np.tile(pooled, (n_mc, 1)), axis=1)
    stats = stat(perms[:, :k].sum(axis=1))
    return float((1 + np.sum(stats >= observed - tol)) / (1 + n_mc))


def _p_min(k: int, m: int, max_exact: int = _MAX_EXACT, n_mc: int = _N_MC) -> float:
    """Smallest attainable permutation p for group sizes k, m (a lower bound; ties only raise it)."""
    if k == 0 or m == 0:
        return float("nan")
    c = math.comb(k + m, k)
    return 1.0 / c if c <= max_exact else 1.0 / (1 + n_mc)


def welch_test(
    x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, alternative: str = "greater"
) -> float:
    """Welch's unequal-variance t-test p-value for mean(x) - mean(y).

    Args:
        x: Treated values.
        y: Control values.
        alternative: ``"greater"``, ``"less"`` or ``"two-sided"``.

    Returns:
        The p-value, or NaN when a sample has fewer than 2 values or both have zero variance.
    """
    _check_choice("alternative", alternative, _ALTERNATIVES)
    from scipy.special import stdtr  # Student t CDF; a plain ufunc, ~50x faster than stats.ttest_ind

    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(xa) < 2 or len(ya) < 2:
        return float("nan")
    vx, vy = xa.var(ddof=1) / len(xa), ya.var(ddof=1) / len(ya)
    se2 = vx + vy
    if se2 <= 0:
        return float("nan")
    t = (xa.mean() - ya.mean()) / math.sqrt(se2)
    dof = se2**2 / (vx**2 / (len(xa) - 1) + vy**2 / (len(ya) - 1))  # Welch-Satterthwaite
    if alternative == "greater":
        return float(stdtr(dof, -t))
    if alternative == "less":
        return float(stdtr(dof, t))
    return float(min(1.0, 2 * stdtr(dof, -abs(t))))


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    n_boot: int = 2000,
    rng: np.random.Generator | None = None,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of a mean.

    Args:
        values: The sample (e.g. per-seed lifts of one cell).
        n_boot: Bootstrap resamples.
        rng: Random generator (default: seeded with 0).
        level: Coverage, 0.95 for a 95% interval.

    Returns:
        (low, high); NaNs when fewer than 2 values (one seed carries no spread information).
    """
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float("nan"), float("nan")
    rng = rng if rng is not None else np.random.default_rng(0)
    means = v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _key_rng(seed: int, key: Iterable[Any]) -> np.random.Generator:
    """A generator seeded by ``seed`` and a stable hash of ``key``.

    A cell's CI and p-value then do not depend on which other cells are in the table.
    """
    return np.random.default_rng([seed, zlib.crc32(repr(tuple(key)).encode())])


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
          multiple-comparison correction: the matrix-level claim rests on γ (:func:`shared_base_fit`).

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
    _check_choice("alternative", alternative, _ALTERNATIVES)
    d = _for_metric(df, metric)
    lifts = _paired_lifts(d, metric, treated, control)
    tr = _treated_rows(d, treated)
    cells = tr[[*CELL_KEYS, "relation"]].drop_duplicates(list(CELL_KEYS))
    ctrl = _control_rows(d, treated, control, tr)
    other = _other_rows(d, treated)
    other_lifts = _paired_lifts(d, metric, treated, "other_trait")
    base_mean = (
        d[d["teacher_trait"] == "baseline"]
        .groupby(["suite", "track", "student_base", "target"], as_index=False)["value"]
        .mean()
    )

    def by_cell(frame: pd.DataFrame, col: str) -> dict[tuple, np.ndarray]:
        return {k: g[col].to_numpy() for k, g in frame.groupby(list(CELL_KEYS), sort=False)}

    tr_v, ctrl_v, other_v = by_cell(tr, "value"), by_cell(ctrl, "value"), by_cell(other, "value")
    lift_v, olift_v = by_cell(lifts, "lift"), by_cell(other_lifts, "lift")
    bmean = {tuple(r[:4]): r[4] for r in base_mean.itertuples(index=False)}
    empty = np.array([])
    rows = []
    for cell in cells.itertuples(index=False):
        key = tuple(getattr(cell, k) for k in CELL_KEYS)
        x = tr_v.get(key, empty)
        y = ctrl_v.get(key, empty)
        o = other_v.get(key, empty)
        if pool_controls and control != "other_trait":
            y = np.concatenate([y, o])
        lv, ov = lift_v.get(key, empty), olift_v.get(key, empty)
        rng = _key_rng(seed, key)
        ci = bootstrap_ci(lv, n_boot, rng)
        ci_o = bootstrap_ci(ov, n_boot, rng)
        p = permutation_test(x, y, alternative, rng=rng)
        rows.append(
            {
                **dict(zip(CELL_KEYS, key, strict=True)),
                "relation": cell.relation,
                "metric": metric,
                "treated": treated,
                "control": control,
                "pooled_controls": bool(pool_controls),
                "alternative": alternative,
                "n_seeds": len(lv),
                "n_treated": len(x),
                "n_control": len(y),
                "n_other": len(o),
                "mean_treated": _mean(x),
                "mean_control": _mean(ctrl_v.get(key, empty)),
                "mean_other": _mean(o),
                "mean_baseline": float(bmean.get((key[0], key[1], key[3], key[4]), np.nan)),
                "effect": _mean(lv),
                "ci_low": ci[0],
                "ci_high": ci[1],
                "p_perm": p,
                "p_welch": welch_test(x, y, alternative),
                "p_min": _p_min(len(x), len(y)),
                "significant": bool(p < alpha),
                "significant_01": bool(p < 0.01),
                "effect_vs_other": _mean(ov),
                "ci_low_vs_other": ci_o[0],
                "ci_high_vs_other": ci_o[1],
                "p_perm_vs_other": permutation_test(x, o, alternative, rng=rng),
                "p_welch_vs_other": welch_test(x, o, alternative),
            }
        )
    out = pd.DataFrame(rows, columns=list(CELL_COLUMNS))
    return out.sort_values(list(CELL_KEYS), kind="stable").reset_index(drop=True)


def _mean(v: np.ndarray) -> float:
    return float(np.mean(v)) if len(v) else float("nan")


# --------------------------------------------------------------------------------------------
# shared-base model
# --------------------------------------------------------------------------------------------


def _levels(values: Iterable[str], order: Sequence[str] | None) -> list[str]:
    """Distinct values in registry order first, then any others sorted."""
    present = set(values)
    head = [b for b in (order or []) if b in present]
    return head + sorted(present - set(head))


def _dummies(col: np.ndarray, levels: list[str]) -> np.ndarray:
    """Treatment coding: one 0/1 column per level except the first (the reference)."""
    if len(levels) <= 1:
        return np.zeros((len(col), 0))
    return np.column_stack([(col == lv).astype(float) for lv in levels[1:]])


def _gammas(z: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """γ for each indicator column of ``x``, by Frisch-Waugh-Lovell.

    Regress x on the nuisance design z; γ = <resid_x, y> / <resid_x, resid_x>. NaN where the
    indicator is (numerically) in the span of z, i.e. γ is not identifiable. Works for a
    rank-deficient z (lstsq gives the projection regardless).
    """
    x2 = x.reshape(len(x), -1)
    coef = np.linalg.lstsq(z, x2, rcond=None)[0]
    r = x2 - z @ coef
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
    _check_choice("indicator", indicator, ("shared_init", "same"))
    _check_choice("alternative", alternative, _ALTERNATIVES)
    _check_choice("perm", perm, ("cells", "labels"))
    _check_choice("cluster", cluster, ("pair", "cell"))
    _check_choice("ci_method", ci_method, ("cr2", "pairs"))
    need = ("teacher_base", "student_base", "target", "relation", "lift")
    missing = [c for c in need if c not in lifts.columns]
    if missing:
        raise UserError(f"lifts table: missing column(s) {', '.join(missing)}; pass paired_lifts() output")
    _single(lifts, ("suite", "track", "metric"), "lifts table")
    data = lifts[lifts["relation"].isin(RELATIONS)].reset_index(drop=True)
    if data.empty:
        raise UserError("lifts table: no rows with relation same/sibling/unrelated to fit")
    ckeys = ["teacher_base", "student_base"] + (["target"] if cluster == "cell" else [])
    n = len(data)
    y = data["lift"].to_numpy(dtype=float)
    shared_rel = ("same", "sibling") if indicator == "shared_init" else ("same",)
    x = data["relation"].isin(shared_rel).to_numpy(dtype=float)
    tb, sb, tg = (data[c].to_numpy(dtype=object) for c in ("teacher_base", "student_base", "target"))
    t_levels, s_levels = _levels(tb, order), _levels(sb, order)
    parts = [np.ones((n, 1)), _dummies(tb, t_levels), _dummies(sb, s_levels)]
    if target_effects:
        parts.append(_dummies(tg, sorted(set(tg))))
    z = np.hstack(parts)

    codes, uniques = pd.factorize(pd.MultiIndex.from_frame(data[ckeys]))
    n_clusters = len(uniques)
    members = [np.flatnonzero(codes == c) for c in range(n_clusters)]
    labels = ["→".join(map(str, u[:2])) + (f"/{u[2]}" if len(u) > 2 else "") for u in uniques]
    result: dict[str, Any] = {
        "indicator": indicator,
        "ci_method": ci_method,
        "alternative": alternative,
        "perm": perm,
        "cluster": cluster,
        "metric": str(data["metric"].iloc[0]) if "metric" in data else "",
        "n_rows": n,
        "n_clusters": n_clusters,
        "n_cells": int(data[["teacher_base", "student_base", "target"]].drop_duplicates().shape[0]),
        "n_shared_clusters": int(sum(x[m[0]] for m in members)),
    }
    gamma = float(_gammas(z, x, y)[0])
    rng = np.random.default_rng([seed, 0])
    result["by_relation"] = _by_relation(data, codes, n_clusters, n_boot, np.random.default_rng([seed, 3]))
    nan_stats = {
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
    if not np.isfinite(gamma):
        return {**result, "gamma": float("nan"), "identifiable": False, **nan_stats}
    result.update(gamma=gamma, identifiable=True)

    if ci_method == "cr2":
        lo, hi, se, df = _cr2_ci(z, x, y, members)
        result.update(ci_low=lo, ci_high=hi, se=se, df=df, n_boot_used=0)
    else:
        lo, hi, used = _pairs_ci(z, x, y, members, n_boot, rng)
        result.update(ci_low=lo, ci_high=hi, se=float("nan"), df=float("nan"), n_boot_used=used)

    # leave one cluster out
    loo = []
    for c in range(n_clusters):
        keep = codes != c
        loo.append(_gammas(z[keep], x[keep], y[keep])[0] if keep.any() else np.nan)
    loo_a = np.array(loo, dtype=float)
    if np.isfinite(loo_a).any():
        i_min, i_max = int(np.nanargmin(loo_a)), int(np.nanargmax(loo_a))
        result.update(
            loo_min=float(loo_a[i_min]),
            loo_max=float(loo_a[i_max]),
            loo_min_cluster=labels[i_min],
            loo_max_cluster=labels[i_max],
        )
    else:
        result.update(loo_min=np.nan, loo_max=np.nan, loo_min_cluster="", loo_max_cluster="")

    # permutation
    prng = np.random.default_rng([seed, 1])
    if perm == "cells":
        cl_x = np.array([x[m[0]] for m in members])
        chunks = []
        for start in range(0, n_perm, 256):  # bounded memory: n_rows × 256 indicator columns at a time
            xs = np.column_stack([prng.permutation(cl_x)[codes] for _ in range(min(256, n_perm - start))])
            chunks.append(_t_stats(z, xs, y))
        t_perm = np.concatenate(chunks) if chunks else np.array([])
        exact = False
    else:
        lin = dict(lineage) if lineage is not None else _infer_lineage(data)
        xs, exact = _relabel_indicators(tb, sb, s_levels, lin, indicator, n_perm, prng)
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
    result.update(p_perm=float(p), n_perm_used=len(t_perm))
    return result


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
    n, g_count = len(y), len(members)
    if g_count < 2:
        return float("nan"), float("nan"), float("nan"), float("nan")
    from scipy.special import stdtrit  # inverse Student t CDF

    xfull = np.column_stack([z, x])
    p_inv = np.linalg.pinv(xfull.T @ xfull)
    e = y - xfull @ (p_inv @ (xfull.T @ y))
    rx = x - z @ np.linalg.lstsq(z, x, rcond=None)[0]
    w = rx / (rx @ rx)
    a_pad = np.zeros((n, g_count))  # column c: A_c w_c placed on cluster c's rows
    terms = np.zeros(g_count)
    for c, idx in enumerate(members):
        xc = xfull[idx]
        ev, v = np.linalg.eigh(np.eye(len(idx)) - xc @ p_inv @ xc.T)
        inv_sqrt = np.where(ev > 1e-10, 1.0 / np.sqrt(np.maximum(ev, 1e-10)), 0.0)
        a_c = v @ (inv_sqrt * (v.T @ w[idx]))
        a_pad[idx, c] = a_c
        terms[c] = a_c @ e[idx]
    se = float(np.sqrt(np.sum(terms**2)))
    gm = a_pad - xfull @ (p_inv @ (xfull.T @ a_pad))  # (I - H) A_c w_c for every cluster
    m = gm.T @ gm
    denom = float(np.sum(m * m))
    if denom <= 0 or se == 0:
        return float("nan"), float("nan"), se, float("nan")
    df = float(np.trace(m) ** 2 / denom)
    q = float(stdtrit(df, 0.975))
    gamma = float(w @ y)
    return gamma - q * se, gamma + q * se, se, df


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
        out[rel] = {"mean": _mean(cm), "ci_low": lo, "ci_high": hi, "n_cells": len(cm), "n_rows": len(sub)}
    return out


def _single(frame: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    for col in cols:
        if col in frame.columns and frame[col].nunique() > 1:
            vals = ", ".join(sorted(map(str, frame[col].unique())))
            raise UserError(f"{what}: several {col} values ({vals}); filter to one {col} first")


# --------------------------------------------------------------------------------------------
# views
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
    _single(cells, ("suite", "track"), "cell table")
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
    rows = _levels(sub["teacher_base"], order)
    cols = _levels(sub["student_base"], order)
    out = piv.reindex(index=rows, columns=cols).astype(float)
    out.index.name, out.columns.name = "teacher_base", "student_base"
    return out


def summary_by_relation(cells: pd.DataFrame) -> pd.DataFrame:
    """Descriptive summary of cell effects by relation (no resampling; see :func:`shared_base_fit`).

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
                "mean_effect": _mean(eff.to_numpy()),
                "median_effect": float(eff.median()) if len(eff) else np.nan,
                "sd_effect": float(eff.std(ddof=1)) if len(eff) > 1 else np.nan,
                "mean_effect_vs_other": _mean(sub["effect_vs_other"].dropna().to_numpy()),
                "n_significant": int(sub["significant"].sum()),
                "frac_significant": float(sub["significant"].mean()),
                "n_significant_01": int(sub["significant_01"].sum()),
            }
        )
    return pd.DataFrame(rows, columns=cols)
