"""Recipe/tokenizer compatibility is a plan-time check (issue 24 point 3).

A distill student trains on its teacher's token-level log-probs, so it needs the teacher's vocabulary. Before
this check a copy of the default suite with a Qwen2.5 student passed `validate` and `plan` and stopped at the
student stage after every teacher and dataset was built. Now `validate`, `plan` and `run` refuse it with one line
naming the suite file, the pair and the fix, from registry facts alone (benchmark/lm/recipes.py), and the facts
agree with the real tokenizers the student stage compares.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from benchmark.errors import UserError
from benchmark.lm.recipes import check_recipes, recipe_compatible, tokenizer_id
from benchmark.lm.settings import LMSettings
from benchmark.registry import Registry
from benchmark.specs import SuiteSpec
from tests.conftest import ROOT, run_cli


def _one_line(r, *needles: str) -> str:
    err = r.stderr.strip()
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], err[-3000:])
    assert "Traceback" not in err and len(err.splitlines()) == 1, err[-3000:]
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def test_the_issue_example_is_refused_by_validate_plan_and_run_naming_file_pair_and_fix(project_copy: Path,
                                                                                        tmp_path: Path) -> None:
    """A copy of `default` with qwen2.5-0.5b-instruct among the students (the issue's example)."""
    suite = yaml.safe_load((ROOT / "tasks" / "suites" / "default.yaml").read_text(encoding="utf-8"))
    suite["name"] = "fam"
    suite["students"] = ["qwen2.5-0.5b-instruct", *suite["students"]]
    path = project_copy / "tasks" / "suites" / "fam.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False), encoding="utf-8")
    env = {"SLBENCH_ROOT": str(project_copy)}
    store = tmp_path / "store"
    needles = ("fam.yaml: suite fam: pair zoo-qwen-a → qwen2.5-0.5b-instruct (and 5 more pairs)",
               "objective 'distill' needs the teacher's vocabulary", "settings.student.objective: sft",
               "tasks/suites/real-smol.yaml")
    _one_line(run_cli("validate", str(path), env=env), *needles)
    _one_line(run_cli("plan", "fam", "--store", str(store), env=env), *needles)
    _one_line(run_cli("run", "fam", "--store", str(store), env=env), *needles)
    assert not store.exists(), "a refused suite wrote into the store"
    # The same matrix with the recipe that works across tokenizers plans.
    suite["settings"]["student"]["objective"] = "sft"
    path.write_text(yaml.safe_dump(suite, sort_keys=False), encoding="utf-8")
    ok = run_cli("validate", str(path), env=env)
    assert ok.returncode == 0 and ": ok — lm suite 'fam'" in ok.stdout, (ok.stdout, ok.stderr)


def _suite(teachers: list[str], students: list[str]) -> SuiteSpec:
    return SuiteSpec.model_validate({"name": "x", "track": "lm", "teachers": teachers, "students": students,
                                     "traits": ["owl", "cat"], "seeds": 1})


def test_two_zoo_tokenizer_versions_are_two_vocabularies() -> None:
    reg = Registry()
    distill = LMSettings.model_validate({"student": {"objective": "distill"}, "dataset": {"top_k": 8}})
    check_recipes(_suite(["zoo-qwen-a", "zoo-llama"], ["zoo-gpt2", "zoo-qwen-b"]), distill, reg)  # words-v1 only
    with pytest.raises(UserError, match=r"pair zoo2-qwen-a → zoo-qwen-a: .* teacher zoo2-qwen-a \(tokenizer "
                                        r"zoo/words-v2\) and student zoo-qwen-a \(tokenizer zoo/words-v1\)"):
        check_recipes(_suite(["zoo2-qwen-a"], ["zoo-qwen-a", "zoo2-llama"]), distill, reg)
    sft = LMSettings.model_validate({"student": {"objective": "sft"}})
    check_recipes(_suite(["zoo2-qwen-a"], ["zoo-qwen-a"]), sft, reg)  # text: any pair


def test_the_rule() -> None:
    reg = Registry()
    smol, qwen, gpt = reg.model("smollm2-135m-instruct"), reg.model("qwen2.5-0.5b-instruct"), reg.model("gpt-4.1-nano")
    assert recipe_compatible(smol, smol, "distill") is None
    assert recipe_compatible(smol, qwen, "sft") is None
    assert "do not share one" in (recipe_compatible(smol, qwen, "distill") or "")
    assert "API model" in (recipe_compatible(gpt, smol, "distill") or "")
    # Two sizes of a family share a vocabulary only once the registry says so.
    big = reg.model("qwen2.5-7b-instruct")
    assert recipe_compatible(big, qwen, "distill") is not None
    declared = [m.model_copy(update={"tokenizer": "qwen2.5"}) for m in (big, qwen)]
    assert recipe_compatible(*declared, "distill") is None
    assert tokenizer_id(declared[0]) == "qwen2.5" and tokenizer_id(gpt) is None


def test_the_tokenizer_key_is_not_hashed_and_is_checked(tmp_path: Path) -> None:
    """Declaring a vocabulary changes no node id (it states a fact; nothing computed changes)."""
    from benchmark.registry import validate_file

    qwen = Registry().model("qwen2.5-0.5b-instruct")
    assert qwen.model_copy(update={"tokenizer": "qwen2.5"}).spec_id == qwen.spec_id
    fam = {"family": "mine", "defaults": {"provider": "hf", "tokenizer": "Not A Slug!"},
           "models": [{"name": "m-1", "source": "org/m-1", "lineage": {"init": "m-1"}}]}
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(fam), encoding="utf-8")
    with pytest.raises(UserError, match="tokenizer"):
        validate_file(path)


def test_the_derived_ids_agree_with_the_real_vocabularies() -> None:
    """What plan decides from the registry is what the student stage measures: the committed zoo builds' tokenizer
    files have one vocabulary (tokenizer_sha) per derived id, and different ids have different vocabularies."""
    from transformers import PreTrainedTokenizerFast

    from benchmark.lm.stages.common import tokenizer_sha
    from benchmark.zoo.build import committed_dir

    reg = Registry()
    assert tokenizer_id(reg.model("zoo-qwen-a")) == tokenizer_id(reg.model("zoo-gpt2")) == "zoo/words-v1"
    assert tokenizer_id(reg.model("zoo2-qwen-a")) == "zoo/words-v2"
    shas: dict[str, set[str]] = {}
    for name, model in reg.models.items():
        if model.provider != "zoo":
            continue
        directory = committed_dir(model, ROOT)
        assert directory is not None, name
        tok = PreTrainedTokenizerFast(tokenizer_file=str(directory / "tokenizer.json"))
        shas.setdefault(tokenizer_id(model) or "", set()).add(tokenizer_sha(tok))
    assert set(shas) == {"zoo/words-v1", "zoo/words-v2"}
    assert all(len(v) == 1 for v in shas.values()), shas
    assert shas["zoo/words-v1"] != shas["zoo/words-v2"]
