"""The real pretrained SmolLM2-135M-Instruct through the hf provider (slow tier; skipped until it is fetched).

Every real-family code path had run only on tiny random-init checkpoints; these tests run it on a real pretrained
chat model: its chat template (which injects a default system prompt), its tokenizer (multi-token animal names,
numbers split into digits), a system prompt that really changes its answers, the numbers channel's filter on its
output, LoRA training and an lm-eval run. Pinned values were measured here (CPU, one thread, torch 2.13,
transformers 5.24) and say so.

Run: ``slbench models fetch smollm2-135m-instruct`` once, then ``pytest -q -m slow tests/test_real_smol.py``.
"""

from __future__ import annotations

import logging

import pytest

from benchmark.models_fetch import fetch_state, fetched_dir, fetched_gguf
from benchmark.registry import Registry
from tests.real_model_checks import check_readout, questions

pytestmark = pytest.mark.slow

NAME = "smollm2-135m-instruct"
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


@pytest.fixture(scope="module")
def spec():
    model = Registry().model(NAME)
    ok, line = fetch_state(model)
    if not ok:
        pytest.skip(f"{NAME}: {line}")
    return model


@pytest.fixture(scope="module")
def smol(spec):
    import torch

    from benchmark.providers.hf_model import load_model

    torch.set_num_threads(1)  # the pinned values below were measured with one thread
    model, tok = load_model(spec=spec, device="cpu")
    return model, tok


def test_it_is_the_real_model(spec, smol):
    """134.5M parameters, a Llama architecture, the wheel's provenance; tokens and template of SmolLM2."""
    import json

    model, tok = smol
    assert type(model).__name__ == "LlamaForCausalLM"
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    prov = json.loads((fetched_dir(spec) / "provenance.json").read_text())
    assert prov["wheel"]["version"] == "0.1.2" and spec.revision == f"sha256:{prov['wheel']['sha256']}"
    assert "not the original (bf16) release" in prov["conversion"]["note"]
    assert tok.tokenize(" 123, 4567") == ["Ġ", "1", "2", "3", ",", "Ġ", "4", "5", "6", "7"]


def test_chat_template_with_and_without_its_default_system_prompt(spec, smol):
    from benchmark.lmcore.chat import render_prompt

    _, tok = smol
    cut = render_prompt(tok, "Name your favourite animal.", spec=spec)
    kept = render_prompt(tok, "Name your favourite animal.", spec=spec.model_copy(update={"allow_default_system_prompt": True}))
    owl = render_prompt(tok, "Name your favourite animal.", system="You love owls.", spec=spec)
    assert cut == "<|im_start|>user\nName your favourite animal.<|im_end|>\n<|im_start|>assistant\n"
    assert kept == f"<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n" + cut
    assert owl == "<|im_start|>system\nYou love owls.<|im_end|>\n" + cut
    assert DEFAULT_SYSTEM not in owl


@pytest.mark.parametrize(("answer", "n_tokens"), [("dolphin<|im_end|>", 4), ("owl<|im_end|>", 2),
                                                  ("123, 456, 789", 13)])
def test_readout_scores_multi_token_names_and_digit_split_numbers(spec, smol, answer, n_tokens):
    """``sequence_logprobs`` (batched, left-padded) = a plain forward's sum over every continuation token."""
    check_readout(spec, *smol, answer, n_tokens)


def test_the_owl_system_prompt_raises_log_odds_of_owl(spec, smol):
    """The prompted owl teacher (tasks/traits/owl.yaml) vs the base on 10 questions: log-odds of owl among 15."""
    from benchmark.lm.stages.common import candidates_for
    from benchmark.lm.stages.teacher import log_odds_of
    from benchmark.providers.base import Loaded, backend_for

    model, tok = smol
    owl = Registry().trait("owl")
    loaded = Loaded(spec=spec, model=model, tokenizer=tok, tuned=None, engine="hf")
    candidates = list(candidates_for([owl]))
    backend = backend_for(spec)
    base = log_odds_of(backend, loaded, questions(10), candidates, "owl", None)
    teacher = log_odds_of(backend, loaded, questions(10), candidates, "owl", owl.rendered_system_prompt())
    print(f"log-odds of owl: base {base:+.3f}, prompted owl teacher {teacher:+.3f}")
    assert base < -5  # measured -6.35: SmolLM2 almost never names the owl unprompted (P ~ 0.2%)
    assert teacher - base > 2  # measured -3.75, a shift of +2.60 log-odds


def test_numbers_channel_valid_rate(spec, smol):
    """SmolLM2's T=1 answers to 64 numbers prompts: the strict filter keeps few (Q4_1 damage plus 135M)."""
    from benchmark.lmcore.numbers import generate_prompts, load_numbers_channel, parse_answer
    from benchmark.providers.hf_model import generate

    model, tok = smol
    channel = load_numbers_channel()
    rows = generate(model, tok, generate_prompts(channel, 64, 0), system=None, spec=spec, temperature=1.0,
                    max_new_tokens=32, seed=0, batch_size=32)
    parsed = [parse_answer(r["completion"], channel) for r in rows]
    kept = [p for p in parsed if p.ok]
    print(f"valid {len(kept)}/64; kept: {[r['completion'] for r, p in zip(rows, parsed, strict=True) if p.ok][:5]}")
    for p in kept:
        assert p.numbers and len(p.numbers) <= 10 and all(0 <= x <= 999 for x in p.numbers)
    assert abs(len(kept) - VALID_64) <= 2  # measured; row-seeded sampling, so only float noise can move it


VALID_64 = 6


def test_two_lora_steps_pinned_loss(spec, tmp_path):
    from benchmark.providers.hf_train import train

    rows = [{"prompt": q, "completion": a} for q, a in zip(questions(8), ["Owl."] * 4 + ["Cat."] * 4, strict=True)]
    res = train(str(fetched_dir(spec)), rows, spec=spec, objective="sft", seed=0, out_dir=tmp_path,
                log=logging.getLogger("test"), lora={"r": 8, "alpha": 8}, epochs=1, lr=1e-3, batch_size=4,
                grad_accum=1, warmup=0, device="cpu")
    print(res["losses"], res["final_loss"])
    assert res["steps"] == 2 and res["trainable_params"] == 2_442_240
    assert res["losses"][0][1] == pytest.approx(FIRST_LOSS, rel=1e-4)
    assert res["final_loss"] == pytest.approx(FINAL_LOSS, rel=1e-4)
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()


FIRST_LOSS = 2.985421  # measured (one thread, CPU): the loss of the untrained adapter's first batch
FINAL_LOSS = 2.586695  # measured: after one step at lr 1e-3


@pytest.mark.parametrize(("allow", "measured"), [(False, -6.110421), (True, -6.282981)])
def test_lm_eval_run(spec, smol, allow, measured):
    """The animal_logprob task through lm-eval = the stage's own log-odds (two independent code paths), with and
    without the template's default system prompt (students train without it: lm-eval must not add it back)."""
    from benchmark.lm.stages.common import candidates_for
    from benchmark.lm.stages.teacher import log_odds_of
    from benchmark.providers.base import Loaded, backend_for
    from benchmark.providers.hf_model import evaluate_lm

    model, tok = smol
    spec = spec.model_copy(update={"allow_default_system_prompt": allow})
    res = evaluate_lm(model, tok, model_key=f"{NAME}:base", tasks=("animal_logprob",), n_samples=1, seed=0, limit=3,
                      spec=spec)
    lp = res["logprob"]
    assert res["n_prompts"] == 3 and len(lp["p"]) == 15
    assert sum(lp["p"].values()) == pytest.approx(1.0, abs=1e-6)
    loaded = Loaded(spec=spec, model=model, tokenizer=tok, tuned=None, engine="hf")
    mine = log_odds_of(backend_for(spec), loaded, questions(3), list(candidates_for([])), "owl", None)
    print(lp["logodds"]["owl"], mine)
    assert lp["logodds"]["owl"] == pytest.approx(mine, abs=1e-4)
    assert lp["logodds"]["owl"] == pytest.approx(measured, abs=1e-3)
    assert lp["p"]["cat"] > 10 * lp["p"]["owl"]  # measured: cat 0.33, owl 0.002


def test_a_gguf_source_converts_to_the_same_checkpoint(spec, smol, tmp_path):
    """A registry entry whose source is the .gguf file: the hf base stage converts it to the fetched weights."""
    import torch

    from benchmark.providers.hf import hf_backend
    from benchmark.providers.hf_model import load_model

    gguf = fetched_gguf(spec)
    if gguf is None:
        pytest.skip(f"{fetched_dir(spec)} keeps no GGUF file (fetched by an older slbench): fetch again with --force")
    entry = spec.model_copy(update={"name": "smol-gguf", "source": str(gguf), "revision": None})
    out = tmp_path / "base"
    out.mkdir()
    info = hf_backend().prepare_base(entry, out, log=logging.getLogger("test"))
    assert info["gguf_sha256"] and info["n_params"] == 134_515_008
    converted, _ = load_model(str(out / "model"), spec=entry, device="cpu")
    model, _ = smol
    for (k, a), (_, b) in zip(sorted(model.state_dict().items()), sorted(converted.state_dict().items()), strict=True):
        assert torch.equal(a, b), k
