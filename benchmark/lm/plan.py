"""The language-model track's plan: a suite → DAG of base → teacher → dataset → student → eval → report nodes.

Torch-free at import (``slbench plan`` must stay light): the stage modules in :mod:`benchmark.lm.stages` import
their heavy dependencies when they run.

Per (teacher base i, trait t) there is one teacher, plus one control teacher per base ("neutral": for method
prompt the base with no system prompt, as in the paper; for method finetune the base fine-tuned the same way
on answers spread evenly over all candidate animals, so it matches the trait teachers' update). Each teacher
writes one filtered number dataset, shared by every student. Each student base j trains on each dataset once
per seed, so a cell (i, j, t) always has its matched controls in the same suite: the neutral-teacher student of
the same (i, j, seed), the other-trait teachers' students, and j's untrained baseline.

Provider differences reach the plan only as :class:`~benchmark.providers.base.Capabilities` (GPU or not, log-prob
scoring, soft-label training, top-log-prob limits, whole-epoch fine-tunes): no provider names here.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.dag import Node, Stage
from benchmark.errors import UserError, unknown_name
from benchmark.lm.settings import LMSettings
from benchmark.lm.stages import base as base_stage
from benchmark.lm.stages import dataset as dataset_stage
from benchmark.lm.stages import eval as eval_stage
from benchmark.lm.stages import report as report_stage
from benchmark.lm.stages import student as student_stage
from benchmark.lm.stages import teacher as teacher_stage
from benchmark.providers.base import Capabilities, backend_for
from benchmark.specs import ModelSpec, SuiteSpec, TraitSpec

__all__ = ["TRACK", "LMTrack", "build_plan", "estimate", "NEUTRAL", "STAGE_VERSION"]

NEUTRAL = "neutral"

#: Version of the LM stages' hashing rule. Version 1 is implicit: the first LM artifacts were hashed without a
#: version field, and omitting it keeps their ids (and the published tables that name them) valid. A change to a
#: stage that alters its output must bump this; from 2 on every LM node spec carries ``"version"``.
STAGE_VERSION = 1

#: The base stage: the model's backend builds (zoo), resolves (hf) or records (API) the base model.
BASE_STAGE: Stage = base_stage.run


def _versioned(spec: dict[str, Any]) -> dict[str, Any]:
    return spec if STAGE_VERSION == 1 else {**spec, "version": STAGE_VERSION}


def _file_digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _caps(reg: Any, name: str) -> Capabilities:
    return backend_for(reg.model(name)).caps


def _resources(reg: Any, name: str) -> dict[str, float]:
    return {"cpus": 1, "gpus": 1 if _caps(reg, name).needs_gpu else 0}


# -- checks -------------------------------------------------------------------------------------------------
def _check_inputs(suite: SuiteSpec, settings: LMSettings, reg: Any) -> tuple[Any, str]:
    """Validate the files a suite needs; return the channel spec and the digest of the lm-eval task files."""
    from benchmark.lm.channels.numbers import load_numbers_channel

    where = f"suite {suite.name}"
    if not suite.traits:
        raise UserError(f"{where}: key 'traits' must name at least one trait for the lm track")
    channel_path = reg.tasks_dir / "channels" / f"{settings.dataset.channel}.yaml"
    if not channel_path.exists():
        raise unknown_name("channel", settings.dataset.channel,
                           [p.stem for p in (reg.tasks_dir / "channels").glob("*.yaml")], f"{where}: settings.dataset")
    questions_path = reg.tasks_dir / settings.teacher.questions
    if settings.teacher.method == "finetune" and not questions_path.exists():
        raise UserError(f"{where}: settings.teacher.questions: file not found: {questions_path}")
    eval_files = [p for p in (reg.tasks_dir / "lm_eval").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return load_numbers_channel(channel_path), _file_digest(eval_files)


def _check_capabilities(suite: SuiteSpec, settings: LMSettings, reg: Any) -> None:
    """Refuse, before anything runs, settings that a model's provider cannot serve (one line naming them)."""
    where = f"suite {suite.name}"
    for name in dict.fromkeys([*suite.teachers, *suite.students]):
        _caps(reg, name)  # an entry whose provider has no LM backend fails here, naming the model
    if settings.student.objective == "distill" and settings.dataset.top_k is None:
        raise UserError(f"{where}: settings.dataset.top_k must be set when settings.student.objective is 'distill' "
                        "(the student matches the teacher's stored top-k log-probs)")
    evaluated = [*suite.students, *(suite.teachers if settings.eval_teachers else [])]
    sampled_only = [m for m in dict.fromkeys(evaluated) if not _caps(reg, m).logprob_eval]
    if sampled_only and settings.eval.metric != "rate":
        raise UserError(f"{where}: settings.eval.metric: {settings.eval.metric!r} needs log-probs, which API models do "
                        f"not give ({', '.join(sampled_only)}); use 'rate' for suites with such students")
    if sampled_only and not any(t.startswith("animal_rate") for t in settings.eval.tasks):
        raise UserError(f"{where}: settings.eval.tasks: add a sampled-rate task (animal_rate) for models "
                        f"{', '.join(sampled_only)}")
    students = [_caps(reg, m) for m in suite.students]
    if settings.student.objective != "sft" and not all(c.distill for c in students):
        raise UserError(f"{where}: settings.student.objective: 'distill' needs log-prob training, which the fine-tuning "
                        "API does not offer; use 'sft'")
    epochs = settings.student.train.epochs
    if any(c.whole_epochs for c in students) and epochs != int(epochs):
        raise UserError(f"{where}: settings.student.train.epochs must be a whole number >= 1 for API models (sent as "
                        "n_epochs)")
    limits = [c.max_top_logprobs for c in (_caps(reg, t) for t in suite.teachers) if c.max_top_logprobs]
    if limits and (settings.dataset.top_k or 0) > min(limits):
        raise UserError(f"{where}: settings.dataset.top_k: a teacher's API returns at most {min(limits)} "
                        "top_logprobs (OpenAI: 20)")


# -- nodes --------------------------------------------------------------------------------------------------
@dataclass
class _Plan:
    """Nodes in the order they are added (the executor keeps this order where dependencies allow)."""

    nodes: list[Node]
    evals: list[Node]

    def add(self, node: Node) -> Node:
        self.nodes.append(node)
        if node.kind == "eval":
            self.evals.append(node)
        return node


def _teacher_spec(base: Node, name: str, trait: TraitSpec | None, settings: LMSettings, reg: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"base": base.id, "model": name, "trait": trait.hashed_dict() if trait else None,
                            "method": settings.teacher.method}
    if settings.teacher.method == "finetune":
        # The control teacher of a fine-tuned trait teacher is fine-tuned too (same questions, answers spread
        # evenly over the candidate animals): its data then differ from a trait teacher's only by the trait,
        # not by "a LoRA update happened" (see lm/stages/teacher.py, trait_rows).
        spec.update(n_rows=settings.teacher.n_rows, train=settings.teacher.train.hashed_dict(),
                    seed=settings.teacher.seed, questions=_file_digest([reg.tasks_dir / settings.teacher.questions]),
                    questions_path=settings.teacher.questions)
    return _versioned(spec)


def _teachers_and_datasets(plan: _Plan, suite: SuiteSpec, settings: LMSettings, reg: Any, bases: dict[str, Node],
                           traits: list[TraitSpec], channel: Any) -> tuple[dict[tuple[str, str], Node], ...]:
    """One teacher per (base, trait or neutral), each writing one dataset."""
    teachers: dict[tuple[str, str], Node] = {}
    datasets: dict[tuple[str, str], Node] = {}
    for tname in suite.teachers:
        base = bases[tname]
        for trait in [None, *traits]:
            label = trait.name if trait else NEUTRAL
            teacher = plan.add(Node(kind="teacher", name=f"{tname}.{label}", fn=teacher_stage.run, deps=(base.key,),
                                    spec=_teacher_spec(base, tname, trait, settings, reg),
                                    resources=_resources(reg, tname)))
            dspec = {**settings.dataset.hashed_dict(), "teacher": teacher.id, "channel_spec": channel.hashed_dict()}
            datasets[(tname, label)] = plan.add(Node(
                kind="dataset", name=f"{tname}.{label}", spec=_versioned(dspec), deps=(teacher.key, base.key),
                fn=dataset_stage.run, resources=_resources(reg, tname),
                unhashed={"batch_size": settings.dataset.batch_size}))
            teachers[(tname, label)] = teacher
    return teachers, datasets


def _eval_node(name: str, spec: dict[str, Any], deps: tuple[str, ...], model: str, common: dict[str, Any],
               settings: LMSettings, reg: Any) -> Node:
    return Node(kind="eval", name=name, spec=_versioned({**spec, **common}), deps=deps, fn=eval_stage.run,
                resources=_resources(reg, model), unhashed={"batch_size": settings.eval.batch_size})


def _students(plan: _Plan, suite: SuiteSpec, settings: LMSettings, reg: Any, bases: dict[str, Node],
              datasets: dict[tuple[str, str], Node], common: dict[str, Any]) -> None:
    """Every student base on every dataset, once per seed, each with its evaluation."""
    for (tname, label), dataset in datasets.items():
        for sname in suite.students:
            base = bases[sname]
            for seed in suite.seeds:
                sspec = {"base": base.id, "dataset": dataset.id, "objective": settings.student.objective,
                         "train": settings.student.train.hashed_dict(), "seed": seed}
                student = plan.add(Node(kind="student", name=f"{tname}.{label}.to.{sname}.s{seed}",
                                        spec=_versioned(sspec), deps=(base.key, dataset.key), fn=student_stage.run,
                                        resources=_resources(reg, sname)))
                plan.add(_eval_node(f"student.{tname}.{label}.to.{sname}.s{seed}",
                                    {"role": "student", "student": student.id, "seed": seed,
                                     "labels": {"teacher_base": tname, "teacher_trait": label, "student_base": sname}},
                                    (student.key, base.key), sname, common, settings, reg))


def _report_node(suite: SuiteSpec, settings: LMSettings, reg: Any, bases: dict[str, Node], traits: list[TraitSpec],
                 evals: list[Node]) -> Node:
    order = [m for m in reg.order() if m in bases]
    spec = {
        "suite": suite.name,
        "evals": sorted(n.id for n in evals),
        "metric": settings.eval.metric,
        "traits": [t.name for t in traits],
        "targets": {t.name: t.target for t in traits},
        "teachers": list(suite.teachers),
        "students": list(suite.students),
        "order": order,
        "lineage": {m: reg.lineage_init(m) for m in order},
        "relations": {f"{t}->{s}": reg.relation(t, s) for t in suite.teachers for s in suite.students},
        "analysis": settings.analysis.hashed_dict(),
        "report_version": 4,
    }
    return Node(kind="report", name=suite.name, spec=_versioned(spec), deps=tuple(n.key for n in evals),
                fn=report_stage.run)


def build_plan(suite: SuiteSpec, settings: LMSettings, reg: Any) -> list[Node]:
    """Expand an lm suite into DAG nodes (see the module docstring); every check runs before any node exists."""
    channel, eval_digest = _check_inputs(suite, settings, reg)
    _check_capabilities(suite, settings, reg)
    traits = [reg.trait(t) for t in suite.traits]
    plan = _Plan(nodes=[], evals=[])
    bases = {name: plan.add(Node(kind="base", name=name, spec=_versioned({"model": reg.model(name).hashed_dict()}),
                                 fn=BASE_STAGE, resources=_resources(reg, name)))
             for name in dict.fromkeys([*suite.teachers, *suite.students])}
    teachers, datasets = _teachers_and_datasets(plan, suite, settings, reg, bases, traits, channel)
    common = {"tasks": list(settings.eval.tasks), "n_samples": settings.eval.n_samples, "limit": settings.eval.limit,
              "tasks_digest": eval_digest, "traits": [t.hashed_dict() for t in traits]}
    first_seed = suite.seeds[0]
    for sname in suite.students:
        plan.add(_eval_node(f"baseline.{sname}", {"role": "baseline", "base": bases[sname].id, "seed": first_seed,
                                                  "labels": {"student_base": sname}},
                            (bases[sname].key,), sname, common, settings, reg))
    if settings.eval_teachers:
        for (tname, label), teacher in teachers.items():
            plan.add(_eval_node(f"teacher.{tname}.{label}",
                                {"role": "teacher", "teacher": teacher.id, "seed": first_seed,
                                 "labels": {"teacher_base": tname, "teacher_trait": label}},
                                (teacher.key, bases[tname].key), tname, common, settings, reg))
    _students(plan, suite, settings, reg, bases, datasets, common)
    plan.nodes.append(_report_node(suite, settings, reg, bases, traits, plan.evals))
    return plan.nodes


# -- estimates ----------------------------------------------------------------------------------------------
def _node_model(n: Node) -> str | None:
    """The registry model a node runs on. Model names may contain dots (gpt-4.1, qwen2.5-7b-instruct)."""
    if n.kind == "teacher":
        model: str = n.spec["model"]
        return model
    if n.kind == "dataset":
        return n.name.rsplit(".", 1)[0]  # "<teacher model>.<trait|neutral>"
    if n.kind == "student":
        return n.name.split(".to.", 1)[1].rsplit(".s", 1)[0]  # "<t>.<label>.to.<student model>.s<seed>"
    if n.kind == "eval":
        labels = n.spec.get("labels", {})
        return labels.get("student_base") or labels.get("teacher_base")
    return None


def _node_tokens(n: Node, settings: LMSettings) -> tuple[float, float]:
    """(training tokens, inference tokens) of one node, roughly."""
    tokens_per_row = 60  # prompt + completion tokens of one number row (zoo tokenizer ~45-60; GPT tokenizers similar)
    n_questions = 60  # tasks/lm_eval/animal_preference/questions.txt
    if n.kind == "dataset":
        return 0, settings.dataset.n_prompts * tokens_per_row
    if n.kind == "student":
        return settings.dataset.n_keep * tokens_per_row * settings.student.train.epochs, 0
    if n.kind == "teacher":
        return (settings.teacher.n_rows * 30 * settings.teacher.train.epochs if n.spec.get("n_rows") else 0), 0
    return 0, n_questions * settings.eval.n_samples * 25  # eval: one short prompt + a one-word answer per sample


def estimate(suite: SuiteSpec, settings: LMSettings, reg: Any, todo: list[Node]) -> list[str]:
    """Lines for ``slbench plan``: GPU-hours and API tokens of the nodes still to run (rough, stated as such)."""
    gpu_hours = 0.0
    n_gpu = 0
    api: dict[str, dict[str, float]] = defaultdict(lambda: {"train": 0.0, "infer": 0.0, "jobs": 0, "nodes": 0})
    for n in todo:
        name = _node_model(n)
        spec: ModelSpec | None = reg.models.get(name) if name else None
        if spec is None:
            continue
        train, infer = _node_tokens(n, settings)
        caps = backend_for(spec).caps
        if not caps.local:
            a = api[spec.name]
            a["train"] += train
            a["infer"] += infer
            a["jobs"] += bool(train)
            a["nodes"] += 1
        elif caps.needs_gpu:
            n_gpu += 1
            params = (spec.params_b or 1.0) * 1e9
            # 6·N FLOPs per trained token, 2·N per generated/scored token, at 40% of an H100's 989 TFLOP/s bf16.
            gpu_hours += (6 * params * train + 2 * params * infer) / (0.4 * 989e12) / 3600
    lines: list[str] = []
    if n_gpu:
        lines.append(f"estimate: {n_gpu} GPU node(s), ≈ {gpu_hours:.1f} H100-hours of compute (6·N per trained token, "
                     "2·N per generated token, 40% MFU; excludes model loading and decoding latency)")
    if api:
        tr = sum(a["train"] for a in api.values())
        inf = sum(a["infer"] for a in api.values())
        jobs = sum(a["jobs"] for a in api.values())
        lines.append(f"estimate: API work ≈ {tr / 1e6:,.0f} M fine-tuning training tokens in {jobs:.0f} job(s) + "
                     f"{inf / 1e6:,.0f} M inference tokens (prompt + completion); training tokens are usually "
                     "priced ~10x higher — multiply by your provider's prices:")
        for name, a in api.items():
            lines.append(f"  {name} ({reg.models[name].source}): {a['jobs']:.0f} fine-tune(s), "
                         f"{a['train'] / 1e6:,.1f} M training + {a['infer'] / 1e6:,.1f} M inference tokens")
    return lines


@dataclass(frozen=True)
class LMTrack:
    """The LM track (:class:`benchmark.tracks.Track`)."""

    name: str = "lm"
    settings: type[LMSettings] = LMSettings

    def build_plan(self, suite: SuiteSpec, settings: LMSettings, reg: Any) -> list[Node]:
        """See :func:`build_plan`."""
        return build_plan(suite, settings, reg)

    def estimate(self, suite: SuiteSpec, settings: LMSettings, reg: Any, todo: list[Node]) -> list[str]:
        """See :func:`estimate`."""
        return estimate(suite, settings, reg, todo)


TRACK = LMTrack()
