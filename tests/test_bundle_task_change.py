"""A bundle broken by a changed task file names the file (issue 24 point 9): validate re-plans the suite with this
checkout's task files, and when the report id moved it lists the task files that differ from the commit the
results were made at."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli

SUITE = "real-smol-distill-mini"  # a small published LM suite (no zoo weights needed)


def _git(root: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "PATH": "/usr/bin:/bin", "HOME": str(root)}
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True,
                          env=env).stdout.strip()


def _problems(r) -> list[str]:
    return [line for line in r.stderr.splitlines() if line.startswith("error: ")]


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_changed_task_file_is_named(project_copy: Path, tmp_path: Path) -> None:
    _git(project_copy, "init", "-q")
    _git(project_copy, "add", "-A")
    _git(project_copy, "commit", "-qm", "results made here")
    commit = _git(project_copy, "rev-parse", "HEAD")
    bundle = json.loads((ROOT / "results" / "suites" / SUITE / "bundle.json").read_text(encoding="utf-8"))
    bundle["provenance"]["git_commit"] = commit
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle), encoding="utf-8")
    env = {"SLBENCH_ROOT": str(project_copy)}
    before = [p for p in _problems(run_cli("validate", str(path), env=env)) if "planned here" in p]
    assert before == [], before  # the same task files: the report id is reproduced
    task = project_copy / "tasks" / "lm_eval" / "animal_preference" / "animal_logprob.yaml"
    task.write_text(task.read_text(encoding="utf-8") + "# edited after publication\n", encoding="utf-8")
    (project_copy / "tasks" / "suites" / "unrelated.yaml").write_text("name: x\n", encoding="utf-8")  # not an input
    r = run_cli("validate", str(path), env=env)
    assert r.returncode == 2
    line = next(p for p in _problems(r) if "planned here" in p)
    assert f"task files changed since their commit {commit[:12]}: tasks/lm_eval/animal_preference/animal_logprob.yaml" \
        in line, line
    assert "unrelated.yaml" not in line
    # a commit this checkout does not have: said so, not guessed
    bundle["provenance"]["git_commit"] = "0" * 40
    path.write_text(json.dumps(bundle), encoding="utf-8")
    line = next(p for p in _problems(run_cli("validate", str(path), env=env)) if "planned here" in p)
    assert "is not in this checkout, so the file cannot be named" in line, line
