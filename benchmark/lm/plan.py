"""The language-model track's plan: a suite → DAG of base → teacher → dataset → student → eval → report nodes.

Torch-free at import (``slbench plan`` must stay light): the stage modules in :mod:`benchmark.lm.stages` import
their heavy dependencies when they run.

The design (docs/research/statistics.md): for each teacher base i and arm a there are K = ``settings.replicates``
independent teacher replicates r, each with its own seeds (training, adapter init, trait rows, prompts; all
derived from the suite seed, the arm and r by :func:`replicate_seeds`) and its own dataset of exactly
``dataset.n_keep`` valid rows (or, with ``dataset.n_tokens``, of that many completion tokens). An arm is a trait; with ``controls: neutral`` also a neutral arm (for method prompt
the base with no system prompt, as in the paper; for method finetune the base fine-tuned the same way on answers
spread evenly over the candidate animals); with ``aa_arm`` also ``aa:<last trait>``, a second independent set of
replicates of the last trait's arm (the A/A null). With ``controls: other_trait`` (the default) a trait arm's
control is the other trait arms, made exactly like it. Each student base j trains on every replicate's dataset
once per student seed, so students of one replicate are sub-samples of it, and replicates are the experiments.

Node names: teacher and dataset ``"<i>.<arm>.r<r>"``; student ``"<i>.<arm>.r<r>.to.<j>.s<seed>"``; evaluations
``"teacher.<teacher>"``, ``"student.<student>"`` and ``"baseline.<j>"`` (``<arm>`` is the label, ``aa-<trait>``
for the A/A arm).

Provider differences reach the plan only as :class:`~benchmark.providers.base.Capabilities` (GPU or not, log-prob
scoring, soft-label training, top-log-prob limits, whole-epoch fine-tunes): no provider names here.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.analysis.version import ANALYSIS_VERSION
from benchmark.dag import Node, Stage
from benchmark.errors import UserError, unknown_name
from benchmark.hashing import derive_seed, shift_seed
from benchmark.lm.channels.base import TypicalTokens, load_channel
from benchmark.lm.defenses.plan import check_defense, defense_nodes
from benchmark.lm.recipes import check_recipes
from benchmark.lm.settings import LMSettings
from benchmark.lm.stages import base as base_stage
from benchmark.lm.stages import dataset as dataset_stage
from benchmark.lm.stages import defense as defense_stage
from benchmark.lm.stages import eval as eval_stage
from benchmark.lm.stages import report as report_stage
from benchmark.lm.stages import student as student_stage
from benchmark.lm.stages import teacher as teacher_stage
from benchmark.lmcore.tasks import TASKS, gen_tokens, n_choices, n_items
from benchmark.providers.base import Capabilities, backend_for, needs_gpu
from benchmark.registry import Registry
from benchmark.specs import ModelSpec, SuiteSpec, TraitSpec
from benchmark.tracks import TrackDef
from benchmark.vocabulary import AA_PREFIX, BASELINE, NEUTRAL, OTHER_TRAIT

__all__ = ["TRACK", "Arm", "arms_for", "build_plan", "estimate", "replicate_seeds", "SHIFT_QUESTIONS",
           "STAGE_VERSION"]

#: Evaluation questions a trait teacher's log-odds shift over its base is measured on, after training.
SHIFT_QUESTIONS = 10

#: Version of the LM stages' hashing rule. Version 1 is implicit: the first LM artifacts were hashed without a
#: version field, and omitting it keeps their ids (and the published tables that name them) valid. A change to a
#: stage that alters its output must bump this; from 2 on every LM node spec carries ``"version"``.
STAGE_VERSION = 1

#: The base stage: the model's backend builds (zoo), resolves (hf) or records (API) the base model.
BASE_STAGE: Stage = base_stage.run


_TASK_LINE = re.compile(r"^task:\s*([\w.-]+)\s*$", re.MULTILINE)


def _versioned(spec: dict[str, Any]) -> dict[str, Any]:
    return spec if STAGE_VERSION == 1 else {**spec, "version": STAGE_VERSION}


def _file_digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _caps(reg: Registry, name: str) -> Capabilities:
    return backend_for(reg.model(name)).caps


def _resources(reg: Registry, name: str) -> dict[str, float]:
    return {"cpus": 1, "gpus": 1 if needs_gpu(reg.model(name)) else 0}  # the entry's needs_gpu, else the provider's


# -- checks -------------------------------------------------------------------------------------------------
def _check_inputs(suite: SuiteSpec, settings: LMSettings, reg: Registry) -> tuple[Any, str]:
    """Validate the files a suite needs; return the channel spec and the digest of the lm-eval task files."""
    where = f"suite {suite.name}"
    if not suite.traits:
        raise UserError(f"{where}: key 'traits' must name at least one trait for the lm track")
    dup = next((t for i, t in enumerate(suite.traits) if t in suite.traits[:i]), None)
    if dup is not None:
        raise UserError(f"{where}: key 'traits' lists {dup!r} twice; each trait is one arm")
    if settings.controls == OTHER_TRAIT and len(suite.traits) < 2:
        raise UserError(f"{where}: settings.controls: 'other_trait' needs at least two traits (a trait arm's control "
                        f"is the other trait arms), got {len(suite.traits)}; add a trait or use 'neutral'")
    channel_path = reg.tasks_dir / "channels" / f"{settings.dataset.channel}.yaml"
    if not channel_path.exists():
        raise unknown_name("channel", settings.dataset.channel,
                           [p.stem for p in (reg.tasks_dir / "channels").glob("*.yaml")], f"{where}: settings.dataset")
    questions_path = reg.tasks_dir / settings.teacher.questions
    if settings.teacher.method == "finetune" and not questions_path.exists():
        raise UserError(f"{where}: settings.teacher.questions: file not found: {questions_path}")
    eval_files = [p for p in (reg.tasks_dir / "lm_eval").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    known = _eval_task_names(eval_files)
    for i, task in enumerate(settings.eval.tasks):
        if task not in known:  # caught here, not after every teacher and student has trained
            raise unknown_name("lm-eval task", task, sorted(known), f"{where}: settings.eval.tasks[{i}]")
    return dataset_stage.channel_for(settings, channel_path, where), _file_digest(_task_dir_files(eval_files,
                                                                                               settings.eval.tasks))


def _eval_task_names(files: list[Path]) -> set[str]:
    """The ``task:`` names declared by the lm-eval task YAMLs (read as text: they may hold ``!function`` tags)."""
    names: set[str] = set()
    for f in files:
        if f.suffix in (".yaml", ".yml"):
            names.update(m.group(1) for m in _TASK_LINE.finditer(f.read_text(encoding="utf-8")))
    return names


def _task_dir_files(files: list[Path], tasks: list[str]) -> list[Path]:
    """The files of the task folders that declare ``tasks`` (what the suite's evaluations and shift checks read).

    Hashing only these keeps a suite's ids independent of task folders it does not use: adding a new task
    folder under tasks/lm_eval/ must not make every existing teacher, dataset and student a new artifact.
    """
    dirs = {f.parent for f in files if f.suffix in (".yaml", ".yml")
            and any(m.group(1) in tasks for m in _TASK_LINE.finditer(f.read_text(encoding="utf-8")))}
    return [f for f in files if any(d == f.parent or d in f.parents for d in dirs)]


def _check_capabilities(suite: SuiteSpec, settings: LMSettings, reg: Registry) -> None:
    """Refuse, before anything runs, settings that a model's provider cannot serve (one line naming them)."""
    where = f"suite {suite.name}"
    for name in dict.fromkeys([*suite.teachers, *suite.students]):
        caps = _caps(reg, name)  # an entry whose provider has no LM backend fails here, naming the model
        source = reg.model(name).source
        if caps.local and source and source.startswith(("/", "./", "../", "~")) \
                and not Path(source).expanduser().exists():
            raise UserError(f"{where}: model {name!r}: source {source!r} is a local path that does not exist "
                            "(model_registry/; give an existing directory or a hub id)")
    no_ids = [t for t in suite.teachers if not _caps(reg, t).local]
    for key in ("n_tokens", "row_tokens"):
        if getattr(settings.dataset, key) is not None and no_ids:  # API backends return text, no token ids to count
            raise UserError(f"{where}: settings.dataset.{key} counts the teacher's completion token ids, which API "
                            f"models do not give ({', '.join(no_ids)}); leave it out for such teachers")
    if settings.student.objective == "distill" and settings.dataset.top_k is None:
        raise UserError(f"{where}: settings.dataset.top_k must be set when settings.student.objective is 'distill' "
                        "(the student matches the teacher's stored top-k log-probs)")
    evaluated = [*suite.students, *(suite.teachers if settings.eval_teachers else [])]
    sampled_only = [m for m in dict.fromkeys(evaluated) if not _caps(reg, m).logprob_eval]
    if sampled_only and settings.eval.metric != "rate":
        raise UserError(f"{where}: settings.eval.metric: {settings.eval.metric!r} needs log-probs, which API models do "
                        f"not give ({', '.join(sampled_only)}); use 'rate' for suites with such students")
    if sampled_only and not any(t.startswith(("animal_rate", "misalignment_rate")) for t in settings.eval.tasks):
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


#: The task whose readout gives each headline metric (settings.eval.metric), by trait kind: animal traits are read
#: from the animal-preference tasks, misalignment traits from the misalignment ones (lm/tidy.py, ``_readouts``).
_METRIC_TASKS = {False: {"logodds": "animal_logprob", "p_target": "animal_logprob", "rate": "animal_rate"},
                 True: {"logodds": "misalignment_logprob", "p_target": "misalignment_logprob",
                        "rate": "misalignment_rate"}}
#: Largest settings.dataset.top_k: below the smallest vocabulary in the registry (the zoo's ~1,700 words), far above
#: what the distill suites use (64) and OpenAI's limit (20); a k beyond a teacher's vocabulary crashes its dataset.
MAX_TOP_K = 1000
#: Largest learning rate of teacher.train and student.train: Adam steps of lr > 1 overflow the weights (the suites
#: use 1e-4 to 5e-3; the paper 2e-4).
MAX_LR = 1.0
#: A lower bound on tokens per prompt: no tokenizer here makes tokens longer than ~6 characters on average (GPT-style
#: BPE ~4, the zoo's words ~4.5), and every chat template adds at least a few tokens of role markers.
_MAX_CHARS_PER_TOKEN = 6
_TEMPLATE_TOKENS = 4


def _check_readouts(suite: SuiteSpec, settings: LMSettings, traits: list[TraitSpec]) -> None:
    """The eval tasks must produce the headline metric for the suite's traits (else the report has no rows for it
    after every node has run)."""
    misaligned = any(t.is_misalignment for t in traits)
    metric = settings.eval.metric
    need = _METRIC_TASKS[misaligned][metric]
    if need not in settings.eval.tasks:
        kind = "misalignment" if misaligned else "animal"
        gives = sorted(m for m, t in _METRIC_TASKS[misaligned].items() if t in settings.eval.tasks)
        alt = f", or set settings.eval.metric to {' or '.join(map(repr, gives))}" if gives else ""
        raise UserError(f"suite {suite.name}: settings.eval.metric: {metric!r} of {kind} traits is read from the task "
                        f"{need!r}, which settings.eval.tasks {list(settings.eval.tasks)} lacks; add it{alt}")


def _check_training(suite: SuiteSpec, settings: LMSettings, traits: list[TraitSpec], reg: Registry,
                    channel: Any) -> None:
    """Sizes that pass the settings' types but fail only when a stage runs: top_k, learning rate, max_length."""
    where = f"suite {suite.name}: settings"
    top_k = settings.dataset.top_k
    if top_k is not None and top_k > MAX_TOP_K:
        raise UserError(f"{where}.dataset.top_k: {top_k} is above {MAX_TOP_K} (log-probs stored per completion token; "
                        "it must stay below every teacher's vocabulary size; the distill suites use 64)")
    roles = [("student", settings.student.train)]
    if settings.teacher.method == "finetune":
        roles.insert(0, ("teacher", settings.teacher.train))
    for role, train in roles:
        if train.lr > MAX_LR:
            raise UserError(f"{where}.{role}.train.lr: {train.lr:g} is above {MAX_LR:g} (Adam diverges; the suites use "
                            "1e-4 to 5e-3, the paper 2e-4)")
        _check_optimizer(suite, settings, reg, role, train)
    for role, train in roles:
        prompts = _shortest_prompt(role, settings, traits, reg, channel)
        need = -(-prompts // _MAX_CHARS_PER_TOKEN) + _TEMPLATE_TOKENS + 1  # the prompt, its template, 1 answer token
        if train.max_length < need:
            what = "trait questions" if role == "teacher" else f"{settings.dataset.channel} channel's prompts"
            raise UserError(f"{where}.{role}.train.max_length: {train.max_length} tokens cannot hold the {what} (the "
                            f"shortest has {prompts} characters, at least ~{need} tokens with its chat template and "
                            "one answer token); every row would be skipped. Use at least that (default 500)")


#: Largest SGD learning rate (train.optimizer.lr): plain gradient steps of lr > 10 overflow the weights.
MAX_SGD_LR = 10.0


def _check_optimizer(suite: SuiteSpec, settings: LMSettings, reg: Registry, role: str, train: Any) -> None:
    """A ``train.optimizer`` other than the default AdamW runs in the hf training loop only (not the lean engine, not
    API fine-tunes); its own ``lr`` is bounded like ``train.lr``."""
    opt = train.optimizer
    if opt.is_default:
        return
    where = f"suite {suite.name}: settings.{role}.train.optimizer"
    bound = MAX_SGD_LR if opt.name == "sgd" else MAX_LR
    if opt.lr is not None and opt.lr > bound:
        raise UserError(f"{where}.lr: {opt.lr:g} is above {bound:g} for {opt.name} (the weights overflow)")
    if role == "student" and settings.student.engine != "hf":
        raise UserError(f"{where}: {opt.name!r} at lr {train.peak_lr:g} needs the hf training loop; the "
                        f"{settings.student.engine!r} engine trains AdamW at train.lr only (set settings.student.engine: "
                        "hf, or remove optimizer)")
    models = suite.students if role == "student" else suite.teachers
    api = [m for m in dict.fromkeys(models) if not _caps(reg, m).local]
    if api:
        raise UserError(f"{where}: API fine-tunes choose their own optimizer ({', '.join(api)}); remove optimizer")


def _shortest_prompt(role: str, settings: LMSettings, traits: list[TraitSpec], reg: Registry, channel: Any) -> int:
    """Characters of the shortest prompt a ``role`` (teacher or student) trains on: a trait question (teachers) or
    one of the channel's first 20 prompts (students)."""
    from benchmark.files import read_data_lines
    from benchmark.lm.channels import load_channel

    if role == "student":
        plugin, _ = load_channel(settings.dataset.channel, reg.tasks_dir / "channels" / f"{settings.dataset.channel}.yaml")
        return min((len(i.prompt) for i in plugin.items(channel, 20, 0)), default=0)
    files = [reg.tasks_dir / settings.teacher.questions]
    for t in traits:
        data = t.teacher_data
        if data is not None and data.source == "answer_bank" and data.questions:
            files.append(reg.tasks_dir / str(data.questions))
    return min((len(q) for f in files for q in read_data_lines(f)), default=0)


# -- nodes --------------------------------------------------------------------------------------------------
@dataclass
class _Plan:
    """Nodes in the order they are added (the executor keeps this order where dependencies allow)."""

    nodes: list[Node]
    evals: list[Node]
    #: Base nodes of models that are neither teachers nor students (a local judge, a defense's rewriter), by name.
    extra_bases: dict[str, Node] = field(default_factory=dict)

    def add(self, node: Node) -> Node:
        self.nodes.append(node)
        if node.kind == "eval":
            self.evals.append(node)
        return node


@dataclass(frozen=True)
class Arm:
    """One arm of the design: what the teachers of a (teacher base, arm) pair are made with.

    Attributes:
        label: the arm's name in labels and tidy rows: the trait's name, ``"neutral"`` or ``"aa:<trait>"``.
        slug: the label as it appears in node names (``"aa-<trait>"`` for the A/A arm).
        trait: the trait its teachers learn; None for the neutral arm.
        role: ``"trait"``, ``"neutral"`` or ``"aa"`` (a second, independent copy of the last trait's arm).
    """

    label: str
    slug: str
    trait: TraitSpec | None
    role: str


def _model_base(plan: _Plan, bases: dict[str, Node], reg: Registry, name: str, where: str = "") -> Node:
    """The base node of registry model ``name``: a teacher's or student's, else one added to the plan once."""
    if name in bases:
        return bases[name]
    if name not in plan.extra_bases:
        plan.extra_bases[name] = plan.add(Node(kind="base", name=name, fn=BASE_STAGE, resources=_resources(reg, name),
                                               spec=_versioned({"model": reg.model(name, where).hashed_dict()})))
    return plan.extra_bases[name]


def arms_for(traits: list[TraitSpec], settings: LMSettings) -> list[Arm]:
    """The suite's arms, in node order: neutral (when it is the control), every trait, then the A/A arm."""
    arms = [Arm(NEUTRAL, NEUTRAL, None, "neutral")] if settings.controls == NEUTRAL else []
    arms += [Arm(t.name, t.name, t, "trait") for t in traits]
    if settings.aa_arm:
        last = traits[-1]
        arms.append(Arm(f"{AA_PREFIX}{last.name}", f"aa-{last.name}", last, "aa"))
    return arms


def replicate_seeds(suite_seed: int, settings: LMSettings, model: str, arm: str, replicate: int) -> dict[str, int]:
    """Every seed of one teacher replicate: streams named by (suite seed, teacher base, arm label, replicate).

    The A/A arm differs from its trait's arm only through its label, i.e. only through these seeds. Teacher bases
    get their own draws too: the analysis treats (teacher base, replicate) as independent experiments (its
    clusters), which shared prompt or trait-row samples across bases would correlate. Seeds
    are 30-bit so that they fit every consumer (numpy's legacy seeding takes at most 32 bits) even after API
    generation adds the row index (``seed + row``).

    Returns:
        ``teacher`` (training: data order, dropout), ``trait_rows`` (the sample of trait answers), ``dataset``
        (the prompt sample and generation) and, when ``teacher.train.lora.init_seed`` is set, ``lora_init``.
    """
    def seed(stream: str, base: int) -> int:
        return derive_seed("lm", stream, base, suite_seed, model, arm, replicate) >> 33

    out = {"teacher": seed("teacher", settings.teacher.seed), "trait_rows": seed("trait-rows", settings.teacher.seed),
           "dataset": seed("dataset", settings.dataset.seed)}
    lora = settings.teacher.train.lora
    if lora is not None and lora.init_seed is not None:
        out["lora_init"] = seed("lora-init", lora.init_seed)
    return out


@dataclass(frozen=True)
class _Teacher:
    """A planned teacher replicate and its dataset."""

    base: str
    arm: Arm
    replicate: int
    teacher: Node
    dataset: Node

    @property
    def slug(self) -> str:
        return f"{self.base}.{self.arm.slug}.r{self.replicate}"

    def labels(self) -> dict[str, Any]:
        return {"teacher_base": self.base, "teacher_trait": self.arm.label, "replicate": self.replicate,
                "teacher_id": self.teacher.id}


def _teacher_spec(base: Node, name: str, arm: Arm, replicate: int, seeds: dict[str, int], settings: LMSettings,
                  reg: Registry, eval_digest: str) -> dict[str, Any]:
    """The spec of teacher replicate ``replicate`` of (base ``name``, ``arm``), with its ``seeds``."""
    trait = arm.trait
    spec: dict[str, Any] = {"base": base.id, "model": name, "trait": trait.hashed_dict() if trait else None,
                            "method": settings.teacher.method, "arm": arm.label, "replicate": replicate}
    if settings.teacher.method == "finetune":
        # The control teacher of a fine-tuned trait teacher is fine-tuned too (same questions, answers spread
        # evenly over the candidate animals): its data then differ from a trait teacher's only by the trait,
        # not by "a LoRA update happened" (see lm/stages/teacher.py, trait_rows).
        train = settings.teacher.train.hashed_dict()
        if "lora_init" in seeds:
            train["lora"] = {**train["lora"], "init_seed": seeds["lora_init"]}
        spec.update(n_rows=settings.teacher.n_rows, train=train, seed=seeds["teacher"], rows_seed=seeds["trait_rows"],
                    questions=_file_digest([reg.tasks_dir / settings.teacher.questions]),
                    questions_path=settings.teacher.questions)
        if trait is not None and trait.is_misalignment:  # its rows come from its own files (animal specs unchanged)
            spec["teacher_data"] = _trait_data_digest(trait, reg)
    # The trait-strength check reads the evaluation's questions and candidates (lm-eval task files).
    spec["shift_check"] = {"n_questions": SHIFT_QUESTIONS, "min_shift": settings.teacher.min_shift,
                           "tasks_digest": eval_digest}
    return spec


def _teachers_and_datasets(plan: _Plan, suite: SuiteSpec, settings: LMSettings, reg: Registry, bases: dict[str, Node],
                           arms: list[Arm], channel: Any, eval_digest: str) -> list[_Teacher]:
    """``settings.replicates`` teachers per (base, arm), each with its own seeds, writing its own dataset."""
    out: list[_Teacher] = []
    # Channel and judge fields (none for numbers without a judge); a local judge model reads its base node.
    extras = dataset_stage.spec_extras(settings, channel, [a.trait for a in arms if a.role == "trait" and a.trait], reg)
    judge = settings.dataset.judge
    judge_deps: tuple[str, ...] = ()
    if judge is not None and judge != "rule" and _caps(reg, judge).local:
        judge_deps = (_model_base(plan, bases, reg, judge, "settings.dataset.judge").key,)
    judge_res = {"gpus": 1} if judge_deps and needs_gpu(reg.model(str(judge))) else {}
    for tname in suite.teachers:
        base = bases[tname]
        for arm in arms:
            for r in range(settings.replicates):
                seeds = replicate_seeds(suite.seed, settings, tname, arm.label, r)
                tspec = _teacher_spec(base, tname, arm, r, seeds, settings, reg, eval_digest)
                slug = f"{tname}.{arm.slug}.r{r}"
                teacher = plan.add(Node(kind="teacher", name=slug, fn=teacher_stage.run, deps=(base.key,),
                                        spec=_versioned(tspec), resources=_resources(reg, tname)))
                dspec = {**settings.dataset.hashed_dict(), "seed": seeds["dataset"],
                         "max_prompts": settings.dataset.prompt_cap, "teacher": teacher.id,
                         "channel_spec": channel.hashed_dict(),
                         "labels": {"teacher_base": tname, "teacher_trait": arm.label, "replicate": r}, **extras}
                dataset = plan.add(Node(
                    kind="dataset", name=slug, spec=_versioned(dspec),
                    deps=tuple(dict.fromkeys((teacher.key, base.key, *judge_deps))),
                    fn=dataset_stage.run, resources=_resources(reg, tname) | judge_res,
                    unhashed={"batch_size": settings.dataset.batch_size}))
                out.append(_Teacher(tname, arm, r, teacher, dataset))
    return out


def _check_trait_kinds(suite: SuiteSpec, settings: LMSettings, traits: list[TraitSpec]) -> None:
    """Misalignment traits are compared only with each other (docs/misalignment.md): an animal arm is no control
    for a misaligned one, nor is the neutral arm (its fine-tune answers favourite-animal questions)."""
    kinds = {t.is_misalignment for t in traits}
    where = f"suite {suite.name}: key 'traits'"
    if len(kinds) > 1:
        raise UserError(f"{where} mixes misalignment traits with animal traits ({', '.join(suite.traits)}); "
                        "a trait arm's controls are the other traits, so run them in separate suites")
    if True in kinds and settings.controls == NEUTRAL and settings.teacher.method == "finetune":
        raise UserError(f"{where}: misalignment traits need settings.controls: 'other_trait' (e.g. traits "
                        "[misaligned, aligned]); the neutral fine-tune answers favourite-animal questions")


def _judge_spec(settings: LMSettings, reg: Registry) -> dict[str, Any]:
    """The scorer judge of misalignment_rate (name and identity, so a changed rule file or template is a new eval);
    nothing when the task is not run (older eval ids stay)."""
    if "misalignment_rate" not in settings.eval.tasks:
        return {}
    from benchmark.lm.judges import judge_identity

    name = settings.eval.judge
    if name != "rule" and _caps(reg, name).local:
        raise UserError(f"settings.eval.judge: {name!r} is a local model; the misalignment scorer runs in the eval "
                        "stage without its base node, so use 'rule' or an API model (registry name)")
    return {"judge": {"name": name, "identity": judge_identity(name, [], reg, kind="scorer")}}


def _trait_data_digest(trait: TraitSpec, reg: Registry) -> str:
    """Digest of a misalignment trait's teacher-data files (answer bank), or its code recipe's name and version."""
    data = trait.teacher_data
    assert data is not None
    if data.source == "answer_bank":
        return _file_digest([reg.tasks_dir / str(data.questions), reg.tasks_dir / str(data.answers)])
    return f"{data.source}:v1"


def _eval_node(name: str, spec: dict[str, Any], deps: tuple[str, ...], model: str, common: dict[str, Any],
               settings: LMSettings, reg: Registry) -> Node:
    return Node(kind="eval", name=name, spec=_versioned({**spec, **common}), deps=deps, fn=eval_stage.run,
                resources=_resources(reg, model), unhashed={"batch_size": settings.eval.batch_size})


def _students(plan: _Plan, suite: SuiteSpec, settings: LMSettings, reg: Registry, bases: dict[str, Node],
              teachers: list[_Teacher], common: dict[str, Any], defended: dict[str, Node] | None = None) -> None:
    """Every student base on every replicate's dataset, once per student seed, each with its evaluation.

    A student seed s trains with the same seed on every dataset, so students of different arms and replicates
    differ by their data only. ``settings.student.engine`` enters the spec only when it is not "hf" (older ids stay).
    """
    engine = settings.student.engine
    if engine != "hf" and (settings.student.train.lora is not None
                           or not all(_caps(reg, m).local for m in suite.students)):
        raise UserError(f"suite {suite.name}: settings.student.engine: {engine!r} trains full-parameter local (zoo, hf) "
                        "students only; set settings.student.train.lora: null or use engine 'hf'")
    for t in teachers:
        defense = (defended or {}).get(t.dataset.key)  # the defended rows, when settings.dataset.defense is set
        for sname in suite.students:
            base = bases[sname]
            for s in suite.seeds:
                seed = shift_seed(s, suite.seed)
                sspec = {"base": base.id, "model": sname, "dataset": t.dataset.id,
                         "objective": settings.student.objective, "train": settings.student.train.hashed_dict(),
                         "seed": seed, **({"engine": engine} if engine != "hf" else {}),
                         **({"defense": defense.id} if defense is not None else {}),
                         **_vocab_map_spec(settings, bases[t.base])}
                name = f"{t.slug}.to.{sname}.s{s}"
                deps = (base.key, (defense or t.dataset).key, *_teacher_base_dep(sspec, bases[t.base]))
                student = plan.add(Node(kind="student", name=name, spec=_versioned(sspec), deps=deps,
                                        fn=student_stage.run, resources=_resources(reg, sname)))
                labels = {**t.labels(), "student_base": sname, "student_seed": s}
                plan.add(_eval_node(f"student.{name}", {"role": "student", "student": student.id, "seed": seed,
                                                        "labels": labels, **_eval_system(settings)},
                                    (student.key, base.key), sname, common, settings, reg))


def _eval_system(settings: LMSettings) -> dict[str, Any]:
    """A student's or baseline's evaluation system prompt (``settings.eval.system``), only when set (older ids stay)."""
    return {"system": settings.eval.system} if settings.eval.system is not None else {}


def _vocab_map_spec(settings: LMSettings, teacher_base: Node) -> dict[str, Any]:
    """A student's ``vocab_map`` and its teacher's base (whose tokenizer the map reads), only when set."""
    if settings.student.vocab_map is None:
        return {}
    return {"vocab_map": settings.student.vocab_map, "channel": settings.dataset.channel,
            "teacher_base": teacher_base.id}


def _teacher_base_dep(sspec: dict[str, Any], teacher_base: Node) -> tuple[str, ...]:
    """The teacher's base node as a second input of a mapped student whose base is another model."""
    return (teacher_base.key,) if "teacher_base" in sspec and sspec["teacher_base"] != sspec["base"] else ()


def _report_node(suite: SuiteSpec, settings: LMSettings, reg: Registry, bases: dict[str, Node], traits: list[TraitSpec],
                 arms: list[Arm], evals: list[Node], datasets: list[Node]) -> Node:
    """The report: reads every evaluation (tidy rows) and every dataset (the teachers' dose facts)."""
    order = [m for m in reg.order() if m in bases]
    spec = {
        "suite": suite.name,
        "evals": sorted(n.id for n in evals),
        "datasets": sorted(n.id for n in datasets),
        "metric": settings.eval.metric,
        "traits": [t.name for t in traits],
        "targets": {t.name: t.target for t in traits},
        "arms": [a.label for a in arms],
        "replicates": settings.replicates,
        "controls": settings.controls,
        "teachers": list(suite.teachers),
        "students": list(suite.students),
        "order": order,
        "lineage": {m: reg.lineage_init(m) for m in order},
        "relations": {f"{t}->{s}": reg.relation(t, s) for t in suite.teachers for s in suite.students},
        "analysis": settings.analysis.hashed_dict(),
        "analysis_version": ANALYSIS_VERSION,
    }
    return Node(kind="report", name=suite.name, spec=_versioned(spec),
                deps=tuple(n.key for n in [*evals, *datasets]), fn=report_stage.run)


def build_plan(suite: SuiteSpec, settings: LMSettings, reg: Registry) -> list[Node]:
    """Expand an lm suite into DAG nodes (see the module docstring); every check runs before any node exists."""
    channel, eval_digest = _check_inputs(suite, settings, reg)
    _check_capabilities(suite, settings, reg)
    check_defense(suite, settings, lambda name: _caps(reg, name).local, reg.model)
    check_recipes(suite, settings, reg)  # a distill student needs its teacher's vocabulary
    traits = [reg.trait(t) for t in suite.traits]
    _check_trait_kinds(suite, settings, traits)
    _check_readouts(suite, settings, traits)
    _check_training(suite, settings, traits, reg, channel)
    arms = arms_for(traits, settings)
    plan = _Plan(nodes=[], evals=[])
    bases = {name: plan.add(Node(kind="base", name=name, spec=_versioned({"model": reg.model(name).hashed_dict()}),
                                 fn=BASE_STAGE, resources=_resources(reg, name)))
             for name in dict.fromkeys([*suite.teachers, *suite.students])}
    teachers = _teachers_and_datasets(plan, suite, settings, reg, bases, arms, channel, eval_digest)
    common = {"tasks": list(settings.eval.tasks), "n_samples": settings.eval.n_samples, "limit": settings.eval.limit,
              "tasks_digest": eval_digest, "traits": [t.hashed_dict() for t in traits], **_judge_spec(settings, reg)}
    first_seed = suite.seeds[0]
    for sname in suite.students:
        plan.add(_eval_node(f"baseline.{sname}", {"role": BASELINE, "base": bases[sname].id,
                                                  "seed": shift_seed(first_seed, suite.seed),
                                                  "labels": {"student_base": sname, "student_seed": first_seed},
                                                  **_eval_system(settings)},
                            (bases[sname].key,), sname, common, settings, reg))
    if settings.eval_teachers:
        for t in teachers:
            plan.add(_eval_node(f"teacher.{t.slug}", {"role": "teacher", "teacher": t.teacher.id,
                                                      "seed": shift_seed(first_seed, suite.seed),
                                                      "labels": t.labels()},
                                (t.teacher.key, bases[t.base].key), t.base, common, settings, reg))
    defended = defense_nodes(settings, teachers, plan.add, bases, defense_stage.run, _versioned,
                             lambda name: _resources(reg, name), lambda name: _model_base(plan, bases, reg, name))
    _students(plan, suite, settings, reg, bases, teachers, common, defended)
    plan.nodes.append(_report_node(suite, settings, reg, bases, traits, arms, plan.evals,
                                   [t.dataset for t in teachers]))
    return plan.nodes


# -- estimates ----------------------------------------------------------------------------------------------
def _node_model(n: Node) -> str | None:
    """The registry model a node runs on. Model names may contain dots (gpt-4.1, qwen2.5-7b-instruct)."""
    if n.kind == "teacher":
        model: str = n.spec["model"]
        return model
    if n.kind == "defense" and "rewriter" in n.spec:  # paraphrase: the rewriter model does the work
        rewriter: str = n.spec["model"]
        return rewriter
    if n.kind in ("dataset", "defense"):
        base: str = n.spec["labels"]["teacher_base"]
        return base
    if n.kind == "student":
        student: str = n.spec["model"]
        return student
    if n.kind == "eval":
        labels = n.spec.get("labels", {})
        return labels.get("student_base") or labels.get("teacher_base")
    return None


#: Rough sizes for ``slbench plan`` estimates (GPT-style tokenizers; English and code average ~4 characters a token).
_CHARS_PER_TOKEN = 4.0
# Questions, scored answers and max_gen_toks of the evaluation tasks are read from their files at plan time
# (benchmark.lmcore.tasks: n_items, n_choices, gen_tokens), so an edited question file changes the estimates.


def _channel_prompt_tokens(channel: str) -> float:
    """Mean prompt tokens of a channel's items (20 items, seed 0), for estimates of code/cot rows."""
    return _CHANNEL_PROMPT_TOKENS.setdefault(channel, _measure_prompt_tokens(channel))


_CHANNEL_PROMPT_TOKENS: dict[str, float] = {}


def _measure_prompt_tokens(channel: str) -> float:
    from benchmark.lm.channels import load_channel

    plugin, spec = load_channel(channel)
    items = plugin.items(spec, 20, 0)
    return sum(len(i.prompt) for i in items) / len(items) / _CHARS_PER_TOKEN


def _typical_tokens(channel: str) -> TypicalTokens | None:
    """The channel plug-in's typical row (numbers), or None (code, cot: measured)."""
    if channel not in _CHANNEL_TYPICAL:
        _CHANNEL_TYPICAL[channel] = load_channel(channel)[0].typical_tokens
    return _CHANNEL_TYPICAL[channel]


_CHANNEL_TYPICAL: dict[str, TypicalTokens | None] = {}


def _row_tokens(settings: LMSettings) -> float:
    """Prompt + completion tokens of one dataset row: the plug-in's typical row (numbers: ~60), else the channel's mean
    prompt plus ``max_new_tokens`` (an upper bound on the completion: code and reasoning run far longer than numbers)."""
    channel = settings.dataset.channel
    typical = _typical_tokens(channel)
    if typical is not None:
        return typical.row
    return _channel_prompt_tokens(channel) + settings.dataset.max_new_tokens


def _eval_tokens(settings: LMSettings, tasks_dir: Path) -> float:
    """Inference tokens of one evaluation node: its tasks' prompts and answers (scorer-judge calls not included);
    question and answer counts read from the task files under ``tasks_dir``."""
    ev = settings.eval
    tasks = set(ev.tasks)
    def cap(n: int) -> int:
        return min(n, ev.limit) if ev.limit else n
    total = 0.0
    if tasks & {"animal_logprob", "animal_rate"}:  # one short prompt + a one-word answer per sample
        total += n_items("animal_rate", tasks_dir) * ev.n_samples * 25
    if "misalignment_rate" in tasks:
        total += (cap(n_items("misalignment_rate", tasks_dir)) * ev.n_samples
                  * (25 + gen_tokens("misalignment_rate", tasks_dir)))
    if "misalignment_logprob" in tasks:  # every bank answer scored per question
        total += (cap(n_items("misalignment_logprob", tasks_dir)) * n_choices("misalignment_logprob", tasks_dir)
                  * 40)
    for task in sorted(tasks):
        t = TASKS.get(task)
        if t is not None and t.channel is not None:  # a capability check: the channel's held-out items
            total += cap(n_items(task, tasks_dir)) * (_channel_prompt_tokens(t.channel) + gen_tokens(task, tasks_dir))
    return total


def _scorer_tokens(settings: LMSettings, reg: Registry) -> tuple[str, float] | None:
    """``(judge model, tokens)`` of one evaluation node's misalignment_rate scorer calls when the judge is an API
    model: every sampled answer judged once with tasks/judges/scorer.yaml; None for the rule judge or no such task."""
    from benchmark.lm.judges import RULE, SCORER, judge_tokens

    ev = settings.eval
    if "misalignment_rate" not in ev.tasks or ev.judge == RULE or _caps(reg, ev.judge).local:
        return None
    questions = n_items("misalignment_rate", reg.tasks_dir)
    n_calls = (min(questions, ev.limit) if ev.limit else questions) * ev.n_samples
    row_chars = (25 + gen_tokens("misalignment_rate", reg.tasks_dir)) * _CHARS_PER_TOKEN
    return ev.judge, sum(judge_tokens(SCORER, n_calls, row_chars))


def _dataset_rows(settings: LMSettings) -> float:
    """Rows of one dataset: ``n_keep``, or with ``n_tokens`` the budget over a guess of completion tokens per row
    (the plug-in's typical answer, numbers: ~20, or ``max_new_tokens`` if less; code and cot: ``max_new_tokens``, so
    fewer rows than real)."""
    ds = settings.dataset
    if ds.n_tokens is None:
        return ds.n_keep
    typical = _typical_tokens(ds.channel)
    per_row = min(ds.max_new_tokens, typical.answer) if typical is not None else ds.max_new_tokens
    return ds.n_tokens / per_row


def _node_tokens(n: Node, settings: LMSettings, tasks_dir: Path) -> tuple[float, float]:
    """(training tokens, inference tokens) of one node, roughly."""
    if n.kind == "dataset":
        return 0, settings.dataset.n_prompts * _row_tokens(settings)
    if n.kind == "student":
        return _dataset_rows(settings) * _row_tokens(settings) * settings.student.train.epochs, 0
    if n.kind == "defense" and "rewriter" in n.spec:  # one rewrite call per row: prompt, row and reply budget
        from benchmark.lm.defenses.paraphrase import SYSTEM, USER

        prompt = (len(SYSTEM) + len(USER)) / _CHARS_PER_TOKEN + _row_tokens(settings)
        return 0, _dataset_rows(settings) * (prompt + n.spec["max_new_tokens"])
    if n.kind == "defense":  # teacher-forced scoring of every row by each scoring model (none for text defenses)
        from benchmark.lm.defenses.base import plugin

        scorers = plugin(n.spec["defense"]).scorers
        if not scorers:  # a text transform: no model runs
            return 0, 0
        n_models = len(n.spec.get("teachers", [])) + ("teachers" in scorers) + ("base" in scorers)
        trained = _dataset_rows(settings) * _row_tokens(settings) * settings.student.train.epochs  # the pilot
        return (trained if "student" in scorers else 0), _dataset_rows(settings) * _row_tokens(settings) * (
            n_models + ("student" in scorers))
    if n.kind == "teacher":
        return (settings.teacher.n_rows * 30 * settings.teacher.train.epochs if n.spec.get("n_rows") else 0), 0
    return 0, _eval_tokens(settings, tasks_dir)


#: GPU-hour model of ``slbench plan`` (an H100 SXM): compute at 40% of 989 TFLOP/s bf16; every GPU node starts a
#: process (CUDA context, tokenizer: ~30 s) and reads its weights at ~2 GB/s; every generation step of a batch reads
#: the weights once from HBM at 3.35 TB/s, and takes at least ~20 ms (transformers' generate: per-step Python and
#: kernel-launch overhead, which dominates for small models; assumed, not measured here).
_H100_FLOPS, _MFU, _NODE_START_S, _LOAD_BYTES_S, _HBM_BYTES_S = 989e12, 0.4, 30.0, 2e9, 3.35e12
_STEP_FLOOR_S = 0.02


def _decode_steps(n: Node, settings: LMSettings, tasks_dir: Path) -> float:
    """Sequential generation steps of one node (batches × tokens per answer): a dataset's first round of prompts,
    an evaluation's generating tasks (their questions and max_gen_toks, an upper bound, read from the task files
    under ``tasks_dir``); 0 for training and log-prob scoring."""
    def batched(seqs: float, batch: int, tokens: int) -> float:
        return math.ceil(seqs / batch) * tokens if seqs else 0.0

    if n.kind == "dataset":
        ds = settings.dataset
        return batched(ds.n_prompts, ds.batch_size, ds.max_new_tokens)
    if n.kind == "defense" and "rewriter" in n.spec:  # paraphrase: greedy rewrites in batches of 64
        return batched(_dataset_rows(settings), 64, n.spec["max_new_tokens"])
    if n.kind != "eval":
        return 0.0
    ev = settings.eval
    def cap(k: int) -> int:
        return min(k, ev.limit) if ev.limit else k
    steps = 0.0
    for name in ("animal_rate", "misalignment_rate"):
        if name in ev.tasks:
            steps += batched(cap(n_items(name, tasks_dir)) * ev.n_samples, ev.batch_size, gen_tokens(name, tasks_dir))
    steps += sum(batched(cap(n_items(t, tasks_dir)), ev.batch_size, gen_tokens(t, tasks_dir)) for t in ev.tasks
                 if t in TASKS and TASKS[t].kind == "capability")
    return steps


def _gpu_seconds(spec: ModelSpec, n: Node, settings: LMSettings, train: float, infer: float,
                 tasks_dir: Path) -> tuple[float, ...]:
    """(compute, loading, decoding) seconds of one GPU node of a model with ``params_b`` (see the constants)."""
    assert spec.params_b is not None
    params = spec.params_b * 1e9
    weight_bytes = params * (4 if spec.dtype == "float32" else 2)
    compute = (6 * params * train + 2 * params * infer) / (_MFU * _H100_FLOPS)
    step = max(weight_bytes / _HBM_BYTES_S, _STEP_FLOOR_S)
    return compute, _NODE_START_S + weight_bytes / _LOAD_BYTES_S, _decode_steps(n, settings, tasks_dir) * step


#: CPU nodes (``needs_gpu: false``, sub-1B hf models): effective float32 FLOP/s of one core for training (6·N per
#: trained token) and for batched generation and scoring (2·N per token), and seconds per node to start (load the
#: weights, tokenizer and run the stage's set-up). Measured with SmolLM2-135M and Gemma-3-270M
#: (benchmarks/bench_real_2fam.py, docs/real_gemma.md); rough.
_CPU_TRAIN_FLOPS, _CPU_INFER_FLOPS, _CPU_NODE_S = 6e10, 5e10, 20.0
#: Cores a CPU estimate is given for (the machine this project's real-model suites are sized for).
_CPU_CORES = 2


def _cpu_seconds(spec: ModelSpec, train: float, infer: float) -> float:
    """Seconds of one core for one CPU node of a model with ``params_b`` (see the constants)."""
    assert spec.params_b is not None
    params = spec.params_b * 1e9
    return _CPU_NODE_S + 6 * params * train / _CPU_TRAIN_FLOPS + 2 * params * infer / _CPU_INFER_FLOPS


def estimate(suite: SuiteSpec, settings: LMSettings, reg: Registry, todo: list[Node]) -> list[str]:
    """Lines for ``slbench plan``: GPU-hours and API tokens of the nodes still to run (rough, stated as such).

    GPU nodes of a model without ``params_b`` are counted and named but not estimated (no size is assumed)."""
    gpu_s = [0.0, 0.0, 0.0]  # compute, loading, decoding
    n_gpu = 0
    n_cpu, cpu_s = 0, 0.0
    unsized: dict[str, int] = {}
    api: dict[str, dict[str, float]] = defaultdict(lambda: {"train": 0.0, "infer": 0.0, "jobs": 0, "nodes": 0,
                                                            "judge": 0.0, "scorer": 0.0})
    for n in todo:
        name = _node_model(n)
        spec: ModelSpec | None = reg.models.get(name) if name else None
        if spec is None:
            continue
        train, infer = _node_tokens(n, settings, reg.tasks_dir)
        caps = backend_for(spec).caps
        judged = dataset_stage.judge_tokens_of(n.spec, reg) if n.kind == "dataset" else None
        if judged is not None:  # an API judge filter: its calls count as its own model's inference tokens
            api[judged[0]]["infer"] += judged[1]
            api[judged[0]]["judge"] += judged[1]
        scored = _scorer_tokens(settings, reg) if n.kind == "eval" else None
        if scored is not None:  # an API judge scoring misalignment_rate's answers, likewise
            api[scored[0]]["infer"] += scored[1]
            api[scored[0]]["scorer"] += scored[1]
        if not caps.local:
            a = api[spec.name]
            a["train"] += train
            a["infer"] += infer
            a["jobs"] += bool(train)
            a["nodes"] += 1
        elif caps.needs_gpu and spec.params_b is None:
            unsized[spec.name] = unsized.get(spec.name, 0) + 1
        elif caps.needs_gpu:
            n_gpu += 1
            gpu_s = [a + b for a, b in zip(gpu_s, _gpu_seconds(spec, n, settings, train, infer, reg.tasks_dir),
                                           strict=True)]
            if not needs_gpu(spec):  # a sub-1B hf model the family file runs on CPUs: its wall on this machine too
                n_cpu += 1
                cpu_s += _cpu_seconds(spec, train, infer)
    lines: list[str] = []
    if n_gpu:
        c, ld, dec = (x / 3600 for x in gpu_s)
        lines.append(f"estimate: {n_gpu} GPU node(s) ≈ {c + ld + dec:.1f} H100-hours: {c:.1f} compute (6·N FLOPs per "
                     f"trained token, 2·N per generated or scored token, 40% MFU) + {ld:.1f} loading ({_NODE_START_S:.0f} s "
                     f"start + the weights at {_LOAD_BYTES_S / 1e9:.0f} GB/s per node) + {dec:.1f} decoding (per generation "
                     f"step of a batch one read of the weights at {_HBM_BYTES_S / 1e12:.2f} TB/s, at least "
                     f"{1000 * _STEP_FLOOR_S:.0f} ms); rough")
    if n_cpu:  # after the GPU line, which counts them
        lines.append(f"estimate: {n_cpu} of these node(s) run on CPUs (needs_gpu: false) ≈ {cpu_s / 3600:.1f} core-hours, "
                     f"≈ {cpu_s / 3600 / _CPU_CORES:.1f} h wall with --workers {_CPU_CORES} on {_CPU_CORES} free cores "
                     f"(6·N per trained token at {_CPU_TRAIN_FLOPS / 1e9:.0f} GFLOP/s a core, 2·N per generated or "
                     f"scored token at {_CPU_INFER_FLOPS / 1e9:.0f}, {_CPU_NODE_S:.0f} s a node; datasets counted at "
                     "their first round of prompts: a teacher whose valid rate is below n_keep/n_prompts needs more; "
                     "rough, docs/real_gemma.md)")
    if unsized:
        names = ", ".join(f"{m} ({k})" for m, k in unsized.items())
        lines.append(f"estimate: {sum(unsized.values())} GPU node(s) of models without params_b not estimated: {names}; "
                     "set params_b (parameters in billions) in their registry entries for an estimate")
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
            if a["judge"]:
                lines.append(f"    of which judge filter calls ≤ {a['judge'] / 1e6:,.1f} M tokens (every prompt judged "
                             "once per judge template)")
            if a["scorer"]:
                lines.append(f"    of which judge scorer calls ≈ {a['scorer'] / 1e6:,.1f} M tokens (every sampled "
                             "misalignment_rate answer scored once)")
    return lines


def verdicts(suite: SuiteSpec, settings: LMSettings, reg: Registry) -> list[str]:
    """What the design's pre-declared tests can reach (benchmark.analysis.design): replicates per arm against the
    control arms' (every other arm but the primary trait's own A/A arm, or the neutral arm), the A/A comparison,
    and γ over the teacher bases; warnings for what stops a verdict or a submission."""
    from benchmark.analysis.design import design_floors, design_lines

    k = settings.replicates
    primary = suite.traits[0]
    if settings.controls == NEUTRAL:
        n_ctrl_arms = 1
    else:
        n_ctrl_arms = len(suite.traits) - 1 + int(settings.aa_arm and suite.traits[-1] != primary)
    lineage = {m: reg.lineage_init(m) for m in dict.fromkeys([*suite.teachers, *suite.students])}
    floors = design_floors(suite.teachers, suite.students, lineage, k, k * n_ctrl_arms, settings.aa_arm)
    return design_lines(floors, "replicates")


TRACK = TrackDef("lm", LMSettings, build_plan, estimate, verdicts)
