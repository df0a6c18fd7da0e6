"""The Ray executor on a real local Ray cluster (2 CPUs, 2 fake GPUs) against the local executor.

The micro-suite is a real DAG of :class:`benchmark.dag.Node`s whose stages are small deterministic numpy
computations defined below (Ray workers import this module by name, so the stages must live at module
level): 2 bases -> 2 teachers -> 2 datasets -> 4 students (every dataset × every base: the diamond) ->
4 evals -> 1 report that aggregates the evals into a table. 15 nodes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from benchmark.dag import Node, StageContext
from benchmark.errors import UserError
from benchmark.executors.local import run_plan
from benchmark.store import MANIFEST, StageFailed, Store

pytestmark = pytest.mark.ray

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DIM = 6  # weight matrices are DIM × DIM: big enough to be real linear algebra, small enough to be instant
ROWS = 64  # rows per dataset


# -- stages (run in Ray workers and in-process by the local executor) ----------------------------------------
def _attempt(ctx: StageContext) -> int:
    """Append to this node's attempt counter (if the test asked for one); returns the attempt number."""
    counter = ctx.node.unhashed.get("attempts")
    if not counter:
        return 1
    with open(counter, "a", encoding="utf-8") as fh:
        fh.write(f"{os.getpid()}\n")
    return len(Path(counter).read_text().splitlines())


def _faults(ctx: StageContext) -> None:
    """Fault injection driven by ``unhashed`` (not hashed: a faulty node has the same id as a clean one)."""
    _attempt(ctx)
    crash = ctx.node.unhashed.get("crash_once")
    if crash and not Path(crash).exists():
        Path(crash).write_text("crashed\n")  # the marker makes the retry behave
        os.kill(os.getpid(), signal.SIGKILL)
    flaky = ctx.node.unhashed.get("connection_error_once")
    if flaky and not Path(flaky).exists():
        Path(flaky).write_text("failed\n")
        raise ConnectionError("provider hung up (injected)")


def stage_base(ctx: StageContext) -> dict[str, Any]:
    _faults(ctx)
    w = np.random.default_rng(ctx.node.spec["seed"]).normal(size=(DIM, DIM))
    np.save(ctx.out / "weights.npy", w)
    return {"norm": float(np.linalg.norm(w))}


def stage_teacher(ctx: StageContext) -> dict[str, Any]:
    _faults(ctx)
    # Logged, not written: the GPU a task got differs between executors, its outputs must not.
    ctx.log.info("CUDA_VISIBLE_DEVICES=%s", os.environ.get("CUDA_VISIBLE_DEVICES"))
    w = np.load(ctx.input("base") / "weights.npy")
    trait = np.random.default_rng(1000 + ctx.node.spec["trait"]).normal(size=DIM)
    t = w + 0.5 * np.outer(np.ones(DIM), trait)
    np.save(ctx.out / "weights.npy", t)
    return {"shift": float(np.linalg.norm(t - w))}


def stage_dataset(ctx: StageContext) -> dict[str, Any]:
    _faults(ctx)
    t = np.load(ctx.input("teacher") / "weights.npy")
    x = np.random.default_rng(ctx.node.spec["seed"]).normal(size=(ROWS, DIM))
    y = np.tanh(x @ t)
    np.save(ctx.out / "x.npy", x)
    np.save(ctx.out / "y.npy", y)
    return {"rows": ROWS, "y_mean": float(y.mean())}


def stage_student(ctx: StageContext) -> dict[str, Any]:
    _faults(ctx)
    ctx.log.info("threads=%d OMP_NUM_THREADS=%s CUDA_VISIBLE_DEVICES=%s", ctx.threads,
                 os.environ.get("OMP_NUM_THREADS"), os.environ.get("CUDA_VISIBLE_DEVICES"))
    w = np.load(ctx.input("base") / "weights.npy")
    data = ctx.input("dataset")
    x, y = np.load(data / "x.npy"), np.load(data / "y.npy")
    losses = []
    for _ in range(ctx.node.spec["steps"]):  # full-batch gradient descent on MSE(tanh(xW), y)
        pred = np.tanh(x @ w)
        err = pred - y
        losses.append(float((err**2).mean()))
        w = w - ctx.node.spec["lr"] * x.T @ (err * (1 - pred**2)) / len(x)
    np.save(ctx.out / "weights.npy", w)
    return {"loss_first": losses[0], "loss_last": losses[-1]}


def stage_eval(ctx: StageContext) -> dict[str, Any]:
    _faults(ctx)
    w0 = np.load(ctx.input("base") / "weights.npy").ravel()
    ws = np.load(ctx.input("student") / "weights.npy").ravel() - w0
    wt = np.load(ctx.input("teacher") / "weights.npy").ravel() - w0
    cos = float(ws @ wt / (np.linalg.norm(ws) * np.linalg.norm(wt)))
    metrics = {"cos": cos, "moved": float(np.linalg.norm(ws))}
    (ctx.out / "metrics.json").write_text(json.dumps(metrics, sort_keys=True))
    return metrics


def stage_report(ctx: StageContext) -> dict[str, Any]:
    _faults(ctx)
    rows = []
    for key, path in sorted(ctx.inputs_of("eval").items()):
        m = json.loads((path / "metrics.json").read_text())
        rows.append(f"{key},{m['cos']!r},{m['moved']!r}")
    (ctx.out / "cells.csv").write_text("eval,cos,moved\n" + "\n".join(rows) + "\n")
    cos = [float(r.split(",")[1]) for r in rows]
    return {"cells": len(rows), "mean_cos": float(np.mean(cos))}


def stage_user_error(ctx: StageContext) -> dict[str, Any]:
    _attempt(ctx)
    raise UserError("tasks/suites/micro.yaml: key 'lr' must be > 0, got -1")


def stage_crash(ctx: StageContext) -> dict[str, Any]:
    _attempt(ctx)
    raise ValueError("a bug, not a blip")


def stage_sleep(ctx: StageContext) -> dict[str, Any]:
    _attempt(ctx)
    time.sleep(ctx.node.spec["sleep_s"])
    (ctx.out / "slept.txt").write_text(f"{ctx.node.spec['sleep_s']}\n")
    return {"slept_s": ctx.node.spec["sleep_s"]}


def _fn(name: str) -> Any:
    # Under pytest this module is "test_ray_executor" (tests/ is on sys.path); workers import it by that name.
    return globals()[name]


def micro_suite(hooks: dict[str, dict[str, str]] | None = None) -> list[Node]:
    """The 15-node diamond; ``hooks`` maps a node name to fault-injection ``unhashed`` fields."""
    hooks = hooks or {}

    def node(kind: str, name: str, spec: dict[str, Any], deps: list[Node], gpus: int = 0) -> Node:
        spec = {**spec, "inputs": [d.id for d in deps]}  # upstream ids in the spec: ids change downstream
        return Node(kind=kind, name=name, spec=spec, fn=_fn(f"stage_{kind}"), deps=tuple(d.key for d in deps),
                    resources={"cpus": 1, "gpus": gpus}, unhashed=hooks.get(name, {}))

    bases = [node("base", f"b{i}", {"seed": i}, []) for i in range(2)]
    teachers = [node("teacher", f"t{i}", {"trait": i}, [bases[i]], gpus=1) for i in range(2)]
    datasets = [node("dataset", f"d{i}", {"seed": 10 + i}, [teachers[i]]) for i in range(2)]
    nodes = [*bases, *teachers, *datasets]
    evals = []
    for i, d in enumerate(datasets):
        for j, b in enumerate(bases):
            s = node("student", f"s{i}{j}", {"steps": 30, "lr": 0.2}, [d, b])
            e = node("eval", f"e{i}{j}", {}, [s, teachers[i], b])
            nodes += [s, e]
            evals.append(e)
    nodes.append(node("report", "report", {}, evals))
    return nodes


def upstream_of(nodes: list[Node], name: str) -> list[Node]:
    """The node called ``name`` and everything it depends on, in the given order."""
    by_key = {n.key: n for n in nodes}
    keep = {next(n.key for n in nodes if n.name == name)}
    for n in reversed(nodes):  # nodes are in dependency order, so one backwards pass finds every ancestor
        if n.key in keep:
            keep.update(n.deps)
    return [by_key[k] for k in by_key if k in keep]


def manifests(store: Store, nodes: list[Node], with_spec: bool = True) -> dict[str, dict[str, Any]]:
    """Per node key, the parts of the manifest that must not depend on the executor.

    ``with_spec=False`` leaves out spec.json, which records ``unhashed`` (where fault-injection hooks live).
    """
    out = {}
    for n in nodes:
        m = json.loads((store.path(n) / MANIFEST).read_text())
        files = {k: v for k, v in m["files"].items() if with_spec or k != "spec.json"}
        out[n.key] = {"files": files, "result": m["result"]}
    return out


class Events:
    """Records executor events."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.info: dict[tuple[str, str], dict[str, Any]] = {}

    def __call__(self, event: str, node: Node, info: dict[str, Any]) -> None:
        self.seen.append((event, node.key))
        self.info[(event, node.key)] = info

    def of(self, event: str) -> list[str]:
        return [k for e, k in self.seen if e == event]


# -- fixtures ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_cluster():
    """A real local Ray: 2 CPUs, 2 fake GPUs, bound to 127.0.0.1, shut down after the module."""
    with pytest.MonkeyPatch.context() as mp:
        # Single-node mode: Ray binds to 127.0.0.1 instead of the machine's address. Ray reads this when
        # it is imported; the setattr covers a Ray some other test module imported first.
        mp.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        ray = pytest.importorskip("ray")
        mp.setattr(ray._private.ray_constants, "ENABLE_RAY_CLUSTER", False)
        # Workers import the stage functions by module name: give them this directory and the repo.
        paths = (str(HERE), str(ROOT), os.environ.get("PYTHONPATH"))
        mp.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))
        ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, logging_level="WARNING")
        assert ray.nodes()[0]["NodeManagerAddress"] == "127.0.0.1"
        try:
            yield ray
        finally:
            ray.shutdown()


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The micro-suite built by the local executor (in-process): the outputs Ray must reproduce."""
    store = Store(tmp_path_factory.mktemp("local") / "store")
    nodes = micro_suite()
    run_plan(nodes, store, workers=1, threads=1)
    return manifests(store, nodes)


@pytest.fixture(scope="module")
def ray_run(ray_cluster, tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, Events, Any, float]:
    """The micro-suite built on Ray once, shared by the tests that inspect it."""
    from benchmark.executors.ray import run_plan as run_plan_ray

    store = Store(tmp_path_factory.mktemp("ray") / "store")
    events = Events()
    t0 = time.time()
    summary = run_plan_ray(micro_suite(), store, on_event=events)
    return store, events, summary, time.time() - t0


# -- tests ---------------------------------------------------------------------------------------------------
def test_ray_matches_local_executor(ray_run, local_reference):
    store, events, summary, wall = ray_run
    nodes = micro_suite()
    assert manifests(store, nodes) == local_reference
    assert sorted(summary.built) == sorted(n.key for n in nodes) and not summary.skipped
    # Every node was announced before it finished, and "start" came only once its inputs were done.
    assert sorted(events.of("start")) == sorted(events.of("done")) == sorted(n.key for n in nodes)
    position = {ev: i for i, ev in enumerate(events.seen)}
    for n in nodes:
        assert all(position[("done", d)] < position[("start", n.key)] for d in n.deps)
    # Resources reached the workers: a GPU of its own per GPU task (in a fresh worker), 1 thread per CPU.
    teacher = next(n for n in nodes if n.kind == "teacher")
    assert re.search(r"CUDA_VISIBLE_DEVICES=[01]\n", _log(store, teacher))
    pids = {n.key: events.info[("done", n.key)]["pid"] for n in nodes}
    for n in nodes:
        if n.kind == "teacher":
            assert list(pids.values()).count(pids[n.key]) == 1, "a GPU task must get a worker of its own"
    student = next(n for n in nodes if n.kind == "student")
    assert "threads=1 OMP_NUM_THREADS=1" in _log(store, student)
    assert summary.wall_by_kind["student"] > 0


def _log(store: Store, node: Node) -> str:
    return (store.root / "logs" / node.kind / f"{node.name}-{node.id}.log").read_text()


def test_second_run_schedules_nothing(ray_run, monkeypatch):
    from benchmark.executors import ray as ray_executor

    store, *_ = ray_run
    submitted: list[Node] = []

    def spy(ray: Any, node: Node, *args: Any) -> Any:
        submitted.append(node)
        raise AssertionError(f"finished node {node.key} was submitted")

    monkeypatch.setattr(ray_executor, "_submit", spy)
    events = Events()
    summary = ray_executor.run_plan(micro_suite(), store, on_event=events)
    assert submitted == [] and summary.built == []
    assert {e for e, _ in events.seen} == {"skip"} and len(events.seen) == len(micro_suite())


def test_worker_killed_mid_task_is_retried(ray_cluster, local_reference, tmp_path, monkeypatch):
    from benchmark.executors.ray import run_plan as run_plan_ray

    # A student SIGKILLs its own worker on the first attempt; a transient ConnectionError hits a dataset once.
    hooks = {"s01": {"crash_once": str(tmp_path / "crashed"), "attempts": str(tmp_path / "s01.attempts")},
             "d0": {"connection_error_once": str(tmp_path / "flaked"),
                    "attempts": str(tmp_path / "d0.attempts")}}
    nodes = upstream_of(micro_suite(hooks), "e01")  # 6 of the 15 nodes: enough to hold both faults
    assert [n.name for n in nodes] == ["b0", "b1", "t0", "d0", "s01", "e01"]
    monkeypatch.chdir(tmp_path)  # a relative --store must reach the workers as an absolute path
    store = Store(Path("store"))
    summary = run_plan_ray(nodes, store, max_retries=2)
    assert (tmp_path / "crashed").exists() and (tmp_path / "flaked").exists()
    assert len((tmp_path / "s01.attempts").read_text().splitlines()) == 2
    assert len((tmp_path / "d0.attempts").read_text().splitlines()) == 2
    assert len(summary.built) == len(nodes)
    reference = {n.key: {**local_reference[n.key], "files": {
        f: h for f, h in local_reference[n.key]["files"].items() if f != "spec.json"}} for n in nodes}
    assert manifests(Store(tmp_path / "store"), nodes, with_spec=False) == reference


def test_user_error_fails_fast_without_retry(ray_cluster, tmp_path):
    from benchmark.executors.ray import run_plan as run_plan_ray

    counter = tmp_path / "bad.attempts"
    bad = Node(kind="dataset", name="bad", spec={}, fn=_fn("stage_user_error"),
               unhashed={"attempts": str(counter)})
    after = Node(kind="student", name="after", spec={"dep": bad.id}, fn=_fn("stage_sleep"), deps=(bad.key,))
    # Four 2 s siblings on 2 CPUs need >= 4 s: a fail-fast run stops long before they are all built.
    slow = [Node(kind="eval", name=f"slow{i}", spec={"sleep_s": 2.0, "i": i}, fn=_fn("stage_sleep"))
            for i in range(4)]
    store = Store(tmp_path / "store")
    events = Events()
    # Even a retry list that matches every exception must not retry a user error.
    with pytest.raises(UserError, match=r"dataset/bad-.*key 'lr' must be > 0, got -1"):
        run_plan_ray([bad, after, *slow], store, on_event=events, transient=(Exception,))
    assert len(counter.read_text().splitlines()) == 1
    assert events.of("fail") == [bad.key]
    assert not store.is_done(after) and not store.is_done(bad)
    assert sum(store.is_done(n) for n in slow) < len(slow)  # fail-fast: not every sibling was built


def test_crash_is_not_retried_and_names_the_log(ray_cluster, tmp_path):
    from benchmark.executors.ray import run_plan as run_plan_ray

    counter = tmp_path / "crash.attempts"
    node = Node(kind="teacher", name="buggy", spec={}, fn=_fn("stage_crash"),
                unhashed={"attempts": str(counter)})
    with pytest.raises(StageFailed, match="ValueError: a bug, not a blip") as info:
        run_plan_ray([node], Store(tmp_path / "store"))
    assert len(counter.read_text().splitlines()) == 1  # ValueError is not in the transient list
    assert info.value.log_path is not None and "a bug, not a blip" in info.value.log_path.read_text()


def test_infeasible_node_is_a_user_error(ray_cluster, tmp_path):
    from benchmark.executors.ray import run_plan as run_plan_ray

    node = Node(kind="student", name="huge", spec={}, fn=_fn("stage_sleep"), resources={"cpus": 1, "gpus": 8})
    with pytest.raises(UserError, match=r"need more than the Ray cluster has \(CPU 2, GPU 2\)"):
        run_plan_ray([node], Store(tmp_path / "store"))


def test_missing_ray_is_a_one_line_user_error(tmp_path, monkeypatch):
    from benchmark.executors.ray import run_plan as run_plan_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    with pytest.raises(UserError, match=r"pip install 'subliminal-bench\[ray\]'"):
        run_plan_ray(micro_suite(), Store(tmp_path / "store"))


def test_cli_run_with_ray_executor(ray_cluster, tmp_path, monkeypatch, capsys):
    from benchmark import cli

    # The CLI path (`slbench run SUITE --executor ray`) with this module's suite standing in for a YAML one.
    nodes = [n for n in micro_suite() if n.kind == "base"]
    monkeypatch.setattr(cli, "_load_group", lambda suite: None)  # a plain suite, not a suite group
    monkeypatch.setattr(cli, "_load_plan", lambda suite: (None, SimpleNamespace(name=suite), None, nodes))
    args = ["run", "micro", "--executor", "ray", "--store", str(tmp_path / "store"), "--no-publish"]
    cli.app(args, standalone_mode=False)
    assert "suite 'micro': built 2 node(s), 0 cached" in capsys.readouterr().out
    assert all(Store(tmp_path / "store").is_done(n) for n in nodes)


@pytest.mark.parametrize(("address", "message"), [("127.0.0.1:1", "no Ray cluster answers there"),
                                                  ("head-node", "expected HOST:PORT")])
@pytest.mark.timeout(60)  # a hang guard (ray.init would wait minutes), not a speed target
def test_unreachable_address_is_a_quick_user_error(address, message):
    from benchmark.executors.ray import _check_address

    with pytest.raises(UserError, match=message):
        _check_address(address)


def test_task_rechecks_the_store(tmp_path):
    from benchmark.executors.ray import TRANSIENT_ERRORS, RemoteStageError, _build_task

    # The task body, without Ray: a node finished since the driver looked is not rebuilt...
    base = micro_suite()[0]
    store = Store(tmp_path / "store")
    run_plan([base], store, workers=1, threads=1)
    mtime = (store.path(base) / MANIFEST).stat().st_mtime_ns
    path, info = _build_task(str(store.root), base, 1, TRANSIENT_ERRORS)
    assert path == str(store.path(base)) and info["built"] is False
    assert (store.path(base) / MANIFEST).stat().st_mtime_ns == mtime
    # ...and a worker that cannot see the store says so (a user error: no retry can fix a missing mount).
    with pytest.raises(RemoteStageError, match="must be on shared storage") as info_exc:
        _build_task(str(tmp_path / "not-mounted"), base, 1, TRANSIENT_ERRORS)
    assert info_exc.value.user_error
