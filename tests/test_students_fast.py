"""The lean student engine (``settings.student.engine: lean``): ids, determinism, resume and a pinned loss.

Speed is measured by benchmarks/bench_students.py, never asserted here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from benchmark.errors import UserError
from benchmark.registry import Registry
from benchmark.store import Store
from benchmark.tracks import track_for
from tests.conftest import ROOT

torch = pytest.importorskip("torch")

#: A 1 x 2 micro-suite (one teacher base, two student bases: Qwen2- and GPT-2-style, 2 datasets, 4 students).
SUITE = {
    "name": "lean",
    "track": "lm",
    "teachers": ["zoo-qwen-a"],
    "students": ["zoo-qwen-a", "zoo-gpt2"],
    "traits": ["owl", "cat"],
    "seeds": 1,
    "settings": {
        "replicates": 1,
        "teacher": {"n_rows": 32, "train": {"lora": {"r": 4, "alpha": 8, "init_seed": 0}, "max_steps": 2,
                                            "batch_size": 16, "grad_accum": 1, "lr": 5.0e-3}},
        "dataset": {"n_prompts": 24, "n_keep": 12, "temperature": 1.0, "max_new_tokens": 20, "top_k": 8},
        "student": {"objective": "distill", "engine": "lean",
                    "train": {"lora": None, "epochs": 2, "batch_size": 4, "grad_accum": 2, "lr": 1.0e-3,
                              "warmup": 1}},
        "eval": {"tasks": ["animal_logprob"], "n_samples": 1, "limit": 4},
    },
}


def _plan(suite: dict, tmp: Path, name: str = "lean") -> list:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**suite, "name": name}), encoding="utf-8")
    reg = Registry()
    spec, settings, _ = reg.suite(str(path))
    return track_for("lm").build_plan(spec, settings, reg)


def _students(nodes: list) -> list:
    return [n for n in nodes if n.kind == "student"]


def _through_students(nodes: list) -> list:
    """The plan up to its students (upstream nodes are found done and skipped)."""
    return [n for n in nodes if n.kind in ("base", "teacher", "dataset", "student")]


def _payloads(store: Path, nodes: list) -> dict[str, dict[str, str]]:
    """Node key -> {payload file -> sha256} of finished student nodes."""
    return {n.key: json.loads((store / n.key / "manifest.json").read_text())["files"] for n in nodes}


def _linked(upstream: Path, root: Path) -> Store:
    root.mkdir(parents=True)
    for kind in ("base", "teacher", "dataset"):
        shutil.copytree(upstream / kind, root / kind, symlinks=True)
    return Store(root)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    """The micro-suite's bases, teachers and datasets, built once; and its plan."""
    from benchmark.executors.local import run_plan

    tmp = tmp_path_factory.mktemp("lean")
    nodes = _plan(SUITE, tmp)
    run_plan([n for n in nodes if n.kind in ("base", "teacher", "dataset")], Store(tmp / "up"), workers=1)
    return tmp / "up", nodes


# -- ids ------------------------------------------------------------------------------------------------------
def test_existing_suites_plan_their_published_ids():
    """The engine enters a student spec only when it is not hf: every published LM suite's students and evaluations
    (tidy.csv's student_id is the evaluation's id, which embeds the student's) are planned with the same ids, those
    published with the hf engine (no engine key) and the sweeps' levels published with the lean one alike."""
    reg = Registry()
    for folder in sorted((ROOT / "results" / "suites").iterdir()):
        tidy = folder / "tidy.csv"
        if folder.name.startswith(".") or not tidy.is_file():
            continue
        spec, settings, _ = reg.suite(folder.name)
        if spec.track != "lm":
            continue
        nodes = track_for("lm").build_plan(spec, settings, reg)
        engines = {n.spec.get("engine", "hf") for n in _students(nodes)}
        assert engines == {settings.student.engine}, folder.name
        assert (settings.student.engine == "hf") == (not any("engine" in n.spec for n in _students(nodes)))
        published = set(pd.read_csv(tidy, dtype=str, keep_default_na=False)["student_id"])
        assert published <= {n.id for n in nodes if n.kind == "eval"}, folder.name


def test_lean_engine_is_a_hashed_student_setting(tmp_path):
    hf = _plan({**SUITE, "settings": {**SUITE["settings"], "student": {**SUITE["settings"]["student"],
                                                                        "engine": "hf"}}}, tmp_path, "hf")
    lean = _plan(SUITE, tmp_path)
    assert [n.id for n in hf if n.kind in ("teacher", "dataset")] == [n.id for n in lean if n.kind in ("teacher",
                                                                                                    "dataset")]
    assert all(n.spec["engine"] == "lean" for n in _students(lean)) and not any("engine" in n.spec for n in _students(hf))
    assert {n.id for n in _students(hf)}.isdisjoint({n.id for n in _students(lean)})


def test_lean_engine_refuses_lora_students(tmp_path):
    student = {**SUITE["settings"]["student"], "train": {**SUITE["settings"]["student"]["train"], "lora": {"r": 4}}}
    with pytest.raises(UserError, match="settings.student.engine: 'lean' trains full-parameter"):
        _plan({**SUITE, "settings": {**SUITE["settings"], "student": student}}, tmp_path)


# -- determinism and resume -------------------------------------------------------------------------------------
def test_students_are_the_same_alone_or_many_per_process_and_with_1_or_2_workers(upstream, tmp_path):
    from benchmark.executors.local import run_plan
    from benchmark.lm.stages import student as student_stage

    up, nodes = upstream
    students = _students(nodes)
    # One student per cold process state, in reverse order ...
    alone = _linked(up, tmp_path / "alone")
    for node in reversed(students):
        student_stage.clear_caches()
        alone.build(node, {d: alone.root / d for d in node.deps})
    # ... against all of them through one warm process (plan order), and through two worker processes.
    warm, two = _linked(up, tmp_path / "warm"), _linked(up, tmp_path / "two")
    student_stage.clear_caches()
    run_plan(_through_students(nodes), warm, workers=1)
    run_plan(_through_students(nodes), two, workers=2)
    reference = _payloads(alone.root, students)
    assert len(reference) == 4 and all("model/model.safetensors" in f for f in reference.values())
    assert _payloads(warm.root, students) == reference
    assert _payloads(two.root, students) == reference


_RUN = """
import sys, time
from pathlib import Path
from benchmark.executors.local import run_plan
from benchmark.registry import Registry
from benchmark.store import Store
from benchmark.tracks import track_for
reg = Registry()
spec, settings, _ = reg.suite(sys.argv[1])
nodes = [n for n in track_for("lm").build_plan(spec, settings, reg) if n.kind not in ("eval", "report")]
slow = sys.argv[3] == "slow"
run_plan(nodes, Store(Path(sys.argv[2])), workers=1,
         on_event=(lambda ev, node, info: time.sleep(30) if slow and ev == "done" else None))
"""


def test_a_killed_run_resumes_to_the_same_students(upstream, tmp_path):
    up, nodes = upstream
    students = _students(nodes)
    suite = tmp_path / "lean.yaml"
    suite.write_text(yaml.safe_dump(SUITE), encoding="utf-8")
    store = _linked(up, tmp_path / "killed")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _RUN, str(suite), str(store.root), "slow"], env=env, cwd=ROOT)
    try:  # killed after its first student, while it waits before the next one
        for _ in range(1200):
            if any(store.is_done(n) for n in students) or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = [n for n in students if store.is_done(n)]
    assert 1 <= len(done) < len(students)
    r = subprocess.run([sys.executable, "-c", _RUN, str(suite), str(store.root), "fast"], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    fresh = _linked(up, tmp_path / "fresh")
    from benchmark.executors.local import run_plan
    from benchmark.lm.stages import student as student_stage

    student_stage.clear_caches()
    run_plan(_through_students(nodes), fresh, workers=1)
    assert _payloads(store.root, students) == _payloads(fresh.root, students)


# -- a pinned loss ----------------------------------------------------------------------------------------------
def _rows(tok, n: int = 12) -> list[dict]:
    """Distillation rows over the fixture vocabulary: number completions with a 4-way teacher top-k per token."""
    import math

    rows = []
    for i in range(n):
        nums = [str((7 * i + 3 * j) % 100) for j in range(3 + i % 4)]
        completion = tok(" , ".join(nums), add_special_tokens=False).input_ids + [tok.convert_tokens_to_ids("<|im_end|>")]
        topk = []
        for t, tid in enumerate(completion):
            others = [(tid + d) % 100 + 8 for d in (1, 2, 3)]
            probs = [0.5 + 0.02 * ((i + t) % 5), 0.2, 0.1, 0.05]
            topk.append([[tid, math.log(probs[0])]] + [[o, math.log(p)] for o, p in zip(others, probs[1:], strict=True)])
        rows.append({"prompt": f"continue this sequence with more numbers : {i} {i + 1}",
                     "completion_ids": completion, "topk": topk})
    return rows


#: Loss of the last of 8 lean-engine steps (micro-batches of 8 rows, so each runs as two length halves) on the tiny
#: Qwen2-style fixture (computed once with torch 2.13 CPU, transformers 5.25; a change means the numbers moved).
GOLDEN_FINAL_LOSS = 2.9190378189086914


def test_lean_engine_loss_after_8_steps_is_pinned(tmp_path):
    from benchmark.providers.hf_lean import clear_caches, train_lean
    from benchmark.providers.hf_model import load_tokenizer
    from tests.lm_fixtures import save_tiny_model

    model_dir = save_tiny_model(tmp_path / "qwen", "qwen2", seed=0)
    rows = _rows(load_tokenizer(str(model_dir)))
    clear_caches()
    kwargs = {"objective": "distill", "lora": None, "epochs": 4, "batch_size": 8, "grad_accum": 1, "lr": 3e-3,
              "warmup": 1, "seed": 5}
    first = train_lean(str(model_dir), rows, out_dir=tmp_path / "a", **kwargs)
    again = train_lean(str(model_dir), rows, out_dir=tmp_path / "b", **kwargs)  # warm caches, reset weights
    assert first["steps"] == 8 and first["losses"] == again["losses"]
    assert first["weights_sha256"] == again["weights_sha256"]
    assert first["losses"][0][1] > first["final_loss"]
    assert first["final_loss"] == pytest.approx(GOLDEN_FINAL_LOSS, rel=1e-6)
