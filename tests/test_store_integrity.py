"""A store that can be trusted: damaged payloads are refused by name, one builder per node, safe publishing."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from benchmark.publish import publish_dir
from tests.conftest import ROOT, run_cli
from tests.test_crash_safety import MICRO


@pytest.fixture()
def micro(project_copy: Path, tmp_path: Path) -> tuple[dict[str, str], Path]:
    """The classifier micro-suite, run once into a fresh store (no publishing)."""
    (project_copy / "tasks" / "suites" / "micro.yaml").write_text(yaml.safe_dump(MICRO))
    env = {**os.environ, "SLBENCH_ROOT": str(project_copy), "PYTHONPATH": str(ROOT)}
    store = tmp_path / "store"
    r = run_cli("run", "micro", "--store", str(store), "--workers", "1", "--no-publish", env=env)
    assert r.returncode == 0, r.stderr
    return env, store


def _one_line_error(r: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_truncated_payload_is_refused_by_name(micro: tuple[dict[str, str], Path]) -> None:
    env, store = micro
    metrics = sorted(store.glob("student/*/metrics.json"))[0]
    metrics.write_bytes(metrics.read_bytes()[:-10])
    for args in (("run", "micro", "--no-publish"), ("status", "micro"), ("report", "micro")):
        r = run_cli(*args, "--store", str(store), env=env)
        _one_line_error(r, str(metrics), "delete", "truncated")


def test_edited_payload_of_the_same_size_is_refused_before_publishing(micro: tuple[dict[str, str], Path]) -> None:
    env, store = micro
    params = sorted(store.glob("teacher/*/metrics.json"))[0]
    data = bytearray(params.read_bytes())
    i = data.index(b"1")
    data[i:i + 1] = b"2"  # same size, other content
    params.write_bytes(bytes(data))
    # A run of cached nodes only checks sizes; publishing and --verify check every sha256.
    r = run_cli("run", "micro", "--store", str(store), env=env)
    _one_line_error(r, str(params), "sha256")
    r = run_cli("status", "micro", "--verify", "--store", str(store), env=env)
    _one_line_error(r, str(params), "sha256")


def test_two_runs_on_one_store_build_every_node_once(project_copy: Path, tmp_path: Path) -> None:
    (project_copy / "tasks" / "suites" / "micro.yaml").write_text(yaml.safe_dump(MICRO))
    env = {**os.environ, "SLBENCH_ROOT": str(project_copy), "PYTHONPATH": str(ROOT)}
    store = tmp_path / "store"
    cmd = [sys.executable, "-m", "benchmark.cli", "run", "micro", "--store", str(store), "--workers", "1",
           "--no-publish"]
    procs = [subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    logs = sorted((store / "logs").rglob("*.log"))
    assert logs
    for log in logs:
        starts = [ln for ln in log.read_text().splitlines() if " INFO start " in ln]
        assert len(starts) == 1, f"{log.name} was built {len(starts)} times"


def _write_manifest(node: Path, started: str = "t0") -> None:
    """A report manifest listing every file of ``node`` (publishing copies exactly the listed files)."""
    import hashlib
    import json

    from benchmark.manifest import MANIFEST_SCHEMA

    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(node.iterdir())
             if p.name != "manifest.json"}
    doc = {"schema": MANIFEST_SCHEMA, "kind": "report", "name": "s", "id": "0" * 12, "key": "report/s-000000000000",
           "spec_hash": "0" * 64, "spec": {}, "unhashed": {}, "resources": {}, "deps": [], "result": {},
           "files": files, "sizes": {}, "started": started, "wall_s": 0.0, "threads": 1,
           "git": {"commit": None, "dirty": None}, "python": "3", "platform": "p", "host": "h", "versions": {}}
    (node / "manifest.json").write_text(json.dumps(doc), encoding="utf-8")


def _publisher(src: str, dest: str, rounds: int) -> None:
    for _ in range(rounds):
        publish_dir(Path(src), Path(dest), grace_s=1.0)


def test_concurrent_publishers_never_expose_a_partial_directory(tmp_path: Path) -> None:
    names = [f"f{i}.csv" for i in range(30)]
    sources = []
    for tag in ("a", "b"):
        src = tmp_path / f"node-{tag}"
        src.mkdir()
        for n in names:
            (src / n).write_text(f"{tag},{n}\n" * 200)
        _write_manifest(src)
        sources.append(src)
    dest = tmp_path / "results" / "suites" / "s"
    publish_dir(sources[0], dest)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_publisher, args=(str(src), str(dest), 15)) for src in sources]
    for p in procs:
        p.start()
    seen_bad = []
    deadline = time.time() + 120
    while any(p.is_alive() for p in procs) and time.time() < deadline:
        try:
            present = sorted(p.name for p in dest.iterdir())
        except FileNotFoundError:
            seen_bad.append("missing")
            continue
        if present != sorted([*names, "manifest.json"]):
            seen_bad.append(f"partial: {len(present)} files")
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert not seen_bad, seen_bad[:5]
    # Replaced copies are removed by a later publish once their grace period is over; no staging debris.
    for _ in range(2):  # the first may replace the last copy; the second (identical) only cleans up
        time.sleep(1.1)
        publish_dir(sources[0], dest, grace_s=1.0)
    assert not [p for p in dest.parent.iterdir() if p.name.startswith(f".{dest.name}.") and p.is_dir()]


def test_republishing_identical_results_changes_nothing(tmp_path: Path) -> None:
    src = tmp_path / "node"
    src.mkdir()
    (src / "cells.csv").write_text("a,b\n1,2\n")
    (src / "spec.json").write_text("{}")  # a store record: never published
    _write_manifest(src, started="t0")
    dest = tmp_path / "suites" / "s"
    assert publish_dir(src, dest) is True
    assert sorted(p.name for p in dest.iterdir()) == ["cells.csv", "manifest.json"]
    published = (dest / "manifest.json").read_text()
    _write_manifest(src, started="t1")  # a rerun: new timestamps, same results
    assert publish_dir(src, dest) is False
    assert (dest / "manifest.json").read_text() == published
    (src / "cells.csv").write_text("a,b\n1,3\n")
    _write_manifest(src, started="t2")
    assert publish_dir(src, dest) is True and (dest / "cells.csv").read_text() == "a,b\n1,3\n"
