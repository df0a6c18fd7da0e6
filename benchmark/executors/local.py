"""The local executor: a suite's DAG in this process or in a pool of single-threaded worker processes.

Two 1-thread workers use a 2-core machine better than one 2-thread process (docs/research/prototypes.md).
Finished nodes are skipped, so any rerun resumes where the last one stopped.

Workers die with the run: each asks the kernel for SIGKILL when its parent dies (``PR_SET_PDEATHSIG`` on Linux)
and also watches its parent pid (other systems, or a parent that died before the request), so a run killed
with ``kill -9`` leaves no worker blocked forever on the task pipe. An interrupted run (Ctrl-C, SIGTERM) kills
its workers before it returns: their half-built nodes are staging debris that the next run removes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path

from benchmark.dag import Node, topological_order
from benchmark.executors.base import Event, RunSummary, reraise, set_threads, skip_finished
from benchmark.store import StageFailed, Store

__all__ = ["run_plan", "STAGE_THREADS"]

#: Torch threads of every stage (see ``run_plan``): fixed, so ``--workers`` never changes a result.
STAGE_THREADS = 1
#: Seconds between a worker's checks that its parent is still alive (the fallback to ``PR_SET_PDEATHSIG``).
PARENT_POLL_S = 1.0
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent(parent: int) -> None:
    """Make this worker process end when ``parent`` does (it would otherwise wait on the task pipe forever).

    On Linux the kernel sends SIGKILL at the parent's death (``prctl(PR_SET_PDEATHSIG)``); everywhere a daemon
    thread also polls the parent pid, which covers systems without prctl and a parent that died before the call.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request: no signal will come
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="slbench-parent-watch", daemon=True).start()


def _worker_init(threads: int, parent: int) -> None:
    _die_with_parent(parent)
    # Forked workers inherit the CLI's SIGTERM handler; a worker only ever stops by the parent's decision.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    set_threads(threads)
    import torch  # noqa: F401  (import once per worker so every stage starts warm)

    torch.set_num_threads(threads)


def _build_in_worker(store_root: str, node: Node, inputs: dict[str, Path], threads: int) -> tuple[str, float, bool]:
    store = Store(Path(store_root))
    t0 = time.time()
    _, built = store.build_counted(node, inputs, threads=threads)
    return node.key, time.time() - t0, built


def run_plan(
    nodes: Sequence[Node],
    store: Store,
    *,
    workers: int = 1,
    threads: int | None = None,
    on_event: Event | None = None,
) -> RunSummary:
    """Run every unfinished node of ``nodes`` in dependency order.

    Args:
        nodes: the plan (any order; dependencies must be present).
        store: artifact store.
        workers: parallel worker processes (1 = run in this process).
        threads: torch threads per stage. Default 1 whatever ``workers`` is: torch's CPU kernels reduce in a
            thread-dependent order, so results are byte-identical across worker counts only at a fixed count
            (the Ray executor also runs each CPU stage on 1 thread). Recorded in each manifest, not hashed.
        on_event: callback ``(event, node, info)`` with events "skip", "start", "done", "fail".

    Raises:
        UserError: a stage failed because of user input (message from the stage).
        StageFailed: a stage crashed; the message names the node and its log file.
    """
    order = topological_order(nodes)
    threads = threads or STAGE_THREADS
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
                _, built = store.build_counted(node, inputs_of(node), threads=threads)
            except StageFailed as exc:
                emit("fail", node, {"error": str(exc)})
                reraise(exc)
            wall = time.time() - t0
            _count(summary, node, built, wall)
            emit("done", node, {"wall_s": wall})
    else:
        pending = list(todo)
        running: dict[Future[tuple[str, float, bool]], Node] = {}
        pool = ProcessPoolExecutor(max_workers=workers, initializer=_worker_init, initargs=(threads, os.getpid()))
        try:
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
                        _, wall, built = fut.result()
                    except StageFailed as exc:
                        emit("fail", node, {"error": str(exc)})
                        for other in running:
                            other.cancel()
                        reraise(exc)
                    done.add(node.key)
                    _count(summary, node, built, wall)
                    emit("done", node, {"wall_s": wall})
        except (KeyboardInterrupt, SystemExit):
            _kill_workers(pool)  # an interrupt must not wait for the running stages to finish
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    summary.wall_s = time.time() - t_start
    return summary


def _count(summary: RunSummary, node: Node, built: bool, wall: float) -> None:
    """A node this run built counts as built; one another run finished while this one waited counts as cached."""
    if built:
        summary.built.append(node.key)
        summary.wall_by_kind[node.kind] += wall
    else:
        summary.skipped.append(node.key)


def _kill_workers(pool: ProcessPoolExecutor) -> None:
    """SIGKILL every worker process of ``pool`` (their staging directories are debris the next run removes)."""
    processes = getattr(pool, "_processes", None) or {}  # the executor exposes no public handle on its workers
    for proc in list(processes.values()):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            proc.kill()
