"""Report stage of the LM track: finished evaluations -> tidy rows -> analysis -> files -> report."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from benchmark.dag import StageContext

if TYPE_CHECKING:
    from benchmark.analysis import AnalysisOptions

__all__ = ["run"]


def _options(spec: dict[str, Any]) -> AnalysisOptions:
    """The report spec's analysis settings as analysis options (the suite's cells use the neutral control)."""
    from benchmark.analysis import AnalysisOptions

    settings = spec["analysis"]
    return AnalysisOptions(
        suite=spec["suite"],
        track="lm",
        metric=spec["metric"],
        order=tuple(spec["order"]),
        lineage=spec["lineage"],
        control="neutral",
        # "pooled" adds other-trait students to the neutral ones in each cell's test (see AnalysisSettings)
        pool_controls=settings["control"] == "pooled",
        alternative=settings["alternative"],
        n_boot=settings["n_boot"],
        n_perm=settings["n_perm"],
    )


def run(ctx: StageContext) -> dict[str, Any]:
    """Build the tidy table, analyse it, write the analysis files and render the report.

    Returns:
        The manifest's result: the shared report files (``files``), the number of tidy rows and the scalar
        entries of the γ fit (``shared_base``).
    """
    from benchmark.analysis import SHARED_FILES, analyze_lm, write_analysis
    from benchmark.lm.tidy import teacher_rows, tidy_rows
    from benchmark.report import write_report

    spec = ctx.node.spec
    eval_dirs = ctx.inputs_of("eval")
    tidy = tidy_rows(eval_dirs, spec)
    teachers = teacher_rows(eval_dirs, spec)
    analysis = analyze_lm(tidy, teachers, _options(spec), traits=spec["traits"], log=ctx.log)
    written = write_analysis(analysis, ctx.out)
    meta = {"track": "lm", "traits": ", ".join(spec["traits"]), "metric": spec["metric"],
            "control": spec["analysis"]["control"]}
    rendered = write_report(ctx.out, analysis, meta=meta)
    # The manifest lists the shared files only (not teachers.csv / fit_same_model.json), as it always has.
    shared = [p.name for k, p in written.items() if k in SHARED_FILES] + [p.name for p in rendered.values()]
    return {"files": sorted(shared), "n_rows": len(tidy), "shared_base": analysis.fit_summary()}
