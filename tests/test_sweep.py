"""Sweeps (benchmark.sweep, analysis/sweep.py): the ``sweep:`` key's checks (one line naming file and key, exit 2),
levels as ordinary suites sharing nodes, the transfer-remaining interval's coverage, and a tiny defense sweep run end
to end on the committed zoo through the CLI (fast tier)."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from benchmark.analysis.sweep import diagonal_units, remaining
from benchmark.errors import UserError
from benchmark.registry import Registry
from benchmark.sweep import SUMMARY_COLUMNS, level_slug, plan_lines, plan_sweep
from tests.conftest import ROOT, run_cli

#: A 1-base sweep of the zoo: owl vs cat (and the A/A arm), 2 replicates, tiny teachers and students; levels none and sort.
TINY = {
    "name": "tiny-sweep", "track": "lm", "description": "sort vs none on one zoo base",
    "teachers": ["zoo-qwen-a"], "students": ["zoo-qwen-a"], "traits": ["owl", "cat"], "seeds": 1,
    "settings": {
        "replicates": 2,
        "aa_arm": True,  # a bundle must hold placebo rows to validate
        "teacher": {"n_rows": 16, "train": {"lora": {"r": 4, "alpha": 8, "init_seed": 0}, "max_steps": 2,
                                            "batch_size": 16, "grad_accum": 1, "lr": 5.0e-3}},
        "dataset": {"n_prompts": 12, "n_keep": 6, "temperature": 1.0, "max_new_tokens": 16, "top_k": 8},
        "student": {"objective": "distill", "train": {"lora": None, "max_steps": 2, "batch_size": 6,
                                                      "grad_accum": 1, "lr": 1.0e-3}},
        "eval": {"tasks": ["animal_logprob"], "n_samples": 1, "limit": 2},
        "analysis": {"n_perm": 100},
    },
    "sweep": {"settings.dataset.defense": ["none", "sort"]},
}


def _write(root: Path, name: str, data: dict) -> Path:
    path = root / "tasks" / "suites" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_level_slugs():
    assert [level_slug(v) for v in (None, "sort", 3, 1.5e-3, 2.0, True, {"r": 4, "alpha": 8}, "Mask Divergence")] == \
        ["none", "sort", "3", "0.0015", "2.0", "true", "r4-alpha8", "mask-divergence"]


@pytest.mark.parametrize(("sweep", "match"), [
    ({"settings.student.train.epoch": [1, 3]}, r"unknown setting 'epoch' \(did you mean 'epochs'\?\)"),
    ({"seeds": [1, 2]}, "not a setting path"),
    ({"settings.student.train.epochs.x": [1, 2]}, "is a value, not a block"),
    ({"settings.dataset.defense": ["sort"]}, "at least two levels"),
    ({"settings.dataset.defense": ["sort", "sort"]}, r"\[1\]: level 'sort' repeats level 0"),
    ({"settings.dataset.defense": ["none", "sorted"]}, r"settings.dataset.defense\[1\].*unknown defense 'sorted'"),
    ({"settings.student.train.epochs": [1, -3]}, r"settings.student.train.epochs\[1\].*'student.train.epochs'"),
    ({"settings.dataset.defense": "sort"}, "at least two levels"),
    ({"a": [1, 2], "b": [1, 2]}, "one setting path and its levels"),
    ({"settings.dataset.defense": ["none", "sort"], "reference": "shuffle"}, "reference 'shuffle' is not one of"),
])
def test_bad_sweeps_are_one_line_naming_file_and_key(project_copy, sweep, match):
    path = _write(project_copy, "bad-sweep", {**TINY, "name": "bad-sweep", "sweep": sweep})
    with pytest.raises(UserError, match=match) as err:
        Registry(project_copy).sweep("bad-sweep")
    assert str(path) in str(err.value) and "'sweep'" in str(err.value) and "\n" not in str(err.value)


def test_plan_time_errors_name_the_level(project_copy):
    data = copy.deepcopy(TINY)
    data["settings"]["dataset"]["channel"] = "code"
    data["sweep"] = {"settings.dataset.defense": ["none", "shuffle"]}
    _write(project_copy, "bad-sweep", {**data, "name": "bad-sweep"})
    res = run_cli("validate", str(project_copy / "tasks" / "suites" / "bad-sweep.yaml"),
                  env={"SLBENCH_ROOT": str(project_copy)})
    assert res.returncode == 2
    line = res.stderr.strip()
    assert "\n" not in line and "bad-sweep.yaml: key 'sweep': settings.dataset.defense[1] ('shuffle')" in line
    assert "transforms the numbers channel only" in line


def test_levels_are_ordinary_suites_sharing_upstream_nodes(project_copy):
    _write(project_copy, "tiny-sweep", TINY)
    plain = {k: v for k, v in TINY.items() if k != "sweep"}
    _write(project_copy, "tiny-plain", {**plain, "name": "tiny-plain"})
    reg = Registry(project_copy)
    assert "tiny-sweep" in reg.sweep_names() and "tiny-sweep" not in reg.suite_names()
    with pytest.raises(UserError, match="a sweep over settings.dataset.defense, not a suite"):
        reg.suite("tiny-sweep")
    level, level_settings, level_file = reg.suite("tiny-sweep.sort")  # a level is a suite of its own
    assert level.name == "tiny-sweep.sort" and level_settings.dataset.defense == "sort"
    assert level_file.name == "tiny-sweep.yaml" and reg.sweep("tiny-sweep.sort") is None
    with pytest.raises(UserError, match=r"unknown level of sweep 'tiny-sweep' 'tiny-sweep.srot' \(did you mean"):
        reg.suite("tiny-sweep.srot")
    sweep = reg.sweep("tiny-sweep")
    assert sweep.parts == ["tiny-sweep.none", "tiny-sweep.sort"] and sweep.reference_level.slug == "none"
    parts, nodes = plan_sweep(reg, sweep)
    none, sort = ({n.key for n in p.nodes} for p in parts)
    spec, settings, _ = reg.suite("tiny-plain")
    from benchmark.tracks import track_for

    unswept = {n.key for n in track_for("lm").build_plan(spec, settings, reg) if n.kind != "report"}
    assert {k for k in none if not k.startswith("report/")} == unswept  # level none is the un-swept suite
    upstream = {k for k in none if k.split("/")[0] in ("base", "teacher", "dataset")}
    assert upstream and upstream <= sort  # the defense changes only what comes after the datasets
    assert {k.split("/")[0] for k in sort - none} == {"defense", "student", "eval", "report"}
    assert len(nodes) == len(none | sort)
    lines = plan_lines(sweep, parts, nodes)
    assert "tiny-sweep.sort (settings.dataset.defense = 'sort')" in lines[2] and "shares" in lines[2]
    assert "adds 19 (defense 6, student 6, eval 6, report 1)" in lines[2]


# -- transfer remaining ----------------------------------------------------------------------------------------

def _units(rng: np.random.Generator, d_ref: float, rho: float, bases: int = 3, n_t: int = 4, n_c: int = 8):
    """Replicate values of a paired two-level design: the level keeps rho of the reference's treated shift."""
    rows_ref, rows_lvl = [], []
    for b in range(bases):
        drift = rng.normal(0, 0.2)  # a base's shared value, the same for both arms and levels
        for group, n in (("treated", n_t), ("control", n_c)):
            for r in range(n):
                unit = rng.normal(0, 0.25)  # the replicate's own teacher and dataset: shared by the two levels
                shift = d_ref if group == "treated" else 0.0
                key = {"teacher_base": f"b{b}", "group": group, "arm": group, "replicate": r}
                rows_ref.append({**key, "w": drift + shift + unit})
                rows_lvl.append({**key, "w": drift + rho * shift + 0.6 * unit + rng.normal(0, 0.15)})
    return pd.DataFrame(rows_lvl), pd.DataFrame(rows_ref)


def test_remaining_of_the_reference_is_exactly_one():
    _, ref = _units(np.random.default_rng(0), 0.5, 1.0)
    r = remaining(ref, ref)
    assert r.estimate == pytest.approx(1.0) and r.ci_low == pytest.approx(1.0) and r.ci_high == pytest.approx(1.0)


def test_remaining_interval_covers_at_its_nominal_rate():
    rng = np.random.default_rng(22)
    covered = bounded = 0
    n = 400
    for _ in range(n):
        lvl, ref = _units(rng, 0.6, 0.4)
        r = remaining(lvl, ref)
        covered += r.ci_low <= 0.4 <= r.ci_high
        bounded += r.bounded
    assert 0.92 <= covered / n <= 0.98 and bounded == n  # nominal 95 %; a clear reference gives finite intervals


def test_remaining_without_reference_transfer_is_unbounded():
    lvl, ref = _units(np.random.default_rng(1), 0.0, 0.0)
    r = remaining(lvl, ref)
    assert not r.bounded and r.ci_low == -np.inf and r.ci_high == np.inf


def test_diagonal_units_keep_same_model_students_of_the_design_arms():
    values = pd.DataFrame({"teacher_base": ["a", "a", "a", "a", ""], "arm": ["owl", "cat", "owl", "aa:owl", "baseline"],
                           "replicate": [0, 0, 0, 0, -1], "student_base": ["a", "a", "b", "a", "a"],
                           "w": [1.0, 0.2, 9.0, 5.0, 0.0]})
    out = diagonal_units(values, "owl", ["cat"])
    assert list(out["group"]) == ["treated", "control"] and list(out["w"]) == [1.0, 0.2]


# -- end to end ------------------------------------------------------------------------------------------------

def test_tiny_defense_sweep_runs_end_to_end(project_copy, tmp_path):
    shutil.copytree(ROOT / "model_registry" / "weights", project_copy / "model_registry" / "weights",
                    ignore=shutil.ignore_patterns("zoo2-*"))
    _write(project_copy, "tiny-sweep", TINY)
    env = {"SLBENCH_ROOT": str(project_copy), "SLBENCH_STORE": str(tmp_path / "store")}
    plan = run_cli("plan", "tiny-sweep", env=env)
    assert plan.returncode == 0, plan.stderr
    assert "tiny-sweep.sort (settings.dataset.defense = 'sort')" in plan.stdout
    res = run_cli("run", "tiny-sweep", "--workers", "2", env=env, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    results = project_copy / "results" / "suites"
    for level in ("tiny-sweep.none", "tiny-sweep.sort"):
        assert (results / level / "pairs.csv").is_file() and (results / level / "bundle.json").is_file()
    check = run_cli("validate", str(results / "tiny-sweep.sort" / "bundle.json"), env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    summary = pd.read_csv(results / "tiny-sweep" / "summary.csv")
    assert tuple(summary.columns) == SUMMARY_COLUMNS and list(summary["level"]) == ["none", "sort"]
    assert summary.loc[0, "remaining"] == pytest.approx(1.0)
    none_pairs = pd.read_csv(results / "tiny-sweep.none" / "pairs.csv")
    same = none_pairs[none_pairs["family"] == "same"]
    assert summary.loc[0, "d_level"] == pytest.approx(float(same["effect"].mean()))  # the level's own pair effect
    meta = json.loads((results / "tiny-sweep" / "sweep.json").read_text())
    assert meta["reference"] == "tiny-sweep.none" and [lv["value"] for lv in meta["levels"]] == ["none", "sort"]
    assert (results / "tiny-sweep" / "dose_response.png").stat().st_size > 1000
    store = tmp_path / "store"
    defense = next((store / "defense").iterdir())
    counts = json.loads((defense / "counts.json").read_text())
    changes = [json.loads(x) for x in (defense / "changes.jsonl").read_text().splitlines()]
    assert counts["defense"] == "sort" and counts["n_changed"] == len(changes) and counts["n_rows"] == 6
    rows = [json.loads(x) for x in (defense / "rows.jsonl").read_text().splitlines()]
    for c in changes:  # the changed rows are sorted, and their soft labels follow the rule
        row = rows[c["row"]]
        nums = [int(x) for x in c["after"].replace(",", " ").replace(";", " ").strip("[](){}. ").split()]
        assert nums == sorted(nums) and row["completion"] == c["after"]
        assert all(lab == [[t, 0.0]] for lab, t in zip(row["topk"][c["soft_labels_kept"]:],
                                                        row["completion_ids"][c["soft_labels_kept"]:], strict=True))
    before = {f.name: f.read_bytes() for f in (results / "tiny-sweep").iterdir()}
    again = run_cli("report", "tiny-sweep", env=env)
    assert again.returncode == 0, again.stderr
    assert {f.name: f.read_bytes() for f in (results / "tiny-sweep").iterdir()} == before
    rerun = run_cli("run", "tiny-sweep", env=env)
    assert rerun.returncode == 0 and "built 0 node(s)" in rerun.stdout


def test_committed_sweeps_validate_and_share_their_reference_nodes():
    from benchmark.registry import validate_file

    reg = Registry()
    assert {"defenses", "axes"} <= set(reg.sweep_names())
    for name in reg.sweep_names():
        assert "ok — sweep" in validate_file(reg.suite_path(name))
    defenses, axes = reg.sweep("defenses"), reg.sweep("axes")
    assert defenses.reference_level.value == "none" and axes.reference_level.value == 3
    none = plan_sweep(reg, defenses, check_local=False)[0][0]
    three = plan_sweep(reg, axes, check_local=False)[0][axes.reference]
    work = ("teacher", "dataset", "student", "eval")
    assert {n.key for n in none.nodes if n.kind in work} == {n.key for n in three.nodes if n.kind in work}


def test_the_reference_level_is_exactly_one_even_without_transfer():
    from benchmark.analysis.sweep import remaining_table

    lvl, ref = _units(np.random.default_rng(2), 0.0, 0.0)
    table = remaining_table({"none": ref, "sort": lvl}, "none")
    assert (table["none"].estimate, table["none"].ci_low, table["none"].ci_high) == (1.0, 1.0, 1.0)
    assert not table["sort"].bounded
