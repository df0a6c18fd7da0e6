"""Entry points: a tidy table (plus a track's extra inputs) -> :class:`~benchmark.analysis.result.Analysis`.

:func:`analyze` computes the statistics both tracks share; :func:`analyze_lm` and :func:`analyze_classifier`
add each track's own views. Nothing here reads or writes files.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from benchmark.analysis.cells import cell_table, drift_summary, matrix, paired_lifts
from benchmark.analysis.fit import N_PERM_MIN, replicate_fit, shared_base_fit
from benchmark.analysis.replicates import (
    PROFILE_METRICS,
    LMArms,
    lift_definition,
    lm_arms,
    pair_summary,
    placebo_summary,
    profile_rows,
    relation_summary,
    replicate_cells,
    replicate_lifts,
    replicate_values,
)
from benchmark.analysis.result import Analysis, AnalysisOptions, ClassifierExtras, LMExtras
from benchmark.analysis.tidy import LM_TIDY_COLUMNS, select_suite, validate_tidy
from benchmark.analysis.views import (
    accuracy_by_relation,
    accuracy_views,
    reference_means,
    seed_means,
    teacher_strength,
)
from benchmark.errors import UserError

__all__ = ["analyze", "analyze_classifier", "analyze_lm"]


def analyze(tidy: pd.DataFrame, options: AnalysisOptions) -> Analysis:
    """The shared statistics of one suite: cell table, γ fit and effect matrix.

    Args:
        tidy: Tidy table (see :data:`benchmark.analysis.TIDY_COLUMNS`); may hold other suites, which are kept
            in :attr:`Analysis.tidy` but not analysed.
        options: Suite, metric, arms and resampling settings.

    Returns:
        The analysis, without track extras.

    Raises:
        UserError: Bad table, unknown suite/track/metric, or a relation contradicting ``options.lineage``.
    """
    table = validate_tidy(tidy)
    sub = select_suite(
        table, options.suite, track=options.track, exclude_traits=options.exclude_traits, lineage=options.lineage
    )
    cells = cell_table(
        sub,
        options.metric,
        options.control,
        n_boot=options.n_boot,
        seed=options.seed,
        alternative=options.alternative,
        treated=options.treated,
        pool_controls=options.pool_controls,
    )
    lifts = paired_lifts(sub, options.metric, treated=options.treated, control=options.control)
    fit = shared_base_fit(
        lifts,
        order=options.order,
        n_boot=options.n_boot,
        n_perm=options.n_perm,
        seed=options.seed,
        indicator=options.indicator,
        alternative=options.alternative,
        lineage=options.lineage,
    )
    return Analysis(
        options=options,
        track=str(sub["track"].iloc[0]),
        tidy=table,
        cells=cells,
        matrix=matrix(cells, "effect", options.order),
        fit=fit,
        drift=drift_summary(cells),
    )


def analyze_lm(
    tidy: pd.DataFrame,
    teachers: pd.DataFrame,
    options: AnalysisOptions,
    *,
    traits: Sequence[str],
    log: logging.Logger | None = None,
) -> Analysis:
    """The language-model track: replicate-level cells, placebo rows, γ on replicate lifts and the profile readout.

    The teacher replicate is the unit throughout (:mod:`benchmark.analysis.replicates`): cells compare the
    replicate values of the treated arm with those of its control arms (``options.control``: ``"other_trait"``
    or ``"neutral"``), γ is fitted on replicate-level lifts clustered by (teacher base, replicate)
    (:func:`benchmark.analysis.fit.replicate_fit`), and the whole-profile correlation gets the same fit.

    Args:
        tidy: The track's tidy rows (columns :data:`benchmark.analysis.LM_TIDY_COLUMNS`).
        teachers: One row per teacher replicate: its own readouts and its dataset's facts (may be empty).
        options: How to analyse: ``metric``, ``control``, ``alternative`` (per-cell tests), ``gamma_alternative``,
            ``n_perm`` (γ's Freedman-Lane permutations), ``seed``, ``order``, ``lineage``.
        traits: The suite's traits, in order.
        log: Where to note a small permutation count.

    Returns:
        The analysis: ``cells`` (:data:`benchmark.analysis.LM_CELL_COLUMNS`), ``matrix`` (mean effect over traits),
        ``fit`` (γ with ``same``, ``profile``, ``by_relation`` and the placebo false-positive rate) and
        :class:`LMExtras` (teachers, profile matrix).

    Raises:
        UserError: Bad table, no replicate column, unknown suite or metric, arms that do not allow the chosen
            control, or a relation contradicting ``options.lineage``.
    """
    if "replicate" not in tidy.columns:  # before validation: without it, replicates look like duplicate rows
        raise UserError("LM tidy table: missing column replicate; required: " + ", ".join(LM_TIDY_COLUMNS))
    table = validate_tidy(tidy)
    table = table[[*LM_TIDY_COLUMNS, *(c for c in table.columns if c not in LM_TIDY_COLUMNS)]]
    sub = select_suite(
        table, options.suite, track="lm", exclude_traits=options.exclude_traits, lineage=options.lineage
    )
    arms = lm_arms(sub["teacher_trait"], options.control, traits)
    values = replicate_values(sub, options.metric)
    if values.empty:
        raise UserError(
            f"tidy table: no student rows with metric {options.metric!r}; "
            f"available: {', '.join(sorted(set(sub['metric'])))}"
        )
    profile = {m: v for m in PROFILE_METRICS if not (v := replicate_values(sub, m)).empty}
    base = sub[(sub["teacher_trait"] == "baseline") & (sub["metric"] == options.metric)]
    base_means = base.groupby(["student_base", "target"])["value"].mean()
    baseline = {(str(j), str(t)): float(v) for (j, t), v in base_means.items()}
    cells = replicate_cells(
        values, arms, metric=options.metric, alternative=options.alternative, seed=options.seed,
        order=options.order, profile=profile, baseline=baseline, suite=options.suite,
    )
    if options.n_perm < N_PERM_MIN and log is not None:
        log.warning("γ uses %d permutations; at least %d are recommended", options.n_perm, N_PERM_MIN)
    fit = _lm_fit(cells, replicate_lifts(values, arms), profile.get("profile_r"), arms, options)
    by_cell = cells[~cells["placebo"]].rename(
        columns={"teacher": "teacher_base", "student": "student_base", "trait": "target"}
    )
    has_profile = bool(by_cell["profile_r"].notna().any())
    extras = LMExtras(
        teachers=teachers,
        teacher_strength=teacher_strength(teachers),
        profile_matrix=matrix(by_cell, "profile_r", options.order) if has_profile else None,
    )
    return Analysis(
        options=options,
        track="lm",
        tidy=table,
        cells=cells,
        matrix=matrix(by_cell, "effect", options.order),
        fit=fit,
        drift={},
        extras=extras,
    )


def _lm_fit(
    cells: pd.DataFrame,
    lifts: pd.DataFrame,
    profile: pd.DataFrame | None,
    arms: LMArms,
    options: AnalysisOptions,
) -> dict[str, Any]:
    """fit.json of the LM track: γ (shared init) with ``same``, ``by_relation``, ``profile`` and the placebo rate."""

    def fit(rows: pd.DataFrame, indicator: str, seed_offset: int) -> dict[str, Any]:
        return replicate_fit(
            rows, order=options.order, n_perm=options.n_perm, seed=options.seed + seed_offset,
            indicator=indicator, alternative=options.gamma_alternative,
        )

    out = fit(lifts, "shared_init", 0)
    out["metric"] = options.metric
    out["same"] = fit(lifts, "same", 1)
    out["by_relation"] = relation_summary(cells, lifts)
    out["by_sibling_pair"] = pair_summary(cells, lifts)
    out["profile"] = None
    rows = profile_rows(profile, arms) if profile is not None else None
    if rows is not None and not rows.empty:
        out["profile"] = {
            **fit(rows, "shared_init", 2),
            "metric": "profile_r",
            "same": fit(rows, "same", 3),
            "by_relation": relation_summary(cells, rows, cell_column="profile_r"),
            "by_sibling_pair": pair_summary(cells, rows, cell_column="profile_r"),
        }
    out.update(placebo_summary(cells))
    out.update(
        controls=arms.controls,
        traits=list(arms.traits),
        cell_alternative=options.alternative,
        lift_definition=lift_definition(arms, options.metric, options.alternative),
    )
    return out


def analyze_classifier(
    tidy: pd.DataFrame,
    options: AnalysisOptions,
    *,
    teacher_accuracy: Mapping[str, Sequence[float]],
) -> Analysis:
    """The classifier track: the shared statistics plus raw-accuracy views of both channels.

    Args:
        tidy: The track's tidy rows (aux-only, all-logit and baseline students).
        options: How to analyse; ``options.order`` orders the accuracy tables too.
        teacher_accuracy: Teacher name -> test accuracy per seed (the untrained references are the tidy
            table's baseline rows).

    Returns:
        The analysis with :class:`ClassifierExtras`.
    """
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
    return dataclasses.replace(analyze(tidy, options), extras=extras)
