"""Time the default suite: a fresh store (zoo weights as committed), then a fully cached rerun.

Prints per-stage wall time summed over workers, the end-to-end wall time, and the rerun's time, against the
targets (fresh ≤ 600 s, cached ≤ 60 s on 2 cores). Usage: python benchmarks/bench_default.py [SUITE] [WORKERS]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from benchmark.executors.local import run_plan
from benchmark.registry import Registry
from benchmark.store import Store
from benchmark.tracks import track_for


def main() -> None:
    suite = sys.argv[1] if len(sys.argv) > 1 else "default"
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    reg = Registry()
    spec, settings, _ = reg.suite(suite)
    nodes = track_for(spec.track).build_plan(spec, settings, reg)
    with tempfile.TemporaryDirectory(prefix="slbench-bench-") as tmp:
        store = Store(Path(tmp) / "store")
        t0 = time.time()
        first = run_plan(nodes, store, workers=workers)
        fresh = time.time() - t0
        t0 = time.time()
        again = run_plan(nodes, store, workers=workers)
        cached = time.time() - t0
    print(f"suite {suite!r}: {len(nodes)} nodes, {workers} worker(s)")
    print("stage        summed wall (s)  nodes")
    for kind, wall in sorted(first.wall_by_kind.items(), key=lambda kv: -kv[1]):
        n = sum(1 for k in first.built if k.startswith(kind + "/"))
        print(f"  {kind:10s} {wall:12.1f}  {n:6d}  ({wall / max(1, n):.2f} s/node)")
    print(f"fresh run:  {fresh:8.1f} s   (target ≤ 600 s: {'met' if fresh <= 600 else 'NOT met'}; ratio {fresh / 600:.2f})")
    print(f"cached run: {cached:8.1f} s   (target ≤ 60 s: {'met' if cached <= 60 else 'NOT met'}; "
          f"{len(again.skipped)} skipped, {len(again.built)} built)")


if __name__ == "__main__":
    main()
