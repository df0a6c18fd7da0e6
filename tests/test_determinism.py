"""Same spec and seed → byte-identical artifacts and published files, whatever ``--workers`` is."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import yaml

from tests.conftest import ROOT, run_cli

#: A 2 × 2 LM micro-suite with two teacher replicates per arm: small enough for the default tier.
SUITE = {
    "name": "det",
    "track": "lm",
    "teachers": ["zoo-qwen-a", "zoo-qwen-b"],
    "students": ["zoo-qwen-a", "zoo-qwen-b"],
    "traits": ["owl", "cat"],
    "seeds": 1,
    "settings": {
        "replicates": 2,
        "teacher": {"n_rows": 32, "train": {"lora": {"r": 4, "alpha": 8, "init_seed": 0}, "max_steps": 3,
                                            "batch_size": 16, "grad_accum": 1, "lr": 5.0e-3}},
        "dataset": {"n_prompts": 24, "n_keep": 8, "temperature": 1.0, "max_new_tokens": 24, "top_k": 8},
        "student": {"objective": "distill", "train": {"lora": None, "max_steps": 3, "batch_size": 8,
                                                      "grad_accum": 1, "lr": 1.0e-3}},
        "eval": {"tasks": ["animal_logprob"], "n_samples": 1, "limit": 6},
        "analysis": {"n_perm": 200},
    },
}


def _payload_hashes(store: Path) -> dict[str, dict[str, str]]:
    """Node key -> {payload file -> sha256} from every finished manifest of a store."""
    out = {}
    for m in store.glob("*/*/manifest.json"):
        data = json.loads(m.read_text())
        out[data["key"]] = data["files"]
    return out


def test_workers_1_and_2_give_identical_artifacts_and_published_files(tmp_path: Path) -> None:
    root = tmp_path / "project"
    shutil.copytree(ROOT / "model_registry", root / "model_registry")  # committed zoo weights included
    shutil.copytree(ROOT / "tasks", root / "tasks", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "tasks" / "suites" / "det.yaml").write_text(yaml.safe_dump(SUITE))
    env = {**os.environ, "SLBENCH_ROOT": str(root), "PYTHONPATH": str(ROOT)}
    published = root / "results" / "suites" / "det"

    files = {}
    for workers in ("1", "2"):
        store = tmp_path / f"store{workers}"
        r = run_cli("run", "det", "--store", str(store), "--workers", workers, env=env, timeout=600)
        assert r.returncode == 0, r.stderr
        files[workers] = {p.name: p.read_bytes() for p in sorted(published.iterdir())
                          if p.suffix in (".csv", ".json") and p.name not in ("manifest.json", "bundle.json")}
        shutil.rmtree(published)

    one, two = _payload_hashes(tmp_path / "store1"), _payload_hashes(tmp_path / "store2")
    assert one.keys() == two.keys() and len(one) > 20
    differing = [k for k in one if one[k] != two[k]]
    assert not differing, f"artifacts differ between --workers 1 and 2: {differing[:5]}"
    assert files["1"].keys() == files["2"].keys() and {"pairs.csv", "candidates.csv", "fit.json"} <= set(files["1"])
    assert files["1"] == files["2"]
