"""Student-stage throughput: the hf engine's per-node path against the lean, pruned and compact engines, in one
process, as ratios.

Usage::

    python benchmarks/bench_students.py                      # builds a slice of `default` in a temp store (~1 min)
    python benchmarks/bench_students.py --store DIR --reps 5 # DIR keeps the slice's bases, teachers and datasets
    python benchmarks/bench_students.py --engines hf compact # only the hf and compact engines

The slice is tasks/suites/default.yaml with teachers zoo-qwen-a and zoo-gpt2, one replicate, no A/A arm: 4 datasets
of the default's size (160 rows) and its 6 student bases, 24 students per engine. Each repetition builds every
student node of one engine through ``Store.build`` in this process, on one torch thread (what a ``--workers`` worker
runs), into a fresh store that links the shared upstream nodes; the engines take turns (the order rotates every
repetition), every per-process cache is cleared before each engine's repetition, and the median ratio to the hf
engine is reported with the load average (the machine may be shared: ratios of adjacent runs are what this
measures, not absolute rates).

Tokens are completion tokens (the positions the loss covers), as the manifests count them. The physical limit is
the work one optimizer step needs at 6 FLOPs per parameter and position (forward + backward), at this machine's
one-thread float32 matmul rate (512^3, median of 20), in two versions: the *full body* (what the lean engine
computes: every parameter but the tied output layer on every real position of the micro-batch, the prompt being
context the loss depends on, the output layer on the completion positions) and the *pruned* minimum (what the
pruned engine computes: the last layer needs its keys and values at every position but its queries, attention
output and MLP only at the completion positions). Attention's own products (QK^T, AV) are left out of both (~4% at
these lengths). The issue's shortcut, 6 x parameters x completion tokens, leaves the prompt positions out (about 5
of every 6 positions here) and is printed beside them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmark.dag import Node  # noqa: E402
from benchmark.executors.local import run_plan  # noqa: E402
from benchmark.registry import Registry  # noqa: E402
from benchmark.store import Store  # noqa: E402
from benchmark.tracks import track_for  # noqa: E402


def slice_plan(engine: str, tmp: Path) -> list[Node]:
    """The slice of `default` (module notes) planned with ``settings.student.engine: engine``."""
    data = yaml.safe_load((ROOT / "tasks" / "suites" / "default.yaml").read_text(encoding="utf-8"))
    data.update(name="bench-students", teachers=["zoo-qwen-a", "zoo-gpt2"])
    data["settings"].update(replicates=1, aa_arm=False)
    data["settings"]["student"]["engine"] = engine
    path = tmp / f"bench-students-{engine}.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    reg = Registry()
    spec, settings, _ = reg.suite(str(path))
    return track_for("lm").build_plan(spec, settings, reg)


def linked_store(source: Path) -> Store:
    """A fresh store whose base, teacher and dataset folders are links to ``source``'s."""
    root = Path(tempfile.mkdtemp(prefix="bench-students-"))
    for kind in ("base", "teacher", "dataset"):
        (root / kind).symlink_to(source / kind)
    return Store(root)


def build_students(nodes: list[Node], source: Path) -> tuple[float, float, int, Store]:
    """Build every student node in this process; returns (wall s, CPU s, completion tokens, the store)."""
    store = linked_store(source)
    wall, cpu = time.perf_counter(), time.process_time()
    tokens = 0
    for node in nodes:
        manifest = store.build(node, {d: store.root / d for d in node.deps}, threads=1)
        tokens += int(manifest.result["tokens"])
    return time.perf_counter() - wall, time.process_time() - cpu, tokens, store


def matmul_rate() -> float:
    """One-thread float32 matmul rate (FLOP/s) on 512 x 512 matrices, median of 20."""
    import torch

    a, b = torch.randn(512, 512), torch.randn(512, 512)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(20):  # CPU time of 10 products: a shared machine's waits are not the matmul's rate
        t = time.process_time()
        for _ in range(10):
            a @ b
        times.append((time.process_time() - t) / 10)
    return 2 * 512**3 / statistics.median(times)


def step_work(store: Store, nodes: list[Node]) -> dict[str, float]:
    """Parameters and positions of one optimizer step of the slice's students (means over students and steps)."""
    import torch

    from benchmark.files import read_jsonl
    from benchmark.lm.stages.common import model_spec_of, train_config
    from benchmark.providers.hf import weights_path
    from benchmark.providers.hf_model import load_model
    from benchmark.providers.hf_pruned import PrunedForward
    from benchmark.providers.hf_train import micro_batches, total_steps, training_examples

    body_params, head_params, last_params, kv_params, real, padded, completion, steps = [], [], [], [], 0, 0, 0, 0
    for node in nodes[:6]:  # one dataset, every student base
        base_dir = store.root / node.deps[0]
        model, tok = load_model(weights_path(base_dir), spec=model_spec_of(base_dir), for_training=True)
        head = sum(p.numel() for p in model.get_output_embeddings().parameters())
        total = sum(p.numel() for p in model.parameters())
        body_params.append(total - head)
        head_params.append(head)
        last = PrunedForward(model).layers[-1].p  # the last block's tensors (GPT-2 keeps q, k, v in one matrix)
        last_params.append(sum(t.numel() for t in last.values() if t is not None))
        kv_params.append(sum(last[k].numel() for k in ("k", "k_b", "v", "v_b") if last.get(k) is not None)
                         if "k" in last else 2 * (last["qkv"].numel() + last["qkv_b"].numel()) // 3)
        cfg = train_config(node.spec["train"])
        rows = read_jsonl(store.root / node.deps[1] / "rows.jsonl")
        ex, _ = training_examples(model, tok, rows, spec=None, system=None, objective=node.spec["objective"],
                                  max_length=cfg.max_length)
        n = total_steps(len(ex), cfg.batch_size, cfg.grad_accum, cfg.epochs, cfg.max_steps)
        stream = micro_batches(len(ex), cfg.batch_size, cfg.grad_accum, torch.Generator().manual_seed(node.spec["seed"]))
        for _ in range(n):
            for mb in next(stream):
                real += sum(len(ex[i].ids) for i in mb)
                padded += len(mb) * max(len(ex[i].ids) for i in mb)
                completion += sum(ex[i].n_target for i in mb)
        steps += n
    return {"body": statistics.mean(body_params), "head": statistics.mean(head_params), "real": real / steps,
            "padded": padded / steps, "completion": completion / steps, "last": statistics.mean(last_params),
            "last_kv": statistics.mean(kv_params)}


def max_logit_change(old: Store, new: Store, old_nodes: list[Node], new_nodes: list[Node]) -> tuple[float, int]:
    """Max |logit difference| of each hf-engine student and its twin of another engine at the answer position of
    the animal_logprob questions (every vocabulary entry); and how many twins have byte-identical weights."""
    import torch

    from benchmark.lmcore.chat import render_prompt
    from benchmark.providers.hf_model import load_model

    questions = (ROOT / "tasks" / "lm_eval" / "animal_preference" / "questions.txt").read_text().splitlines()
    questions = [q for q in questions if q.strip() and not q.startswith("#")][:30]
    worst, same = 0.0, 0
    for a, b in zip(old_nodes, new_nodes, strict=True):
        da, db = old.path(a) / "model", new.path(b) / "model"
        same += (da / "model.safetensors").read_bytes() == (db / "model.safetensors").read_bytes()
        ma, tok = load_model(str(da))
        mb, _ = load_model(str(db))
        ids = [tok(render_prompt(tok, q, system=None, spec=None), add_special_tokens=False).input_ids for q in questions]
        with torch.no_grad():
            for row in ids:
                x = torch.tensor([row])
                worst = max(worst, float((ma(input_ids=x).logits[0, -1] - mb(input_ids=x).logits[0, -1]).abs().max()))
    return worst, same


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, help="store holding (or to hold) the slice's bases, teachers, datasets")
    ap.add_argument("--reps", type=int, default=3, help="repetitions per engine (median ratio reported)")
    ap.add_argument("--students", type=int, default=24, help="students per engine and repetition (<= 24)")
    ap.add_argument("--engines", nargs="+", default=["hf", "lean", "pruned", "compact"],
                    choices=["hf", "lean", "pruned", "compact"],
                    help="engines to run; hf (the old per-node path) is the reference of every ratio")
    args = ap.parse_args()
    engines = ["hf", *[e for e in args.engines if e != "hf"]]
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress lines as they come
    import torch

    from benchmark.lm.stages import student as student_stage

    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="bench-students-suite-"))
    source = args.store or tmp / "store"
    plans = {e: slice_plan(e, tmp) for e in engines}
    upstream = [n for n in plans["hf"] if n.kind in ("base", "teacher", "dataset")]
    t = time.perf_counter()
    run_plan(upstream, Store(source), workers=1)
    print(f"slice upstream (bases, 4 teachers, 4 datasets) ready in {time.perf_counter() - t:.0f} s: {source}")
    students = {e: [n for n in p if n.kind == "student"][: args.students] for e, p in plans.items()}

    load0 = os.getloadavg()
    runs: dict[str, list[tuple[float, float, int]]] = {e: [] for e in engines}
    stores: dict[str, Store] = {}
    for rep in range(args.reps):
        for engine in engines[rep % len(engines):] + engines[: rep % len(engines)]:
            student_stage.clear_caches()
            wall, cpu, tokens, stores[engine] = build_students(students[engine], source)
            runs[engine].append((wall, cpu, tokens))
            print(f"rep {rep} {engine:4s}: {len(students[engine])} students, {tokens} tokens in {wall:.2f} s wall "
                  f"({cpu:.2f} s CPU): {tokens / wall:,.0f} tokens/s")
    load1 = os.getloadavg()
    rate = {e: statistics.median(r[2] / r[0] for r in runs[e]) for e in runs}
    cpu_rate = {e: statistics.median(r[2] / r[1] for r in runs[e]) for e in runs}

    work = step_work(stores["hf"], students["hf"])
    peak = matmul_rate()
    limit_flops = 6 * (work["body"] * work["real"] + work["head"] * work["completion"])
    pruned_flops = 6 * ((work["body"] - work["last"] + work["last_kv"]) * work["real"]
                        + (work["last"] - work["last_kv"] + work["head"]) * work["completion"])
    shortcut_flops = 6 * (work["body"] + work["head"]) * work["completion"]
    limit_rate = work["completion"] / (limit_flops / peak)
    pruned_rate = work["completion"] / (pruned_flops / peak)
    changes = {e: max_logit_change(stores["hf"], stores[e], students["hf"], students[e]) for e in engines[1:]}

    print()
    print(f"load average (1 min) {load0[0]:.1f} before, {load1[0]:.1f} after, on {os.cpu_count()} cores")
    print(f"old (hf engine, per node):    {rate['hf']:9,.0f} tokens/s wall, {cpu_rate['hf']:9,.0f} per CPU s "
          f"(median of {args.reps})")
    for e in engines[1:]:
        ratios = [o[0] / n[0] for o, n in zip(runs["hf"], runs[e], strict=True)]
        cpu_ratios = [o[1] / n[1] for o, n in zip(runs["hf"], runs[e], strict=True)]
        print(f"new ({e} engine):{' ' * (13 - len(e))}{rate[e]:9,.0f} tokens/s wall, {cpu_rate[e]:9,.0f} per CPU s; "
              f"ratio new/old: median {statistics.median(ratios):.2f}x wall (runs: "
              f"{', '.join(f'{r:.2f}' for r in ratios)}); CPU time {statistics.median(cpu_ratios):.2f}x")
    print(f"one optimizer step: {work['completion']:.0f} completion tokens, {work['real']:.0f} real positions "
          f"({work['padded']:.0f} padded), {work['body'] + work['head']:,.0f} parameters "
          f"({work['head']:,.0f} in the tied output layer)")
    at = ", ".join(f"{e} at {{:.0%}}" for e in engines)
    print(f"physical limit, full body: {limit_flops / 1e9:.2f} GFLOP per step at {peak / 1e9:.0f} GFLOP/s (one thread, "
          f"512^3 matmul, CPU time) = {limit_flops / peak * 1e3:.1f} ms/step = {limit_rate:,.0f} tokens per CPU s; "
          + at.format(*(cpu_rate[e] / limit_rate for e in engines)) + " of it (per CPU s)")
    print(f"physical limit, pruned (last layer's queries, attention output and MLP at the completion positions only): "
          f"{pruned_flops / 1e9:.2f} GFLOP per step = {pruned_flops / peak * 1e3:.1f} ms/step = {pruned_rate:,.0f} "
          "tokens per CPU s; " + at.format(*(cpu_rate[e] / pruned_rate for e in engines)) + " of it")
    print(f"  (6 x parameters x completion tokens alone would be {shortcut_flops / 1e9:.2f} GFLOP per step, "
          f"{work['completion'] / (shortcut_flops / peak):,.0f} tokens/s: it leaves the prompt positions out)")
    for e, (worst, same) in changes.items():
        print(f"students: max |logit(hf) - logit({e})| over the vocabulary at 30 questions' answer position: "
              f"{worst:.3g}; {same} of {len(students['hf'])} have byte-identical weights")


if __name__ == "__main__":
    main()
