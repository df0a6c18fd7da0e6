"""Speed of the classifier track: the full suite, and batched seeds vs a per-seed Python loop.

Prints
  1. the wall time (and CPU time) of the whole ``classifiers`` suite (6 × 6 × 8 seeds by default) in a fresh
     temporary store, and students per second;
  2. for one cell (mlp-a teacher → mlp-a student), the time of aux-only distillation of all seeds as ONE
     batched model vs the same seeds trained one at a time (S = 1, repeatedly: the reference loop exists only
     here and in the tests), their ratio, and that both give the same accuracies.

Usage::

    python benchmarks/bench_classifier.py                # full suite, 2 workers × 1 thread
    python benchmarks/bench_classifier.py --skip-suite   # only the batched-vs-loop comparison
    python benchmarks/bench_classifier.py --suite tests/data/x.yaml --workers 1

CPU time is reported next to wall time because the shared 2-core dev box is often oversubscribed: CPU seconds
(all processes of the run) / cores is the wall time the run would take on an idle machine.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _cpu_seconds() -> float:
    """CPU time of this process plus every reaped child (the executor's worker processes)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def bench_suite(suite_ref: str, workers: int, store_dir: Path) -> dict[str, float]:
    """Run a whole classifier suite in ``store_dir``; return timings."""
    from benchmark.classifier.plan import build_plan
    from benchmark.executors.local import run_plan
    from benchmark.registry import Registry
    from benchmark.store import Store

    reg = Registry()
    suite, settings, _ = reg.suite(suite_ref)
    nodes = build_plan(suite, settings, reg)
    store = Store(store_dir)
    wall0, cpu0 = time.time(), _cpu_seconds()
    summary = run_plan(nodes, store, workers=workers, threads=1)
    wall, cpu = time.time() - wall0, _cpu_seconds() - cpu0
    n_students = sum(n.kind == "student" for n in nodes) * len(suite.seeds)
    print(
        f"suite {suite.name}: {len(suite.teachers)} teachers × {len(suite.students)} students × "
        f"{len(suite.seeds)} seeds, {len(nodes)} nodes, {workers} worker(s) × 1 thread"
    )
    print(f"  wall {wall:.1f} s, CPU {cpu:.1f} s (idle-machine estimate {cpu / max(1, workers):.1f} s)")
    print(f"  {n_students} students (aux + all-logit control) → {n_students / wall:.2f} students/s wall")
    print(
        "  node wall time by kind (summed over workers): "
        + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(summary.wall_by_kind.items()))
    )
    report = store.path(nodes[-1])
    print(f"  report: {report}")
    return {"wall_s": wall, "cpu_s": cpu, "students": n_students}


def bench_batched_vs_loop(seeds: list[int], steps: int) -> dict[str, float]:
    """One cell, aux-only distillation: all seeds batched vs one seed at a time (same results)."""
    import torch

    from benchmark.classifier.data import load_digits_split
    from benchmark.classifier.model import Net
    from benchmark.classifier.spec import ClassifierBuildSpec
    from benchmark.classifier.train import accuracy, distill, teacher_outputs, train_teacher

    torch.set_num_threads(1)
    data = load_digits_split()
    x_tr, y_tr = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    x_te, y_te = torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)
    net = Net(ClassifierBuildSpec(init_seed=0), data.image_shape)  # mlp-a: 64-256-256-13
    init = net.init(seeds)
    teacher, _ = train_teacher(net, init, seeds, x_tr, y_tr, epochs=15, batch=64, lr=3e-4)
    kw = {"noise": "uniform", "steps": steps, "batch": 64, "pool": None}
    targets = teacher_outputs(net, teacher, seeds, **kw)
    opts = {"channel": "aux", "loss": "mse", "steps": steps, "lr": 1e-3, "noise": "uniform", "pool": None}

    t0, c0 = time.perf_counter(), time.process_time()
    batched, _ = distill(net, init, seeds, targets, **opts)
    t_batched, c_batched = time.perf_counter() - t0, time.process_time() - c0
    acc_batched = accuracy(net, batched, x_te, y_te)

    t0, c0 = time.perf_counter(), time.process_time()
    acc_loop = []
    for i, s in enumerate(seeds):
        one = {k: v[i : i + 1] for k, v in init.items()}
        trained, _ = distill(net, one, [s], targets[i : i + 1], **opts)
        acc_loop += accuracy(net, trained, x_te, y_te)
    t_loop, c_loop = time.perf_counter() - t0, time.process_time() - c0
    diff = max(abs(a - b) for a, b in zip(acc_batched, acc_loop, strict=True))
    print(f"one cell (mlp-a → mlp-a, aux-only, {len(seeds)} seeds × {steps} steps, batch 64, 1 thread):")
    print(
        f"  batched: {t_batched:.2f} s wall / {c_batched:.2f} s CPU; per-seed loop: {t_loop:.2f} s wall / "
        f"{c_loop:.2f} s CPU"
    )
    print(f"  speedup of batched over loop: {t_loop / t_batched:.2f}× wall, {c_loop / c_batched:.2f}× CPU")
    print(
        f"  same-init accuracy batched {sum(acc_batched) / len(seeds):.1f}% vs loop "
        f"{sum(acc_loop) / len(seeds):.1f}% (max per-seed difference {diff:.2f} points)"
    )
    return {"batched_s": t_batched, "loop_s": t_loop, "speedup": t_loop / t_batched}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--suite", default="classifiers", help="suite name or YAML path (default: classifiers)"
    )
    parser.add_argument("--workers", type=int, default=2, help="executor worker processes (1 thread each)")
    parser.add_argument(
        "--store", type=Path, default=None, help="store directory (default: a fresh temp dir)"
    )
    parser.add_argument("--skip-suite", action="store_true", help="only run the batched-vs-loop comparison")
    parser.add_argument("--seeds", type=int, default=8, help="seeds in the batched-vs-loop cell")
    parser.add_argument(
        "--steps", type=int, default=256, help="distillation steps in the batched-vs-loop cell"
    )
    args = parser.parse_args()
    if not args.skip_suite:
        if args.store is not None:
            bench_suite(args.suite, args.workers, args.store)
        else:
            with tempfile.TemporaryDirectory(prefix="bench-classifier-") as tmp:
                bench_suite(args.suite, args.workers, Path(tmp))
    bench_batched_vs_loop(list(range(args.seeds)), args.steps)


if __name__ == "__main__":
    main()
