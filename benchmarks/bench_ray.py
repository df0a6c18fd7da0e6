"""Ray executor overhead: a 40-node micro-suite on the local executor (1 and 2 workers) vs Ray on 2 CPUs.

Prints figures and ratios, asserts nothing. Ray's overhead per node is (Ray wall − local serial wall of the
same work) / nodes, with Ray already started (its start-up is printed on its own line); the round trip of an
empty node is timed alone and along a chain (each hop waits for its upstream task's result).

Run: ``python benchmarks/bench_ray.py`` or ``slbench bench ray`` (about a minute on 2 cores).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# One BLAS thread per process before numpy loads: the comparison is workers vs workers, not BLAS threads.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmark.dag import Node, StageContext  # noqa: E402

__all__ = ["light_suite", "stage_work", "stage_empty", "main"]

CPUS = 2  # the machine this was written on; also what the Ray cluster gets
MATMULS = 30  # 30 256×256 tanh(matmul)s ≈ 0.1 s of one core: a "light" node
MODULE = "benchmarks.bench_ray"  # workers import stages by this name (the script itself runs as __main__)


def _stage(name: str) -> Any:
    """The stage function as imported under MODULE (not __main__), so Ray workers pickle it by reference."""
    import importlib

    return getattr(importlib.import_module(MODULE), name)


def stage_work(ctx: StageContext) -> dict[str, Any]:
    """About 0.1 s of single-threaded numpy, seeded by the spec and the upstream outputs."""
    seed = ctx.node.spec["seed"] + sum(int((p / "out.txt").read_text()) for p in ctx.inputs.values())
    rng = np.random.default_rng(seed % (2**32))
    a, b = rng.normal(size=(256, 256)) / 16, rng.normal(size=(256, 256)) / 16
    for _ in range(MATMULS):
        a = np.tanh(a @ b)
    value = int(abs(a).sum() * 1000)
    (ctx.out / "out.txt").write_text(f"{value}\n")
    return {"value": value}


def stage_empty(ctx: StageContext) -> dict[str, Any]:
    """Does nothing: its wall time is pure executor and store overhead."""
    return {}


def light_suite(tag: str = "", cpus: int = 1) -> list[Node]:
    """40 light nodes: 8 roots -> 16 (2 each) -> 15 (each joins 2 neighbours) -> 1 sink.

    ``cpus`` is only a reservation: at ``cpus=CPUS`` Ray runs one node at a time (BLAS stays 1-threaded).
    """

    def node(kind: str, name: str, deps: list[Node]) -> Node:
        spec = {"seed": len(name) * 7919 + sum(map(ord, name)), "tag": tag, "inputs": [d.id for d in deps]}
        return Node(kind=kind, name=name, spec=spec, fn=_stage("stage_work"),
                    deps=tuple(d.key for d in deps), resources={"cpus": cpus, "gpus": 0})

    roots = [node("base", f"r{i}", []) for i in range(8)]
    mids = [node("dataset", f"m{i}", [roots[i // 2]]) for i in range(16)]
    joins = [node("student", f"j{i}", [mids[i], mids[i + 1]]) for i in range(15)]
    return [*roots, *mids, *joins, node("report", "sink", joins)]


def _empty_chain(n: int, tag: str) -> list[Node]:
    nodes: list[Node] = []
    for i in range(n):
        deps = (nodes[-1],) if nodes else ()
        nodes.append(Node(kind="eval", name=f"empty{i}", spec={"tag": tag, "inputs": [d.id for d in deps]},
                          fn=_stage("stage_empty"), deps=tuple(d.key for d in deps)))
    return nodes


def _timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    """Run the comparison and print a small table."""
    import ray

    from benchmark.executors.local import run_plan
    from benchmark.executors.ray import run_plan as run_plan_ray
    from benchmark.store import Store

    tmp = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    nodes = light_suite()
    n = len(nodes)
    print(f"micro-suite: {n} light nodes (~{MATMULS} 256x256 matmuls each), {os.cpu_count()} cores visible")

    serial = _timed(lambda: run_plan(nodes, Store(tmp / "local1"), workers=1, threads=1))
    pool = _timed(lambda: run_plan(nodes, Store(tmp / "local2"), workers=2, threads=1))

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    t0 = time.perf_counter()
    ray.init(num_cpus=CPUS, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    start = time.perf_counter() - t0
    try:
        # A first run warms the worker pool (workers import numpy and the store once), as a long run would.
        warm = _timed(lambda: run_plan_ray(nodes, Store(tmp / "ray_warmup")))
        ray_wall = _timed(lambda: run_plan_ray(light_suite("again"), Store(tmp / "ray")))
        one_at_a_time = _timed(lambda: run_plan_ray(light_suite("one", cpus=CPUS), Store(tmp / "ray_one")))
        singles = [_timed(lambda i=i: run_plan_ray(_empty_chain(1, f"single{i}"), Store(tmp / f"empty{i}")))
                   for i in range(10)]
        chain = _timed(lambda: run_plan_ray(_empty_chain(10, "chain"), Store(tmp / "chain")))
        skip = _timed(lambda: run_plan_ray(light_suite("again"), Store(tmp / "ray")))  # all done: no Ray call
    finally:
        ray.shutdown()
    chain_local = _timed(lambda: run_plan(_empty_chain(10, "local"), Store(tmp / "chain_local"), workers=1))

    rows = [
        ("local executor, workers=1 (serial)", serial),
        ("local executor, workers=2 (process pool, imports torch)", pool),
        (f"Ray, {CPUS} CPUs, cold workers (first run)", warm),
        (f"Ray, {CPUS} CPUs, warm workers", ray_wall),
        ("Ray, one node at a time (each reserves all CPUs)", one_at_a_time),
        ("Ray, finished suite (all skipped)", skip),
    ]
    print(f"{'':58s} {'wall s':>8s} {'vs serial':>10s}")
    for label, wall in rows:
        print(f"{label:58s} {wall:8.2f} {wall / serial:9.2f}x")
    figures = [
        (f"ray.init, local cluster of {CPUS} CPUs", start, "s", ""),
        (f"Ray overhead per node, warm: (Ray - serial) / {n}", (ray_wall - serial) / n, "s",
         "goal < 0.5 s; negative: the parallel speed-up outweighs it"),
        (f"Ray overhead per node, cold: (Ray - serial) / {n}", (warm - serial) / n, "s", ""),
        (f"Ray overhead per node, one at a time: (Ray - serial) / {n}", (one_at_a_time - serial) / n, "s",
         "no parallelism to hide it"),
        ("Ray speed-up over serial, warm", serial / ray_wall, "x", f"ideal {CPUS}x on {CPUS} cores"),
        ("empty node, one-node run (submit -> done, incl. store I/O)", float(np.median(singles)), "s",
         "median of 10"),
        ("empty node, per hop along a 10-node chain on Ray", chain / 10, "s", ""),
        ("empty node, local executor in-process", chain_local / 10, "s", ""),
    ]
    for label, value, unit, note in figures:
        print(f"{label:58s} {value:8.3f} {unit}" + (f"   ({note})" if note else ""))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
