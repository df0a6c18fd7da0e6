"""The result of analysing one suite (:class:`Analysis`) and the files it is published as.

:func:`benchmark.analysis.analyze` and the track entry points build an :class:`Analysis`; :func:`write_analysis`
writes it into the report node's directory; :func:`read_analysis` reads those files back. The report
(:mod:`benchmark.report`) renders from an Analysis and computes no statistics.

Files, and the field each one holds:

==========================================  ==========================================================
``tidy.csv``                                :attr:`Analysis.tidy`
``pairs.csv``                               :attr:`Analysis.cells` (LM: the pair table; classifier: cells)
``matrix.csv``                              :attr:`Analysis.matrix`
``fit.json``                                :attr:`Analysis.fit` (NaN written as null)
``teachers.csv``                            :attr:`LMExtras.teachers` (only when not empty)
``candidates.csv``                          :attr:`LMExtras.candidates` (only when not empty)
``bases.csv``                               :attr:`LMExtras.bases` (only when computed)
``profile_matrix.csv``                      :attr:`LMExtras.profile_matrix` (only when computed)
``fit_same_model.json``                     :attr:`LMExtras.same_model_fit` (only when fitted)
``accuracy_<channel>.csv``, ``effect_…``    :attr:`ClassifierExtras.accuracy`
``classifier_summary.json``                 :attr:`ClassifierExtras.summary`
==========================================  ==========================================================

The byte format of each file is part of the published results (``results/suites/``): ``fit.json`` has no
trailing newline while the other JSON files do, for instance. Keep it when editing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.analysis.tidy import STR_COLUMNS, validate_tidy
from benchmark.analysis.views import CHANNELS, reference_means, teacher_strength
from benchmark.files import atomic_write_json, atomic_write_text, json_safe
from benchmark.vocabulary import NEUTRAL

__all__ = [
    "SHARED_FILES",
    "Analysis",
    "AnalysisOptions",
    "ClassifierExtras",
    "LMExtras",
    "read_analysis",
    "write_analysis",
]

#: Key -> file name of the files every track writes (:func:`write_analysis` returns paths under these keys).
SHARED_FILES: dict[str, str] = {"cells": "pairs.csv", "matrix": "matrix.csv", "tidy": "tidy.csv", "fit": "fit.json"}
_CELL_STR_COLUMNS = (
    "family",
    "teacher",
    "student",
    "trait",
    "treated_arm",
    "control_arms",
    "suite",
    "track",
    "teacher_base",
    "student_base",
    "target",
    "relation",
    "metric",
    "treated",
    "control",
    "alternative",
)


@dataclass(frozen=True)
class AnalysisOptions:
    """Which rows of a tidy table are analysed, and how (see :func:`benchmark.analysis.analyze_lm` and
    :func:`benchmark.analysis.analyze_classifier`).

    Attributes:
        suite: Suite to analyse (the table may hold others).
        metric: Readout to analyse.
        track: Track to analyse; ``None`` requires the suite to hold a single track.
        order: Registry order of bases (matrix rows/columns, γ's reference level).
        lineage: Base -> init lineage id; rows' ``relation`` must agree with it. Also the lineage of γ's
            teacher-block relabellings.
        treated: ``"trait"`` or a teacher_trait label (classifier track: ``"aux"``).
        control: LM track: ``"other_trait"`` (every other arm) or ``"neutral"``; classifier track: the
            reference label (``"baseline"``).
        alternative: Direction of the pair tests (two-sided on both tracks).
        gamma_alternative: Direction of γ's permutation test: the shared-base hypothesis is directional (a shared
            init raises transfer).
        exclude_traits: ``teacher_trait`` labels kept in ``tidy.csv`` but left out of the statistics.
        n_perm: Permutations for γ.
        seed: Random seed.
    """

    suite: str
    metric: str
    track: str | None = None
    order: tuple[str, ...] = ()
    lineage: Mapping[str, str] | None = None
    treated: str = "trait"
    control: str = NEUTRAL
    alternative: str = "two-sided"
    gamma_alternative: str = "greater"
    exclude_traits: tuple[str, ...] = ()
    n_perm: int = 2000
    seed: int = 0


@dataclass(frozen=True, eq=False)  # holds DataFrames, which have no plain ==
class LMExtras:
    """The language-model track's own views.

    Attributes:
        teachers: Each teacher replicate's own readout of each trait and its dataset's facts (``teachers.csv``;
            not written when empty).
        same_model_fit: Legacy: γ with the same-model indicator against other-trait students
            (``fit_same_model.json``). The replicate-level analysis keeps that fit in ``fit.json`` under ``same``
            and leaves this None.
        teacher_strength: Mean P(trait) of the teachers at their own trait, 4 decimals (shown in the report's
            metadata; :func:`read_analysis` recomputes it from ``teachers.csv``).
        profile_matrix: Profile correlation of each pair, teacher × student (``profile_matrix.csv``); None when
            the suite has no per-candidate table.
        candidates: The per-candidate table (``candidates.csv``: one row per evaluated model and candidate), an
            input of the analysis like ``teachers``; empty when not available.
        bases: The per-base table (``bases.csv``): each base's same-model pair and transfer ratio.
    """

    teachers: pd.DataFrame
    same_model_fit: dict[str, Any] | None = None
    teacher_strength: float | None = None
    profile_matrix: pd.DataFrame | None = None
    candidates: pd.DataFrame = field(default_factory=pd.DataFrame)
    bases: pd.DataFrame | None = None


@dataclass(frozen=True, eq=False)  # holds DataFrames, which have no plain ==
class ClassifierExtras:
    """The classifier track's own views.

    Attributes:
        accuracy: ``accuracy_<channel>`` / ``effect_<channel>`` tables (see
            :func:`benchmark.analysis.accuracy_matrix`), in the order they are shown.
        summary: ``classifier_summary.json``: rows, accuracy by relation, aux cells.
        teacher_accuracy: Mean test accuracy of each teacher over seeds (shown in ``classifier.md``; no file
            holds the teachers' accuracies, so :func:`read_analysis` leaves it empty).
        reference_accuracy: The same for each untrained student base (recomputed from ``tidy.csv`` on read).
    """

    accuracy: dict[str, pd.DataFrame]
    summary: dict[str, Any]
    teacher_accuracy: dict[str, float] = field(default_factory=dict)
    reference_accuracy: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)  # holds DataFrames, which have no plain ==
class Analysis:
    """Everything computed from one suite's tidy table.

    Attributes:
        options: What was analysed and how.
        track: The analysed track.
        tidy: The validated tidy table, every row (also rows left out by ``options.exclude_traits``).
        cells: :func:`benchmark.analysis.cell_table` of the analysed rows (LM track:
            :func:`benchmark.analysis.replicate_cells`, trait cells then placebo rows).
        matrix: Mean effect over targets, teacher × student in registry order.
        fit: :func:`benchmark.analysis.shared_base_fit` (classifier) or, on the LM track,
            :func:`benchmark.analysis.pair_fit` as ``primary`` with ``same``, ``drift``, ``by_relation``, the placebo
            rate (see :func:`benchmark.analysis.analyze_lm`); NaN where a statistic is undefined, None once read
            back from ``fit.json``. ``fit["by_relation"]`` is the per-relation summary.
        extras: The track's own views.
    """

    options: AnalysisOptions
    track: str
    tidy: pd.DataFrame
    cells: pd.DataFrame
    matrix: pd.DataFrame
    fit: dict[str, Any]
    extras: LMExtras | ClassifierExtras | None = None

    @property
    def suite(self) -> str:
        """The analysed suite."""
        return self.options.suite

    @property
    def by_relation(self) -> dict[str, dict[str, Any]]:
        """Mean lift per relation with its CI (from the fit; LM track: a t-interval over replicate indices)."""
        return dict(self.fit.get("by_relation", {}))

    def fit_summary(self) -> dict[str, Any]:
        """The scalar entries of ``fit.json`` (as written: NaN is None), key-sorted, for a manifest."""
        safe = json_safe(self.fit)
        return {k: v for k, v in sorted(safe.items()) if isinstance(v, (int, float, str, bool)) or v is None}


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------


def write_analysis(analysis: Analysis, out_dir: Path | str) -> dict[str, Path]:
    """Write an analysis as the files listed in this module's docstring, each atomically.

    Args:
        analysis: The result to write.
        out_dir: Output directory (created if missing).

    Returns:
        Key -> path of every file written: the :data:`SHARED_FILES` keys, then the track's files under their
        stem (``teachers``, ``fit_same_model``, ``accuracy_aux``, ``classifier_summary``, ...).
    """
    out = Path(out_dir)
    texts: dict[str, str] = {
        "cells": analysis.cells.to_csv(index=False),
        "matrix": analysis.matrix.to_csv(),
        "tidy": analysis.tidy.to_csv(index=False),
        # Unlike atomic_write_json: no trailing newline (the published fit.json never had one).
        "fit": json.dumps(json_safe(analysis.fit), indent=2, sort_keys=True),
    }
    paths: dict[str, Path] = {}
    for key, text in texts.items():
        paths[key] = out / SHARED_FILES[key]
        atomic_write_text(paths[key], text)
    if isinstance(analysis.extras, LMExtras):
        paths.update(_write_lm_extras(analysis.extras, out))
    elif isinstance(analysis.extras, ClassifierExtras):
        paths.update(_write_classifier_extras(analysis.extras, out))
    return paths


def _write_lm_extras(extras: LMExtras, out: Path) -> dict[str, Path]:
    paths: dict[str, Path] = {}
    if not extras.teachers.empty:
        paths["teachers"] = out / "teachers.csv"
        atomic_write_text(paths["teachers"], extras.teachers.to_csv(index=False))
    if not extras.candidates.empty:
        paths["candidates"] = out / "candidates.csv"
        atomic_write_text(paths["candidates"], extras.candidates.to_csv(index=False))
    if extras.bases is not None:
        paths["bases"] = out / "bases.csv"
        atomic_write_text(paths["bases"], extras.bases.to_csv(index=False))
    if extras.profile_matrix is not None:
        paths["profile_matrix"] = out / "profile_matrix.csv"
        atomic_write_text(paths["profile_matrix"], extras.profile_matrix.to_csv())
    if extras.same_model_fit is not None:
        paths["fit_same_model"] = out / "fit_same_model.json"
        atomic_write_json(paths["fit_same_model"], extras.same_model_fit)
    return paths


def _write_classifier_extras(extras: ClassifierExtras, out: Path) -> dict[str, Path]:
    paths: dict[str, Path] = {}
    for name, table in extras.accuracy.items():
        paths[name] = out / f"{name}.csv"
        atomic_write_text(paths[name], table.to_csv(index=False))
    paths["classifier_summary"] = out / "classifier_summary.json"
    # A one-seed suite has no CI: its NaNs are written as null, everything else as it is.
    atomic_write_json(paths["classifier_summary"], json_safe(extras.summary, drop=False))
    return paths


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


def read_analysis(directory: Path | str, options: AnalysisOptions) -> Analysis:
    """Read back what :func:`write_analysis` wrote (``write_analysis`` of the result rewrites the same bytes).

    Args:
        directory: A report node's directory or a published ``results/suites/<suite>/``.
        options: The options the analysis was run with (they are not stored in the files).

    Returns:
        The analysis; ``fit`` holds None where the original held NaN. Numbers with no file of their own are
        recomputed from the files (the teachers' strength, the reference accuracies), except the
        classifier teachers' accuracies, which no file holds (left empty).
    """
    d = Path(directory)
    tidy = validate_tidy(_read_csv(d / "tidy.csv", STR_COLUMNS, na=False))
    cells = _read_csv(d / SHARED_FILES["cells"], _CELL_STR_COLUMNS)
    mat = _read_csv(d / "matrix.csv", ("teacher_base",), index_col=0)
    mat.columns.name = "student_base"
    fit = json.loads((d / "fit.json").read_text(encoding="utf-8"))
    track = options.track or str(cells["track"].iloc[0])
    extras: LMExtras | ClassifierExtras | None = None
    if track == "lm":
        extras = _read_lm_extras(d)
    elif track == "classifier":
        extras = _read_classifier_extras(d, tidy)
    return Analysis(
        options=options,
        track=track,
        tidy=tidy,
        cells=cells,
        matrix=mat,
        fit=fit,
        extras=extras,
    )


def _read_csv(
    path: Path, str_columns: tuple[str, ...], *, na: bool = True, index_col: int | None = None
) -> pd.DataFrame:
    """A CSV this module wrote: text columns stay text, floats come back bit for bit, "" is NaN only if ``na``."""
    return pd.read_csv(
        path,
        dtype=dict.fromkeys(str_columns, str),
        keep_default_na=False,
        na_values=[""] if na else [],
        float_precision="round_trip",
        index_col=index_col,
    )


def _read_lm_extras(d: Path) -> LMExtras:
    teachers = pd.DataFrame()
    if (d / "teachers.csv").exists():
        teachers = _read_csv(d / "teachers.csv", ("teacher_base", "teacher_trait", "teacher_id", "target"))
    same = None
    if (d / "fit_same_model.json").exists():
        same = json.loads((d / "fit_same_model.json").read_text(encoding="utf-8"))
    candidates = pd.DataFrame()
    if (d / "candidates.csv").exists():
        candidates = _read_csv(d / "candidates.csv", ("role", "teacher_base", "teacher_trait", "student_base",
                                                       "model_id", "candidate"))
    bases = None
    if (d / "bases.csv").exists():
        bases = _read_csv(d / "bases.csv", ("base", "verdict"))
    profile = None
    if (d / "profile_matrix.csv").exists():
        profile = _read_csv(d / "profile_matrix.csv", ("teacher_base",), index_col=0)
        profile.columns.name = "student_base"
    return LMExtras(
        teachers=teachers, same_model_fit=same, teacher_strength=teacher_strength(teachers), profile_matrix=profile,
        candidates=candidates, bases=bases,
    )


def _read_classifier_extras(d: Path, tidy: pd.DataFrame) -> ClassifierExtras:
    accuracy = {}
    for channel in CHANNELS:
        for name in (f"accuracy_{channel}", f"effect_{channel}"):
            if (d / f"{name}.csv").exists():
                accuracy[name] = _read_csv(d / f"{name}.csv", ("teacher_base", "student_base", "relation"))
    summary = json.loads((d / "classifier_summary.json").read_text(encoding="utf-8"))
    return ClassifierExtras(accuracy=accuracy, summary=summary, reference_accuracy=reference_means(tidy))
