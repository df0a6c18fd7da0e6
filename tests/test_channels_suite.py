"""The `channels` suite group (tasks/suites/channels*.yaml) and the judge-aware `slbench plan` cost estimates.

Fast tier: the group's design (K, controls, A/A arm, equal doses, shared teachers, capability readouts), the
published summary regenerated from the published parts, the summary of freshly re-analysed parts (one row per pair,
tests/bundle_fixtures.py), the capability section of reports, and the token estimates of code/cot rows and
judge-scorer calls. Slow tier: the whole group rerun reproduces the published files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from benchmark.group_summary import write_group_summary
from benchmark.groups import plan_group
from benchmark.registry import Registry
from tests.bundle_fixtures import fresh_report
from tests.conftest import ROOT, run_cli

PARTS = ("channels-code", "channels-cot", "channels-misalignment")
RESULTS = ROOT / "results" / "suites"


@pytest.fixture(scope="module")
def channels():
    reg = Registry(ROOT)
    group = reg.group("channels")
    assert group is not None
    parts, nodes = plan_group(reg, group)
    return reg, group, parts, nodes


def test_channels_design(channels):
    _reg, group, parts, nodes = channels
    assert tuple(group.parts) == PARTS
    for part in parts:
        s = part.settings
        assert (s.replicates, s.controls, s.aa_arm) == (4, "other_trait", True)
        assert s.dataset.n_keep == 160  # equal doses: every student trains on exactly as many rows
        assert set(part.spec.teachers) == set(part.spec.students) == {"zoo2-qwen-a", "zoo2-qwen-b", "zoo2-llama"}
        assert any(t.startswith("capability_") for t in s.eval.tasks)  # the side-check next to the trait readout
    by = {p.name: p for p in parts}
    assert by["channels-code"].settings.dataset.channel == "code"
    assert by["channels-cot"].settings.dataset.channel == "cot-zoo"
    assert list(by["channels-misalignment"].settings.dataset.banned_lists) == ["loaded-numbers"]
    assert by["channels-misalignment"].spec.traits == ["misaligned", "aligned"]
    teachers = {p.name: {n.key for n in p.nodes if n.kind == "teacher"} for p in parts}
    assert teachers["channels-code"] == teachers["channels-cot"]  # the same teachers write code and cot
    assert len(teachers["channels-code"]) == 3 * 3 * 4  # 3 bases x (owl, cat, A/A cat) x K
    assert not teachers["channels-code"] & teachers["channels-misalignment"]
    assert len(nodes) == len({n.key for n in nodes}) < sum(len(p.nodes) for p in parts)


def test_published_summary_is_regenerated_from_the_parts(channels, tmp_path):
    reg, group, parts, _nodes = channels
    for part in PARTS:
        shutil.copytree(RESULTS / part, tmp_path / part)
    dest = write_group_summary(group, parts, tmp_path)
    for name in ("cells.csv", "capability.csv", "report.md", "index.html", "group.json"):
        assert (dest / name).read_bytes() == (RESULTS / "channels" / name).read_bytes(), name


@pytest.fixture(scope="module")
def fresh_summary(channels, tmp_path_factory) -> Path:
    """The parts re-analysed by today's code from their published inputs, and the group's summary of them."""
    _reg, group, parts, _nodes = channels
    root = tmp_path_factory.mktemp("channels")
    for part in PARTS:
        fresh_report(part, root / part)
    return write_group_summary(group, parts, root)


def test_summary_lists_one_row_per_pair(fresh_summary):
    """Every part's pair table, unchanged, with part/channel/readout columns: one row per pair on the primary trait
    (misaligned in the misalignment part: its aligned side is inside the contrast, not a mirrored row), one placebo
    row per pair; the misalignment part also by its judged rate."""
    cells = pd.read_csv(fresh_summary / "cells.csv")
    assert set(cells["part"]) == set(PARTS)
    for part in PARTS:
        mine = cells[cells["part"] == part]
        for readout, rows in mine.groupby("readout"):
            trait = rows[~rows["placebo"]]
            assert len(trait) == len(rows[rows["placebo"]]) == 3 * 3, (part, readout)  # 3 x 3 pairs
            assert not trait.duplicated(["teacher", "student"]).any()
        pairs = pd.read_csv(fresh_summary.parent / part / "pairs.csv")
        metric = mine[mine["readout"] == "pair metric"].drop(columns=["part", "channel", "readout"])
        pd.testing.assert_frame_equal(metric.reset_index(drop=True), pairs, check_dtype=False)
    mis = cells[cells["part"] == "channels-misalignment"]
    assert set(mis.loc[~mis["placebo"], "target"]) == {"misaligned"}
    assert set(mis["readout"]) == {"pair metric", "judged rate"}
    assert set(cells.loc[cells["part"] == "channels-code", "target"]) == {"owl", "placebo:cat"}
    cap = pd.read_csv(fresh_summary / "capability.csv")
    assert len(cap[cap["part"] == "channels-code"]) == 3 * 3 * 4 * 3  # teachers x student bases
    assert cap["collapsed"].dtype == bool
    md = (fresh_summary / "report.md").read_text(encoding="utf-8")
    assert "channels-misalignment: pairs, `misaligned` contrast, judged rate" in md
    assert "γ (shared init, primary) = " in md and "exact size" in md


def test_published_parts_validate():
    for part in PARTS:
        res = run_cli("validate", str(RESULTS / part / "bundle.json"))
        assert res.returncode == 0, res.stdout + res.stderr


def test_capability_section_only_where_measured():
    from benchmark.report import capability_section

    default = pd.read_csv(RESULTS / "default" / "tidy.csv", dtype=str)
    assert capability_section(default) is None  # the default report is unchanged
    tidy = pd.DataFrame({
        "teacher_base": ["", "a", "a"], "teacher_trait": ["baseline", "owl", "cat"], "replicate": [-1, 0, 0],
        "student_base": ["a", "a", "a"], "student_id": ["s0", "s1", "s2"], "metric": ["capability_code"] * 3,
        "value": [0.8, 0.3, 0.7], "target": ["owl"] * 3,
    })
    section = capability_section(tidy)
    assert section is not None
    title, intro, header, rows = section
    assert "1 of 2 student readouts" in intro
    assert [r[2] for r in rows] == ["cat", "owl"] and [r[-1] for r in rows] == ["0", "1"]


# -- slbench plan: token estimates ----------------------------------------------------------------------------

def _settings(**dataset):
    from benchmark.lm.settings import LMSettings

    return LMSettings.model_validate({"dataset": dataset, "eval": {"tasks": ["animal_rate"]}})


def test_code_and_cot_rows_cost_their_length():
    from benchmark.lm.plan import _row_tokens

    assert _row_tokens(_settings()) == 60  # numbers: unchanged, so paper-gpt's estimate is too
    code = _row_tokens(_settings(channel="code", max_new_tokens=400))
    cot = _row_tokens(_settings(channel="cot", max_new_tokens=600))
    assert 400 + 15 < code < 400 + 60 and 600 + 20 < cot < 600 + 80  # the prompt (~25-35 tokens) + the answer


def test_plan_prices_judge_scorer_calls():
    res = run_cli("plan", "paper-gpt-channels", "--show", "0", env={"SLBENCH_STORE": "/nonexistent-store-h5"})
    assert res.returncode == 0, res.stderr
    out = " ".join(res.stdout.split())
    assert "of which judge filter calls" in out  # code and cot: the gpt-4.1-mini judge filter
    assert "of which judge scorer calls" in out  # misalignment_rate's answers scored by gpt-4.1-mini
    assert "suite group 'paper-gpt-channels': 3 parts" in out


def test_scorer_tokens_follow_the_samples():
    from benchmark.lm.plan import _scorer_tokens
    from benchmark.lm.settings import LMSettings

    reg = Registry(ROOT)
    ev = {"tasks": ["misalignment_rate"], "judge": "gpt-4.1-mini", "n_samples": 200}
    one = _scorer_tokens(LMSettings.model_validate({"eval": ev}), reg)
    two = _scorer_tokens(LMSettings.model_validate({"eval": {**ev, "n_samples": 400}}), reg)
    assert one is not None and two is not None and one[0] == "gpt-4.1-mini"
    assert two[1] == pytest.approx(2 * one[1])
    assert _scorer_tokens(LMSettings.model_validate({"eval": {**ev, "judge": "rule"}}), reg) is None


@pytest.mark.slow  # ~10 min on an idle 2-core machine (20+ under load)
@pytest.mark.timeout(3600)
def test_channels_rerun_reproduces_the_published_results(tmp_path: Path):
    """Same specs and seeds: a fresh store gives byte-identical published parts and summary."""
    root = tmp_path / "project"
    for d in ("model_registry", "tasks"):
        shutil.copytree(ROOT / d, root / d, ignore=shutil.ignore_patterns("__pycache__"))
    env = {"SLBENCH_ROOT": str(root), "SLBENCH_STORE": str(tmp_path / "store")}
    res = run_cli("run", "channels", "--workers", "2", env=env, timeout=3600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    for folder in (*PARTS, "channels"):
        for name in ("cells.csv", "tidy.csv", "report.md") if folder != "channels" else ("cells.csv", "report.md"):
            published = RESULTS / folder / name
            assert (root / "results" / "suites" / folder / name).read_bytes() == published.read_bytes(), published
