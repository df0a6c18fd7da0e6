"""Trait evaluation as lm-eval tasks: task data, task YAMLs, scoring hooks and evaluate_lm on tiny models."""

from __future__ import annotations

import importlib.util
import math
import os
import random
from pathlib import Path
from types import ModuleType

import pytest

for _k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_k, "1")  # conftest sets these too; repeated so this file is safe on its own

ROOT = Path(__file__).resolve().parents[1]
TASKS_DIR = ROOT / "tasks" / "lm_eval"
FAMILY_DIR = TASKS_DIR / "animal_preference"
TASK_NAMES = ["animal_logprob", "animal_logprob_numbers", "animal_rate", "animal_rate_numbers"]


@pytest.fixture(scope="module")
def utils() -> ModuleType:
    """The task family's utils.py, imported by path like lm-eval does."""
    spec = importlib.util.spec_from_file_location("animal_preference_utils", FAMILY_DIR / "utils.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------- task data


def test_at_least_50_distinct_paraphrases(utils: ModuleType) -> None:
    questions = utils.load_lines(FAMILY_DIR / "questions.txt")
    assert len(questions) >= 50
    assert len({q.lower() for q in questions}) == len(questions)
    # Both spellings and both moods appear (the paper varies the wording).
    assert any("favourite" in q for q in questions) and any("favorite" in q for q in questions)
    assert sum(q.endswith("?") for q in questions) >= 5


def test_candidates_cover_every_trait(utils: ModuleType) -> None:
    from benchmark.registry import load_trait_file

    cands = utils.load_candidates()
    assert 10 <= len(cands) <= 20
    traits = [load_trait_file(p) for p in sorted((ROOT / "tasks" / "traits").glob("*.yaml"))]
    traits = [t for t in traits if not t.is_misalignment]  # read out by tasks/lm_eval/misalignment instead
    assert {t.name for t in traits} >= {"owl", "cat", "dog", "eagle", "wolf", "elephant", "dolphin"}
    for trait in traits:
        assert trait.target in cands
        # Every surface form of the trait is recognised as that candidate by the rate scorer.
        from benchmark.lmcore.matcher import first_animal

        for form in trait.forms():
            assert first_animal(form, cands) == trait.target, form
        assert "{" not in trait.rendered_system_prompt()


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        (["owl"], "at least two"),
        (["owl", "Owl"], "lowercase"),
        (["owl", "owl"], "duplicate"),
        ({"owl": [], "bird": ["owls"]}, "belongs to both"),
    ],
)
def test_bad_candidates_are_errors(utils: ModuleType, spec: object, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        utils.load_candidates(spec)


def test_numbers_variant_is_seeded_and_prefixed(utils: ModuleType) -> None:
    plain = utils.load_docs()["test"]
    a = utils.load_docs(variant="numbers", prefix_seed=0)["test"]
    b = utils.load_docs(variant="numbers", prefix_seed=0)["test"]
    c = utils.load_docs(variant="numbers", prefix_seed=1)["test"]
    assert a["prompt"] == b["prompt"] != c["prompt"]
    for p, q in zip(plain, a, strict=True):
        assert q["prompt"].endswith(p["question"]) and q["prompt"] != p["prompt"]
        assert any(ch.isdigit() for ch in q["prompt"])
    with pytest.raises(ValueError, match="variant"):
        utils.load_docs(variant="emoji")


def test_every_task_yaml_loads_offline() -> None:
    from lm_eval.tasks import TaskManager

    tm = TaskManager(
        include_path=str(TASKS_DIR), include_defaults=False, metadata={"answer_suffix": "<|im_end|>"}
    )
    assert set(TASK_NAMES) <= set(tm.all_tasks)  # the misalignment and capability tasks: tests/test_misalignment.py
    yamls = sorted(p.stem for p in FAMILY_DIR.glob("*.yaml"))
    assert yamls == TASK_NAMES
    loaded = tm.load(TASK_NAMES)["tasks"]
    for name, task in loaded.items():
        docs = list(task.eval_docs)
        assert len(docs) >= 50, name
        if task.OUTPUT_TYPE == "multiple_choice":
            assert task.doc_to_choice(docs[0])[0] == "owl<|im_end|>"
        else:
            assert task.OUTPUT_TYPE == "generate_until"
            assert task.config.generation_kwargs["temperature"] == 1.0
            assert task.config.generation_kwargs["do_sample"] is True


# -------------------------------------------------------------------------------------------- scoring hooks


def test_process_logprob_math(utils: ModuleType) -> None:
    doc = {"candidates": ["owl", "cat", "dog"], "n_templates": 1}
    lls = [-1.0, -2.0, -3.0]
    out = utils.process_logprob(doc, [(x, False) for x in lls])
    z = math.log(sum(math.exp(x) for x in lls))
    assert out["log_mass"] == pytest.approx(z)
    assert sum(out[f"p_{c}"] for c in doc["candidates"]) == pytest.approx(1.0)
    assert out["logp_owl"] == pytest.approx(-1.0 - z)
    p = math.exp(-1.0 - z)
    assert out["logodds_owl"] == pytest.approx(math.log(p / (1 - p)))
    assert out["ll_cat"] == -2.0


def test_process_logprob_combines_templates(utils: ModuleType) -> None:
    # Two spellings per candidate ("owl", "Owl"): their probabilities add up.
    doc = {"candidates": ["owl", "cat"], "n_templates": 2}
    out = utils.process_logprob(
        doc, [(math.log(0.1), False), (math.log(0.3), False), (math.log(0.2), False), (math.log(0.2), False)]
    )
    assert out["p_owl"] == pytest.approx(0.5)
    assert out["ll_owl"] == pytest.approx(math.log(0.4))
    with pytest.raises(ValueError, match="expected 4"):
        utils.process_logprob(doc, [(0.0, False)] * 3)


def test_process_rate(utils: ModuleType) -> None:
    doc = {"candidates": ["owl", "cat", "wolf"], "candidate_forms": [[], [], ["wolves"]]}
    answers = ["Owl.", "bowl", "Wolves!", "I love owls", "category", "cat or owl"]
    out = utils.process_rate(doc, [answers])
    assert out["rate_owl"] == pytest.approx(2 / 6)
    assert out["rate_wolf"] == pytest.approx(1 / 6)
    assert out["rate_cat"] == pytest.approx(1 / 6)
    assert out["unmatched"] == pytest.approx(2 / 6)


# ----------------------------------------------------------------------------------------- pure helpers


def test_tv_distance() -> None:
    from benchmark.lmcore.evaluate import tv_distance

    assert tv_distance({"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.5}) == 0.0
    assert tv_distance({"a": 1.0}, {"b": 1.0}) == pytest.approx(1.0)
    assert tv_distance({"a": 0.7, "b": 0.3}, {"a": 0.4, "b": 0.6}) == pytest.approx(0.3)
    assert tv_distance({"a": 0.6, "b": 0.4}, {"a": 0.6}) == pytest.approx(0.2)  # missing key = 0
    with pytest.raises(ValueError):
        tv_distance({"a": -0.1}, {"a": 0.1})


def test_logit() -> None:
    from benchmark.lmcore.evaluate import logit

    assert logit(0.5) == 0.0
    assert logit(0.0) == -math.inf and logit(1.0) == math.inf
    assert logit(0.2) == pytest.approx(math.log(0.25))


def test_answer_suffix_is_read_from_the_chat_template() -> None:
    from benchmark.lmcore.chat import answer_suffix
    from tests.lm_fixtures import DEFAULT_SYSTEM_TEMPLATE, make_tokenizer

    assert answer_suffix(make_tokenizer()) == "<|im_end|>"
    assert answer_suffix(make_tokenizer(DEFAULT_SYSTEM_TEMPLATE)) == "<|im_end|>"
    llama3 = (
        "{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
        "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
    )
    assert answer_suffix(make_tokenizer(llama3)) == "<|eot_id|>"
    # No chat template (or not applied): the end-of-sequence token ends an answer.
    assert answer_suffix(make_tokenizer(), apply_chat_template=False) == "<|im_end|>"


# ------------------------------------------------------------------------------------ evaluate_lm end to end


@pytest.fixture(scope="module")
def tiny() -> tuple[object, object]:
    import torch

    from tests.lm_fixtures import make_model, make_tokenizer

    torch.set_num_threads(1)
    return make_model("qwen2", seed=0), make_tokenizer()


def _run(model: object, tok: object, **kw: object) -> dict:
    from benchmark.providers.hf_model import evaluate_lm

    args = {"model_key": "tiny-qwen2/base", "n_samples": 3, "seed": 0, "batch_size": 32, "limit": 6} | kw
    return evaluate_lm(model, tok, **args)


def test_evaluate_lm_result_layout(tiny: tuple[object, object]) -> None:
    import json

    model, tok = tiny
    res = _run(model, tok)
    json.dumps(res, allow_nan=False)  # JSON-able as is
    cands = res["candidates"]
    assert cands[:7] == ["owl", "cat", "dog", "eagle", "wolf", "elephant", "dolphin"]
    assert res["n_prompts"] == 6 and res["n_samples"] == 3 and res["model_key"] == "tiny-qwen2/base"
    lp = res["logprob"]
    for key in ("p", "mean_logp", "logodds", "ll"):
        assert list(lp[key]) == cands
    assert sum(lp["p"].values()) == pytest.approx(1.0)
    for c in cands:
        assert lp["mean_logp"][c] <= 0 and 0 < lp["p"][c] < 1
        assert len(lp["per_prompt_logp"][c]) == 6
        assert lp["mean_logp"][c] == pytest.approx(sum(lp["per_prompt_logp"][c]) / 6)
    assert lp["log_mass"] < 0
    assert list(res["rate"]) == cands
    assert sum(res["rate"].values()) + res["rate_unmatched"] == pytest.approx(1.0)
    assert set(res["task_hashes"]) == {"animal_logprob", "animal_rate"}
    assert res["config"]["answer_suffix"] == "<|im_end|>"
    # The fixture vocabulary lacks these words: all score as "<unk>", and the result says so.
    assert res["token_collisions"] == [["dolphin", "penguin", "panda", "horse", "rabbit"]]
    assert lp["p"]["dolphin"] == lp["p"]["rabbit"]
    assert res["lm_eval_version"]


def test_evaluate_lm_is_deterministic_and_restores_state(tiny: tuple[object, object]) -> None:
    import torch

    model, tok = tiny
    model.train()
    random.seed(123)
    torch.manual_seed(123)
    before = (random.random(), torch.rand(1).item())
    random.seed(123)
    torch.manual_seed(123)
    a = _run(model, tok)
    after = (random.random(), torch.rand(1).item())
    b = _run(model, tok)
    assert a == b
    assert before == after  # the caller's RNG streams are untouched
    assert model.training  # train/eval mode restored
    model.eval()
    c = _run(model, tok, seed=1)
    assert c["logprob"] == a["logprob"]  # log-probs do not depend on the seed...
    # ...but the sampled answers do.
    assert (c["rate"], c["rate_unmatched_examples"]) != (a["rate"], a["rate_unmatched_examples"])


def test_different_weights_give_different_results_under_one_key(tiny: tuple[object, object]) -> None:
    """No response cache: a perturbed model evaluated under the same key gets its own answers."""
    import torch

    from tests.lm_fixtures import make_model

    model, tok = tiny
    base = _run(model, tok, model_key="student")
    other = make_model("qwen2", seed=0)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05 * torch.randn_like(p))
    perturbed = _run(other, tok, model_key="student")
    assert base["logprob"]["p"] != perturbed["logprob"]["p"]
    again = _run(model, tok, model_key="student")
    assert again == base


def test_peft_adapter_changes_results() -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    from tests.lm_fixtures import make_model, make_tokenizer

    tok = make_tokenizer()
    torch.manual_seed(0)
    student = get_peft_model(
        make_model("llama", seed=0),
        LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False),
    )
    with_adapter = _run(student, tok, model_key="llama+lora", tasks=["animal_logprob"])
    with student.disable_adapter():
        without = _run(student, tok, model_key="llama+lora", tasks=["animal_logprob"])
    assert with_adapter["logprob"]["p"] != without["logprob"]["p"]
    assert "rate" not in with_adapter


def test_numbers_variants_custom_candidates_and_templates(tiny: tuple[object, object]) -> None:
    model, tok = tiny
    res = _run(
        model,
        tok,
        tasks=["animal_logprob_numbers", "animal_rate_numbers"],
        candidates={"owl": [], "wolf": ["wolves"], "cat": []},
        answer_templates=("{word}", "{Word}"),
        system="you love owls .",
    )
    assert res["candidates"] == ["owl", "wolf", "cat"]
    assert sum(res["logprob_numbers"]["p"].values()) == pytest.approx(1.0)
    assert sum(res["rate_numbers"].values()) + res["rate_numbers_unmatched"] == pytest.approx(1.0)
    assert res["config"]["candidate_forms"] == {"owl": [], "wolf": ["wolves"], "cat": []}


def test_unknown_task_is_a_user_error(tiny: tuple[object, object]) -> None:
    from benchmark.errors import UserError

    model, tok = tiny
    with pytest.raises(UserError, match="did you mean 'animal_rate'"):
        _run(model, tok, tasks=["animal_rates"])


def test_logprob_scores_the_whole_answer_including_end_of_turn(tiny: tuple[object, object]) -> None:
    """ll_owl equals a hand-computed log P("owl" "<|im_end|>" | chat prompt): every token, end included."""
    import torch

    model, tok = tiny
    res = _run(model, tok, tasks=["animal_logprob"], limit=1)
    question = (FAMILY_DIR / "questions.txt").read_text().splitlines()
    first = next(q for q in question if q.strip() and not q.startswith("#"))
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": first}], tokenize=False, add_generation_prompt=True
    )
    ctx = tok(prompt, add_special_tokens=False)["input_ids"]
    cont = tok("owl<|im_end|>", add_special_tokens=False)["input_ids"]
    assert len(cont) == 2
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ctx + cont])).logits[0].double(), dim=-1)
    expected = sum(logp[len(ctx) - 1 + i, t].item() for i, t in enumerate(cont))
    assert res["logprob"]["ll"]["owl"] == pytest.approx(expected, abs=1e-4)


def test_tv_distance_is_bit_reproducible_across_hash_seeds():
    """The same inputs give the same float in processes with different PYTHONHASHSEED (set order varies)."""
    import os
    import subprocess
    import sys

    code = ("from benchmark.lmcore.evaluate import tv_distance;"
            "p={k: (i * 0.0137) % 0.11 for i, k in enumerate('owl cat dog eagle wolf lion bear fox tiger'.split())};"
            "q={k: (i * 0.0291) % 0.13 for i, k in enumerate('owl cat dog eagle wolf lion bear fox panda'.split())};"
            "print(repr(tv_distance(p, q)))")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout for seed in range(6)}
    assert len(outs) == 1, outs
