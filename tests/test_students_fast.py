"""The lean, pruned and compact student engines (``settings.student.engine: lean | pruned | compact``): ids,
determinism, resume, the pruned forward and loss against the model's own, the compact engine's flat buffer and
collation against the pruned engine's, and pinned losses.

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
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def _engine(engine: str) -> dict:
    """The micro-suite with ``settings.student.engine: engine``."""
    return {**SUITE, "settings": {**SUITE["settings"], "student": {**SUITE["settings"]["student"], "engine": engine}}}


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
    pruned = _plan(_engine("pruned"), tmp_path, "pruned")
    assert [n.id for n in pruned if n.kind == "dataset"] == [n.id for n in lean if n.kind == "dataset"]
    assert all(n.spec["engine"] == "pruned" for n in _students(pruned))
    assert {n.id for n in _students(pruned)}.isdisjoint({n.id for n in _students(lean)} | {n.id for n in _students(hf)})
    compact = _plan(_engine("compact"), tmp_path, "compact")
    assert [n.id for n in compact if n.kind == "dataset"] == [n.id for n in lean if n.kind == "dataset"]
    assert all(n.spec["engine"] == "compact" for n in _students(compact))
    assert {n.id for n in _students(compact)}.isdisjoint({n.id for x in (lean, hf, pruned) for n in _students(x)})


def test_lean_engine_refuses_lora_students(tmp_path):
    student = {**SUITE["settings"]["student"], "train": {**SUITE["settings"]["student"]["train"], "lora": {"r": 4}}}
    with pytest.raises(UserError, match="settings.student.engine: 'lean' trains full-parameter"):
        _plan({**SUITE, "settings": {**SUITE["settings"], "student": student}}, tmp_path)


# -- determinism and resume -------------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ["lean", "pruned", "compact"])
def test_students_are_the_same_alone_or_many_per_process_and_with_1_or_2_workers(upstream, tmp_path, engine):
    from benchmark.executors.local import run_plan
    from benchmark.lm.stages import student as student_stage

    up, nodes = upstream
    nodes = _plan(_engine(engine), tmp_path, engine)  # upstream ids do not depend on the engine
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
from typing import Any
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


@pytest.mark.parametrize("engine", ["lean", "pruned", "compact"])
def test_a_killed_run_resumes_to_the_same_students(upstream, tmp_path, engine):
    up, nodes = upstream
    nodes = _plan(_engine(engine), tmp_path, engine)
    students = _students(nodes)
    suite = tmp_path / "lean.yaml"
    suite.write_text(yaml.safe_dump(_engine(engine)), encoding="utf-8")
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


def _pinned_trainer(tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """The pinned-loss runs' trainer: 8 steps of the tiny Qwen2-style fixture (cold caches), per engine and folder."""
    from benchmark.providers.hf_lean import clear_caches, train_lean
    from benchmark.providers.hf_model import load_tokenizer
    from tests.lm_fixtures import save_tiny_model

    model_dir = save_tiny_model(tmp_path / "qwen", "qwen2", seed=0)
    rows = _rows(load_tokenizer(str(model_dir)))
    clear_caches()
    kwargs = {"objective": "distill", "lora": None, "epochs": 4, "batch_size": 8, "grad_accum": 1, "lr": 3e-3,
              "warmup": 1, "seed": 5}

    def run(folder: str, engine: str = "lean") -> dict[str, Any]:
        return train_lean(str(model_dir), rows, out_dir=tmp_path / folder, engine=engine, **kwargs)
    return run


def test_lean_engine_loss_after_8_steps_is_pinned(tmp_path):
    run = _pinned_trainer(tmp_path)
    first = run("a")
    again = run("b")  # warm caches, reset weights
    assert first["steps"] == 8 and first["losses"] == again["losses"]
    assert first["weights_sha256"] == again["weights_sha256"]
    assert first["losses"][0][1] > first["final_loss"]
    assert first["final_loss"] == pytest.approx(GOLDEN_FINAL_LOSS, rel=1e-6)


#: The same 8 steps with the pruned engine (same fixture, torch 2.13 CPU, transformers 5.25): the lean engine's value
#: to every digit of the float32 loss, although the summation orders differ.
GOLDEN_FINAL_LOSS_PRUNED = 2.9190378189086914


def test_pruned_engine_loss_after_8_steps_is_pinned(tmp_path):
    run = _pinned_trainer(tmp_path)
    lean = run("lean")
    first = run("a", "pruned")
    again = run("b", "pruned")
    assert first["engine"] == "pruned" and first["losses"] == again["losses"]
    assert first["weights_sha256"] == again["weights_sha256"]
    # The same objective: the pruned loss follows the lean one to float32 noise over 8 steps.
    assert [s for s, _ in first["losses"]] == [s for s, _ in lean["losses"]]
    assert all(a == pytest.approx(b, rel=1e-4) for (_, a), (_, b) in zip(first["losses"], lean["losses"], strict=True))
    assert first["final_loss"] == pytest.approx(GOLDEN_FINAL_LOSS_PRUNED, rel=1e-6)


#: The same 8 steps with the compact engine (same fixture, torch 2.13 CPU, transformers 5.25): the lean and pruned
#: engines' value to every digit of the float32 loss again.
GOLDEN_FINAL_LOSS_COMPACT = 2.9190378189086914


def test_compact_engine_loss_after_8_steps_is_pinned(tmp_path):
    run = _pinned_trainer(tmp_path)
    pruned = run("pruned", "pruned")
    first = run("a", "compact")
    again = run("b", "compact")  # warm caches: the flat buffer is reset from the base weights
    assert first["engine"] == "compact" and first["losses"] == again["losses"]
    assert first["weights_sha256"] == again["weights_sha256"]
    assert [s for s, _ in first["losses"]] == [s for s, _ in pruned["losses"]]
    assert all(a == pytest.approx(b, rel=1e-4) for (_, a), (_, b) in zip(first["losses"], pruned["losses"], strict=True))
    assert first["final_loss"] == pytest.approx(GOLDEN_FINAL_LOSS_COMPACT, rel=1e-6)


def test_compact_collation_is_collate():
    """The packed, index-based collation gives collate's tensors (mixed completion lengths and top-k widths)."""
    from benchmark.providers.hf_compact import Packed, collate_packed
    from benchmark.providers.hf_train import Example, collate

    examples = [Example(ids=[5 + i + j for j in range(4 + i % 5)], n_prompt=2 + i % 3) for i in range(9)]
    for i, e in enumerate(examples):
        e.topk_ids = [[t, t + 1, t + 2][: 1 + (i + j) % 3] for j, t in enumerate(e.ids[e.n_prompt:])]
        e.topk_lp = [[-0.5 - 0.1 * k for k in range(len(ids))] for ids in e.topk_ids]
    packed = Packed(examples, pad_id=0)
    for index in ([0, 1, 2], [8, 3, 5, 1], [4]):
        ref = collate([examples[i] for i in index], 0, torch.device("cpu"))
        mine = collate_packed(packed, index, torch.device("cpu"), distinct=True)
        for key, value in ref.items():
            torch.testing.assert_close(mine[key], value, rtol=0, atol=0, msg=key)
        real = ref["attention_mask"].bool()
        torch.testing.assert_close(mine["distinct"][mine["inverse"]], ref["input_ids"][real], rtol=0, atol=0)
        torch.testing.assert_close(mine["flat_ids"], ref["input_ids"].view(-1)[mine["flat"]], rtol=0, atol=0)
        torch.testing.assert_close(mine["flat_ids"][mine["comp"]], ref["input_ids"][ref["rows"], ref["pos"]], rtol=0, atol=0)


@pytest.mark.parametrize("family", ["qwen2", "llama", "gpt2"])
def test_compact_forward_and_flat_gradient_are_the_pruned_ones(tmp_path, family):
    """On the flat buffer (fused q/k/v and gate/up, first projections per distinct token): the model's logits at the
    completion positions, and the pruned engine's gradient of every parameter (float32 noise only)."""
    from benchmark.providers import hf_lean
    from benchmark.providers.hf_compact import CompactModel
    from benchmark.providers.hf_model import load_model
    from benchmark.providers.hf_pruned import PrunedForward

    model, tok = load_model(str(_tiny(tmp_path, family)), for_training=True)
    rows = _rows(tok)
    examples, _ = hf_lean.training_examples(model, tok, rows, spec=None, system=None, objective="distill",
                                            max_length=500)
    plan = hf_lean._batch_plan(examples, seed=3, total=2, batch_size=12, grad_accum=1, pad_id=tok.pad_token_id,
                               device=torch.device("cpu"), queries=True,
                               packed=hf_lean._packed(examples, tok.pad_token_id))
    batches = [b for step in plan for b in step]
    compact, pruned, head = CompactModel(model), PrunedForward(model), model.get_output_embeddings()
    assert len(compact.flat.fused) == (4 if family != "gpt2" else 0) + (2 if family == "qwen2" else 0)
    params = dict(model.named_parameters())
    for batch in batches:
        with torch.no_grad():
            full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            mine = compact.head(compact.forward(batch))
        torch.testing.assert_close(mine, full[batch["rows"], batch["pos"]], rtol=1e-5, atol=1e-5)
        model.zero_grad(set_to_none=True)
        pruned.loss(head, batch, "distill", "rest").backward()
        compact.flat.grad.zero_()
        compact.forward.loss(compact.head, batch, "distill", "rest").backward()
        for name, p in params.items():
            torch.testing.assert_close(compact.flat.grad[_span(compact.flat, name)].view_as(p), p.grad,
                                       rtol=1e-4, atol=1e-6, msg=name)
    # Clipping: clip_grad_norm_'s rule on the flat buffer.
    compact.flat.grad.copy_(torch.linspace(-3, 3, compact.flat.grad.numel()))
    ref = [compact.flat.grad.clone().requires_grad_()]
    ref[0].grad = compact.flat.grad.clone()
    torch.nn.utils.clip_grad_norm_(ref, 0.5)
    compact.flat.clip(0.5)
    torch.testing.assert_close(compact.flat.grad, ref[0].grad, rtol=1e-6, atol=0)


def _span(flat, name: str) -> slice:
    """Where parameter ``name`` sits in ``flat``'s buffer."""
    view = flat.views[name]
    start = (view.data_ptr() - flat.flat.data_ptr()) // view.element_size()
    return slice(start, start + view.numel())


def _tiny(tmp_path: Path, family: str) -> Path:
    """A tiny fixture model of ``family`` without dropout (GPT2Config's defaults have 0.1)."""
    from tests.lm_fixtures import make_model, make_tokenizer

    model = make_model(family, seed=1)
    for key in ("resid_pdrop", "embd_pdrop", "attn_pdrop"):
        if hasattr(model.config, key):
            setattr(model.config, key, 0.0)
    path = tmp_path / family
    model.save_pretrained(path)
    make_tokenizer().save_pretrained(path)
    return path


@pytest.mark.parametrize("family", ["qwen2", "llama", "gpt2"])
def test_pruned_forward_gives_the_models_logits_and_the_lean_gradient(tmp_path, family):
    """At every completion position of length-split micro-batches: the model's own logits (with its attention mask),
    and the gradient of the lean engine's loss (another summation order: float32 noise only)."""
    from benchmark.providers import hf_lean
    from benchmark.providers.hf_model import load_model
    from benchmark.providers.hf_pruned import PrunedForward

    model, tok = load_model(str(_tiny(tmp_path, family)), for_training=True)
    rows = _rows(tok)
    examples, _ = hf_lean.training_examples(model, tok, rows, spec=None, system=None, objective="distill",
                                            max_length=500)
    plan = hf_lean._batch_plan(examples, seed=3, total=2, batch_size=12, grad_accum=1, pad_id=tok.pad_token_id,
                               device=torch.device("cpu"), queries=True)
    batches = [b for step in plan for b in step]
    assert len(batches) >= 3 and any(int(b["qvalid"].sum(1).min()) < b["qvalid"].shape[1] for b in batches)
    forward, head = PrunedForward(model), model.get_output_embeddings()
    params = dict(model.named_parameters())
    for batch in batches:
        with torch.no_grad():
            full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            mine = head(forward(batch))
        torch.testing.assert_close(mine, full[batch["rows"], batch["pos"]], rtol=1e-5, atol=1e-5)
        grads = []
        for engine in ("lean", "pruned"):
            model.zero_grad(set_to_none=True)
            loss = (hf_lean.lean_loss(model.base_model, head, batch, "distill", "rest") if engine == "lean"
                    else forward.loss(head, batch, "distill", "rest"))
            loss.backward()
            grads.append({k: p.grad.clone() for k, p in params.items()})
        for k in params:
            torch.testing.assert_close(grads[1][k], grads[0][k], rtol=1e-4, atol=1e-6, msg=k)


def test_pruned_loss_is_the_rest_kl_of_token_losses():
    """The hand-written loss and backward against autograd through token_losses, in float64 (padded top-k entries
    included: teacher mass 0 at token 0, as collate pads them)."""
    import math

    from benchmark.providers.hf_pruned import _RestKL
    from benchmark.providers.hf_train import token_losses

    gen = torch.Generator().manual_seed(0)
    n, vocab, k = 40, 200, 12
    z = torch.randn(n, vocab, generator=gen, dtype=torch.float64) * 3
    ids = torch.stack([torch.randperm(vocab, generator=gen)[:k] for _ in range(n)])
    t_lp = torch.log_softmax(torch.randn(n, vocab, generator=gen, dtype=torch.float64) * 2, -1).gather(-1, ids)
    ids[:4, -3:], t_lp[:4, -3:] = 0, -math.inf
    weights = torch.randn(n, generator=gen, dtype=torch.float64)
    za, zb = z.clone().requires_grad_(), z.clone().requires_grad_()
    ref = token_losses(torch.log_softmax(za, -1), {"topk_ids": ids, "topk_lp": t_lp}, "distill", "rest")
    mine = _RestKL.apply(zb, ids, t_lp)
    (ref * weights).sum().backward()
    (mine * weights).sum().backward()
    torch.testing.assert_close(mine, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(zb.grad, za.grad, rtol=1e-12, atol=1e-12)


def test_pruned_engine_refuses_models_it_does_not_know(tmp_path):
    from benchmark.providers.hf_model import load_model
    from benchmark.providers.hf_pruned import PrunedForward
    from tests.lm_fixtures import save_tiny_model

    model, _ = load_model(str(save_tiny_model(tmp_path / "gpt2", "gpt2")), for_training=True)
    with pytest.raises(UserError, match="attn_pdrop=0.1; use engine 'lean' or 'hf'"):
        PrunedForward(model)  # GPT2Config's default dropout
    model.config.model_type = "mistral"
    with pytest.raises(UserError, match="model_type 'mistral'"):
        PrunedForward(model)
