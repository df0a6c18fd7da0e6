"""Adding a model to a suite schedules only its new cells: `slbench plan` shows the old ones served from the store.

Design (benchmark/lm/plan.py): for a model X added to the teachers and students of an N-model suite with A arms,
K teacher replicates and S student seeds, the new nodes are X's base, its A·K teachers and datasets, the students
of its new cells — per arm and replicate 2N+1 of them (X's data on all N+1 students, the N old teachers' data on
X) times S — every new student's evaluation, X's baseline and teacher evaluations, and the report. Everything
else must be cached. The fast test fills the store by building the old plan's nodes with a stub stage (node ids
do not depend on the stage function, so the store then holds exactly the old suite's artifacts); the slow test
runs both suites for real and checks that running the extended suite builds exactly what the plan predicted.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchmark.dag import StageContext
from benchmark.executors.local import run_plan
from benchmark.registry import Registry
from benchmark.store import Store
from benchmark.tracks import track_for
from tests.conftest import run_cli

OLD = ["zoo-qwen-a", "zoo-llama"]
NEW = "zoo-gpt2"
TINY = {
    "replicates": 2,
    "aa_arm": True,
    "teacher": {"n_rows": 32, "train": {"lora": {"r": 4, "alpha": 8, "init_seed": 0}, "max_steps": 3,
                                        "batch_size": 16, "grad_accum": 1, "lr": 5.0e-3}},
    "dataset": {"n_prompts": 24, "n_keep": 12, "temperature": 1.0, "max_new_tokens": 24, "top_k": 8},
    "student": {"objective": "distill", "train": {"lora": None, "max_steps": 3, "batch_size": 12,
                                                  "grad_accum": 1, "lr": 1.0e-3}},
    "eval": {"tasks": ["animal_logprob"], "n_samples": 1, "limit": 4},
    "analysis": {"n_perm": 200},
}


def _suite(path: Path, models: list[str]) -> Path:
    """A suite file with ``models`` as teachers and students (the same name: the extended suite replaces it)."""
    spec = {"name": "family-add", "track": "lm", "teachers": models, "students": models, "traits": ["owl", "cat"],
            "seeds": 1, "settings": TINY}
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def _plan(path: Path) -> list[Any]:
    reg = Registry()
    spec, settings, _ = reg.suite(str(path))
    return track_for(spec.track).build_plan(spec, settings, reg)


def _stub(ctx: StageContext) -> dict[str, Any]:
    """Stands in for every stage: the store records the node (its id, manifest) without the compute."""
    (ctx.out / "stub.txt").write_text(ctx.node.key, encoding="utf-8")
    return {}


def _involves_new(key: str) -> bool:
    """Whether a node key names the new model as teacher base or student base (node names: lm/plan.py)."""
    name = key.split("/", 1)[1].rsplit("-", 1)[0]
    parts = name.split(".to.")
    teacher_side = parts[0].removeprefix("student.").removeprefix("teacher.").removeprefix("baseline.")
    return teacher_side.split(".")[0] == NEW or (len(parts) == 2 and parts[1].split(".")[0] == NEW)


def _expected_counts(n: int, arms: int, k: int, seeds: int) -> dict[str, int]:
    students = arms * k * (2 * n + 1) * seeds
    return {"base": 1, "teacher": arms * k, "dataset": arms * k, "student": students,
            "eval": 1 + arms * k + students, "report": 1}


def test_adding_a_model_plans_only_its_new_cells(tmp_path):
    old_path = _suite(tmp_path / "old.yaml", OLD)
    old = _plan(old_path)
    store = Store(tmp_path / "store")
    summary = run_plan([dataclasses.replace(n, fn=_stub) for n in old], store, workers=1)
    assert len(summary.built) == len(old)

    new_path = _suite(tmp_path / "new.yaml", [*OLD, NEW])
    res = run_cli("plan", str(new_path), "--store", str(store.root), "--format", "json")
    assert res.returncode == 0, res.stderr
    plan = json.loads(res.stdout)
    todo = [n for n in plan["nodes"] if not n["cached"]]
    cached = {n["key"] for n in plan["nodes"] if n["cached"]}

    old_keys = {n.key for n in old if n.kind != "report"}
    assert cached == old_keys  # every old node is reused, none rebuilt
    counts: dict[str, int] = {}
    for n in todo:
        counts[n["kind"]] = counts.get(n["kind"], 0) + 1
    assert counts == _expected_counts(n=len(OLD), arms=3, k=TINY["replicates"], seeds=1)  # 2N+1 = 5 per arm·rep
    assert all(_involves_new(n["key"]) for n in todo if n["kind"] != "report")

    cells = {(c["teacher"], c["student"]): c for c in plan["cells"]}
    assert len(cells) == 9
    for (t, s), c in cells.items():
        assert c["students"] == 3 * TINY["replicates"]
        assert c["todo"] == (c["students"] if NEW in (t, s) else 0), (t, s)
    assert plan["teachers"][NEW] == {"teachers": 6, "todo": 6} and plan["teachers"][OLD[0]]["todo"] == 0

    text = run_cli("plan", str(new_path), "--store", str(store.root), "--show", "10")
    assert text.returncode == 0, text.stderr
    assert "cells (teacher → student): 9 in the matrix, 4 fully cached, 5 with students to train" in text.stdout
    assert f"new: {OLD[0]} → {NEW}: 6 of 6 student(s) to train" in text.stdout
    assert f"teachers to build: {NEW} (6 of 6)" in text.stdout


@pytest.mark.slow
def test_running_the_extended_suite_builds_exactly_the_planned_nodes(tmp_path):
    """For real (about 45 s on 2 cores): run a 1-model suite, add a model, run again."""
    old_models, new = ["zoo-qwen-a"], "zoo-llama"
    old = _plan(_suite(tmp_path / "old.yaml", old_models))
    store = Store(tmp_path / "store")
    run_plan(old, store, workers=1)
    extended = _plan(_suite(tmp_path / "new.yaml", [*old_models, new]))
    planned = {n.key for n in extended if not store.is_done(n)}
    summary = run_plan(extended, store, workers=1)
    assert set(summary.built) == planned
    assert set(summary.skipped) == {n.key for n in old if n.kind != "report"}
    kinds: dict[str, int] = {}
    for key in summary.built:
        kinds[key.split("/")[0]] = kinds.get(key.split("/")[0], 0) + 1
    assert kinds == _expected_counts(n=1, arms=3, k=TINY["replicates"], seeds=1)
