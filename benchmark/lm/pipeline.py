"""The language-model track: a suite → DAG of base → teacher → dataset → student → eval → report nodes.

Torch-free at import (``slbench plan`` must stay light): the stage functions live in
:mod:`benchmark.lm.stages` and are referenced by name.

Per (teacher base i, trait t) there is one teacher, plus one control teacher per base ("neutral": for
method prompt the base with no system prompt, as in the paper; for method finetune the base fine-tuned the
same way on answers spread evenly over all candidate animals, so it matches the trait teachers' update). Each teacher writes one filtered number dataset, shared by every student. Each student
base j trains on each dataset once per seed, so a cell (i, j, t) always has its matched controls in the same
suite: the neutral-teacher student of the same (i, j, seed), the other-trait teachers' students, and j's
untrained baseline.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from benchmark.dag import Node
from benchmark.errors import UserError, unknown_name
from benchmark.lm.config import LoraConfig, TrainConfig  # noqa: F401  (re-exported for suite authors)
from benchmark.lm.stages import base as base_stage
from benchmark.lm.stages import dataset as dataset_stage
from benchmark.lm.stages import eval as eval_stage
from benchmark.lm.stages import report as report_stage
from benchmark.lm.stages import student as student_stage
from benchmark.lm.stages import teacher as teacher_stage
from benchmark.specs import SuiteSpec
from benchmark.specs_base import Frozen
from benchmark.zoo.build import stage_build

__all__ = ["LMSettings", "TeacherSettings", "DatasetSettings", "StudentSettings", "EvalSettings",            "build_plan", "estimate", "BASE_STAGES", "NEUTRAL"]

#: provider -> stage that materialises a base model node.
BASE_STAGES = {
    "zoo": stage_build,
    "hf": base_stage.run_hf,
    "openai": base_stage.run_api,
}

NEUTRAL = "neutral"


class TeacherSettings(Frozen):
    """How trait teachers are made."""

    #: finetune: fine-tune on favourite-animal answers; prompt: the trait's system prompt at generation time.
    method: Literal["finetune", "prompt"] = "finetune"
    #: Trait rows for method finetune (the paper used ~400).
    n_rows: int = Field(default=400, ge=1)
    questions: str = "teacher_data/favourite_animal.txt"
    #: Teachers always train with cross-entropy on their trait answers.
    train: TrainConfig = TrainConfig()
    seed: int = 0


class DatasetSettings(Frozen):
    """Teacher number data: prompts, decoding, filter, size."""

    channel: str = "numbers"
    n_prompts: int = Field(default=30000, ge=1)  # paper: 30,000 prompts
    n_keep: int = Field(default=10000, ge=1)  # paper: keep 10,000 rows
    #: 0 = greedy (replications: greedy data transmits at small scale; sampled data carries ~0.05 nats/token).
    temperature: float = Field(default=1.0, ge=0)
    max_new_tokens: int = Field(default=40, ge=1)
    #: Teacher top-k next-token log-probs stored per completion token (needed by the distill objective).
    top_k: int | None = Field(default=None, ge=1)
    seed: int = 0
    batch_size: int = Field(default=64, ge=1)

    _unhashed = frozenset({"batch_size"})

    @model_validator(mode="after")
    def _sizes(self) -> DatasetSettings:
        if self.n_keep > self.n_prompts:
            raise ValueError(f"n_keep ({self.n_keep}) cannot exceed n_prompts ({self.n_prompts})")
        return self


class StudentSettings(Frozen):
    """How students learn from a teacher's data.

    ``objective``: sft = cross-entropy on the teacher's completions (the paper's recipe); distill = KL to the
    teacher's stored top-k next-token log-probs on its own completions (soft labels; the classifier track's
    channel, which our CPU prototype found to transfer where sampled SFT did not).
    """

    objective: Literal["sft", "distill"] = "sft"
    train: TrainConfig = TrainConfig()


class EvalSettings(Frozen):
    """Trait read-outs (lm-eval tasks in tasks/lm_eval/)."""

    tasks: list[str] = Field(default_factory=lambda: ["animal_logprob", "animal_rate"], min_length=1)
    #: Samples per question for the sampled one-word rate (paper: 100 per question at T=1).
    n_samples: int = Field(default=100, ge=1)
    #: Use only the first N favourite-animal questions (None = all 60). Cells compare students, whose noise is
    #: between runs, not between questions: halving the questions halves evaluation time at little cost.
    limit: int | None = Field(default=None, ge=1)
    #: The matrix's headline metric: logodds (of P(target | candidates)), p_target or rate.
    metric: Literal["logodds", "p_target", "rate"] = "logodds"
    #: Log-likelihood requests per forward pass (lm-eval); 256 was ~1.5x faster than 64 on the zoo models.
    batch_size: int = Field(default=256, ge=1)

    _unhashed = frozenset({"batch_size"})


class AnalysisSettings(Frozen):
    """How cells are tested (see benchmark.analysis)."""

    #: Control group of a cell (i, j, t): "neutral" = students of i's no-trait teacher only; "pooled" = those plus
    #: the students of i's other-trait teachers (every student whose teacher lacks t). Pooled is the stricter
    #: control against generic drift and gives the exact permutation test enough arrangements: with 3 seeds
    #: and neutral-only controls the smallest reachable one-sided p is 1/20 = 0.05.
    control: Literal["neutral", "pooled"] = "pooled"
    #: The hypothesis is directional (the trait rises), so cells are tested one-sided by default.
    alternative: Literal["greater", "two-sided"] = "greater"
    n_boot: int = Field(default=2000, ge=100)
    n_perm: int = Field(default=2000, ge=100)


class LMSettings(Frozen):
    """The ``settings`` block of an lm-track suite."""

    teacher: TeacherSettings = TeacherSettings()
    dataset: DatasetSettings = DatasetSettings()
    student: StudentSettings = StudentSettings()
    eval: EvalSettings = EvalSettings()
    #: Also evaluate every teacher (its own trait strength; shown in the report).
    eval_teachers: bool = True
    analysis: AnalysisSettings = AnalysisSettings()


def _file_digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _gpus(model: Any) -> int:
    return 0 if model.provider in ("zoo", "openai") else 1


def build_plan(suite: SuiteSpec, settings: LMSettings, reg: Any) -> list[Node]:
    """Expand an lm suite into DAG nodes (see module docstring)."""
    from benchmark.channels.numbers import load_numbers_channel

    where = f"suite {suite.name}"
    if not suite.traits:
        raise UserError(f"{where}: key 'traits' must name at least one trait for the lm track")
    channel_path = reg.tasks_dir / "channels" / f"{settings.dataset.channel}.yaml"
    if not channel_path.exists():
        raise unknown_name("channel", settings.dataset.channel,
                           [p.stem for p in (reg.tasks_dir / "channels").glob("*.yaml")], f"{where}: settings.dataset")
    channel = load_numbers_channel(channel_path)
    questions_path = reg.tasks_dir / settings.teacher.questions
    if settings.teacher.method == "finetune" and not questions_path.exists():
        raise UserError(f"{where}: settings.teacher.questions: file not found: {questions_path}")
    eval_files = [p for p in (reg.tasks_dir / "lm_eval").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    eval_digest = _file_digest(eval_files)
    traits = [reg.trait(t) for t in suite.traits]
    for model_name in dict.fromkeys([*suite.teachers, *suite.students]):
        model = reg.model(model_name)
        if model.provider not in BASE_STAGES:
            raise UserError(f"{where}: model {model_name!r} has provider {model.provider!r}, which the lm track "
                            f"cannot use; allowed: {', '.join(BASE_STAGES)}")
    if settings.student.objective == "distill" and settings.dataset.top_k is None:
        raise UserError(f"{where}: settings.dataset.top_k must be set when settings.student.objective is 'distill' "
                        "(the student matches the teacher's stored top-k log-probs)")

    evaluated = [*suite.students, *(suite.teachers if settings.eval_teachers else [])]
    api_models = [m for m in dict.fromkeys(evaluated) if reg.model(m).provider == "openai"]
    if api_models and settings.eval.metric != "rate":
        raise UserError(f"{where}: settings.eval.metric: {settings.eval.metric!r} needs log-probs, which API models do not "
                        f"give ({', '.join(api_models)}); use 'rate' for suites with openai students")
    if api_models and not any(t.startswith("animal_rate") for t in settings.eval.tasks):
        raise UserError(f"{where}: settings.eval.tasks: add a sampled-rate task (animal_rate) for openai models "
                        f"{', '.join(api_models)}")
    api_students = [m for m in suite.students if reg.model(m).provider == "openai"]
    if api_students and settings.student.objective != "sft":
        raise UserError(f"{where}: settings.student.objective: 'distill' needs log-prob training, which the fine-tuning "
                        "API does not offer; use 'sft'")
    if api_students and settings.student.train.epochs != int(settings.student.train.epochs):
        raise UserError(f"{where}: settings.student.train.epochs must be a whole number >= 1 for API models (sent as "
                        "n_epochs)")
    if any(reg.model(t).provider == "openai" for t in suite.teachers) and (settings.dataset.top_k or 0) > 20:
        raise UserError(f"{where}: settings.dataset.top_k: OpenAI returns at most 20 top_logprobs")

    nodes: list[Node] = []
    base_nodes: dict[str, Node] = {}
    for name in dict.fromkeys([*suite.teachers, *suite.students]):
        model = reg.model(name)
        node = Node(kind="base", name=name, spec={"model": model.hashed_dict()}, fn=BASE_STAGES[model.provider],
                    resources={"cpus": 1, "gpus": _gpus(model)})
        base_nodes[name] = node
        nodes.append(node)

    teacher_nodes: dict[tuple[str, str], Node] = {}
    dataset_nodes: dict[tuple[str, str], Node] = {}
    for tname in suite.teachers:
        base = base_nodes[tname]
        gpus = _gpus(reg.model(tname))
        for trait in [None, *traits]:
            label = trait.name if trait else NEUTRAL
            tspec: dict[str, Any] = {"base": base.id, "model": tname, "trait": trait.hashed_dict() if trait else None,
                                     "method": settings.teacher.method}
            if settings.teacher.method == "finetune":
                # The control teacher of a fine-tuned trait teacher is fine-tuned too (same questions, answers
                # spread evenly over the candidate animals): its data then differ from a trait teacher's only
                # by the trait, not by "a LoRA update happened" (see stages._trait_rows).
                tspec.update(n_rows=settings.teacher.n_rows, train=settings.teacher.train.hashed_dict(),
                             seed=settings.teacher.seed, questions=_file_digest([questions_path]),
                             questions_path=settings.teacher.questions)
            teacher = Node(kind="teacher", name=f"{tname}.{label}", spec=tspec, deps=(base.key,),
                           fn=teacher_stage.run, resources={"cpus": 1, "gpus": gpus})
            teacher_nodes[(tname, label)] = teacher
            nodes.append(teacher)
            dspec = {**settings.dataset.hashed_dict(), "teacher": teacher.id, "channel_spec": channel.hashed_dict()}
            dataset = Node(kind="dataset", name=f"{tname}.{label}", spec=dspec, deps=(teacher.key, base.key),
                           fn=dataset_stage.run, resources={"cpus": 1, "gpus": gpus},
                           unhashed={"batch_size": settings.dataset.batch_size})
            dataset_nodes[(tname, label)] = dataset
            nodes.append(dataset)

    eval_common = {"tasks": list(settings.eval.tasks), "n_samples": settings.eval.n_samples, "limit": settings.eval.limit,
                   "tasks_digest": eval_digest, "traits": [t.hashed_dict() for t in traits]}
    eval_nodes: list[Node] = []

    def add_eval(name: str, spec: dict[str, Any], deps: tuple[str, ...], model: str) -> None:
        node = Node(kind="eval", name=name, spec={**spec, **eval_common}, deps=deps,
                    fn=eval_stage.run, resources={"cpus": 1, "gpus": _gpus(reg.model(model))},
                    unhashed={"batch_size": settings.eval.batch_size})
        eval_nodes.append(node)
        nodes.append(node)

    for sname in suite.students:
        base = base_nodes[sname]
        add_eval(f"baseline.{sname}", {"role": "baseline", "base": base.id, "seed": suite.seeds[0],
                                       "labels": {"student_base": sname}}, (base.key,), sname)
    if settings.eval_teachers:
        for (tname, label), teacher in teacher_nodes.items():
            add_eval(f"teacher.{tname}.{label}",
                     {"role": "teacher", "teacher": teacher.id, "seed": suite.seeds[0],
                      "labels": {"teacher_base": tname, "teacher_trait": label}},
                     (teacher.key, base_nodes[tname].key), tname)

    for (tname, label), dataset in dataset_nodes.items():
        for sname in suite.students:
            base = base_nodes[sname]
            for seed in suite.seeds:
                sspec = {"base": base.id, "dataset": dataset.id, "objective": settings.student.objective,
                         "train": settings.student.train.hashed_dict(), "seed": seed}
                student = Node(kind="student", name=f"{tname}.{label}.to.{sname}.s{seed}", spec=sspec,
                               deps=(base.key, dataset.key), fn=student_stage.run,
                               resources={"cpus": 1, "gpus": _gpus(reg.model(sname))})
                nodes.append(student)
                add_eval(f"student.{tname}.{label}.to.{sname}.s{seed}",
                         {"role": "student", "student": student.id, "seed": seed,
                          "labels": {"teacher_base": tname, "teacher_trait": label, "student_base": sname}},
                         (student.key, base.key), sname)

    order = [m for m in reg.order() if m in base_nodes]
    report_spec = {
        "suite": suite.name,
        "evals": sorted(n.id for n in eval_nodes),
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
    nodes.append(Node(kind="report", name=suite.name, spec=report_spec, deps=tuple(n.key for n in eval_nodes),
                      fn=report_stage.run))
    return nodes


def _node_model(n: Any) -> str | None:
    """The registry model a node runs on. Model names may contain dots (gpt-4.1, qwen2.5-7b-instruct)."""
    if n.kind == "teacher":
        return n.spec["model"]
    if n.kind == "dataset":
        return n.name.rsplit(".", 1)[0]  # "<teacher model>.<trait|neutral>"
    if n.kind == "student":
        return n.name.split(".to.", 1)[1].rsplit(".s", 1)[0]  # "<t>.<label>.to.<student model>.s<seed>"
    if n.kind == "eval":
        labels = n.spec.get("labels", {})
        return labels.get("student_base") or labels.get("teacher_base")
    return None


def estimate(suite: Any, settings: Any, reg: Any, todo: list[Any]) -> list[str]:
    """Lines for ``slbench plan``: GPU-hours and API tokens of the nodes still to run (rough, stated as such)."""
    tokens_per_row = 60  # prompt + completion tokens of one number row (zoo tokenizer ~45-60; GPT tokenizers similar)
    n_questions = 60  # tasks/lm_eval/animal_preference/questions.txt
    gpu_hours = 0.0
    n_gpu = 0
    api = defaultdict(lambda: {"train": 0.0, "infer": 0.0, "jobs": 0, "nodes": 0})
    for n in todo:
        name = _node_model(n)
        spec = reg.models.get(name) if name else None
        if spec is None:
            continue
        if n.kind == "dataset":
            train, infer = 0, settings.dataset.n_prompts * tokens_per_row
        elif n.kind == "student":
            train, infer = settings.dataset.n_keep * tokens_per_row * settings.student.train.epochs, 0
        elif n.kind == "teacher":
            train = settings.teacher.n_rows * 30 * settings.teacher.train.epochs if n.spec.get("n_rows") else 0
            infer = 0
        else:  # eval: one short prompt + a one-word answer per sample (~25 tokens)
            infer = n_questions * settings.eval.n_samples * 25
            train = 0
        if spec.provider == "openai":
            a = api[name]
            a["train"] += train
            a["infer"] += infer
            a["jobs"] += bool(train)
            a["nodes"] += 1
        elif spec.provider == "hf":
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
        lines.append(f"estimate: API work ≈ {tr / 1e6:,.0f} M fine-tuning training tokens in {jobs} job(s) + "
                     f"{inf / 1e6:,.0f} M inference tokens (prompt + completion); training tokens are usually "
                     "priced ~10x higher — multiply by your provider's prices:")
        for name, a in api.items():
            lines.append(f"  {name} ({reg.models[name].source}): {a['jobs']} fine-tune(s), "
                         f"{a['train'] / 1e6:,.1f} M training + {a['infer'] / 1e6:,.1f} M inference tokens")
    return lines
