"""Crash safety: SIGKILL a run mid-stage, rerun it, and get exactly the outputs of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.conftest import ROOT, run_cli

MICRO = {
    "name": "micro",
    "track": "classifier",
    "teachers": ["mlp-a", "mlp-b"],
    "students": ["mlp-a", "mlp-b"],
    "seeds": 2,
    "settings": {"teacher": {"epochs": 2}, "student": {"steps": 96}, "control": {"steps": 32}},
}


def _manifests(store: Path) -> dict[str, dict]:
    out = {}
    for m in store.glob("*/*/manifest.json"):
        if ".staging" in m.parts:
            continue
        data = json.loads(m.read_text())
        out[data["key"]] = data
    return out


def test_sigkill_mid_stage_then_resume_matches_clean_run(project_copy, tmp_path):
    (project_copy / "tasks" / "suites" / "micro.yaml").write_text(yaml.safe_dump(MICRO))
    env = {**os.environ, "SLBENCH_ROOT": str(project_copy), "PYTHONPATH": str(ROOT)}
    killed_store = tmp_path / "killed"
    clean_store = tmp_path / "clean"

    # 1. Start a run and SIGKILL it once some, but not all, nodes are finished.
    proc = subprocess.Popen([sys.executable, "-m", "benchmark.cli", "run", "micro", "--store", str(killed_store),
                             "--workers", "1", "--no-publish"], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 240
    done_before = 0
    while time.time() < deadline and proc.poll() is None:
        done_before = len(_manifests(killed_store)) if killed_store.exists() else 0
        staging = list(killed_store.glob("*/.staging/*")) if killed_store.exists() else []
        if done_before >= 3 and staging:  # finished nodes exist AND a stage is half-way
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, f"run ended before it could be killed: {proc.returncode}"
    before = _manifests(killed_store)
    assert before, "nothing finished before the kill"
    assert list(killed_store.glob("*/.staging/*")), "the kill did not land mid-stage"

    # 2. Rerun: it finishes, reuses every finished node, and leaves no debris.
    r = run_cli("run", "micro", "--store", str(killed_store), "--workers", "1", "--no-publish", env=env)
    assert r.returncode == 0, r.stderr
    after = _manifests(killed_store)
    assert f"{len(before)} cached" in r.stdout, r.stdout
    for key, manifest in before.items():
        assert after[key]["started"] == manifest["started"], f"{key} was recomputed"
    assert not list(killed_store.glob("*/.staging/*"))

    # 3. An uninterrupted run produces byte-identical artifacts.
    r = run_cli("run", "micro", "--store", str(clean_store), "--workers", "1", "--no-publish", env=env)
    assert r.returncode == 0, r.stderr
    clean = _manifests(clean_store)
    assert clean.keys() == after.keys()
    for key in clean:
        assert clean[key]["files"] == after[key]["files"], f"{key} differs between resumed and clean runs"
