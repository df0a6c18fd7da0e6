"""Entry points: a tidy table (plus a track's extra inputs) -> :class:`~benchmark.analysis.result.Analysis`.

:func:`analyze_lm` and :func:`analyze_classifier` are the tracks' analyses: one pair table with the same column
names, γ by :func:`benchmark.analysis.pair_fit`, each track's own views. :func:`analyze` is the legacy per-cell
analysis. Nothing here reads or writes files.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from benchmark.analysis.cells import (
    SEED_PAIR_DEFINITION,
    matrix,
    seed_differences,
    seed_pair_table,
)
from benchmark.analysis.fit import N_PERM_MIN, pair_fit
from benchmark.analysis.pairs import (
    PairDesign,
    base_table,
    contrast_definition,
    contrast_values,
    drift_estimate,
    pair_design,
    pair_lifts,
    pair_table,
    placebo_summary,
    relation_summary,
    teacher_contrasts,
)
from benchmark.analysis.profile import profile_pairs, profile_rows, profile_summary
from benchmark.analysis.result import Analysis, AnalysisOptions, ClassifierExtras, LMExtras
from benchmark.analysis.tidy import LM_TIDY_COLUMNS, select_suite, validate_tidy
from benchmark.analysis.version import ANALYSIS_VERSION
from benchmark.analysis.views import (
    accuracy_by_relation,
    accuracy_views,
    reference_means,
    seed_means,
    teacher_strength,
)
from benchmark.errors import UserError
from benchmark.vocabulary import BASELINE

__all__ = ["analyze_classifier", "analyze_lm"]


def analyze_lm(
    tidy: pd.DataFrame,
    teachers: pd.DataFrame,
    options: AnalysisOptions,
    *,
    traits: Sequence[str],
    candidates: pd.DataFrame | None = None,
    log: logging.Logger | None = None,
) -> Analysis:
    """The language-model track: one target-specific contrast per pair, drift-aware verdicts, a design-respecting γ.

    The teacher replicate is the unit throughout (:mod:`benchmark.analysis.pairs`): each (teacher base, student
    base) pair compares the treated arm's replicate values of W = L(primary trait) − mean L(other traits) with
    those of every control arm; same and sibling pairs are also tested against the drift unrelated pairs show; γ
    is fitted on replicate-level lifts and tested by moving whole teacher-base blocks
    (:func:`benchmark.analysis.fit.pair_fit`). The whole-profile readout (:mod:`benchmark.analysis.profile`) is
    secondary and descriptive.

    Args:
        tidy: The track's tidy rows (columns :data:`benchmark.analysis.LM_TIDY_COLUMNS`).
        teachers: One row per teacher replicate and target: its own readouts and its dataset's facts (may be empty).
        options: ``metric``, ``control``, ``gamma_alternative``, ``n_perm``, ``seed``, ``order``, ``lineage``.
        traits: The suite's traits, in order (the first is the primary trait).
        candidates: The per-candidate table (``candidates.csv``) for the profile readout; None leaves it out.
        log: Where to note a small permutation count.

    Returns:
        The analysis: ``cells`` (the pair table, :data:`benchmark.analysis.pairs.PAIR_COLUMNS`), ``matrix`` (pair
        effects), ``fit`` (``primary`` γ, ``same``, ``drift``, ``by_relation``, ``placebo``, ``profile``) and
        :class:`LMExtras` (teachers, candidates, per-base table, profile matrix).
    """
    if "replicate" not in tidy.columns:  # before validation: without it, replicates look like duplicate rows
        raise UserError("LM tidy table: missing column replicate; required: " + ", ".join(LM_TIDY_COLUMNS))
    table = validate_tidy(tidy)
    table = table[[*LM_TIDY_COLUMNS, *(c for c in table.columns if c not in LM_TIDY_COLUMNS)]]
    sub = select_suite(
        table, options.suite, track="lm", exclude_traits=options.exclude_traits, lineage=options.lineage
    )
    design = pair_design(list(sub["teacher_trait"].unique()), options.control, traits)
    values = contrast_values(sub, options.metric, design)
    if values.empty or (values["arm"] != BASELINE).sum() == 0:
        raise UserError(
            f"tidy table: no student rows with metric {options.metric!r} for every trait; "
            f"available: {', '.join(sorted(set(sub['metric'])))}"
        )
    if options.n_perm < N_PERM_MIN and log is not None:
        log.warning("γ uses %d permutations; at least %d are recommended", options.n_perm, N_PERM_MIN)
    contrasts = teacher_contrasts(teachers, design)
    relations = {(str(t), str(s)): str(r) for t, s, r in
                 values[["teacher_base", "student_base", "relation"]].drop_duplicates().itertuples(index=False)}
    prof = profile_rows(candidates, design.treated, design.controls, relations) if candidates is not None else None
    pairs = pair_table(values, design, metric=options.metric, teacher_contrast=contrasts, order=options.order,
                       seed=options.seed, suite=options.suite,
                       profile=profile_pairs(prof) if prof is not None else None)
    fit = _lm_fit(pairs, pair_lifts(values, design), prof, design, options)
    trait_pairs = pairs[~pairs["placebo"]].rename(columns={"teacher": "teacher_base", "student": "student_base"})
    has_profile = bool(trait_pairs["profile_r"].notna().any())
    extras = LMExtras(
        teachers=teachers,
        teacher_strength=teacher_strength(teachers),
        profile_matrix=matrix(trait_pairs, "profile_r", options.order) if has_profile else None,
        candidates=candidates if candidates is not None else pd.DataFrame(),
        bases=base_table(pairs, contrasts, options.order),
    )
    return Analysis(
        options=options,
        track="lm",
        tidy=table,
        cells=pairs,
        matrix=matrix(trait_pairs, "effect", options.order),
        fit=fit,
        extras=extras,
    )


def _lm_fit(
    pairs: pd.DataFrame,
    lifts: pd.DataFrame,
    profile: pd.DataFrame | None,
    design: PairDesign,
    options: AnalysisOptions,
) -> dict[str, Any]:
    """fit.json of the LM track (see :func:`analyze_lm`); the families and the primary test are declared in it."""

    def fit(rows: pd.DataFrame, indicator: str, seed_offset: int) -> dict[str, Any]:
        return pair_fit(rows, order=options.order, lineage=options.lineage, n_perm=options.n_perm,
                        seed=options.seed + seed_offset, indicator=indicator, alternative=options.gamma_alternative)

    out: dict[str, Any] = {
        "analysis_version": ANALYSIS_VERSION,
        "unit": "teacher replicate (its own teacher, dataset and students)",
        "metric": options.metric,
        "primary_trait": design.primary,
        "treated_arm": design.treated,
        "control_arms": list(design.controls),
        "controls": design.control_rule,
        "traits": list(design.traits),
        "contrast_definition": contrast_definition(design, options.metric),
        "families": {"primary": "same", "others": ["sibling", "unrelated", "placebo"],
                     "correction": "Benjamini-Hochberg within each family"},
        "primary": fit(lifts, "shared_init", 0),
        "same": fit(lifts, "same", 1),
        "drift": drift_estimate(pairs),
        "by_relation": relation_summary(pairs, lifts),
        "placebo": placebo_summary(pairs),
        "profile": None,
    }
    if profile is not None and not profile.empty:
        out["profile"] = {"metric": "profile_r (Fisher z per replicate)", "descriptive": True,
                          "primary": fit(profile, "shared_init", 2), "by_relation": profile_summary(profile)}
    return out


def analyze_classifier(
    tidy: pd.DataFrame,
    options: AnalysisOptions,
    *,
    teacher_accuracy: Mapping[str, Sequence[float]],
) -> Analysis:
    """The classifier track: one pair per (teacher base, student base) with seeds as the unit, a design-respecting γ.

    Each seed has its own inits, teachers and students, so the seed is the independent unit
    (:mod:`benchmark.analysis.cells`): a pair's effect is the mean over seeds of (aux-only student accuracy minus the
    same seed's untrained reference), tested by a two-sided sign-flip test with the interval that inverts it, BH
    within each family (same, sibling, unrelated) and a drift-aware test of same and sibling pairs against the
    unrelated family's spread. γ is :func:`benchmark.analysis.pair_fit` on the seed-level differences, exactly as on
    the LM track (teacher-block permutation p, CR2 clustered by pair, leave-one-base-out). The all-logit positive
    control is shown in the accuracy views, not tested.

    Args:
        tidy: The track's tidy rows (aux-only, all-logit and baseline students).
        options: ``metric``, ``treated`` (``aux``), ``control`` (``baseline``), ``gamma_alternative``, ``n_perm``,
            ``seed``, ``order``, ``lineage``, ``exclude_traits``.
        teacher_accuracy: Teacher name -> test accuracy per seed (the untrained references are the tidy
            table's baseline rows).

    Returns:
        The analysis: ``cells`` (the pair table, :data:`benchmark.analysis.SEED_PAIR_COLUMNS`), ``matrix`` (pair
        effects), ``fit`` (``primary`` γ, ``same``, ``drift``, ``by_relation``) and :class:`ClassifierExtras`.

    Raises:
        UserError: Bad table, unknown suite or metric, a control other than ``baseline``, or no aux-only student
            with a reference at its seed.
    """
    table = validate_tidy(tidy)
    sub = select_suite(
        table, options.suite, track="classifier", exclude_traits=options.exclude_traits, lineage=options.lineage
    )
    diffs = seed_differences(sub, options.metric, treated=options.treated, control=options.control)
    baselines = sub[(sub["metric"] == options.metric) & (sub["teacher_trait"] == BASELINE)]
    pairs = seed_pair_table(diffs, metric=options.metric, suite=options.suite, order=options.order,
                            seed=options.seed, treated=options.treated, baselines=baselines)
    views = accuracy_views(tidy, options.order)
    aux = views["accuracy_aux"]
    summary = {"rows": len(tidy), "accuracy_by_relation": accuracy_by_relation(tidy, aux),
               "aux_cells": aux.to_dict(orient="records")}
    extras = ClassifierExtras(
        accuracy=views,
        summary=summary,
        teacher_accuracy=seed_means(teacher_accuracy),
        reference_accuracy=reference_means(tidy),
    )
    return Analysis(
        options=options,
        track="classifier",
        tidy=table,
        cells=pairs,
        matrix=matrix(pairs, "effect", options.order, rows="teacher", cols="student"),
        fit=_classifier_fit(pairs, diffs, options),
        extras=extras,
    )


def _classifier_fit(pairs: pd.DataFrame, diffs: pd.DataFrame, options: AnalysisOptions) -> dict[str, Any]:
    """fit.json of the classifier track (see :func:`analyze_classifier`); the same keys as the LM track's where
    they mean the same thing, the families and the primary test declared in it."""

    def fit(indicator: str, seed_offset: int) -> dict[str, Any]:
        return pair_fit(diffs, order=options.order, lineage=options.lineage, n_perm=options.n_perm,
                        seed=options.seed + seed_offset, indicator=indicator, alternative=options.gamma_alternative)

    return {
        "analysis_version": ANALYSIS_VERSION,
        "metric": options.metric,
        "unit": "seed (its own inits, teachers and students)",
        "treated_arm": options.treated,
        "control_arms": [options.control],
        "controls": "the untrained student base at the same seed",
        "contrast_definition": SEED_PAIR_DEFINITION.format(treated=options.treated, metric=options.metric),
        "families": {"primary": "same", "others": ["sibling", "unrelated"],
                     "correction": "Benjamini-Hochberg within each family"},
        "primary": fit("shared_init", 0),
        "same": fit("same", 1),
        "drift": drift_estimate(pairs),
        "by_relation": relation_summary(pairs, diffs),
        "placebo": None,
    }
