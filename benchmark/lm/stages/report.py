"""Report stage of the LM track: finished evaluations -> tidy rows -> analysis and published report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmark.dag import StageContext
from benchmark.files import atomic_write_json, json_safe
from benchmark.lm.stages.common import strip_marker

__all__ = ["run", "tidy_rows", "teacher_rows"]


def tidy_rows(eval_dirs: dict[str, Path], report_spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Turn finished eval nodes into long-format rows (see benchmark.analysis.TIDY_COLUMNS)."""
    from benchmark.evaluate import tv_distance

    suite = report_spec["suite"]
    targets = report_spec["targets"]
    evals = []
    for key, d in eval_dirs.items():
        data = json.loads((d / "eval.json").read_text())
        data["id"] = key.rsplit("-", 1)[-1]
        evals.append(data)
    baselines = {e["labels"]["student_base"]: e for e in evals if e["role"] == "baseline"}
    rows: list[dict[str, Any]] = []

    def metrics(e: dict[str, Any], target_word: str) -> dict[str, float]:
        res = e["eval"]
        out = {}
        if "logprob" in res:
            out["logodds"] = res["logprob"]["logodds"][target_word]
            out["p_target"] = res["logprob"]["p"][target_word]
        if "rate" in res:
            out["rate"] = res["rate"][target_word]
        return out

    for e in evals:
        if e["role"] == "teacher":
            continue
        lab = e["labels"]
        student = lab["student_base"]
        base = {"suite": suite, "track": "lm", "student_base": student, "seed": e["seed"], "student_id": e["id"]}
        if e["role"] == "baseline":
            base.update(teacher_base="", teacher_trait="baseline", relation="", teacher_id="")
        else:
            rel = report_spec["relations"][f"{lab['teacher_base']}->{student}"]
            base.update(teacher_base=lab["teacher_base"], teacher_trait=lab["teacher_trait"], relation=rel,
                        teacher_id="")
        for trait_name, word in targets.items():
            for metric, value in metrics(e, word).items():
                rows.append({**base, "target": trait_name, "metric": metric, "value": float(value)})
        bl = baselines.get(student)
        if bl is not None and "logprob" in e["eval"] and e["role"] != "baseline":
            tv = tv_distance(e["eval"]["logprob"]["p"], bl["eval"]["logprob"]["p"])
            for trait_name in targets:
                rows.append({**base, "target": trait_name, "metric": "tv", "value": float(tv)})
    return rows


def teacher_rows(eval_dirs: dict[str, Path], report_spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Each teacher's own read-out of each trait (how strong the trait is at the source)."""
    out = []
    for d in eval_dirs.values():
        data = json.loads((d / "eval.json").read_text())
        if data["role"] != "teacher":
            continue
        res = data["eval"]
        for trait_name, word in report_spec["targets"].items():
            row = {"teacher_base": data["labels"]["teacher_base"], "teacher_trait": data["labels"]["teacher_trait"],
                   "target": trait_name}
            if "logprob" in res:
                row["p_target"] = res["logprob"]["p"][word]
                row["logodds"] = res["logprob"]["logodds"][word]
            if "rate" in res:
                row["rate"] = res["rate"][word]
            out.append(row)
    return out


def run(ctx: StageContext) -> dict[str, Any]:
    """Build the tidy table and publish cells, matrix, heatmap, report.md and index.html."""
    import pandas as pd

    from benchmark.report import write_report

    spec = ctx.node.spec
    analysis = strip_marker(spec["analysis"])
    eval_dirs = ctx.inputs_of("eval")
    df = pd.DataFrame(tidy_rows(eval_dirs, spec))
    teachers = pd.DataFrame(teacher_rows(eval_dirs, spec))
    meta: dict[str, Any] = {"track": "lm", "traits": ", ".join(spec["traits"]), "metric": spec["metric"],
                            "control": analysis["control"]}
    if not teachers.empty:
        teachers.to_csv(ctx.out / "teachers.csv", index=False)
        mean = teachers[teachers.teacher_trait == teachers.target].get("p_target")
        if mean is not None and len(mean):
            meta["teachers' own P(trait | candidates), mean"] = round(float(mean.mean()), 4)
    # γ is fitted with the shared-init indicator (diagonal + siblings) in the main report; the same-model-only
    # indicator separates "same checkpoint" from "shared init" (a sibling may have drifted far from its init).
    # It is measured against other-trait students (the drift control), so it needs at least two traits.
    if len(spec["traits"]) >= 2:
        from benchmark.analysis import paired_lifts, shared_base_fit
        from benchmark.errors import UserError as _UserError

        try:
            same = shared_base_fit(paired_lifts(df, spec["metric"], control="other_trait"), order=spec["order"],
                                   indicator="same", n_boot=analysis["n_boot"], n_perm=analysis["n_perm"],
                                   alternative=analysis["alternative"])
        except _UserError as exc:  # e.g. no cell has both a treated and an other-trait student
            ctx.log.info("no same-model fit: %s", exc)
            same = None
        if same is not None:
            same = json_safe(same)
            if same.get("gamma") is not None:
                meta["γ (same model only, vs other-trait students)"] = (
                    f"{same['gamma']:+.3f} [{same['ci_low']:+.3f}, {same['ci_high']:+.3f}], "
                    f"permutation p = {same['p_perm']:.3f}")
            atomic_write_json(ctx.out / "fit_same_model.json", same)
    paths = write_report(ctx.out, df, suite=spec["suite"], order=spec["order"], lineage=spec["lineage"],
                         metric=spec["metric"], control="neutral", meta=meta, track="lm",
                         pool_controls=analysis["control"] == "pooled", alternative=analysis["alternative"],
                         n_boot=analysis["n_boot"], n_perm=analysis["n_perm"])
    fit = json.loads((ctx.out / "fit.json").read_text())
    summary = {k: v for k, v in fit.items() if isinstance(v, (int, float, str, bool)) or v is None}
    return {"files": sorted(p.name for p in paths.values()), "n_rows": len(df), "shared_base": summary}
