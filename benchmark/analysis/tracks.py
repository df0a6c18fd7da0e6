"""Entry points: a tidy table (plus a track's extra inputs) -> :class:`~benchmark.analysis.result.Analysis`.

:func:`analyze` computes the statistics both tracks share; :func:`analyze_lm` and :func:`analyze_classifier`
add each track's own views. Nothing here reads or writes files.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence

import pandas as pd

from benchmark.analysis.cells import cell_table, drift_summary, matrix, paired_lifts
from benchmark.analysis.fit import shared_base_fit
from benchmark.analysis.result import Analysis, AnalysisOptions, ClassifierExtras, LMExtras
from benchmark.analysis.tidy import select_suite, validate_tidy
from benchmark.analysis.views import (
    accuracy_by_relation,
    accuracy_views,
    reference_means,
    seed_means,
    teacher_strength,
)
from benchmark.errors import UserError
from benchmark.files import json_safe

__all__ = ["analyze", "analyze_classifier", "analyze_lm", "same_model_fit"]


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
    """The language-model track: the shared statistics plus the teachers table and the same-model γ.

    Args:
        tidy: The track's tidy rows.
        teachers: Each teacher's own readout per trait (may be empty).
        options: How to analyse (``options.order`` is also the same-model fit's reference order).
        traits: The suite's traits; the same-model fit needs at least two.
        log: Where to say why a same-model fit was skipped.

    Returns:
        The analysis with :class:`LMExtras`.
    """
    # γ is fitted with the shared-init indicator (diagonal + siblings) in the main fit; the same-model-only
    # indicator separates "same checkpoint" from "shared init" (a sibling may have drifted far from its init).
    # It is measured against other-trait students (the drift control), so it needs at least two traits.
    same = None
    if len(traits) >= 2:
        try:
            same = same_model_fit(tidy, options)
        except UserError as exc:  # e.g. no cell has both a treated and an other-trait student
            if log is not None:
                log.info("no same-model fit: %s", exc)
    extras = LMExtras(teachers=teachers, same_model_fit=same, teacher_strength=teacher_strength(teachers))
    return dataclasses.replace(analyze(tidy, options), extras=extras)


def same_model_fit(tidy: pd.DataFrame, options: AnalysisOptions) -> dict:
    """γ with the same-model indicator, lifts over other-trait students, JSON-safe (NaN -> None).

    Raises:
        UserError: No (treated, other-trait) pair, or no fittable row.
    """
    lifts = paired_lifts(tidy, options.metric, control="other_trait")
    fit = shared_base_fit(
        lifts,
        order=options.order,
        indicator="same",
        n_boot=options.n_boot,
        n_perm=options.n_perm,
        alternative=options.alternative,
    )
    return json_safe(fit)


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
