"""The tidy table both tracks feed the analysis: its columns, validation, relations and suite selection."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from benchmark.errors import UserError
from benchmark.vocabulary import AA_PREFIX, BASELINE, NEUTRAL, RESERVED_TRAITS

__all__ = [
    "AA_PREFIX",
    "LM_TIDY_COLUMNS",
    "NEUTRAL",
    "RELATIONS",
    "RESERVED_TRAITS",
    "STR_COLUMNS",
    "TIDY_COLUMNS",
    "TRACKS",
    "check_lineage",
    "relation_of",
    "select_suite",
    "validate_tidy",
]

# The design's vocabulary (AA_PREFIX, NEUTRAL, RESERVED_TRAITS: teacher_trait labels that are never "a trait") lives
# in benchmark.vocabulary; the analysis re-exports it.

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
#: Columns of the language-model track's tidy table, in the order it is published: the shared columns plus
#: ``replicate``, the teacher replicate (an independent teacher with its own dataset; -1 for baselines).
LM_TIDY_COLUMNS: tuple[str, ...] = (
    "suite",
    "track",
    "teacher_base",
    "teacher_trait",  # the arm: a trait, "neutral", "aa:<trait>" (A/A placebo arm) or "baseline"
    "replicate",
    "student_base",
    "seed",
    "student_id",
    "teacher_id",
    "relation",
    "target",
    "metric",
    "value",
)
TRACKS = ("lm", "classifier")
RELATIONS = ("same", "sibling", "unrelated")
#: Tidy columns holding text ("" where empty); the others are ``seed`` (int) and ``value`` (float).
STR_COLUMNS: tuple[str, ...] = (
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


def validate_tidy(df: pd.DataFrame) -> pd.DataFrame:
    """Check a tidy table and return a normalized copy.

    Missing string cells (as read back from CSV) become ``""``; ``seed`` (and ``replicate`` where present)
    becomes int and ``value`` float. A ``replicate`` column (LM track) joins the key of a row: two replicates of
    one arm may use the same student seed.

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
    for col in STR_COLUMNS:
        out[col] = out[col].fillna("").astype(str)
    _normalize_numbers(out)
    for col, allowed in (("track", TRACKS), ("relation", (*RELATIONS, ""))):
        bad_vals = sorted(set(out[col]) - set(allowed))
        if bad_vals:
            raise UserError(
                f"tidy table: column {col} has {bad_vals[0]!r}; allowed: "
                f"{', '.join(repr(a) for a in allowed)}"
            )
    _check_relations(out)
    row_key = [*_ROW_KEY, "replicate"] if "replicate" in out.columns else list(_ROW_KEY)
    dup = out.duplicated(row_key, keep=False)
    if dup.any():
        row = out[dup].iloc[0]
        key = ", ".join(f"{k}={row[k]!r}" for k in row_key)
        raise UserError(f"tidy table: {int(dup.sum())} duplicate rows for one (model, readout), e.g. {key}")
    return out


def _normalize_numbers(out: pd.DataFrame) -> None:
    """Make ``seed`` (and ``replicate``) int64 and ``value`` float in place; reject non-integers and non-finite
    values."""
    for col in ("seed", "replicate"):
        if col not in out.columns:
            continue
        ints = pd.to_numeric(out[col], errors="coerce")
        bad = ints.isna() | (ints != np.round(ints))
        if bad.any():
            raise UserError(f"tidy table: column {col} must hold integers; bad value {out[col][bad].iloc[0]!r}")
        out[col] = ints.astype(np.int64)
    values = pd.to_numeric(out["value"], errors="coerce").astype(float)
    bad = ~np.isfinite(values.to_numpy())
    if bad.any():
        row = out[bad].iloc[0]
        raise UserError(
            f"tidy table: column value must be finite; got {row['value']!r} for student "
            f"{row['student_id'] or row['student_base']!r}, metric {row['metric']!r}"
        )
    out["value"] = values


def _check_relations(out: pd.DataFrame) -> None:
    """Every trained student has a relation, and "same" holds exactly when the two bases are equal."""
    trained = out["teacher_trait"] != BASELINE
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


def select_suite(
    tidy: pd.DataFrame,
    suite: str,
    *,
    track: str | None = None,
    exclude_traits: tuple[str, ...] = (),
    lineage: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """The rows of one suite and track of a validated tidy table, checked against the lineage map.

    Args:
        tidy: Output of :func:`validate_tidy` (may hold other suites).
        suite: Suite to keep.
        track: Track to keep; ``None`` requires the suite to hold a single track.
        exclude_traits: ``teacher_trait`` labels to drop before the lineage check and the statistics.
        lineage: Base -> init lineage id; when given, every trained row's ``relation`` must agree with it.

    Returns:
        The selected rows (a filtered view of ``tidy``).

    Raises:
        UserError: No rows for the suite or track, several tracks and no ``track``, or a relation that
            contradicts ``lineage``.
    """
    sub = tidy[tidy["suite"] == suite]
    if sub.empty:
        raise UserError(
            f"tidy table: no rows for suite {suite!r}; suites present: "
            f"{', '.join(sorted(tidy['suite'].unique()))}"
        )
    if track is not None:
        sub = sub[sub["track"] == track]
        if sub.empty:
            raise UserError(f"tidy table: suite {suite!r} has no rows for track {track!r}")
    elif sub["track"].nunique() > 1:
        raise UserError(
            f"suite {suite!r} holds several tracks ({', '.join(sorted(sub['track'].unique()))}); pass track="
        )
    if exclude_traits:
        sub = sub[~sub["teacher_trait"].isin(exclude_traits)]
    if lineage is not None:
        check_lineage(sub, lineage)
    return sub


def check_lineage(tidy: pd.DataFrame, lineage: Mapping[str, str]) -> None:
    """Raise a :class:`UserError` if a trained row's ``relation`` is not what ``lineage`` implies."""
    trained = tidy[tidy["teacher_trait"] != BASELINE]
    expect = [
        relation_of(t, s, lineage) for t, s in zip(trained["teacher_base"], trained["student_base"], strict=True)
    ]
    bad = trained["relation"].to_numpy() != np.array(expect, dtype=object)
    if bad.any():
        row = trained[bad].iloc[0]
        raise UserError(
            f"tidy table: relation {row['relation']!r} for {row['teacher_base']}→{row['student_base']} "
            f"contradicts the lineage map (expected {expect[int(np.argmax(bad))]!r})"
        )
