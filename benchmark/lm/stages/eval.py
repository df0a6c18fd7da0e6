"""Evaluation stage of the LM track: every trait read out on a baseline, a teacher or a student."""

from __future__ import annotations

from typing import Any

from benchmark.dag import StageContext
from benchmark.lm.records import EVAL, EvalRecord, write_record
from benchmark.lm.stages.common import candidates_for, model_spec_of, strip_marker, teacher_info, tuned_of
from benchmark.lmcore.tasks import RESULT_KEYS
from benchmark.providers.base import TunedNode, backend_for
from benchmark.specs import ModelSpec, TraitSpec
from benchmark.vocabulary import BASELINE

__all__ = ["run"]

#: The eval result's blocks read here (benchmark.lmcore.tasks).
_LOGPROB, _RATE = RESULT_KEYS["animal_logprob"], RESULT_KEYS["animal_rate"]
_MIS_LOGPROB, _MIS_RATE = RESULT_KEYS["misalignment_logprob"], RESULT_KEYS["misalignment_rate"]


def _evaluated(ctx: StageContext, role: str, model: ModelSpec) -> tuple[TunedNode | None, str | None]:
    """The fine-tune loaded on top of the base (None: the base itself) and the system prompt, by role: a
    teacher's own (its trait's prompt or none); for students and baselines the spec's ``system``
    (``settings.eval.system``), else none."""
    if role == "teacher":
        teacher_dir = ctx.input("teacher")
        return tuned_of(teacher_dir, model), teacher_info(teacher_dir).system
    system = ctx.node.spec.get("system")
    if role == "student":
        return tuned_of(ctx.input("student"), model), system
    return None, system


def run(ctx: StageContext) -> dict[str, Any]:
    """Read out every trait of the suite on a baseline, a teacher or a student (lm-eval tasks).

    A fine-tune must be proven in use before it is scored (``Backend.verify``; docs/architecture.md, convention 3). ``eval.json``
    (:class:`~benchmark.lm.records.EvalRecord`) has one layout for every backend; API models add ``api_model`` (the
    endpoint id that answered) and are read out by sampling only.
    """
    spec = ctx.node.spec
    base_dir = ctx.input("base")
    model = model_spec_of(base_dir)
    traits = [TraitSpec.model_validate(strip_marker(t)) for t in spec["traits"]]
    role = spec["role"]
    tuned, system = _evaluated(ctx, role, model)
    backend = backend_for(model)
    loaded = backend.load(model, base_dir, tuned, threads=ctx.threads)
    adapter_sha = "none" if role == BASELINE else backend.fingerprint(loaded, system)
    change = backend.verify(loaded)
    # The endpoint's model id names an API model; local models are named by their fine-tune's weights.
    model_key = f"{spec.get('base', model.name)}:{model.name}:{loaded.api_model or adapter_sha}"
    res = backend.evaluate(loaded, model_key=model_key, tasks=spec["tasks"], candidates=candidates_for(traits),
                           n_samples=spec["n_samples"], seed=spec["seed"], system=system, limit=spec.get("limit"),
                           batch_size=ctx.node.unhashed.get("batch_size", 64), log=ctx.log)
    if _MIS_RATE in res:  # judged here, in one batch, every verdict recorded (docs/misalignment.md)
        from benchmark.lm.judges import load_judge
        from benchmark.lm.misalignment import judge_block

        res[_MIS_RATE] = judge_block(res[_MIS_RATE], load_judge(spec["judge"]["name"], seed=spec["seed"]))
    api = {"api_model": loaded.api_model} if loaded.api_model is not None else {}
    write_record(ctx.out / EVAL, EvalRecord(role=role, labels=spec.get("labels", {}), seed=spec["seed"],
                                            adapter_sha=adapter_sha, api_model=loaded.api_model, logit_change=change,
                                            targets={t.name: t.target for t in traits}, eval=res))
    summary: dict[str, Any] = {"role": role, "adapter_sha": adapter_sha, **api, "logit_change": change}
    if backend.caps.logprob_eval:
        summary["logodds"] = _per_trait(res, traits, _LOGPROB, _MIS_LOGPROB, "logodds")
    else:
        summary["rate"] = _per_trait(res, traits, _RATE, _MIS_RATE, "rate")
        summary["skipped_tasks"] = res["skipped_tasks"]
    return summary


def _per_trait(res: dict[str, Any], traits: list[TraitSpec], animal_key: str, misalignment_key: str,
               field: str) -> dict[str, Any] | None:
    """trait -> its readout: an animal's from the animal block, a misalignment trait's from its own block."""
    out: dict[str, Any] = {}
    for t in traits:
        if t.is_misalignment:
            block = res.get(misalignment_key)
            out[t.name] = block[field].get(t.target) if block and field in block else None
        else:
            block = res.get(animal_key)
            out[t.name] = (block if animal_key == _RATE else block["logodds"]).get(t.target) if block else None
    return out if any(v is not None for v in out.values()) or not traits else None
