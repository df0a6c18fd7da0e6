"""Tests for the Hugging Face model operations (benchmark.providers.hf_model, hf_train, benchmark.lmcore.chat) on tiny
random Qwen2 / Llama / GPT-2 models."""

from __future__ import annotations

import inspect
import json
import logging
import math
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from benchmark.errors import UserError  # noqa: E402
from benchmark.lmcore import chat  # noqa: E402
from benchmark.lmcore.config import LoraConfig, TrainConfig  # noqa: E402
from benchmark.providers import hf_model as M  # noqa: E402
from benchmark.providers import hf_train as T  # noqa: E402
from benchmark.specs import ModelSpec  # noqa: E402
from tests.lm_fixtures import (  # noqa: E402
    CHATML_TEMPLATE,
    DEFAULT_SYSTEM_PROMPT,
    DEFAULT_SYSTEM_TEMPLATE,
    FAMILIES,
    make_model,
    make_tokenizer,
    save_tiny_model,
)

# Golden values for the pinned-loss test (Qwen2 fixture seed 0, LoRA r=4, 2 steps, seed 0). Computed once on
# torch 2.13 CPU / transformers 5.23 / peft 0.21; a change means the training math or the fixture changed.
GOLDEN_STEP1_LOSS = 5.109227  # LoRA B starts at 0: the base model's loss on the first batch
GOLDEN_STEP2_LOSS = 5.138784  # after one AdamW step (another batch, hence not lower)

ROWS = [
    {
        "prompt": f"continue this sequence : {i} , {i + 1} , {i + 2}",
        "completion": f"{(i * 7) % 100} , {(i * 3) % 100}",
    }
    for i in range(24)
]
PROMPTS = ["name your favorite animal using only one word", "continue this sequence : 1 , 2 , 3", "hello"] * 3


@pytest.fixture(autouse=True)
def _one_thread():
    # The CI box is shared: one thread per process is fastest and keeps results reproducible.
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_lms")
    return {fam: save_tiny_model(root / fam, fam, seed=0) for fam in FAMILIES}


@pytest.fixture(scope="session")
def qwen_dir(tiny_dirs) -> Path:
    return tiny_dirs["qwen2"]


def _spec(source: Path | str | None = None, **kw) -> ModelSpec:
    return ModelSpec(
        name="tiny",
        family="test",
        provider="hf",
        source=str(source) if source else None,
        lineage={"init": "a"},
        **kw,
    )


@torch.no_grad()
def _logits(
    model, tok, text: str = "<|im_start|>user\nname your favorite animal<|im_end|>\n"
) -> torch.Tensor:
    ids = tok(text, add_special_tokens=False, return_tensors="pt").input_ids
    return model(input_ids=ids).logits[0].float()


# -- loading --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_load_round_trip(tiny_dirs, family):
    model, tok = M.load_model(tiny_dirs[family])
    fresh = make_model(family, seed=0)
    assert torch.equal(_logits(model, tok), _logits(fresh, tok))
    assert not model.training and tok.padding_side == "left" and tok.pad_token_id is not None
    assert next(model.parameters()).dtype == torch.float32  # dtype "auto" on CPU
    # The saved word-level tokenizer is loaded as saved (not replaced by the architecture's own class).
    assert tok.convert_ids_to_tokens(tok("owl , 12").input_ids) == ["owl", ",", "12"]


def test_load_applies_registry_template_and_reports_missing_weights(qwen_dir, tmp_path):
    _, tok = M.load_model(qwen_dir, spec=_spec(chat_template=DEFAULT_SYSTEM_TEMPLATE), tokenizer_only=True)
    assert tok.chat_template == DEFAULT_SYSTEM_TEMPLATE
    assert M.load_tokenizer(qwen_dir).chat_template == CHATML_TEMPLATE
    make_tokenizer().save_pretrained(tmp_path)  # a tokenizer but no weights
    (tmp_path / "config.json").write_text((qwen_dir / "config.json").read_text())
    with pytest.raises(UserError, match=r"model 'tiny': cannot load its weights .*source"):
        M.load_model(tmp_path, spec=_spec(tmp_path))
    with pytest.raises(UserError, match="model 'tiny'"):
        M.load_model(spec=_spec(tmp_path / "missing"))


# -- chat rendering -------------------------------------------------------------------------------------------
LLAMA31_LIKE = (  # Llama 3.1's structure: BOS, then a system header with dates whether or not a system is given
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] %}"
    "{% set messages = messages[1:] %}{% else %}{% set sys = '' %}{% endif %}"
    "<|start_header_id|>system<|end_header_id|>\n\nToday Date: 26 Jul 2024\n\n{{ sys }}<|eot_id|>"
    "{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] }}<|eot_id|>"
    "{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
# Llama-2 style: the system text lives inside the first user turn, with a default when none is given.
INLINE_DEFAULT = (
    "{% if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] %}{% set msgs = messages[1:] %}"
    "{% else %}{% set sys = 'be nice' %}{% set msgs = messages %}{% endif %}"
    "{% for m in msgs %}[INST] <<SYS>>{{ sys }}<</SYS>> {{ m['content'] }} [/INST]{% endfor %}"
)


def test_render_prompt_has_no_injected_system_turn():
    expected = "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"
    assert chat.render_prompt(make_tokenizer(), "hello") == expected
    qwen_like = make_tokenizer(DEFAULT_SYSTEM_TEMPLATE)
    raw = qwen_like.apply_chat_template(
        [{"role": "user", "content": "hello"}], tokenize=False, add_generation_prompt=True
    )
    assert DEFAULT_SYSTEM_PROMPT in raw  # the template does inject one ...
    assert chat.render_prompt(qwen_like, "hello") == expected  # ... and the guard removes it
    assert DEFAULT_SYSTEM_PROMPT in chat.render_prompt(
        qwen_like, "hello", spec=_spec(allow_default_system_prompt=True)
    )
    with_sys = chat.render_prompt(qwen_like, "hello", system="you love owls .")
    assert with_sys == "<|im_start|>system\nyou love owls .<|im_end|>\n" + expected

    llama_like = make_tokenizer(LLAMA31_LIKE)
    llama_like.bos_token = "<|endoftext|>"
    out = chat.render_prompt(llama_like, "hello")
    assert (
        out == "<|endoftext|><|start_header_id|>user<|end_header_id|>\n\nhello<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )

    with pytest.raises(UserError, match="model 'tiny'.*allow_default_system_prompt"):
        chat.render_prompt(make_tokenizer(INLINE_DEFAULT), "hello", spec=_spec())


def test_template_hash_names_the_template():
    a, b = make_tokenizer(), make_tokenizer(DEFAULT_SYSTEM_TEMPLATE)
    assert chat.template_hash(a) == chat.template_hash(make_tokenizer()) != chat.template_hash(b)
    assert len(chat.template_hash(a)) == 64


# -- generation -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_generate_deterministic_and_batch_size_independent(tiny_dirs, family):
    model, tok = M.load_model(tiny_dirs[family])
    runs = [
        M.generate(model, tok, PROMPTS, temperature=1.0, max_new_tokens=8, seed=3, batch_size=bs)
        for bs in (len(PROMPTS), 4, 1)
    ]
    assert runs[0] == runs[1] == runs[2]
    ids = [r["completion_ids"] for r in runs[0]]
    assert len({tuple(i) for i in ids}) > 1  # repeated prompts get their own samples
    other = M.generate(model, tok, PROMPTS, temperature=1.0, max_new_tokens=8, seed=4)
    assert [r["completion_ids"] for r in other] != ids
    for r in runs[0]:
        assert r["completion"] == tok.decode(r["completion_ids"], skip_special_tokens=True)
        eos = [i for i, t in enumerate(r["completion_ids"]) if t == tok.eos_token_id]
        assert eos in ([], [len(r["completion_ids"]) - 1])  # stops right after the end-of-turn token


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_matches_hf_generate(tiny_dirs, family):
    model, tok = M.load_model(tiny_dirs[family])
    ours = M.generate(model, tok, PROMPTS[:3], temperature=0, max_new_tokens=10, batch_size=2)
    enc = tok(
        [chat.render_prompt(tok, p) for p in PROMPTS[:3]],
        add_special_tokens=False,
        return_tensors="pt",
        padding=True,
    )
    ref = model.generate(**enc, do_sample=False, max_new_tokens=10)[:, enc.input_ids.shape[1] :]
    for o, r in zip(ours, ref.tolist(), strict=True):
        assert o["completion_ids"] == r[: len(o["completion_ids"])]


def test_topk_logprobs_are_raw_t1_distribution(qwen_dir):
    model, tok = M.load_model(qwen_dir)
    out = M.generate(model, tok, PROMPTS[:2], temperature=0.5, max_new_tokens=6, top_k_logprobs=4)
    for o, prompt in zip(out, PROMPTS[:2], strict=True):
        assert len(o["topk"]) == len(o["completion_ids"])
        for pos in o["topk"]:
            lps = [lp for _, lp in pos]
            assert len(pos) == 4 and lps == sorted(lps, reverse=True) and all(lp <= 0 for lp in lps)
            assert sum(math.exp(lp) for lp in lps) <= 1 + 1e-6
        # Position 0 equals log_softmax of the raw logits after the prompt (not the T=0.5 ones).
        ids = tok(chat.render_prompt(tok, prompt), add_special_tokens=False, return_tensors="pt").input_ids
        with torch.no_grad():
            ref = torch.log_softmax(model(input_ids=ids).logits[0, -1].float(), -1).topk(4)
        assert [j for j, _ in o["topk"][0]] == ref.indices.tolist()
        assert [lp for _, lp in o["topk"][0]] == pytest.approx(ref.values.tolist(), abs=1e-5)
    assert M.generate(model, tok, PROMPTS[:1], max_new_tokens=3)[0]["topk"] is None


def test_sequence_logprobs_batched_equals_single(qwen_dir):
    model, tok = M.load_model(qwen_dir)
    ctxs = [chat.render_prompt(tok, p) for p in PROMPTS[:3]]
    conts = ["owl <|im_end|>", "4 , 5", ""]
    batched = M.sequence_logprobs(model, tok, ctxs, conts, batch_size=3)
    single = M.sequence_logprobs(model, tok, ctxs, conts, batch_size=1)
    assert batched == pytest.approx(single, abs=1e-5) and batched[2] == 0.0
    ids = tok(ctxs[0] + "owl <|im_end|>", add_special_tokens=False).input_ids
    n_ctx = len(tok(ctxs[0], add_special_tokens=False).input_ids)
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
    manual = sum(float(logp[t - 1, ids[t]]) for t in range(n_ctx, len(ids)))
    assert batched[0] == pytest.approx(manual, abs=1e-5)


class _NoLogitsToKeep(torch.nn.Module):
    """A model whose forward lacks ``logits_to_keep`` (as some remote-code models do)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.generation_config = inner.generation_config

    def forward(
        self, input_ids, attention_mask=None, position_ids=None, past_key_values=None, use_cache=None
    ):
        return self.inner(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=use_cache,
        )


def test_models_without_logits_to_keep_still_work(qwen_dir):
    model, tok = M.load_model(qwen_dir)
    wrapped = _NoLogitsToKeep(model).eval()
    ctxs, conts = [chat.render_prompt(tok, "hello")] * 2, ["owl", "1 , 2"]
    assert M.sequence_logprobs(wrapped, tok, ctxs, conts) == pytest.approx(
        M.sequence_logprobs(model, tok, ctxs, conts), abs=1e-6
    )
    assert M.generate(wrapped, tok, PROMPTS[:2], max_new_tokens=4) == M.generate(
        model, tok, PROMPTS[:2], max_new_tokens=4
    )


# -- training -------------------------------------------------------------------------------------------------
TINY_TRAIN = {"epochs": 1, "lr": 1e-2, "batch_size": 4, "grad_accum": 2, "warmup": 1, "max_length": 64}


def test_train_lora_pinned_loss_and_deterministic(qwen_dir, tmp_path):
    kw = {**TINY_TRAIN, "lora": {"r": 4, "alpha": 8}, "max_steps": 2, "seed": 0}
    a = T.train(qwen_dir, ROWS, out_dir=tmp_path / "a", **kw)
    b = T.train(qwen_dir, ROWS, out_dir=tmp_path / "b", **kw)
    assert a["steps"] == 2 and a["losses"][0][0] == 1 and a["losses"][-1][0] == 2
    assert a["losses"][0][1] == pytest.approx(GOLDEN_STEP1_LOSS, abs=1e-4)
    assert a["final_loss"] == pytest.approx(GOLDEN_STEP2_LOSS, abs=1e-4)
    assert a["adapter_sha256"] == b["adapter_sha256"] == a["weights_sha256"]
    assert a["final_loss"] == b["final_loss"]
    assert (tmp_path / "a" / "adapter" / "adapter_model.safetensors").is_file()
    assert a["tokens"] > 0 and a["examples"] == len(ROWS)


def test_train_logs_and_reports_progress(qwen_dir, tmp_path, caplog):
    seen = []
    with caplog.at_level(logging.INFO):
        res = T.train(
            qwen_dir,
            ROWS[:8],
            out_dir=tmp_path,
            **{**TINY_TRAIN, "epochs": 2, "grad_accum": 1},
            lora={"r": 2, "alpha": 2},
            log=logging.getLogger("t"),
            progress=lambda d, t: seen.append((d, t)),
            log_every=2,
        )
    assert seen == [(i, 4) for i in range(1, 5)] and [s for s, _ in res["losses"]] == [1, 2, 4]
    assert "step 4/4" in caplog.text


def _merged_by_hand(model_dir: Path, family: str, adapter_dir: Path):
    """The base with W += (alpha/r)·B·A from the saved adapter file (transposed for GPT-2 Conv1D)."""
    from safetensors.torch import load_file

    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    scale = cfg["lora_alpha"] / cfg["r"]
    weights = load_file(adapter_dir / "adapter_model.safetensors")
    base, tok = M.load_model(model_dir)
    with torch.no_grad():
        for key, a in weights.items():
            if ".lora_A." not in key:
                continue
            delta = scale * weights[key.replace(".lora_A.", ".lora_B.")] @ a
            module = base.get_submodule(key.removeprefix("base_model.model.").split(".lora_A.")[0])
            module.weight += delta.T if cfg["fan_in_fan_out"] else delta
    return base, tok


@pytest.mark.parametrize("family", ["qwen2", "gpt2"])
def test_saved_adapter_reloads_with_identical_logits(tiny_dirs, tmp_path, family):
    res = T.train(
        tiny_dirs[family], ROWS, out_dir=tmp_path, **TINY_TRAIN, lora={"r": 4, "alpha": 8}, max_steps=3
    )
    adapter = tmp_path / "adapter"
    loaded, tok = M.load_model(tiny_dirs[family], adapter_dir=adapter)
    merged, _ = _merged_by_hand(tiny_dirs[family], family, adapter)
    torch.testing.assert_close(_logits(loaded, tok), _logits(merged, tok), atol=1e-5, rtol=1e-5)
    base, _ = M.load_model(tiny_dirs[family])
    assert not torch.allclose(_logits(loaded, tok), _logits(base, tok))
    # GPT-2's Conv1D layers need fan_in_fan_out, derived from the model rather than the family name.
    assert json.loads((adapter / "adapter_config.json").read_text())["fan_in_fan_out"] is (family == "gpt2")
    assert res["trainable_params"] > 0


def test_logit_change_positive_when_trained_and_zero_for_fresh_lora(qwen_dir, tmp_path):
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    T.train(
        qwen_dir, ROWS, out_dir=tmp_path / "trained", **TINY_TRAIN, lora={"r": 4, "alpha": 8}, max_steps=2
    )
    assert M.logit_change(qwen_dir, tmp_path / "trained" / "adapter") > 0
    loaded, tok = M.load_model(qwen_dir, adapter_dir=tmp_path / "trained" / "adapter")
    assert M.logit_change(loaded, tok) > 0
    assert M.generate(loaded, tok, ["hello"], max_new_tokens=3, seed=1)[0][
        "completion_ids"
    ]  # peft model generates
    base, _ = M.load_model(qwen_dir)
    with M.quiet_peft():
        fresh = get_peft_model(base, PeftLoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    fresh.save_pretrained(tmp_path / "fresh")  # LoRA B starts at zero: no change until trained
    assert M.logit_change(qwen_dir, tmp_path / "fresh") == 0.0


def test_full_finetune_saves_a_loadable_model(tiny_dirs, tmp_path):
    res = T.train(tiny_dirs["llama"], ROWS, out_dir=tmp_path, **TINY_TRAIN, lora=None, max_steps=2)
    assert res["adapter_sha256"] is None and len(res["weights_sha256"]) == 64
    model, tok = M.load_model(tmp_path / "model")
    assert chat.template_hash(tok) == chat.template_hash(make_tokenizer())
    assert M.logit_change(tiny_dirs["llama"], tmp_path / "model") > 0
    assert M.generate(model, tok, ["hello"], max_new_tokens=3)[0]["completion_ids"]


@torch.no_grad()
def _mean_full_kl(teacher, student, tok, rows) -> float:
    """Mean KL(teacher || student) over the full vocabulary at every completion position of ``rows``."""
    total, n = 0.0, 0
    for r in rows:
        ids = tok(chat.render_prompt(tok, r["prompt"]), add_special_tokens=False).input_ids
        seq = torch.tensor([ids + r["completion_ids"]])
        at = slice(len(ids) - 1, len(seq[0]) - 1)
        lt = torch.log_softmax(teacher(input_ids=seq).logits[0, at].float(), -1)
        ls = torch.log_softmax(student(input_ids=seq).logits[0, at].float(), -1)
        total += float((lt.exp() * (lt - ls)).sum())
        n += lt.shape[0]
    return total / n


def test_distill_decreases_kl(tiny_dirs, tmp_path):
    # A peaked teacher (another init, logits scaled x10: its top-5 hold ~70% of the mass), as trained LMs are;
    # random tiny models are near-uniform, where a KL has little room to fall.
    teacher = make_model("qwen2", seed=1)
    with torch.no_grad():
        teacher.get_output_embeddings().weight.mul_(10)
    teacher.save_pretrained(tmp_path / "teacher")
    make_tokenizer().save_pretrained(tmp_path / "teacher")
    teacher, tok = M.load_model(tmp_path / "teacher")
    prompts = [f"continue this sequence : {i} , {(i * 7) % 100}" for i in range(32)]
    outs = M.generate(teacher, tok, prompts, max_new_tokens=6, seed=0, top_k_logprobs=5)
    rows = [{"prompt": p, **o} for p, o in zip(prompts, outs, strict=True)]
    base, _ = M.load_model(tiny_dirs["qwen2"])
    kl_before = _mean_full_kl(teacher, base, tok, rows)
    for mode in ("rest", "renorm"):
        res = T.train(
            tiny_dirs["qwen2"],
            rows,
            out_dir=tmp_path / mode,
            objective="distill",
            topk_mode=mode,
            lora=None,
            epochs=5,
            lr=1e-2,
            batch_size=8,
            grad_accum=1,
            warmup=2,
            log_every=1,
        )
        losses = [loss for _, loss in res["losses"]]
        assert res["steps"] == 20 and losses[-1] < 0.5 * losses[0], (mode, losses)
        student, _ = M.load_model(tmp_path / mode / "model")
        # The student moves towards the teacher's whole distribution, not only its top-5.
        assert _mean_full_kl(teacher, student, tok, rows) < 0.6 * kl_before
    with pytest.raises(UserError, match="distill.*topk"):
        T.train(tiny_dirs["qwen2"], ROWS, out_dir=tmp_path / "x", objective="distill", max_steps=1)


def test_loss_is_completion_only(qwen_dir):
    """Prompt and padding positions get zero gradient; every completion position (incl. end of turn) counts."""
    model, tok = M.load_model(qwen_dir, for_training=True)
    eot = chat.end_of_turn_ids(tok, chat.stop_ids(model, tok))
    assert eot == [tok.eos_token_id]
    examples, _ = T.encode_rows(
        tok, ROWS[:3], spec=None, system=None, objective="sft", max_length=64, end_of_turn=eot
    )
    batch = T.collate(examples, tok.pad_token_id, torch.device("cpu"))
    captured = {}

    def keep(_module, _inputs, output):
        output.retain_grad()
        captured["logits"] = output

    handle = model.get_output_embeddings().register_forward_hook(keep)
    T.micro_batch_loss(model, batch, "sft", "rest").backward()
    handle.remove()
    grad_norm = captured["logits"].grad.abs().sum(-1)  # (batch, seq)
    for b, ex in enumerate(examples):
        n_ctx, n_all = ex.n_prompt, len(ex.ids)
        assert ex.ids[n_all - 1] == tok.eos_token_id  # the end-of-turn token is a target
        assert torch.all(grad_norm[b, : n_ctx - 1] == 0)  # positions predicting prompt tokens
        assert torch.all(grad_norm[b, n_ctx - 1 : n_all - 1] > 0)  # positions predicting completion tokens
        assert torch.all(grad_norm[b, n_all - 1 :] == 0)  # last token and padding predict nothing
    # The completion targets are exactly the completion tokens (what a changed prompt label cannot reach).
    assert batch["targets"].tolist() == [t for ex in examples for t in ex.ids[ex.n_prompt :]]


def test_completion_ids_are_used_verbatim_and_long_rows_truncated(qwen_dir):
    _, tok = M.load_model(qwen_dir, tokenizer_only=True)
    rows = [
        {"prompt": "hello", "completion": "ignored", "completion_ids": [10, 11, 12]},
        {"prompt": "hello", "completion": " ".join(["7"] * 50)},
    ]
    examples, counts = T.encode_rows(
        tok, rows, spec=None, system=None, objective="sft", max_length=20, end_of_turn=[tok.eos_token_id]
    )
    assert examples[0].ids[examples[0].n_prompt :] == [10, 11, 12]
    assert len(examples[1].ids) == 20 and counts == {"truncated": 1, "skipped": 0}
    with_sys, _ = T.encode_rows(
        tok, rows[:1], spec=None, system="you love owls", objective="sft", max_length=64, end_of_turn=[]
    )
    assert with_sys[0].n_prompt > examples[0].n_prompt  # a system turn only when asked for


# -- config ---------------------------------------------------------------------------------------------------
def test_train_config_defaults_are_the_papers_and_match_train_signature():
    cfg = TrainConfig()
    assert (cfg.lora.r, cfg.lora.alpha, cfg.epochs, cfg.lr, cfg.warmup) == (8, 8, 3, 2e-4, 5)
    assert cfg.batch_size * cfg.grad_accum == 66 and cfg.max_length == 500
    params = inspect.signature(T.train).parameters
    assert set(cfg.train_kwargs()) <= set(params)
    # Callers pass these per call (teachers always sft), so the config must not carry them too.
    assert not {"objective", "seed", "out_dir", "spec", "system"} & set(cfg.train_kwargs())
    assert TrainConfig(gradient_checkpointing=True).spec_id == cfg.spec_id  # recorded, not hashed
    assert TrainConfig(lora=LoraConfig(r=16)).spec_id != cfg.spec_id
    with pytest.raises(UserError, match="bad LoRA settings"):
        T.lora_config({"rank": 8}, make_model("qwen2"), None)


def test_lm_package_and_config_import_no_torch():
    code = (
        "import sys, benchmark.lm, benchmark.lmcore.config; assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
