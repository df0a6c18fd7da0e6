"""The LM track end to end on a 1×2 micro-suite of the committed zoo with 2 replicates and the A/A arm (fast tier)."""

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
    "teachers": ["zoo-qwen-a"],
    "students": ["zoo-qwen-a", "zoo-qwen-b"],
    "traits": ["owl", "cat"],
    "seeds": 1,
    "settings": {
        "replicates": 2,
        "aa_arm": True,
        "teacher": {"n_rows": 32, "train": {"lora": {"r": 4, "alpha": 8, "init_seed": 0}, "max_steps": 3,
                                            "batch_size": 16, "grad_accum": 1, "lr": 5.0e-3}},
        "dataset": {"n_prompts": 24, "n_keep": 12, "temperature": 1.0, "max_new_tokens": 24, "top_k": 8},
        "student": {"objective": "distill", "train": {"lora": None, "max_steps": 3, "batch_size": 12,
                                                      "grad_accum": 1, "lr": 1.0e-3}},
        "eval": {"tasks": ["animal_logprob"], "n_samples": 1},
        "analysis": {"n_perm": 200},
    },
}


def _plan(root: Path):
    reg = Registry(root)
    spec, settings, _ = reg.suite("lm-micro")
    return track_for(spec.track).build_plan(spec, settings, reg)


def _work(nodes):
    """Every node but the report (the report stage and the analysis are tested on their own)."""
    return [n for n in nodes if n.kind != "report"]


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
        summary = run_plan(_work(nodes), store, workers=1)
        yield root, nodes, store, summary
    finally:
        if old is None:
            os.environ.pop("SLBENCH_ROOT", None)
        else:
            os.environ["SLBENCH_ROOT"] = old


def _inputs(nodes, store, *kinds):
    return {n.key: store.path(n) for n in nodes if n.kind in kinds}


def _node(nodes, kind, name):
    return next(n for n in nodes if n.kind == kind and n.name == name)


def test_micro_suite_counts(micro_run):
    root, nodes, store, summary = micro_run
    kinds = pd.Series([n.kind for n in nodes]).value_counts().to_dict()
    # 2 bases; 1 teacher base × 3 arms (owl, cat, aa:cat) × 2 replicates = 6 teachers and datasets; 6 datasets ×
    # 2 students; evals: 2 baselines + 6 teachers + 12 students; 1 report.
    assert kinds == {"base": 2, "teacher": 6, "dataset": 6, "student": 12, "eval": 20, "report": 1}
    assert len(summary.built) == len(nodes) - 1


def test_tidy_rows_carry_replicates_and_candidates(micro_run):
    from benchmark.analysis import CANDIDATE_COLUMNS
    from benchmark.lm.tidy import TIDY_ORDER, candidate_rows, tidy_rows

    root, nodes, store, _ = micro_run
    report = next(n for n in nodes if n.kind == "report")
    tidy = tidy_rows(_inputs(nodes, store, "eval", "dataset"), report.spec)
    assert tuple(tidy.columns) == TIDY_ORDER
    # Each of 12 students and 2 baselines reads out both traits as logodds and p_target; students also get tv.
    assert len(tidy[tidy.metric == "logodds"]) == (12 + 2) * 2 and len(tidy[tidy.metric == "tv"]) == 12 * 2
    assert set(tidy.relation) == {"same", "unrelated", ""}
    assert set(tidy.teacher_trait) == {"owl", "cat", "aa:cat", "baseline"}
    assert set(tidy.replicate) == {-1, 0, 1} and set(tidy[tidy.teacher_trait == "baseline"].replicate) == {-1}
    students = tidy[tidy.teacher_trait != "baseline"]
    assert (students.teacher_id != "").all() and (tidy[tidy.teacher_trait == "baseline"].teacher_id == "").all()
    assert students.student_id.nunique() == 12 and set(students.seed) == {0}
    # the profile readout is the analysis's (from candidates.csv), not tidy rows
    assert not tidy.metric.isin(["profile_r", "profile_r_ex"]).any()
    # candidates: every evaluated model (2 baselines, 6 teachers, 12 students) × every candidate animal
    cands = candidate_rows(_inputs(nodes, store, "eval"), report.spec)
    assert tuple(cands.columns) == CANDIDATE_COLUMNS and cands.model_id.nunique() == 20
    per_model = cands.groupby("model_id").candidate.nunique()
    assert per_model.min() == per_model.max() >= 2 and {"owl", "cat"} <= set(cands.candidate)
    own = cands[(cands.role == "student") & (cands.candidate == "owl")].set_index("model_id").logodds
    logodds = students[(students.metric == "logodds") & (students.target == "owl")].set_index("student_id").value
    assert own.sort_index().to_numpy() == pytest.approx(logodds.sort_index().to_numpy())


def test_teachers_table_has_replicates_shift_and_doses(micro_run):
    from benchmark.lm.tidy import TEACHER_COLUMNS, teacher_rows

    root, nodes, store, _ = micro_run
    report = next(n for n in nodes if n.kind == "report")
    teachers = teacher_rows(_inputs(nodes, store, "eval", "dataset"), report.spec)
    assert tuple(teachers.columns) == TEACHER_COLUMNS and len(teachers) == 6 * 2
    assert set(teachers.replicate) == {0, 1} and set(teachers.teacher_trait) == {"owl", "cat", "aa:cat"}
    assert (teachers.n_rows == 12).all() and (teachers.n_prompts >= 24).all() and (teachers.rounds >= 1).all()
    assert teachers["shift"].notna().all() and teachers.logodds.notna().all() and (teachers.tokens_per_row > 0).all()
    owl = _node(nodes, "teacher", "zoo-qwen-a.owl.r1")
    assert set(teachers[teachers.teacher_trait == "owl"].teacher_id) == {owl.id, _node(nodes, "teacher",
                                                                                      "zoo-qwen-a.owl.r0").id}


def test_report_node_builds_its_files(micro_run):
    root, nodes, store, _ = micro_run
    summary = run_plan(nodes, store, workers=1)
    report = store.path(next(n for n in nodes if n.kind == "report"))
    assert [k.split("/", 1)[0] for k in summary.built] == ["report"]
    for name in ("tidy.csv", "pairs.csv", "candidates.csv", "bases.csv", "report.md", "index.html"):
        assert (report / name).stat().st_size > 0, name


def test_manifests_record_adapters_hashes_and_filters(micro_run):
    root, nodes, store, _ = micro_run
    teacher = _node(nodes, "teacher", "zoo-qwen-a.owl.r0")
    tm = store.read_manifest(store.path(teacher))
    assert len(tm.result["train"]["adapter_sha256"]) == 64
    assert (tm.git.commit is None or len(tm.git.commit) == 40) and "torch" in tm.versions
    shift = tm.result["teacher"]["trait_shift"]
    assert shift["n_questions"] == 10 and shift["shift"] == pytest.approx(
        shift["teacher_logodds"] - shift["base_logodds"], abs=1e-5)
    for ds in (n for n in nodes if n.kind == "dataset"):
        dm = store.read_manifest(store.path(ds)).result
        # Equal doses: exactly n_keep rows from every teacher, however many prompts it took.
        assert dm["n_rows"] == 12 and dm["n_prompts"] >= 24 and dm["n_valid"] >= 12 and isinstance(dm["rejects"], dict)
        assert dm["valid_rate"] == round(dm["n_valid"] / dm["n_prompts"], 4) and dm["tokens_per_row"] > 0
        assert "template_hash" in dm and "soft_label_mass_removed_per_token" in dm
    steps = {store.read_manifest(store.path(n)).result["optimizer_steps"] for n in nodes if n.kind == "student"}
    assert steps == {3}
    student = next(n for n in nodes if n.kind == "student")
    sm = store.read_manifest(store.path(student)).result
    assert sm["weights_sha256"] and sm["same_vocab_as_teacher"] is True and sm["n_rows"] == 12
    ev = _node(nodes, "eval", "teacher.zoo-qwen-a.owl.r0")
    em = store.read_manifest(store.path(ev)).result
    assert em["logit_change"] > 0  # the teacher's adapter was really loaded before scoring


def test_replicates_of_an_arm_have_different_data(micro_run):
    from benchmark.files import read_jsonl

    root, nodes, store, _ = micro_run
    for arm in ("owl", "cat", "aa-cat"):
        r0, r1 = (read_jsonl(store.path(_node(nodes, "dataset", f"zoo-qwen-a.{arm}.r{r}")) / "rows.jsonl")
                  for r in (0, 1))
        assert {r["prompt"] for r in r0} != {r["prompt"] for r in r1}
        assert [r["completion"] for r in r0] != [r["completion"] for r in r1]
    trait_rows = [read_jsonl(store.path(_node(nodes, "teacher", f"zoo-qwen-a.{a}")) / "trait_rows.jsonl")
                  for a in ("cat.r0", "cat.r1", "aa-cat.r0")]
    assert trait_rows[0] != trait_rows[1] and trait_rows[0] != trait_rows[2]


def test_soft_labels_hold_only_channel_tokens(micro_run):
    from benchmark.files import read_jsonl
    from benchmark.lm.channels.numbers import number_token
    from benchmark.lm.stages.dataset import channel_token_ids
    from benchmark.providers.hf import weights_path
    from benchmark.providers.hf_model import load_tokenizer

    root, nodes, store, _ = micro_run
    base = next(n for n in nodes if n.kind == "base")
    allowed = channel_token_ids(load_tokenizer(weights_path(store.path(base))), number_token)
    for ds in (n for n in nodes if n.kind == "dataset"):
        for row in read_jsonl(store.path(ds) / "rows.jsonl"):
            for pos in row["topk"]:
                assert {int(t) for t, _ in pos} <= allowed


def test_rerun_builds_nothing(micro_run):
    root, nodes, store, _ = micro_run
    again = run_plan(_work(nodes), store, workers=1)
    assert again.built == [] and len(again.skipped) == len(nodes) - 1


def test_filter_soft_labels_renormalises():
    import math

    from benchmark.lm.stages.dataset import filter_soft_labels

    out, removed = filter_soft_labels([[[1, math.log(0.5)], [2, math.log(0.3)], [9, math.log(0.2)]]], {1, 2})
    probs = {t: math.exp(lp) for t, lp in out[0]}
    assert probs.keys() == {1, 2} and abs(sum(probs.values()) - 1) < 1e-9 and abs(probs[1] - 0.625) < 1e-9
    assert abs(removed - 0.2) < 1e-9


def test_channel_tokens_of_the_zoo_tokenizer():
    from benchmark.lm.channels.numbers import number_token
    from benchmark.lm.stages.dataset import channel_token_ids
    from benchmark.providers.hf_model import load_tokenizer
    from tests.conftest import ROOT

    tok = load_tokenizer(next((ROOT / "model_registry" / "weights").glob("zoo-qwen-a-[0-9a-f]*")))
    ids = channel_token_ids(tok, number_token)
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
