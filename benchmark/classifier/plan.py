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

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.analysis.version import ANALYSIS_VERSION
from benchmark.classifier.data import data_fingerprint
from benchmark.classifier.settings import ClassifierSettings
from benchmark.classifier.spec import ClassifierBuildSpec
from benchmark.classifier.stages import base as base_stage
from benchmark.classifier.stages import dataset as dataset_stage
from benchmark.classifier.stages import report as report_stage
from benchmark.classifier.stages import student as student_stage
from benchmark.classifier.stages import teacher as teacher_stage
from benchmark.dag import Node
from benchmark.errors import UserError
from benchmark.hashing import shift_seed
from benchmark.registry import Registry
from benchmark.specs import SuiteSpec
from benchmark.tracks import TrackDef

__all__ = ["CHANNELS", "STAGE_VERSION", "TRACK", "build_plan", "estimate"]

#: Bump when a stage's numerics change without a spec change: every classifier artifact id changes.
STAGE_VERSION = 1
#: Distillation channels: the subliminal one and the positive control.
CHANNELS = ("aux", "all_logits")
_RESOURCES = {"cpus": 1, "gpus": 0}


def _classifier_models(suite: SuiteSpec, reg: Registry) -> dict[str, ClassifierBuildSpec]:
    """Build specs of every model the suite names, in registry order, after provider checks."""
    names = list(dict.fromkeys([*suite.teachers, *suite.students]))
    order = {n: i for i, n in enumerate(reg.order())}
    out: dict[str, ClassifierBuildSpec] = {}
    for name in sorted(names, key=lambda n: order.get(n, len(order))):
        spec = reg.model(name, where=f"suite {suite.name!r}")
        build = spec.build_spec()
        if not isinstance(build, ClassifierBuildSpec):
            raise UserError(
                f"suite {suite.name!r}: model {name!r} has provider {spec.provider!r}; the classifier "
                "track needs provider 'classifier' models (model_registry/classifiers.yaml)"
            )
        out[name] = build
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


def _check_suite(suite: SuiteSpec, settings: ClassifierSettings, reg: Registry) -> dict[str, ClassifierBuildSpec]:
    """Every check before any node exists; returns the build specs of the suite's models (registry order)."""
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
    return builds


@dataclass(frozen=True)
class _Common:
    """What every node of one suite shares: the data fingerprint, seeds and the unhashed IDX location."""

    data: dict[str, Any]
    seeds: list[int]
    io: dict[str, str]


def _teacher_nodes(suite: SuiteSpec, settings: ClassifierSettings, bases: dict[str, Node],
                   c: _Common) -> tuple[dict[str, Node], dict[str, Node]]:
    """A teacher per teacher model and its logits on the noise stream (the dataset every student shares)."""
    ds_steps = settings.student.total_steps
    if settings.control.enabled:
        ds_steps = max(ds_steps, settings.control.steps)
    noise = {
        "kind": settings.student.noise,
        "batch": settings.student.batch,
        "n_noise": settings.student.n_noise,
        "steps": ds_steps,
    }
    teachers: dict[str, Node] = {}
    datasets: dict[str, Node] = {}
    for name in suite.teachers:
        base = bases[name]
        teachers[name] = Node(
            kind="teacher",
            name=name,
            fn=teacher_stage.run,
            deps=(base.key,),
            resources=dict(_RESOURCES),
            unhashed=c.io,
            spec={"version": STAGE_VERSION, "base": base.id, "train": settings.teacher.model_dump(), "data": c.data},
        )
        datasets[name] = Node(
            kind="dataset",
            name=name,
            fn=dataset_stage.run,
            deps=(teachers[name].key,),
            resources=dict(_RESOURCES),
            spec={"version": STAGE_VERSION, "teacher": teachers[name].id, "noise": noise},
        )
    return teachers, datasets


def _channels(settings: ClassifierSettings) -> list[tuple[str, dict[str, Any]]]:
    """The distillation channels: aux (subliminal) and, when enabled, the all-logit positive control."""
    student = settings.student
    channels = [("aux", {"steps": student.total_steps, "lr": student.lr, "loss": student.loss})]
    if settings.control.enabled:
        control = settings.control
        channels.append(("all_logits", {"steps": control.steps, "lr": control.lr, "loss": control.loss}))
    return channels


def _student_nodes(suite: SuiteSpec, settings: ClassifierSettings, reg: Registry, bases: dict[str, Node],
                   teachers: dict[str, Node], datasets: dict[str, Node],
                   c: _Common) -> tuple[list[Node], list[dict[str, Any]]]:
    """Every (teacher, student base, channel) student and the cell record the report reads it by."""
    nodes: list[Node] = []
    cells: list[dict[str, Any]] = []
    for t in suite.teachers:
        for s in suite.students:
            for channel, distill in _channels(settings):
                node = Node(
                    kind="student",
                    name=f"{t}.{s}.{channel}",
                    fn=student_stage.run,
                    deps=(datasets[t].key, bases[s].key),
                    resources=dict(_RESOURCES),
                    unhashed={**c.io, "save_weights": settings.save_student_weights},
                    spec={
                        "version": STAGE_VERSION,
                        "dataset": datasets[t].id,
                        "base": bases[s].id,
                        "channel": channel,
                        "distill": distill,
                        "data": c.data,
                    },
                )
                nodes.append(node)
                cells.append({"teacher_base": t, "student_base": s, "teacher_trait": channel, "key": node.key,
                              "teacher_key": teachers[t].key, "relation": reg.relation(t, s)})
    return nodes, cells


def build_plan(suite: SuiteSpec, settings: ClassifierSettings, reg: Registry) -> list[Node]:
    """Expand a classifier suite into DAG nodes (bases, teachers, datasets, students, one report).

    Raises:
        UserError: a model is not a classifier, lineage contradicts the build blocks, teacher and student
            disagree on the number of aux logits, ``loss: kl`` with one aux logit, or bad IDX data.
    """
    builds = _check_suite(suite, settings, reg)
    data = data_fingerprint(settings.data, settings.idx_path, settings.test_fraction, settings.split_seed)
    image_shape = [int(v) for v in data["image_shape"]]  # type: ignore[attr-defined]
    # The IDX path is where to read the data, not what it is (the sha256s are hashed): recorded, not hashed.
    # Resolved now (relative to the working directory) so worker processes find the files wherever they run.
    io = {"idx_path": str(Path(str(settings.idx_path)).resolve())} if settings.data == "idx" else {}
    # A suite's ``seed`` moves every replicate to fresh randomness (inits and noise streams derive from these).
    c = _Common(data=data, seeds=[shift_seed(s, suite.seed) for s in suite.seeds], io=io)
    bases = {
        name: Node(
            kind="base",
            name=name,
            fn=base_stage.run,
            resources=dict(_RESOURCES),
            unhashed=io,
            spec={"version": STAGE_VERSION, "build": build.model_dump(mode="json"), "image_shape": image_shape,
                  "seeds": c.seeds, "data": data},
        )
        for name, build in builds.items()
    }
    teachers, datasets = _teacher_nodes(suite, settings, bases, c)
    nodes: list[Node] = list(bases.values())
    for name in suite.teachers:
        nodes += [teachers[name], datasets[name]]
    students, cells = _student_nodes(suite, settings, reg, bases, teachers, datasets, c)
    nodes += students
    order = [n for n in reg.order() if n in builds]
    report_spec = {
        "version": STAGE_VERSION,
        # The statistics' version: a changed analysis gets a new report id, every other node keeps its id.
        "analysis_version": ANALYSIS_VERSION,
        "suite": suite.name,
        "teachers": list(suite.teachers),
        "students": list(suite.students),
        "seeds": c.seeds,
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
    nodes.append(Node(kind="report", name=suite.name, fn=report_stage.run, deps=deps, resources=dict(_RESOURCES),
                      spec=report_spec))
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


def verdicts(suite: SuiteSpec, settings: ClassifierSettings, reg: Registry) -> list[str]:
    """What the design's tests can reach: the sign-flip test over seeds (2 / 2^n at n seeds) and γ over the
    teacher bases (benchmark.analysis.design)."""
    from benchmark.analysis.cells import sign_flip_size
    from benchmark.analysis.design import design_floors, design_lines

    n = len(suite.seeds)
    lineage = {m: reg.lineage_init(m) for m in dict.fromkeys([*suite.teachers, *suite.students])}
    floors = design_floors(suite.teachers, suite.students, lineage, n, n, placebo=False)
    # the classifier's pair test is a sign flip over paired seeds, not a two-sample permutation
    floors = dataclasses.replace(floors, pair_p_min=min(1.0, 2 / 2**n) if n else float("nan"),
                                 pair_size=sign_flip_size(n) if n else float("nan"))
    return [line.replace(f"pair test {n} vs {n} seeds", f"pair test (sign flip over {n} paired seeds)")
            for line in design_lines(floors, "seeds")]


TRACK = TrackDef("classifier", ClassifierSettings, build_plan, estimate, verdicts)
