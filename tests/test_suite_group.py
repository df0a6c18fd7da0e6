"""Suite groups (benchmark.groups, SuiteGroup): the spec, registry dispatch and one merged plan (fast tier), and a
tiny group run end to end through the CLI (published parts with valid bundles, a byte-stable summary; slow tier)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from benchmark.errors import UserError
from benchmark.groups import plan_group
from benchmark.registry import Registry, validate_file
from benchmark.specs import SuiteGroup
from tests.conftest import ROOT, run_cli


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _part(name: str, channel: str, capability: str) -> dict:
    """A tiny zoo2 part: one base, K = 2, the same teacher recipe in every part (so parts share teachers)."""
    return {
        "name": name, "track": "lm", "teachers": ["zoo2-qwen-a"], "students": ["zoo2-qwen-a"],
        "traits": ["owl", "cat"], "seeds": 1,
        "settings": {
            "replicates": 2,
            "aa_arm": True,
            "teacher": {"n_rows": 32, "min_shift": None, "train": {
                "lora": {"r": 4, "alpha": 8, "init_seed": 0}, "max_steps": 3, "batch_size": 16, "grad_accum": 1,
                "lr": 2.0e-3}},
            "dataset": {"channel": channel, "judge": "rule", "n_prompts": 16, "max_prompts": 160, "n_keep": 6,
                        "temperature": 1.0, "max_new_tokens": 40, "top_k": 8},
            "student": {"objective": "distill", "train": {"lora": None, "max_steps": 2, "batch_size": 6,
                                                          "grad_accum": 1, "lr": 1.0e-3}},
            "eval": {"tasks": ["animal_logprob", capability], "n_samples": 1, "limit": 4},
            "analysis": {"n_perm": 200},
        },
    }


@pytest.fixture
def group_project(project_copy: Path) -> Path:
    """The project copy with two tiny parts (code, cot-zoo) and a group over them."""
    suites = project_copy / "tasks" / "suites"
    _write(suites / "tiny-code.yaml", _part("tiny-code", "code", "capability_code"))
    _write(suites / "tiny-cot.yaml", _part("tiny-cot", "cot-zoo", "capability_cot_zoo"))
    _write(suites / "tiny.yaml", {"name": "tiny", "description": "two channels", "parts": ["tiny-code", "tiny-cot"]})
    return project_copy


# -- the spec and the registry --------------------------------------------------------------------------------

@pytest.mark.parametrize(("data", "match"), [
    ({"name": "g", "parts": ["a"], "extra": 1}, "extra"),
    ({"name": "g", "parts": []}, "parts"),
    ({"name": "g", "parts": ["a", "a"]}, "listed twice"),
    ({"name": "g", "parts": ["g"]}, "own parts"),
    ({"name": "g", "parts": ["Bad Name"]}, "suite name"),
    ({"name": "G!", "parts": ["a"]}, "name"),
])
def test_group_spec_rejects(data, match):
    from benchmark.specs_base import parse_spec

    with pytest.raises(UserError, match=match):
        parse_spec(SuiteGroup, data, "g.yaml")


def test_registry_tells_groups_from_suites(group_project):
    reg = Registry(group_project)
    assert "tiny" in reg.group_names() and "tiny" not in reg.suite_names()
    assert {"tiny-code", "tiny-cot"} <= set(reg.suite_names())
    assert reg.group("tiny-code") is None
    group = reg.group("tiny")
    assert group is not None and group.parts == ["tiny-code", "tiny-cot"]
    with pytest.raises(UserError, match="a suite group"):
        reg.suite("tiny")
    assert "suite group 'tiny'" in validate_file(group_project / "tasks" / "suites" / "tiny.yaml")


@pytest.mark.parametrize(("parts", "match"), [
    (["tiny-code", "tiny-cdoe"], r"parts\[1\]: unknown suite 'tiny-cdoe'"),
    (["tiny-code", "other"], r"parts\[1\]: 'other' is a suite group"),
])
def test_group_bad_parts(group_project, parts, match):
    suites = group_project / "tasks" / "suites"
    _write(suites / "other.yaml", {"name": "other", "parts": ["tiny-cot"]})
    _write(suites / "bad.yaml", {"name": "bad", "parts": parts})
    with pytest.raises(UserError, match=match):
        Registry(group_project).group("bad")


def test_group_part_name_must_match_its_file(group_project):
    suites = group_project / "tasks" / "suites"
    _write(suites / "renamed.yaml", _part("something-else", "code", "capability_code"))
    _write(suites / "bad.yaml", {"name": "bad", "parts": ["renamed"]})
    with pytest.raises(UserError, match="names itself 'something-else'"):
        Registry(group_project).group("bad")


def test_committed_groups_validate():
    reg = Registry(ROOT)
    assert {"channels", "paper-gpt-channels"} <= set(reg.group_names())
    for name in reg.group_names():
        assert reg.group(name) is not None


# -- the merged plan ------------------------------------------------------------------------------------------

def test_plan_group_merges_shared_nodes(group_project):
    reg = Registry(group_project)
    group = reg.group("tiny")
    assert group is not None
    parts, nodes = plan_group(reg, group)
    keys = [n.key for n in nodes]
    assert len(keys) == len(set(keys))
    assert set(keys) == {n.key for p in parts for n in p.nodes}
    teachers = [{n.key for n in p.nodes if n.kind == "teacher"} for p in parts]
    assert teachers[0] == teachers[1] and len(teachers[0]) == 6  # same recipe and seeds: the same teachers
    datasets = [{n.key for n in p.nodes if n.kind == "dataset"} for p in parts]
    assert not datasets[0] & datasets[1]  # each channel writes its own data
    position = {k: i for i, k in enumerate(keys)}
    assert all(position[d] < position[n.key] for n in nodes for d in n.deps if d in position)  # deps first
    assert [p.channel for p in parts] == ["code", "cot-zoo"]


# -- a tiny group end to end ----------------------------------------------------------------------------------

@pytest.mark.slow  # ~40 s on an idle 2-core machine (18 teachers' worth of tiny nodes), minutes under load
def test_group_run_publishes_parts_and_summary(group_project, tmp_path):
    shutil.copytree(ROOT / "model_registry" / "weights", group_project / "model_registry" / "weights",
                    ignore=shutil.ignore_patterns("zoo-*"))
    env = {"SLBENCH_ROOT": str(group_project), "SLBENCH_STORE": str(tmp_path / "store")}
    plan = run_cli("plan", "tiny", env=env)
    assert plan.returncode == 0, plan.stderr
    assert "suite group 'tiny': 2 parts" in plan.stdout
    res = run_cli("run", "tiny", "--workers", "1", env=env, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    results = group_project / "results" / "suites"
    for part in ("tiny-code", "tiny-cot"):
        bundle = results / part / "bundle.json"
        assert bundle.is_file()
        check = run_cli("validate", str(bundle), env=env)
        assert check.returncode == 0, check.stdout + check.stderr
        assert "Capability side-checks" in (results / part / "report.md").read_text()
    summary = results / "tiny"
    cells = pd.read_csv(summary / "cells.csv")
    assert set(cells["part"]) == {"tiny-code", "tiny-cot"} and set(cells["channel"]) == {"code", "cot-zoo"}
    part_pairs = pd.read_csv(results / "tiny-code" / "pairs.csv")
    mine = cells[cells["part"] == "tiny-code"].drop(columns=["part", "channel", "readout"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(mine, part_pairs, check_dtype=False)  # the parts' own numbers, unchanged
    assert len(part_pairs) == 2 and list(part_pairs["target"]) == ["owl", "placebo:cat"]  # one pair, its placebo
    cap = pd.read_csv(summary / "capability.csv")
    assert set(cap["metric"]) == {"capability_code", "capability_cot_zoo"}
    assert len(cap) == 2 * 3 * 2  # 2 parts x 3 arms (owl, cat, A/A cat) x 2 replicates, one student each
    meta = json.loads((summary / "group.json").read_text())
    assert [p["name"] for p in meta["parts"]] == ["tiny-code", "tiny-cot"]
    md = (summary / "report.md").read_text()
    assert "tiny-code and tiny-cot share 6 teacher replicates" in md
    before = {f.name: f.read_bytes() for f in summary.iterdir()}
    again = run_cli("report", "tiny", env=env)
    assert again.returncode == 0, again.stderr
    assert {f.name: f.read_bytes() for f in summary.iterdir()} == before  # the summary is a function of the parts
    status = run_cli("status", "tiny", env=env)
    assert status.returncode == 0 and "group summary:" in status.stdout and "not yet" not in status.stdout


def test_plan_and_status_of_a_group_in_an_empty_store(group_project, tmp_path):
    env = {"SLBENCH_ROOT": str(group_project), "SLBENCH_STORE": str(tmp_path / "store")}
    res = run_cli("plan", "tiny", "--format", "json", env=env)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["group"] == "tiny" and [p["suite"] for p in doc["parts"]] == ["tiny-code", "tiny-cot"]
    assert all(not n["cached"] for p in doc["parts"] for n in p["nodes"])
    status = run_cli("status", "tiny", env=env)
    assert status.returncode == 0, status.stderr
    assert "tiny-code: 0 of" in status.stdout and "group summary: not yet" in status.stdout
    export = run_cli("export", "tiny", env=env)
    assert export.returncode == 2 and "a suite group" in export.stderr
