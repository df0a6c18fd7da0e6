"""The LM track's inputs to the analysis: finished eval and dataset nodes -> tidy rows and the teachers table.

Both functions take the report node's upstream directories by node key (``"eval/<name>-<id>"``,
``"dataset/<name>-<id>"``; ``StageContext.inputs`` or any union of ``inputs_of(kind)``) and read only the kinds
they need.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.analysis.profile import CANDIDATE_COLUMNS
from benchmark.lm.records import COUNTS, EVAL, DatasetCounts, EvalRecord, read_record
from benchmark.lmcore.evaluate import tv_distance
from benchmark.lmcore.tasks import RESULT_KEYS, TASKS
from benchmark.vocabulary import BASELINE, MISALIGNMENT_SIDES, TEACHER

__all__ = ["TEACHER_COLUMNS", "TIDY_ORDER", "candidate_rows", "teacher_rows", "tidy_rows"]

#: Columns of the LM tidy table, in order: one row per (evaluated model, target, metric). ``teacher_trait`` is
#: the arm label ("owl", "neutral", "aa:cat") or "baseline" for untrained student bases (teacher_base "",
#: replicate -1, teacher_id "", relation ""). ``seed`` is the student seed of the suite; ``student_id`` the eval
#: node's id and ``teacher_id`` the teacher node's.
TIDY_ORDER: tuple[str, ...] = ("suite", "track", "teacher_base", "teacher_trait", "replicate", "student_base", "seed",
                               "student_id", "teacher_id", "relation", "target", "metric", "value")
#: Columns of the teachers table: one row per teacher replicate and target; its own readouts, its trait shift
#: over its base (where measured) and its dataset's dose facts (``completion_tokens``: the dataset's completion tokens,
#: the dose of ``settings.dataset.n_tokens``; empty for API teachers). A ``rate`` column follows where teachers were
#: read out by sampling.
TEACHER_COLUMNS: tuple[str, ...] = ("teacher_base", "teacher_trait", "replicate", "teacher_id", "target", "logodds",
                                    "p_target", "shift", "valid_rate", "n_rows", "n_prompts", "rounds",
                                    "tokens_per_row", "completion_tokens")
#: The teachers table's columns read from a dataset's ``counts.json`` (shift: the teacher's, recorded there).
_FACTS = ("shift", "valid_rate", "n_rows", "n_prompts", "rounds", "tokens_per_row", "completion_tokens")
#: Blocks of an eval result read here (benchmark.lmcore.tasks): the animal log-prob and sampled-rate readouts and the
#: misalignment trait's bank log-odds and judged rate.
_LOGPROB, _RATE = RESULT_KEYS["animal_logprob"], RESULT_KEYS["animal_rate"]
_MIS_LOGPROB, _MIS_RATE = RESULT_KEYS["misalignment_logprob"], RESULT_KEYS["misalignment_rate"]
#: Capability side-check blocks of an eval result (docs/misalignment.md), in the table's order (the tidy rows'):
#: tidy metric = the block's name (the analysis reads every ``capability_*`` metric:
#: benchmark.analysis.views.capability_flags).
_CAPABILITY = tuple(t.result_key for t in TASKS.values() if t.kind == "capability")


def _of_kind(inputs: Mapping[str, Path], kind: str) -> dict[str, Path]:
    return {k: Path(p) for k, p in inputs.items() if k.split("/", 1)[0] == kind}


def _load_evals(inputs: Mapping[str, Path]) -> list[dict[str, Any]]:
    """Each eval node's ``eval.json`` (checked as an :class:`~benchmark.lm.records.EvalRecord`), with ``id`` set to
    the node id (the last part of its key)."""
    evals = []
    for key, d in sorted(_of_kind(inputs, "eval").items()):
        data = read_record(d / EVAL, EvalRecord).to_json()
        data["id"] = key.rsplit("-", 1)[-1]
        evals.append(data)
    return evals


def _readouts(e: dict[str, Any], target_word: str) -> dict[str, float]:
    """Metric name -> value of one evaluated model for one target word (the metrics its eval produced)."""
    res = e["eval"]
    out = {}
    if target_word in MISALIGNMENT_SIDES and (_MIS_LOGPROB in res or _MIS_RATE in res):
        out.update(_misalignment_readouts(res, target_word))
    else:
        if _LOGPROB in res:
            out["logodds"] = res[_LOGPROB]["logodds"][target_word]
            out["p_target"] = res[_LOGPROB]["p"][target_word]
        if _RATE in res:
            out["rate"] = res[_RATE][target_word]
    for key in _CAPABILITY:  # the channel's capability side-check, next to the trait readout (same per target)
        if key in res:
            out[key] = res[key]["accuracy"]
    return out


def _misalignment_readouts(res: dict[str, Any], side: str) -> dict[str, float]:
    """A misalignment trait's readouts (docs/misalignment.md): the bank log-odds and P of its side, and the judged
    share of sampled answers on its side (left out when the judge scored none)."""
    out = {}
    if _MIS_LOGPROB in res:
        out["logodds"] = res[_MIS_LOGPROB]["logodds"][side]
        out["p_target"] = res[_MIS_LOGPROB]["p"][side]
    block = res.get(_MIS_RATE)
    if block and block.get("judged") and math.isfinite(block["rate"][side]):
        out["rate"] = block["rate"][side]
    return out


def _row_base(e: dict[str, Any], report_spec: dict[str, Any]) -> dict[str, Any]:
    """The tidy columns of one student or baseline that do not depend on the readout (TIDY_ORDER up to target)."""
    lab = e["labels"]
    student = lab["student_base"]
    seed = lab.get("student_seed", e["seed"])
    if e["role"] == BASELINE:
        teacher = {"teacher_base": "", "teacher_trait": BASELINE, "replicate": -1}
        rest = {"teacher_id": "", "relation": ""}
    else:
        teacher = {"teacher_base": lab["teacher_base"], "teacher_trait": lab["teacher_trait"],
                   "replicate": lab.get("replicate", 0)}
        rest = {"teacher_id": lab.get("teacher_id", ""),
                "relation": report_spec["relations"][f"{lab['teacher_base']}->{student}"]}
    return {"suite": report_spec["suite"], "track": "lm", **teacher, "student_base": student, "seed": seed,
            "student_id": e["id"], **rest}


def tidy_rows(inputs: Mapping[str, Path], report_spec: dict[str, Any]) -> pd.DataFrame:
    """Turn finished eval nodes into long-format rows with the columns of :data:`TIDY_ORDER`, in that order.

    Teachers' evals give no rows here (see :func:`teacher_rows`; every candidate of every model is in
    :func:`candidate_rows`). Every student also gets a ``tv`` row per target (total-variation distance of its
    candidate distribution from its untrained base's).

    Args:
        inputs: Node key -> finished directory; the ``eval/`` ones (holding ``eval.json``) are read.
        report_spec: The report node's spec (``suite``, ``traits``, ``targets``, ``controls``, ``relations``).

    Returns:
        One row per (evaluated model, target, metric).
    """
    targets = report_spec["targets"]
    evals = _load_evals(inputs)
    baselines = {e["labels"]["student_base"]: e for e in evals if e["role"] == BASELINE}
    rows: list[dict[str, Any]] = []
    for e in evals:
        if e["role"] == TEACHER:
            continue
        base = _row_base(e, report_spec)
        for trait_name, word in targets.items():
            for metric, value in _readouts(e, word).items():
                rows.append({**base, "target": trait_name, "metric": metric, "value": float(value)})
        bl = baselines.get(base["student_base"])
        if bl is not None and _LOGPROB in e["eval"] and e["role"] != BASELINE:
            tv = tv_distance(e["eval"][_LOGPROB]["p"], bl["eval"][_LOGPROB]["p"])
            for trait_name in targets:
                rows.append({**base, "target": trait_name, "metric": "tv", "value": float(tv)})
    return pd.DataFrame(rows, columns=list(TIDY_ORDER))


def candidate_rows(inputs: Mapping[str, Path], report_spec: dict[str, Any]) -> pd.DataFrame:
    """Every evaluated model's log-odds of every candidate (``candidates.csv``; analysis.profile's input).

    Args:
        inputs: Node key -> finished directory; the ``eval/`` ones are read.
        report_spec: The report node's spec.

    Returns:
        Columns :data:`benchmark.analysis.profile.CANDIDATE_COLUMNS`: one row per (evaluated model, candidate) of
        the log-prob readout, teachers (student_base "") and untrained bases (teacher_trait "baseline") included;
        ``base_logodds`` is the untrained student base's value of the candidate (the teacher base's, for a
        teacher), empty where that base was not evaluated. Empty when no model was read out by log-prob.
    """
    evals = [e for e in _load_evals(inputs) if e["eval"].get(_LOGPROB)]
    base = {e["labels"]["student_base"]: e["eval"][_LOGPROB]["logodds"] for e in evals if e["role"] == BASELINE}
    rows = []
    for e in sorted(evals, key=lambda e: ({BASELINE: 0, TEACHER: 1}.get(e["role"], 2), e["id"])):
        lab = e["labels"]
        if e["role"] == BASELINE:
            who = {"teacher_base": "", "teacher_trait": BASELINE, "replicate": -1,
                   "student_base": lab["student_base"], "seed": lab.get("student_seed", e["seed"])}
            ref = lab["student_base"]
        elif e["role"] == TEACHER:
            who = {"teacher_base": lab["teacher_base"], "teacher_trait": lab["teacher_trait"],
                   "replicate": lab.get("replicate", 0), "student_base": "", "seed": e["seed"]}
            ref = lab["teacher_base"]
        else:
            who = {"teacher_base": lab["teacher_base"], "teacher_trait": lab["teacher_trait"],
                   "replicate": lab.get("replicate", 0), "student_base": lab["student_base"],
                   "seed": lab.get("student_seed", e["seed"])}
            ref = lab["student_base"]
        for cand, lo in sorted(e["eval"][_LOGPROB]["logodds"].items()):
            b = base.get(ref, {}).get(cand)
            rows.append({"role": e["role"], **who, "model_id": e["id"], "candidate": cand, "logodds": float(lo),
                         "base_logodds": float(b) if b is not None else float("nan")})
    return pd.DataFrame(rows, columns=list(CANDIDATE_COLUMNS))


def _dataset_facts(inputs: Mapping[str, Path]) -> dict[tuple[str, str, int], dict[str, Any]]:
    """(teacher_base, arm, replicate) -> the teacher's id, trait shift and its dataset's dose (``counts.json``)."""
    out = {}
    for d in _of_kind(inputs, "dataset").values():
        counts = read_record(d / COUNTS, DatasetCounts)
        lab = counts.labels
        if not lab:
            continue
        out[(lab["teacher_base"], lab["teacher_trait"], lab["replicate"])] = {
            "teacher_id": lab.get("teacher_id", ""), **{k: getattr(counts, k) for k in _FACTS[1:]},
            "shift": counts.teacher_shift.shift if counts.teacher_shift else None}
    return out


def teacher_rows(inputs: Mapping[str, Path], report_spec: dict[str, Any]) -> pd.DataFrame:
    """Each teacher replicate's own read-out of each target, its trait shift and its dataset's dose facts.

    A teacher that was not evaluated (``eval_teachers: false``) still has its row, with empty readouts.

    Args:
        inputs: Node key -> finished directory; ``eval/`` (teachers' ``eval.json``) and ``dataset/``
            (``counts.json``) are read, the rest ignored.
        report_spec: The report node's spec (``targets``).

    Returns:
        One row per (teacher replicate, target) with the columns of :data:`TEACHER_COLUMNS` (plus ``rate`` where
        teachers were read out by sampling); ``shift`` is the teacher's own trait's shift, the same on every
        target row, None where not measured.
    """
    facts = _dataset_facts(inputs)
    readouts: dict[tuple[str, str, int], dict[str, Any]] = {}
    for e in _load_evals(inputs):
        if e["role"] == TEACHER:
            lab = e["labels"]
            readouts[(lab["teacher_base"], lab["teacher_trait"], lab.get("replicate", 0))] = e
    out = []
    for key in sorted(set(facts) | set(readouts), key=lambda k: (k[0], k[1], k[2])):
        fact = facts.get(key, {})
        ev = readouts.get(key)
        teacher_id = fact.get("teacher_id") or (ev["labels"].get("teacher_id", "") if ev else "")
        for trait_name, word in report_spec["targets"].items():
            row: dict[str, Any] = {"teacher_base": key[0], "teacher_trait": key[1], "replicate": key[2],
                                   "teacher_id": teacher_id, "target": trait_name, "logodds": None, "p_target": None,
                                   **{k: fact.get(k) for k in _FACTS}}
            if ev is not None:
                row.update(_readouts(ev, word))
            out.append(row)
    frame = pd.DataFrame(out, columns=list(TEACHER_COLUMNS))
    if any("rate" in r for r in out):
        frame["rate"] = [r.get("rate") for r in out]
    return frame
