"""Report stage of the classifier track: every node's accuracies -> tidy table -> analysis and report."""

from __future__ import annotations

from typing import Any

from benchmark.classifier.stages.common import read_json
from benchmark.dag import StageContext

__all__ = ["run"]


def run(ctx: StageContext) -> dict[str, Any]:
    """Collect every node's accuracies into the tidy table and write the suite's report files."""
    from benchmark.classifier.report import tidy_rows, write_classifier_report

    spec = ctx.node.spec
    metrics = {
        key: read_json(path / "metrics.json")
        for key, path in ctx.inputs.items()
        if (path / "metrics.json").exists()
    }
    df = tidy_rows(spec, metrics)
    return write_classifier_report(ctx.out, df, spec, metrics)
