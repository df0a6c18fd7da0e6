"""Report stage of the classifier track: every node's accuracies -> tidy table -> analysis -> files -> report."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from benchmark.classifier.stages.common import read_json
from benchmark.dag import StageContext
from benchmark.vocabulary import BASELINE

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import pandas as pd

    from benchmark.analysis import Analysis, AnalysisOptions

__all__ = ["analysis_options", "analyze", "run"]


def analysis_options(spec: dict[str, Any]) -> AnalysisOptions:
    """Aux-only students against the same seed's untrained reference: effect = accuracy − reference, two-sided
    per-pair tests, a one-sided γ (the shared-init hypothesis is directional) with at least N_PERM_MIN teacher
    relabellings (all of them up to 7 teacher bases)."""
    from benchmark.analysis import N_PERM_MIN, AnalysisOptions
    from benchmark.classifier.tidy import METRIC

    return AnalysisOptions(
        suite=spec["suite"],
        track="classifier",
        metric=METRIC,
        order=tuple(n for n in spec["order"] if n in set(spec["teachers"]) | set(spec["students"])),
        lineage=spec["lineage"],
        treated="aux",
        control=BASELINE,
        alternative="two-sided",
        gamma_alternative="greater",
        n_perm=N_PERM_MIN,
        # The shared analysis would count all-logit students as "other-trait" students of the cell, which they
        # are not; they are shown in their own heatmap and tables, and tidy.csv keeps every row.
        exclude_traits=("all_logits",),
    )


def _metadata(spec: dict[str, Any], teachers: dict[str, Any], references: dict[str, Any]) -> dict[str, Any]:
    """The run metadata shown in the report: data, settings, models and the raw accuracies per seed."""
    from benchmark.classifier.tidy import CHANCE

    return {
        "track": "classifier",
        "suite": spec["suite"],
        "seeds": spec["seeds"],
        "data": spec["data"],
        "settings": spec["settings"],
        "models": spec["describe"],
        "lineage": spec["lineage"],
        "teacher_accuracy": teachers,
        "reference_accuracy": references,
        "chance": CHANCE,
    }


def analyze(tidy: pd.DataFrame, spec: dict[str, Any], teachers: Mapping[str, Sequence[float]] | None = None) -> Analysis:
    """The report's statistics from its tidy table: the one call both the report and the validation of a results
    bundle (:mod:`benchmark.bundle`) make. ``teachers`` (accuracy per seed) only feeds classifier.md, no file."""
    from benchmark.analysis import analyze_classifier

    return analyze_classifier(tidy, analysis_options(spec), teacher_accuracy=teachers or {})


def run(ctx: StageContext) -> dict[str, Any]:
    """Collect every node's accuracies into the tidy table, analyse it, write its files and the report.

    Returns:
        The manifest's result: tidy rows and the aux-only accuracy by relation.
    """
    from benchmark.analysis import ClassifierExtras, write_analysis
    from benchmark.classifier.tidy import reference_accuracy, teacher_accuracy, tidy_rows
    from benchmark.report import write_report

    spec = ctx.node.spec
    metrics = {
        key: read_json(path / "metrics.json")
        for key, path in ctx.inputs.items()
        if (path / "metrics.json").exists()
    }
    tidy = tidy_rows(spec, metrics)
    teachers, references = teacher_accuracy(spec, metrics), reference_accuracy(spec, metrics)
    analysis = analyze(tidy, spec, teachers)
    write_analysis(analysis, ctx.out)
    write_report(ctx.out, analysis, meta=_metadata(spec, teachers, references))
    assert isinstance(analysis.extras, ClassifierExtras)  # analyze_classifier always adds them
    summary = analysis.extras.summary
    return {"rows": summary["rows"], "accuracy_by_relation": summary["accuracy_by_relation"]}
