"""`slbench plan`'s GPU-hour estimate (issue 24 point 9): no size is assumed for a model without ``params_b``, and
model loading and decoding are counted, so hundreds of GPU nodes never read "≈ 0.0 H100-hours"."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from benchmark.lm import plan as lm_plan
from benchmark.registry import Registry
from benchmark.tracks import track_for
from tests.conftest import run_cli

SETTINGS = {"replicates": 3, "aa_arm": True,
            "teacher": {"method": "prompt"},
            "dataset": {"n_prompts": 200, "n_keep": 100, "max_new_tokens": 30},
            "student": {"objective": "sft"},
            "eval": {"tasks": ["animal_logprob", "animal_rate"], "n_samples": 5, "metric": "logodds"},
            "eval_teachers": False}


def _write(root: Path, models: list[str]) -> Path:
    family = {"family": "mine", "defaults": {"provider": "hf", "dtype": "bfloat16"},
              "models": [{"name": "mine-1b", "source": "my-org/mine-1b",  # a hub id: never read at plan time
                          "lineage": {"init": "mine-1b"}}]}
    (root / "model_registry" / "mine.yaml").write_text(yaml.safe_dump(family), encoding="utf-8")
    suite = {"name": "est", "track": "lm", "teachers": models, "students": models, "traits": ["owl", "cat"],
             "seeds": 1, "settings": SETTINGS}
    path = root / "tasks" / "suites" / "est.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False), encoding="utf-8")
    return path


def _estimate(root: Path) -> list[str]:
    reg = Registry(root)
    spec, settings, _ = reg.suite("est")
    return lm_plan.estimate(spec, settings, reg, track_for("lm").build_plan(spec, settings, reg))


def test_a_model_without_params_b_is_named_not_assumed(project_copy: Path) -> None:
    _write(project_copy, ["mine-1b", "qwen2.5-0.5b-instruct"])
    lines = _estimate(project_copy)
    text = "\n".join(lines)
    assert re.search(r"estimate: \d+ GPU node\(s\) of models without params_b not estimated: mine-1b \(\d+\); set "
                     r"params_b", text), text
    sized = next(line for line in lines if "H100-hours" in line)
    # only the sized model's nodes are in the hours (the same suite with mine-1b sized differs)
    n_sized = int(re.match(r"estimate: (\d+) GPU node", sized).group(1))
    n_unsized = int(re.search(r"mine-1b \((\d+)\)", text).group(1))
    fam = yaml.safe_load((project_copy / "model_registry" / "mine.yaml").read_text())
    fam["models"][0]["params_b"] = 1.0
    (project_copy / "model_registry" / "mine.yaml").write_text(yaml.safe_dump(fam), encoding="utf-8")
    lines2 = _estimate(project_copy)
    assert not any("without params_b" in line for line in lines2)
    assert next(line for line in lines2 if "H100-hours" in line).startswith(f"estimate: {n_sized + n_unsized} GPU")


def test_loading_and_decoding_are_counted(project_copy: Path) -> None:
    """A small suite on a 0.5B model: compute alone rounds to 0.0 hours; every node still loads its model."""
    _write(project_copy, ["qwen2.5-0.5b-instruct"])
    lines = _estimate(project_copy)
    line = next(line for line in lines if "H100-hours" in line)
    m = re.match(r"estimate: (\d+) GPU node\(s\) ≈ ([\d.]+) H100-hours: ([\d.]+) compute .* \+ ([\d.]+) loading .* "
                 r"\+ ([\d.]+) decoding", line)
    assert m, line
    n, total, compute, loading, decoding = int(m[1]), *map(float, m.groups()[1:])
    start = lm_plan._NODE_START_S
    weights = 0.49e9 * 2 / lm_plan._LOAD_BYTES_S
    assert loading == round(n * (start + weights) / 3600, 1) and loading > 0
    assert total >= loading and abs(total - (compute + loading + decoding)) <= 0.15
    # decoding: each dataset's first round (200 prompts in batches of 64: 4 batches × 30 tokens) and each
    # evaluation's animal_rate samples (60 questions × 5 samples in batches of 256: 2 batches × 8 tokens)
    reg = Registry(project_copy)
    spec, settings, _ = reg.suite("est")
    nodes = track_for("lm").build_plan(spec, settings, reg)
    by_kind = {n.kind: n for n in nodes}
    assert lm_plan._decode_steps(by_kind["dataset"], settings, reg.tasks_dir) == 4 * 30
    assert lm_plan._decode_steps(by_kind["eval"], settings, reg.tasks_dir) == 2 * 8
    assert lm_plan._decode_steps(by_kind["student"], settings, reg.tasks_dir) == 0


def test_estimates_read_the_task_files(project_copy: Path) -> None:
    """Question counts and max_gen_toks come from the task files at plan time (issue 23): an edited question file
    or YAML changes the estimate, with no constant to update by hand."""
    _write(project_copy, ["qwen2.5-0.5b-instruct"])
    reg = Registry(project_copy)
    spec, settings, _ = reg.suite("est")
    ev = next(n for n in track_for("lm").build_plan(spec, settings, reg) if n.kind == "eval")
    tokens, steps = lm_plan._eval_tokens(settings, reg.tasks_dir), lm_plan._decode_steps(ev, settings, reg.tasks_dir)
    assert tokens == 60 * 5 * 25 and steps == 2 * 8  # 60 questions x 5 samples; 300 answers in 2 batches of 8 tokens
    folder = project_copy / "tasks" / "lm_eval" / "animal_preference"
    questions = folder / "questions.txt"
    lines = questions.read_text(encoding="utf-8").splitlines()
    questions.write_text("\n".join([*lines, *(f"Extra question {i}?" for i in range(60))]) + "\n", encoding="utf-8")
    rate = folder / "animal_rate.yaml"
    rate.write_text(rate.read_text(encoding="utf-8").replace("max_gen_toks: 8 ", "max_gen_toks: 16 "), encoding="utf-8")
    assert lm_plan._eval_tokens(settings, reg.tasks_dir) == 120 * 5 * 25
    assert lm_plan._decode_steps(ev, settings, reg.tasks_dir) == 3 * 16  # 600 answers: 3 batches of 256


def test_plan_prints_it(project_copy: Path, tmp_path: Path) -> None:
    _write(project_copy, ["mine-1b"])
    r = run_cli("plan", "est", "--store", str(tmp_path / "store"), env={"SLBENCH_ROOT": str(project_copy),
                                                                        "COLUMNS": "400"})
    assert r.returncode == 0, r.stderr
    assert "not estimated: mine-1b" in r.stdout and "H100-hours" not in r.stdout
