"""The LM track's inputs to the analysis: finished eval nodes -> tidy rows, and the teachers' own readouts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["teacher_rows", "tidy_rows"]


def _load_evals(eval_dirs: dict[str, Path]) -> list[dict[str, Any]]:
    """Each eval node's ``eval.json``, with ``id`` set to the node id (the last part of its key)."""
    evals = []
    for key, d in eval_dirs.items():
        data = json.loads((d / "eval.json").read_text())
        data["id"] = key.rsplit("-", 1)[-1]
        evals.append(data)
    return evals


def _readouts(e: dict[str, Any], target_word: str) -> dict[str, float]:
    """Metric name -> value of one evaluated model for one target word (the metrics its eval produced)."""
    res = e["eval"]
    out = {}
    if "logprob" in res:
        out["logodds"] = res["logprob"]["logodds"][target_word]
        out["p_target"] = res["logprob"]["p"][target_word]
    if "rate" in res:
        out["rate"] = res["rate"][target_word]
    return out


def _row_base(e: dict[str, Any], suite: str, report_spec: dict[str, Any]) -> dict[str, Any]:
    """The tidy columns of one student or baseline that do not depend on the readout."""
    lab = e["labels"]
    student = lab["student_base"]
    base = {"suite": suite, "track": "lm", "student_base": student, "seed": e["seed"], "student_id": e["id"]}
    if e["role"] == "baseline":
        base.update(teacher_base="", teacher_trait="baseline", relation="", teacher_id="")
    else:
        rel = report_spec["relations"][f"{lab['teacher_base']}->{student}"]
        base.update(teacher_base=lab["teacher_base"], teacher_trait=lab["teacher_trait"], relation=rel, teacher_id="")
    return base


def tidy_rows(eval_dirs: dict[str, Path], report_spec: dict[str, Any]) -> pd.DataFrame:
    """Turn finished eval nodes into long-format rows (see :data:`benchmark.analysis.TIDY_COLUMNS`).

    Teachers' evals are skipped (see :func:`teacher_rows`). Every student also gets a ``tv`` row per target:
    the total-variation distance of its candidate distribution from its untrained base's.

    Args:
        eval_dirs: Eval node key -> its finished directory (holding ``eval.json``).
        report_spec: The report node's spec (``suite``, ``targets``, ``relations``).

    Returns:
        One row per (model, target, metric). The columns keep the order the rows are built in (the
        published ``tidy.csv`` has it), not :data:`benchmark.analysis.TIDY_COLUMNS`.
    """
    from benchmark.lm.evaluate import tv_distance

    suite = report_spec["suite"]
    targets = report_spec["targets"]
    evals = _load_evals(eval_dirs)
    baselines = {e["labels"]["student_base"]: e for e in evals if e["role"] == "baseline"}
    rows: list[dict[str, Any]] = []
    for e in evals:
        if e["role"] == "teacher":
            continue
        base = _row_base(e, suite, report_spec)
        for trait_name, word in targets.items():
            for metric, value in _readouts(e, word).items():
                rows.append({**base, "target": trait_name, "metric": metric, "value": float(value)})
        bl = baselines.get(base["student_base"])
        if bl is not None and "logprob" in e["eval"] and e["role"] != "baseline":
            tv = tv_distance(e["eval"]["logprob"]["p"], bl["eval"]["logprob"]["p"])
            for trait_name in targets:
                rows.append({**base, "target": trait_name, "metric": "tv", "value": float(tv)})
    return pd.DataFrame(rows)


def teacher_rows(eval_dirs: dict[str, Path], report_spec: dict[str, Any]) -> pd.DataFrame:
    """Each teacher's own read-out of each trait (how strong the trait is at the source).

    Args:
        eval_dirs: Eval node key -> its finished directory; non-teacher evals are skipped.
        report_spec: The report node's spec (``targets``).

    Returns:
        One row per (teacher, target): ``teacher_base``, ``teacher_trait``, ``target`` and the readouts the
        eval produced (``p_target``, ``logodds``, ``rate``); no rows when no teacher was evaluated.
    """
    out = []
    for d in eval_dirs.values():
        data = json.loads((d / "eval.json").read_text())
        if data["role"] != "teacher":
            continue
        res = data["eval"]
        for trait_name, word in report_spec["targets"].items():
            row = {
                "teacher_base": data["labels"]["teacher_base"],
                "teacher_trait": data["labels"]["teacher_trait"],
                "target": trait_name,
            }
            if "logprob" in res:
                row["p_target"] = res["logprob"]["p"][word]
                row["logodds"] = res["logprob"]["logodds"][word]
            if "rate" in res:
                row["rate"] = res["rate"][word]
            out.append(row)
    return pd.DataFrame(out)
