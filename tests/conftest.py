"""Shared test setup: offline, headless, single-threaded, and a disposable copy of the project data."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

# Never touch a hub, never open a window, keep the 2-core machine responsive.
for _k, _v in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "MPLBACKEND": "Agg", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}.items():
    os.environ.setdefault(_k, _v)

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture
def project_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of model_registry/ and tasks/ (without committed weights) that tests may break; SLBENCH_ROOT points at it."""
    root = tmp_path / "project"
    shutil.copytree(ROOT / "model_registry", root / "model_registry", ignore=shutil.ignore_patterns("weights"))
    shutil.copytree(ROOT / "tasks", root / "tasks", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "results").mkdir()
    monkeypatch.setenv("SLBENCH_ROOT", str(root))
    return root


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300):
    """Run ``slbench`` in a subprocess; returns the CompletedProcess."""
    import subprocess

    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "benchmark.cli", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd or ROOT, timeout=timeout)
