"""Report stage of the LM track: finished evaluations and datasets -> tidy rows -> analysis -> files -> report."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from benchmark.dag import StageContext
from benchmark.vocabulary import OTHER_TRAIT

if TYPE_CHECKING:
    import logging

    import pandas as pd

    from benchmark.analysis import Analysis, AnalysisOptions

__all__ = ["analysis_options", "analyze", "fetched_weights", "run"]


def analysis_options(spec: dict[str, Any]) -> AnalysisOptions:
    """The report spec's analysis settings as analysis options.

    The control of a trait arm is the suite's design (``spec["controls"]``: the other trait arms, or the neutral
    arm of a single-trait suite); per-cell tests follow ``analysis.alternative`` (two-sided unless set), γ is
    tested one-sided (a shared init raises transfer), with ``analysis.n_perm`` Freedman-Lane permutations.
    """
    from benchmark.analysis import AnalysisOptions

    settings = spec["analysis"]
    return AnalysisOptions(
        suite=spec["suite"],
        track="lm",
        metric=settings.get("metric", spec["metric"]),
        order=tuple(spec["order"]),
        lineage=spec["lineage"],
        control=spec.get("controls", OTHER_TRAIT),
        alternative=settings.get("alternative", "two-sided"),
        gamma_alternative="greater",
        n_perm=settings["n_perm"],
    )


def analyze(tidy: pd.DataFrame, teachers: pd.DataFrame, spec: dict[str, Any],
            log: logging.Logger | None = None, candidates: pd.DataFrame | None = None) -> Analysis:
    """The report's statistics from its tidy, teachers and candidates tables: the one call both the report and the
    validation of a results bundle (:mod:`benchmark.bundle`) make, so a bundle is checked by the code that
    published it."""
    from benchmark.analysis import analyze_lm

    return analyze_lm(tidy, teachers, analysis_options(spec), traits=spec["traits"], candidates=candidates, log=log)


def run(ctx: StageContext) -> dict[str, Any]:
    """Build the tidy and teachers tables, analyse them, write the analysis files and render the report.

    Returns:
        The manifest's result: the files written (``files``), the number of tidy rows and the scalar entries of
        the γ fit (``shared_base``).
    """
    from benchmark.analysis import write_analysis
    from benchmark.lm.tidy import candidate_rows, teacher_rows, tidy_rows
    from benchmark.report import write_report

    spec = ctx.node.spec
    inputs = {**ctx.inputs_of("eval"), **ctx.inputs_of("dataset")}
    tidy = tidy_rows(inputs, spec)
    teachers = teacher_rows(inputs, spec)
    candidates = candidate_rows(inputs, spec)
    analysis = analyze(tidy, teachers, spec, log=ctx.log, candidates=candidates if not candidates.empty else None)
    written = write_analysis(analysis, ctx.out)
    meta = {"traits": ", ".join(spec["traits"]), "replicates per arm": spec.get("replicates", ""),
            "arms": ", ".join(spec.get("arms", []))}
    rendered = write_report(ctx.out, analysis, meta=meta)
    files = [p.name for p in written.values()] + [p.name for p in rendered.values()]
    weights = fetched_weights(ctx.inputs_of("eval").values())
    return {"files": sorted(files), "n_rows": len(tidy), "shared_base": analysis.fit_summary(),
            **({"weights": weights} if weights else {})}


def fetched_weights(eval_dirs: Any) -> dict[str, dict[str, str]]:
    """model -> ``{"file", "sha256"}`` of each fetched base's weight file (``slbench models fetch``), read from the
    base nodes upstream of the evaluations (their ``model_ref.json`` provenance): what a bundle records as the exact
    weights. Empty for suites of built (zoo) or hub models, whose reports are unchanged."""
    import json
    from pathlib import Path

    from benchmark.lm.stages.common import model_spec_of
    from benchmark.manifest import read_manifest

    out: dict[str, dict[str, str]] = {}
    seen: set[str] = set()
    for d in eval_dirs:
        root = Path(d).parents[1]  # <store>/<kind>/<name-id>
        for key in read_manifest(Path(d)).deps:
            if not key.startswith("base/") or key in seen:
                continue
            seen.add(key)
            ref = root / key / "model_ref.json"
            if not ref.is_file():
                continue
            sha = json.loads(ref.read_text(encoding="utf-8")).get("provenance", {}).get("files", {}).get(
                "model.safetensors")
            if sha:
                out[model_spec_of(root / key).name] = {"file": "model.safetensors", "sha256": sha}
    return dict(sorted(out.items()))
