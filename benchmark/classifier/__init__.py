"""Classifier track: the paper's auxiliary-logit experiment on digit classifiers.

A teacher learns digits through its 10 class logits; a student that shares its initialization learns digits
too, although it only ever imitates the teacher's auxiliary logits on noise images. Students with another
init stay at chance. Importing this package does not import torch (stages import it when they run).

Modules: ``spec`` (registry build blocks), ``data`` (digits / IDX), ``model`` and ``train`` (batched over
seeds, torch), ``settings`` (a suite's settings block), ``plan`` (suite → DAG, the track object), ``stages/``
(one module per stage: base, teacher, dataset, student, report).
"""

from __future__ import annotations

from benchmark.classifier.plan import CHANNELS, build_plan
from benchmark.classifier.settings import ClassifierSettings, ControlSettings, DistillSettings, TeacherSettings
from benchmark.classifier.spec import ClassifierBuildSpec, PerturbSpec, PretrainSpec, derive_seed

__all__ = [
    "CHANNELS",
    "ClassifierBuildSpec",
    "ClassifierSettings",
    "ControlSettings",
    "DistillSettings",
    "PerturbSpec",
    "PretrainSpec",
    "TeacherSettings",
    "build_plan",
    "derive_seed",
]
