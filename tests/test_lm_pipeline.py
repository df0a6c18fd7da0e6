"""The LM track end to end on a 2×2 micro-suite of the committed zoo (fast tier), and its pieces."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from benchmark.executors.local import run_plan
from benchmark.registry import Registry
from benchmark.store import Store
from benchmark.tracks import track_for

MICRO = {
    "name": "lm-micro",
    "track": "lm",
    "teachers": ["zoo-qwen-a", "zoo-qwen-b"],
    "students": ["zoo-qwen-a", "zoo-qwen-b"],
    "traits": ["owl", "cat"],
    "seeds": 1,
    "settings": {
        "teacher": {"n_rows": 32, "train": {"lora": {"r": 4, "alpha": 8, "init_seed": 0}, "max_steps": 3,
                                            "batch_size": 16, "grad_accum": 1, "lr": 5.0e-3}},
        "dataset": {"n_prompts": 24, "n_keep": 12, "temperature": 1.0, "max_new_tokens": 24, "top_k": 8},
        "student": {"objective": "distill", "train": {"lora": None, "max_steps": 3, "batch_size": 12,
                                                      "grad_accum": 1, "lr": 1.0e-3}},
        "eval": {"tasks": ["animal_logprob"], "n_samples": 1},
    },
}


def _plan(root: Path):
    reg = Registry(root)
    spec, settings, _ = reg.suite("lm-micro")
    return track_for(spec.track).build_plan(spec, settings, reg)


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory):
    """Run the micro-suite once against the real project data (committed zoo weights); share it across tests."""
    import os
    import shutil

    from tests.conftest import ROOT

    root = tmp_path_factory.mktemp("proj")
    shutil.copytree(ROOT / "model_registry", root / "model_registry")
    shutil.copytree(ROOT / "tasks", root / "tasks", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "tasks" / "suites" / "lm-micro.yaml").write_text(yaml.safe_dump(MICRO))
    old = os.environ.get("SLBENCH_ROOT")
    os.environ["SLBENCH_ROOT"] = str(root)
    try:
        nodes = _plan(root)
        store = Store(root / "store")
        summary = run_plan(nodes, store, workers=1)
        yield root, nodes, store, summary
    finally:
        if old is None:
            os.environ.pop("SLBENCH_ROOT", None)
        else:
            os.environ["SLBENCH_ROOT"] = old


def test_micro_suite_counts_and_report(micro_run):
    root, nodes, store, summary = micro_run
    kinds = pd.Series([n.kind for n in nodes]).value_counts().to_dict()
    # 2 bases; 2 × (2 traits + neutral) teachers and datasets; 6 datasets × 2 students; evals: 2 baselines +
    # 6 teachers + 12 students; 1 report.
    assert kinds == {"base": 2, "teacher": 6, "dataset": 6, "student": 12, "eval": 20, "report": 1}
    assert len(summary.built) == len(nodes)
    report = store.path(next(n for n in nodes if n.kind == "report"))
    for name in ("cells.csv", "matrix.csv", "tidy.csv", "heatmap.png", "report.md", "index.html", "fit.json"):
        assert (report / name).stat().st_size > 0, name
    tidy = pd.read_csv(report / "tidy.csv")
    # Each of 12 students and 2 baselines reads out both traits as logodds and p_target; students also get tv.
    assert len(tidy[tidy.metric == "logodds"]) == (12 + 2) * 2
    assert set(tidy.relation.fillna("")) == {"same", "unrelated", ""}
    cells = pd.read_csv(report / "cells.csv")
    assert len(cells) == 2 * 2 * 2 and cells["effect"].notna().all()


def test_manifests_record_adapters_hashes_and_filters(micro_run):
    root, nodes, store, _ = micro_run
    teacher = next(n for n in nodes if n.kind == "teacher" and n.name.endswith(".owl"))
    tm = store.read_manifest(store.path(teacher))
    assert len(tm.result["train"]["adapter_sha256"]) == 64
    assert (tm.git.commit is None or len(tm.git.commit) == 40) and "torch" in tm.versions
    ds = next(n for n in nodes if n.kind == "dataset" and n.name.endswith(".owl"))
    dm = store.read_manifest(store.path(ds)).result
    assert dm["n_prompts"] == 24 and dm["n_rows"] <= 12 and isinstance(dm["rejects"], dict)
    assert "template_hash" in dm and "soft_label_mass_removed_per_token" in dm
    student = next(n for n in nodes if n.kind == "student")
    sm = store.read_manifest(store.path(student)).result
    assert sm["weights_sha256"] and sm["same_vocab_as_teacher"] is True
    ev = next(n for n in nodes if n.kind == "eval" and n.name.startswith("teacher.") and n.name.endswith(".owl"))
    em = store.read_manifest(store.path(ev)).result
    assert em["logit_change"] > 0  # the teacher's adapter was really loaded before scoring


def test_soft_labels_hold_only_channel_tokens(micro_run):
    from benchmark.files import read_jsonl
    from benchmark.lm.stages.dataset import channel_token_ids
    from benchmark.providers.hf import weights_path
    from benchmark.providers.hf_model import load_tokenizer

    root, nodes, store, _ = micro_run
    base = next(n for n in nodes if n.kind == "base")
    allowed = channel_token_ids(load_tokenizer(weights_path(store.path(base))))
    for ds in (n for n in nodes if n.kind == "dataset"):
        for row in read_jsonl(store.path(ds) / "rows.jsonl"):
            for pos in row["topk"]:
                assert {int(t) for t, _ in pos} <= allowed


def test_rerun_builds_nothing(micro_run):
    root, nodes, store, _ = micro_run
    again = run_plan(nodes, store, workers=1)
    assert again.built == [] and len(again.skipped) == len(nodes)


def test_filter_soft_labels_renormalises():
    import math

    from benchmark.lm.stages.dataset import filter_soft_labels

    out, removed = filter_soft_labels([[[1, math.log(0.5)], [2, math.log(0.3)], [9, math.log(0.2)]]], {1, 2})
    probs = {t: math.exp(lp) for t, lp in out[0]}
    assert probs.keys() == {1, 2} and abs(sum(probs.values()) - 1) < 1e-9 and abs(probs[1] - 0.625) < 1e-9
    assert abs(removed - 0.2) < 1e-9


def test_channel_tokens_of_the_zoo_tokenizer():
    from benchmark.lm.stages.dataset import channel_token_ids
    from benchmark.providers.hf_model import load_tokenizer
    from tests.conftest import ROOT

    tok = load_tokenizer(next((ROOT / "model_registry" / "weights").glob("zoo-qwen-a-[0-9a-f]*")))
    ids = channel_token_ids(tok)
    words = {tok.decode([i]) for i in ids}
    assert {"0", "999", ",", ";", "<|im_end|>"} <= words
    assert not words & {"owl", "cat", "the", "<unk>"}


def test_distill_needs_top_k(project_copy):
    from benchmark.errors import UserError

    bad = {**MICRO, "settings": {**MICRO["settings"], "dataset": {**MICRO["settings"]["dataset"], "top_k": None}}}
    (project_copy / "tasks" / "suites" / "lm-micro.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(UserError, match="top_k must be set"):
        _plan(project_copy)


def test_eval_json_layout(micro_run):
    root, nodes, store, _ = micro_run
    ev = next(n for n in nodes if n.kind == "eval" and n.name.startswith("student."))
    data = json.loads((store.path(ev) / "eval.json").read_text())
    p = data["eval"]["logprob"]["p"]
    assert abs(sum(p.values()) - 1) < 1e-6 and {"owl", "cat"} <= p.keys()
