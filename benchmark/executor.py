"""Executors: run a suite's DAG against the store.

The local executor runs nodes in dependency order, either in this process (``workers=1``) or in a pool of
single-threaded worker processes (two 1-thread workers use a 2-core machine better than one 2-thread
process; see shared/research/prototypes.md). Finished nodes are skipped, so any rerun resumes where the
last one stopped. The Ray executor (``benchmark.executors.ray_executor``) runs the same nodes on a cluster.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.dag import KIND_ORDER, Node, topological_order
from benchmark.errors import UserError
from benchmark.store import StageFailed, Store

__all__ = ["RunSummary", "plan_status", "run_plan", "set_threads", "skip_finished"]


@dataclass
class RunSummary:
    """What a run did: counts by kind, the nodes built, wall time per kind."""

    built: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    wall_by_kind: Counter[str] = field(default_factory=Counter)
    wall_s: float = 0.0


def plan_status(nodes: Sequence[Node], store: Store) -> tuple[dict[str, dict[str, int]], list[Node]]:
    """Per kind: total, done, todo; and the unfinished nodes in plan order. Corrupt manifests raise UserError."""
    out: dict[str, dict[str, int]] = {}
    todo: list[Node] = []
    for node in nodes:
        row = out.setdefault(node.kind, {"total": 0, "done": 0, "todo": 0})
        row["total"] += 1
        if store.is_done(node):
            row["done"] += 1
        else:
            row["todo"] += 1
            todo.append(node)
    return dict(sorted(out.items(), key=lambda kv: _kind_rank(kv[0]))), todo


def skip_finished(
    order: Sequence[Node], store: Store, summary: RunSummary, emit: Callable[[str, Node, dict[str, Any]], None]
) -> tuple[set[str], list[Node]]:
    """Prepare the store, report finished nodes as "skip", and return (finished keys, nodes still to run).

    Shared by every executor: resuming is the same decision everywhere (a node is done iff its manifest is).
    """
    store.root.mkdir(parents=True, exist_ok=True)
    store.clean_staging()
    done: set[str] = set()
    for node in order:
        if store.is_done(node):
            done.add(node.key)
            summary.skipped.append(node.key)
            emit("skip", node, {})
    return done, [n for n in order if n.key not in done]


def _kind_rank(kind: str) -> int:
    return KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)


def set_threads(n: int) -> None:
    """Limit torch (if loaded later) and BLAS to ``n`` threads in this process."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    # Per-request progress bars of lm-eval / transformers are noise at this level; node logs keep the rest.
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


def _worker_init(threads: int) -> None:
    set_threads(threads)
    import torch  # noqa: F401  (import once per worker so every stage starts warm)

    torch.set_num_threads(threads)


def _build_in_worker(store_root: str, node: Node, inputs: dict[str, Path], threads: int) -> tuple[str, float]:
    store = Store(Path(store_root))
    t0 = time.time()
    store.build(node, inputs, threads=threads)
    return node.key, time.time() - t0


def run_plan(
    nodes: Sequence[Node],
    store: Store,
    *,
    workers: int = 1,
    threads: int | None = None,
    on_event: Callable[[str, Node, dict[str, Any]], None] | None = None,
) -> RunSummary:
    """Run every unfinished node of ``nodes`` in dependency order.

    Args:
        nodes: the plan (any order; dependencies must be present).
        store: artifact store.
        workers: parallel worker processes (1 = run in this process).
        threads: torch threads per worker (default: cores // workers, at least 1).
        on_event: callback ``(event, node, info)`` with events "skip", "start", "done", "fail".

    Raises:
        UserError: a stage failed because of user input (message from the stage).
        StageFailed: a stage crashed; the message names the node and its log file.
    """
    order = topological_order(nodes)
    cores = os.cpu_count() or 1
    threads = threads or max(1, cores // max(1, workers))
    emit = on_event or (lambda *_: None)
    summary = RunSummary()
    t_start = time.time()
    done, todo = skip_finished(order, store, summary, emit)

    def inputs_of(node: Node) -> dict[str, Path]:
        return {dep: store.root / dep for dep in node.deps}

    if workers <= 1:
        set_threads(threads)
        for node in todo:
            emit("start", node, {})
            t0 = time.time()
            try:
                store.build(node, inputs_of(node), threads=threads)
            except StageFailed as exc:
                emit("fail", node, {"error": str(exc)})
                _raise(exc)
            wall = time.time() - t0
            summary.built.append(node.key)
            summary.wall_by_kind[node.kind] += wall
            emit("done", node, {"wall_s": wall})
    else:
        pending = list(todo)
        running: dict[Future[tuple[str, float]], Node] = {}
        with ProcessPoolExecutor(max_workers=workers, initializer=_worker_init, initargs=(threads,)) as pool:
            while pending or running:
                ready = [n for n in pending if all(d in done for d in n.deps)]
                for node in ready[: max(0, workers * 2 - len(running))]:
                    pending.remove(node)
                    emit("start", node, {})
                    fut = pool.submit(_build_in_worker, str(store.root), node, inputs_of(node), threads)
                    running[fut] = node
                if not running:
                    raise RuntimeError("scheduler stalled: unmet dependencies")
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in finished:
                    node = running.pop(fut)
                    try:
                        _, wall = fut.result()
                    except StageFailed as exc:
                        emit("fail", node, {"error": str(exc)})
                        for other in running:
                            other.cancel()
                        _raise(exc)
                    done.add(node.key)
                    summary.built.append(node.key)
                    summary.wall_by_kind[node.kind] += wall
                    emit("done", node, {"wall_s": wall})
    summary.wall_s = time.time() - t_start
    return summary


def _raise(exc: StageFailed) -> None:
    if exc.user_error:
        raise UserError(f"{exc.key}: {exc}") from None
    raise exc
