"""Run a suite's DAG on Ray: one Ray task per node, dependencies as ObjectRefs, the store as the only state.

Ray does the scheduling; this module only translates. Each unfinished node becomes one task, submitted with
``.options(num_cpus=..., num_gpus=...)`` from ``node.resources`` (Ray pins a GPU task to its own
``CUDA_VISIBLE_DEVICES`` and, by default, gives each GPU task a fresh worker so VRAM is freed between
fine-tunes). A task's first return value resolves to the node's artifact path, and downstream tasks take
those ObjectRefs as arguments, so Ray runs nothing before its inputs exist. Tasks pass file paths, never
models or datasets: the store must be on storage every node mounts at the same absolute path.

Idempotence is the store's: finished nodes are skipped on the driver before anything is submitted, and again
inside the task (another run, or a retried attempt, may have finished it meanwhile); :meth:`Store.build`
publishes with an atomic rename and keeps whichever copy landed first.

Failures:

* a worker that dies mid-task (SIGKILL, OOM killer, segfault, a lost node) is a system failure: Ray reruns
  the task up to ``max_retries`` times;
* a stage raising one of ``transient`` (connection drops, timeouts) is retried the same way, through
  ``retry_exceptions`` restricted to :class:`TransientStageError`;
* anything else, a :class:`~benchmark.errors.UserError` first of all, is never retried: the run cancels every
  other task and raises, like :func:`benchmark.executors.local.run_plan`.

Progress uses the same ``on_event(event, node, info)`` protocol as ``run_plan`` ("skip", "start", "done",
"fail"), driven from the driver with ``ray.wait``. "start" means "all inputs exist, queued for a worker".
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmark.dag import Node, topological_order
from benchmark.errors import UserError
from benchmark.executors.base import Event, RunSummary, reraise, set_threads, skip_finished
from benchmark.store import StageFailed, Store

__all__ = ["run_plan", "RemoteStageError", "TransientStageError", "TRANSIENT_ERRORS", "INSTALL_HINT"]

#: Exception types (as a stage's cause) worth another attempt: network blips to an API provider or a
#: shared filesystem. Everything else would fail the same way again.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
INSTALL_HINT = "--executor ray needs Ray, which is not installed: pip install 'subliminal-bench[ray]'"
#: How long a cancelled run waits for running stages to handle the interrupt and remove their staging dirs.
CANCEL_GRACE_S = 10.0

class RemoteStageError(Exception):
    """A stage failure raised inside a Ray worker.

    Every field is in ``args`` so the exception pickles back to the driver intact (``StageFailed`` does not:
    its constructor takes more than the message).
    """

    def __init__(self, key: str, message: str, log_path: str | None = None, user_error: bool = False):
        super().__init__(key, message, log_path, user_error)
        self.key = key
        self.message = message
        self.log_path = log_path
        self.user_error = user_error

    def __str__(self) -> str:
        return self.message


class TransientStageError(RemoteStageError):
    """A stage failure whose cause is in the run's transient types: the only exception Ray retries."""


def _build_task(root: str, node: Node, threads: int, transient: tuple[type[BaseException], ...],
                *dep_paths: str) -> tuple[str, dict[str, Any]]:
    """Body of the Ray task: build ``node`` in the shared store. Returns (artifact path, info).

    ``dep_paths`` are the upstream artifact paths in ``node.deps`` order (Ray resolved the ObjectRefs).
    """
    set_threads(threads)
    host = socket.gethostname()
    store = Store(Path(root))
    if not store.root.is_dir():
        msg = (f"store {root} does not exist on host {host}: on a cluster the store must be on shared "
               "storage (NFS, Lustre) mounted at the same path on every node (--store)")
        raise RemoteStageError(node.key, msg, None, True)
    inputs = {dep: Path(p) for dep, p in zip(node.deps, dep_paths, strict=True)}
    info: dict[str, Any] = {"host": host, "pid": os.getpid(), "threads": threads}
    t0 = time.time()
    try:
        if store.is_done(node):
            # Finished by a concurrent run or an earlier attempt since the driver looked: nothing to do.
            return str(store.path(node)), {**info, "built": False, "wall_s": 0.0}
        _, built = store.build_counted(node, inputs, threads=threads)
    except UserError as exc:  # a corrupt manifest found by is_done
        raise RemoteStageError(node.key, str(exc), None, True) from None
    except StageFailed as exc:
        # A user error is never transient, even if its type happens to match (``transient=(Exception,)``).
        retry = not exc.user_error and isinstance(exc.__cause__, transient)
        cls = TransientStageError if retry else RemoteStageError
        log = str(exc.log_path) if exc.log_path else None
        raise cls(exc.key, str(exc), log, exc.user_error) from None
    return str(store.path(node)), {**info, "built": built, "wall_s": time.time() - t0}


_REMOTE: dict[bool, Any] = {}


def _remote_fn(ray: Any, gpu: bool) -> Any:
    """The Ray remote wrapper of :func:`_build_task`, made once per kind (ray is imported only at run time).

    GPU tasks get ``max_calls=1``: a fresh worker each, so a fine-tune's CUDA context and cached VRAM die with
    it (Ray's own default for ``@ray.remote(num_gpus=...)``, which ``.options(num_gpus=...)`` does not apply).
    CPU workers are reused: most CPU nodes are short, and a worker start costs about a second.
    """
    if gpu not in _REMOTE:
        _REMOTE[gpu] = ray.remote(max_calls=1)(_build_task) if gpu else ray.remote(_build_task)
    return _REMOTE[gpu]


def _resources(node: Node) -> tuple[float, float]:
    res = node.resources or {}
    return float(res.get("cpus", 1)), float(res.get("gpus", 0))


def _submit(ray: Any, node: Node, root: Path, dep_args: list[Any], max_retries: int,
            transient: tuple[type[BaseException], ...]) -> tuple[Any, Any]:
    """Submit one node as a Ray task. Returns (ObjectRef of its artifact path, ObjectRef of its info dict)."""
    cpus, gpus = _resources(node)
    threads = max(1, int(cpus))  # torch/BLAS threads = the CPUs Ray reserved for this task
    return _remote_fn(ray, gpus > 0).options(
        num_cpus=cpus, num_gpus=gpus, num_returns=2, name=node.key,
        max_retries=max_retries, retry_exceptions=[TransientStageError],
    ).remote(str(root), node, threads, transient, *dep_args)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    return ray


def _check_address(address: str) -> None:
    """Fail in seconds on an address nobody listens at (ray.init would retry for minutes)."""
    if address == "auto" or "://" in address:
        return  # "auto" finds this host's cluster; ray:// (Ray Client) is Ray's business
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--address {address!r}: expected HOST:PORT of a Ray head (e.g. head-node:6379) "
                        "or 'auto'")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise UserError(f"--address {address}: no Ray cluster answers there ({exc.strerror or exc}); start "
                        "one with `ray start --head` or leave --address out to run on a local one") from None


def _connect(ray: Any, address: str | None, num_cpus: int | None, num_gpus: int | None) -> bool:
    """Join (or start) a Ray cluster unless this process already did. Returns True if we must shut it down."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    # Stage output goes to per-node log files; worker stdout on the driver would garble the progress view.
    common = {"logging_level": logging.WARNING, "log_to_driver": False}
    try:
        if address:
            _check_address(address)
            ray.init(address=address, **common)
        else:
            ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False, **common)
    except ConnectionError as exc:
        raise UserError(f"--address {address}: cannot reach a Ray cluster ({exc}); start one with "
                        "`ray start --head` or leave --address out to run on a local one") from None
    return True


def _check_feasible(ray: Any, todo: Sequence[Node]) -> None:
    """Refuse nodes no machine of the cluster could ever run (Ray would leave them pending forever)."""
    total = ray.cluster_resources()
    have_cpu, have_gpu = total.get("CPU", 0.0), total.get("GPU", 0.0)
    bad = [n for n in todo if _resources(n)[0] > have_cpu or _resources(n)[1] > have_gpu]
    if bad:
        cpus, gpus = _resources(bad[0])
        raise UserError(f"{len(bad)} node(s) need more than the Ray cluster has (CPU {have_cpu:g}, GPU "
                        f"{have_gpu:g}), e.g. {bad[0].key} asks cpus={cpus:g} gpus={gpus:g}; run on a "
                        "cluster with GPUs (--address), use a CPU model, or set SLBENCH_RAY_AUTOSCALING=1 if "
                        "the cluster adds machines on demand")


def _as_stage_failed(ray: Any, node: Node, root: Path, exc: BaseException, max_retries: int) -> StageFailed:
    """Turn what ray.get raised into the StageFailed the local executor would have raised."""
    cause = getattr(exc, "cause", None)  # RayTaskError carries the worker's exception as .cause
    if isinstance(exc, RemoteStageError) and cause is None:
        cause = exc
    if isinstance(cause, RemoteStageError):
        return StageFailed(cause.key, cause.message, Path(cause.log_path) if cause.log_path else None,
                           user_error=cause.user_error)
    log = root / "logs" / node.kind / f"{node.name}-{node.id}.log"
    if isinstance(exc, ray.exceptions.WorkerCrashedError | ray.exceptions.NodeDiedError):
        msg = (f"the worker running it died {max_retries + 1} time(s) (killed, out of memory, or a crash in "
               "native code); see the node log and Ray's logs (/tmp/ray/session_latest/logs on the worker's "
               "host)")
    else:
        err = cause if cause is not None else exc
        lines = str(err).strip().splitlines()
        msg = f"{type(err).__name__}: {lines[0][:300] if lines else ''}"
    return StageFailed(node.key, msg, log)


def _cancel(ray: Any, pending: dict[Any, Node]) -> None:
    """Cancel every outstanding task; running stages get a KeyboardInterrupt and remove their staging dirs."""
    refs = list(pending)
    for ref in refs:
        with contextlib.suppress(Exception):
            ray.cancel(ref)
    if refs:
        with contextlib.suppress(Exception):
            ray.wait(refs, num_returns=len(refs), timeout=CANCEL_GRACE_S)




def run_plan(
    nodes: Sequence[Node],
    store: Store,
    *,
    workers: int | None = None,
    on_event: Event | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    max_retries: int = 3,
    transient: tuple[type[BaseException], ...] = TRANSIENT_ERRORS,
    check_resources: bool | None = None,
    poll_s: float = 1.0,
) -> RunSummary:
    """Run every unfinished node of ``nodes`` on Ray in dependency order, retrying transient failures.

    Connects to ``address`` (or ``$RAY_ADDRESS``) if given, else starts a local Ray with ``num_cpus`` /
    ``num_gpus`` (default: all of this machine) and shuts it down at the end. If this process already
    called ``ray.init``, that cluster is used and left running. When every node is finished, Ray is not
    even started.

    Args:
        nodes: the plan (any order; dependencies must be present).
        store: artifact store; made absolute here, and it must be on storage every Ray node mounts at the
            same path.
        address: Ray cluster address (``head-host:6379`` or ``auto``); None for a local cluster.
        workers: CPUs of a local cluster started here when ``num_cpus`` is not given (ignored when joining a
            cluster: Ray schedules by the nodes' resources).
        on_event: callback ``(event, node, info)`` with events "skip", "start", "done", "fail".
        num_cpus: CPUs of a local cluster started here.
        num_gpus: GPUs of a local cluster started here.
        max_retries: attempts after the first for a task whose worker died or that raised a transient error.
        transient: exception types (the stage's own exception) that make a failed attempt worth retrying.
        check_resources: refuse at once nodes that ask for more CPUs/GPUs than the whole cluster has now.
            Default: on, unless ``$SLBENCH_RAY_AUTOSCALING=1`` (a cluster that grows on demand has fewer
            resources than it can get).
        poll_s: how often the driver wakes up while waiting (keeps Ctrl-C responsive).

    Returns:
        What was built and skipped, wall time per kind (worker-side build time).

    Raises:
        UserError: Ray is not installed or unreachable, a node can never be scheduled, or a stage failed
            because of user input (message from the stage; the rest of the run is cancelled).
        StageFailed: a stage crashed, or its worker died more than ``max_retries`` times.
    """
    ray = _import_ray()
    if check_resources is None:
        check_resources = os.environ.get("SLBENCH_RAY_AUTOSCALING", "") not in ("1", "true", "yes")
    return _run(ray, list(nodes), Store(store.root.resolve()), on_event or (lambda *_: None), address=address,
                num_cpus=num_cpus if num_cpus is not None else workers, num_gpus=num_gpus, max_retries=max_retries,
                transient=tuple(transient), check_resources=check_resources, poll_s=poll_s)


def _run(ray: Any, nodes: list[Node], store: Store, emit: Event, *, address: str | None, num_cpus: int | None,
         num_gpus: int | None, max_retries: int, transient: tuple[type[BaseException], ...],
         check_resources: bool, poll_s: float) -> RunSummary:
    order = topological_order(nodes)
    summary = RunSummary()
    t_start = time.time()
    root = store.root
    done, todo = skip_finished(order, store, summary, emit)
    if not todo:
        summary.wall_s = time.time() - t_start
        return summary

    owned = _connect(ray, address, num_cpus, num_gpus)
    try:
        if check_resources:
            _check_feasible(ray, todo)
        by_key = {n.key: n for n in order}
        children: dict[str, list[Node]] = {n.key: [] for n in todo}
        # Finished upstreams are passed as plain paths, unfinished ones as their tasks' path ObjectRefs.
        paths: dict[str, Any] = {key: str(root / key) for key in done}
        pending: dict[Any, Node] = {}
        for node in todo:
            for dep in node.deps:
                if dep in children:
                    children[dep].append(node)
            dep_args = [paths[d] for d in node.deps]
            path_ref, info_ref = _submit(ray, node, root, dep_args, max_retries, transient)
            paths[node.key] = path_ref
            pending[info_ref] = node
        for node in todo:
            if all(d in done for d in node.deps):
                emit("start", node, {})
        try:
            while pending:
                first, _ = ray.wait(list(pending), num_returns=1, timeout=poll_s)
                if not first:
                    continue
                # Collect everything else already finished in one call (one wait per node is O(n²)).
                ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
                for ref in ready:
                    node = pending.pop(ref)
                    try:
                        info = ray.get(ref)
                    except Exception as exc:  # any task error ends the run, as in run_plan
                        failure = _as_stage_failed(ray, node, root, exc, max_retries)
                        emit("fail", by_key.get(failure.key, node), {"error": str(failure)})
                        _cancel(ray, pending)
                        reraise(failure)
                    done.add(node.key)
                    if info["built"]:
                        summary.built.append(node.key)
                        summary.wall_by_kind[node.kind] += info["wall_s"]
                        emit("done", node, info)
                    else:
                        summary.skipped.append(node.key)
                        emit("skip", node, info)
                    for child in children[node.key]:
                        if all(d in done for d in child.deps):
                            emit("start", child, {})
        except KeyboardInterrupt:
            _cancel(ray, pending)
            raise
    finally:
        if owned:
            ray.shutdown()
    summary.wall_s = time.time() - t_start
    return summary
