"""Classifier track: settings and the suite → DAG expansion (torch-free at import).

DAG of one suite (every node batches ALL replicate seeds; S = len(suite.seeds)):

* ``base`` per model: the initial tensors (perturbed / pretrained for siblings) and the untrained
  reference accuracy.
* ``teacher`` per teacher model: the base trained on digit labels through the 10 class logits only.
* ``dataset`` per teacher: the teacher's logits on the distillation noise stream (the classifier analogue of
  the teacher's number completions). Computed once, shared by every student of that teacher; students
  regenerate the identical noise images from the recorded stream and check a checksum.
* ``student`` per (teacher, student base, channel): the student base distilled on noise only, through the
  auxiliary logits (channel ``aux``, the subliminal channel) or all logits (``all_logits``, the positive
  control); evaluated on the digit test set inside the node.
* ``report``: one sink that turns every result into the tidy table and the shared report files.

Every node's ``spec`` embeds its upstream node ids and everything that changes its numbers; throughput
knobs (whether to keep student weights) are ``unhashed``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from benchmark.classifier.data import data_fingerprint
from benchmark.classifier.spec import ClassifierBuildSpec
from benchmark.classifier.stages import base as base_stage
from benchmark.classifier.stages import dataset as dataset_stage
from benchmark.classifier.stages import report as report_stage
from benchmark.classifier.stages import student as student_stage
from benchmark.classifier.stages import teacher as teacher_stage
from benchmark.dag import Node
from benchmark.errors import UserError
from benchmark.registry import Registry
from benchmark.specs import SuiteSpec
from benchmark.specs_base import Frozen

__all__ = [
    "CHANNELS",
    "ClassifierSettings",
    "ControlSettings",
    "DistillSettings",
    "STAGE_VERSION",
    "TeacherSettings",
    "build_plan",
    "estimate",
]

#: Bump when a stage's numerics change without a spec change: every classifier artifact id changes.
STAGE_VERSION = 1
#: Distillation channels: the subliminal one and the positive control.
CHANNELS = ("aux", "all_logits")
_RESOURCES = {"cpus": 1, "gpus": 0}


class TeacherSettings(Frozen):
    """Supervised training of teachers on digit labels (class logits only)."""

    #: 15 epochs × 19 batches of 64 = 285 Adam steps → 97.4% on digits (prototypes.md); the paper: 5 on MNIST.
    epochs: int = Field(default=15, ge=1)
    batch: int = Field(default=64, ge=1)
    #: The paper's Adam learning rate.
    lr: float = Field(default=3e-4, gt=0)


class DistillSettings(Frozen):
    """Aux-only distillation of students on noise images.

    Give ``steps``, or ``epochs`` over a fixed pool of ``n_noise`` images (the paper: 60k images, 5 epochs,
    batch 1024 = 295 steps).
    """

    #: 384 steps at lr 1.5e-3 ≈ 512 at 1e-3 (same-init 65 vs 72%, CNN 61 vs 60%) at 3/4 of the cost: the
    #: 6×6×8 matrix must fit in 3 minutes on 2 cores (dev box, 8 seeds).
    steps: int | None = Field(default=384, ge=1)
    epochs: int | None = Field(default=None, ge=1)
    batch: int = Field(default=64, ge=1)
    #: Adam lr. At 512 steps 1e-3 reached 72% same-init where the paper's 3e-4 reached 44% (8 seeds).
    lr: float = Field(default=1.5e-3, gt=0)
    #: mse on raw logits beat kl on softmax (prototypes.md: m=3 → 70 vs 54); kl needs ≥ 2 aux logits.
    loss: Literal["mse", "kl"] = "mse"
    #: Pixel distribution: uniform U[-1,1] (the paper's), gaussian N(0,1), pm1 (±1), uniform01 U[0,1].
    noise: Literal["uniform", "gaussian", "pm1", "uniform01"] = "uniform"
    #: Distinct noise images per seed; null = fresh images every step (64% vs 54% for a 16k pool).
    n_noise: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _steps_or_epochs(self) -> DistillSettings:
        if self.epochs is not None:
            if "steps" in self.model_fields_set and self.steps is not None:
                raise ValueError("give 'steps' or 'epochs', not both")
            if self.n_noise is None:
                raise ValueError(
                    "'epochs' counts passes over a fixed noise pool: set 'n_noise' too (or use 'steps')"
                )
            if self.n_noise < self.batch:
                raise ValueError(f"n_noise {self.n_noise} is smaller than batch {self.batch}")
        elif self.steps is None:
            raise ValueError("give 'steps' or 'epochs'")
        if self.n_noise is not None and self.n_noise < self.batch:
            raise ValueError(f"n_noise {self.n_noise} is smaller than batch {self.batch}")
        return self

    @property
    def total_steps(self) -> int:
        """Optimizer steps (``epochs`` × drop-last batches per pass over the pool, else ``steps``)."""
        if self.epochs is not None and self.n_noise is not None:
            return self.epochs * (self.n_noise // self.batch)
        assert self.steps is not None  # validated above
        return self.steps


class ControlSettings(Frozen):
    """The positive control: all-logit distillation on the same noise stream (transfers across inits)."""

    enabled: bool = True
    #: All-logit distillation converges fast: 64 steps at lr 2e-3 gave 92.6% for a cross-init MLP student
    #: (8 seeds, dev box); these runs are the cheap part of the matrix.
    steps: int = Field(default=64, ge=1)
    lr: float = Field(default=2e-3, gt=0)
    loss: Literal["mse", "kl"] = "mse"


class ClassifierSettings(Frozen):
    """``settings:`` of a classifier suite (``tasks/suites/*.yaml``)."""

    #: Where the IDX files live and whether weights are kept change no number (the IDX bytes are hashed).
    _unhashed: ClassVar[frozenset[str]] = frozenset({"idx_path", "save_student_weights"})

    #: digits: sklearn's bundled 8×8 digits; idx: real MNIST IDX files in ``idx_path``.
    data: Literal["digits", "idx"] = "digits"
    #: Directory holding train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-... (optionally .gz).
    idx_path: str | None = None
    #: digits only: stratified split (70/30 with seed 0 gives 1,257 / 540 images).
    test_fraction: float = Field(default=0.3, gt=0, lt=1)
    split_seed: int = 0
    teacher: TeacherSettings = Field(default_factory=TeacherSettings)
    student: DistillSettings = Field(default_factory=DistillSettings)
    control: ControlSettings = Field(default_factory=ControlSettings)
    #: Keep student weights in the store (~2.7 MB per 8-seed MLP node); recorded, not hashed.
    save_student_weights: bool = True

    @model_validator(mode="after")
    def _idx_path(self) -> ClassifierSettings:
        if self.data == "idx" and not self.idx_path:
            raise ValueError("data 'idx' needs 'idx_path' (a directory with the four MNIST IDX files)")
        return self


def _classifier_models(suite: SuiteSpec, reg: Registry) -> dict[str, ClassifierBuildSpec]:
    """Build specs of every model the suite names, in registry order, after provider checks."""
    names = list(dict.fromkeys([*suite.teachers, *suite.students]))
    order = {n: i for i, n in enumerate(reg.order())}
    out: dict[str, ClassifierBuildSpec] = {}
    for name in sorted(names, key=lambda n: order.get(n, len(order))):
        spec = reg.model(name, where=f"suite {suite.name!r}")
        if spec.provider != "classifier":
            raise UserError(
                f"suite {suite.name!r}: model {name!r} has provider {spec.provider!r}; the classifier "
                "track needs provider 'classifier' models (model_registry/classifiers.yaml)"
            )
        out[name] = spec.build_spec()
    return out


def _check_lineage(builds: dict[str, ClassifierBuildSpec], reg: Registry) -> None:
    """``lineage.init`` must agree with the tensors: same init ⇔ same architecture, n_aux, seed and rule."""
    by_identity: dict[str, str] = {}
    by_init: dict[str, tuple[str, dict[str, object]]] = {}
    for name, build in builds.items():
        ident = build.init_identity()
        init = reg.lineage_init(name)
        key = repr(sorted(ident.items()))
        if init in by_init and by_init[init][1] != ident:
            other = by_init[init][0]
            raise UserError(
                f"model {name!r}: lineage.init {init!r} is shared with {other!r}, but their build "
                f"blocks start from different tensors ({by_init[init][1]} vs {ident}); siblings need "
                "the same arch, hidden, channels, n_aux, init_seed and init_rule"
            )
        if key in by_identity and reg.lineage_init(by_identity[key]) != init:
            other = by_identity[key]
            raise UserError(
                f"model {name!r}: starts from the same tensors as {other!r} but lineage.init differs "
                f"({init!r} vs {reg.lineage_init(other)!r}); give them the same lineage.init"
            )
        by_init.setdefault(init, (name, ident))
        by_identity.setdefault(key, name)


def build_plan(suite: SuiteSpec, settings: ClassifierSettings, reg: Registry) -> list[Node]:
    """Expand a classifier suite into DAG nodes (bases, teachers, datasets, students, one report).

    Raises:
        UserError: a model is not a classifier, lineage contradicts the build blocks, teacher and student
            disagree on the number of aux logits, ``loss: kl`` with one aux logit, or bad IDX data.
    """
    for key in ("teachers", "students"):
        names = getattr(suite, key)
        dup = next((n for i, n in enumerate(names) if n in names[:i]), None)
        if dup is not None:
            raise UserError(f"suite {suite.name!r}: {key} lists {dup!r} twice")
    builds = _classifier_models(suite, reg)
    _check_lineage(builds, reg)
    where = f"suite {suite.name!r}"
    for t in suite.teachers:
        for s in suite.students:
            if builds[t].n_aux != builds[s].n_aux:
                raise UserError(
                    f"{where}: teacher {t!r} has n_aux={builds[t].n_aux} but student {s!r} has "
                    f"n_aux={builds[s].n_aux}; distillation needs the same 10+m output layout"
                )
    if settings.student.loss == "kl":
        single = [n for n in suite.students if builds[n].n_aux == 1]
        if single:
            raise UserError(
                f"{where}: settings.student.loss 'kl' needs n_aux >= 2 (model {single[0]!r} has 1: a "
                "softmax over one logit is constant, so its gradient is zero); use loss: mse"
            )

    data = data_fingerprint(settings.data, settings.idx_path, settings.test_fraction, settings.split_seed)
    image_shape = [int(v) for v in data["image_shape"]]  # type: ignore[attr-defined]
    seeds = list(suite.seeds)
    # The IDX path is where to read the data, not what it is (the sha256s are hashed): recorded, not hashed.
    # Resolved now (relative to the working directory) so worker processes find the files wherever they run.
    io = {"idx_path": str(Path(str(settings.idx_path)).resolve())} if settings.data == "idx" else {}
    nodes: list[Node] = []

    bases: dict[str, Node] = {}
    for name, build in builds.items():
        node = Node(
            kind="base",
            name=name,
            fn=base_stage.run,
            resources=dict(_RESOURCES),
            unhashed=io,
            spec={
                "version": STAGE_VERSION,
                "build": build.model_dump(mode="json"),
                "image_shape": image_shape,
                "seeds": seeds,
                "data": data,
            },
        )
        bases[name] = node
        nodes.append(node)

    teachers: dict[str, Node] = {}
    datasets: dict[str, Node] = {}
    ds_steps = settings.student.total_steps
    if settings.control.enabled:
        ds_steps = max(ds_steps, settings.control.steps)
    noise = {
        "kind": settings.student.noise,
        "batch": settings.student.batch,
        "n_noise": settings.student.n_noise,
        "steps": ds_steps,
    }
    for name in suite.teachers:
        base = bases[name]
        teacher = Node(
            kind="teacher",
            name=name,
            fn=teacher_stage.run,
            deps=(base.key,),
            resources=dict(_RESOURCES),
            unhashed=io,
            spec={
                "version": STAGE_VERSION,
                "base": base.id,
                "train": settings.teacher.model_dump(),
                "data": data,
            },
        )
        dataset = Node(
            kind="dataset",
            name=name,
            fn=dataset_stage.run,
            deps=(teacher.key,),
            resources=dict(_RESOURCES),
            spec={"version": STAGE_VERSION, "teacher": teacher.id, "noise": noise},
        )
        teachers[name], datasets[name] = teacher, dataset
        nodes += [teacher, dataset]

    channels: list[tuple[str, dict[str, Any]]] = [
        (
            "aux",
            {"steps": settings.student.total_steps, "lr": settings.student.lr, "loss": settings.student.loss},
        )
    ]
    if settings.control.enabled:
        channels.append(
            (
                "all_logits",
                {"steps": settings.control.steps, "lr": settings.control.lr, "loss": settings.control.loss},
            )
        )
    cells: list[dict[str, Any]] = []
    for t in suite.teachers:
        for s in suite.students:
            for channel, distill in channels:
                node = Node(
                    kind="student",
                    name=f"{t}.{s}.{channel}",
                    fn=student_stage.run,
                    deps=(datasets[t].key, bases[s].key),
                    resources=dict(_RESOURCES),
                    unhashed={**io, "save_weights": settings.save_student_weights},
                    spec={
                        "version": STAGE_VERSION,
                        "dataset": datasets[t].id,
                        "base": bases[s].id,
                        "channel": channel,
                        "distill": distill,
                        "data": data,
                    },
                )
                nodes.append(node)
                cells.append(
                    {
                        "teacher_base": t,
                        "student_base": s,
                        "teacher_trait": channel,
                        "key": node.key,
                        "teacher_key": teachers[t].key,
                        "relation": reg.relation(t, s),
                    }
                )

    order = [n for n in reg.order() if n in builds]
    report_spec = {
        "version": STAGE_VERSION,
        "suite": suite.name,
        "teachers": list(suite.teachers),
        "students": list(suite.students),
        "seeds": seeds,
        "order": order,
        "lineage": {n: reg.lineage_init(n) for n in order},
        "describe": {n: builds[n].describe() for n in order},
        "bases": {n: bases[n].key for n in order},
        "teacher_nodes": {n: teachers[n].key for n in suite.teachers},
        "cells": cells,
        "settings": settings.model_dump(mode="json", exclude={"save_student_weights", "idx_path"}),
        "data": data,
    }
    deps = tuple(n.key for n in nodes)
    nodes.append(
        Node(
            kind="report",
            name=suite.name,
            fn=report_stage.run,
            deps=deps,
            resources=dict(_RESOURCES),
            spec=report_spec,
        )
    )
    return nodes


#: Effective training throughput per core (FLOP/s), measured on the 2-core dev box with 8 seeds × batch 64
#: (aux students: 64-256-256-13 MLP ≈ 19 GFLOP/s; the grouped-conv CNN ≈ 6.5 GFLOP/s).
_FLOPS_PER_CORE = {"mlp": 19e9, "cnn": 6.5e9}
#: digits' training split (70/30 of 1,797 images).
_DIGITS_TRAIN = 1257


def estimate(suite: SuiteSpec, settings: ClassifierSettings, reg: Registry, todo: list[Node]) -> list[str]:
    """Lines for ``slbench plan``: rough CPU time of the nodes still to run (calibrated on the dev box)."""
    n_seeds = len(suite.seeds)
    n_train = _DIGITS_TRAIN if settings.data == "digits" else 60000
    cpu = 0.0
    for node in todo:
        if node.kind == "report":
            continue
        model = node.name.split(".")[1] if node.kind == "student" else node.name
        build = reg.model(model).build_spec()
        if node.kind == "base":
            steps, batch, passes = (
                (build.pretrain.steps, build.pretrain.batch, 3) if build.pretrain else (0, 0, 0)
            )
        elif node.kind == "teacher":
            steps = settings.teacher.epochs * (n_train // settings.teacher.batch)
            batch, passes = settings.teacher.batch, 3
        elif node.kind == "dataset":
            steps, batch, passes = int(node.spec["noise"]["steps"]), settings.student.batch, 1
        else:
            steps, batch, passes = int(node.spec["distill"]["steps"]), settings.student.batch, 3
        shape = (8, 8) if settings.data == "digits" else (28, 28)
        # 2 FLOPs per multiply-add; backward ≈ 2× forward, hence 3 passes for training, 1 for inference.
        flops = 2 * passes * build.flops_per_image(shape) * batch * steps * n_seeds
        cpu += flops / _FLOPS_PER_CORE[build.arch]
    if not todo:
        return []
    return [
        f"estimate: ≈ {cpu:.0f} CPU-seconds for {len(todo)} node(s) (≈ {cpu / 2:.0f} s with 2 single-thread "
        "workers on 2 idle cores, plus ~10 s for the report); rough, calibrated on the 2-core dev box"
    ]
