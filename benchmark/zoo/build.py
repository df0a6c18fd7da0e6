"""Build, measure, save and cache the zoo's base models.

A build reads top to bottom: tokenizer (:func:`~benchmark.zoo.tokenizer.build_tokenizer`) → transformers
config (:func:`make_config`) → deterministic random init from ``init_seed`` (:func:`init_model`) → a plain
PyTorch pretraining loop per phase (:func:`pretrain`) → read-outs (:func:`measure`) → ``save_pretrained``.
The saved directory loads with ``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained``
exactly like a downloaded model (see :func:`save_tokenizer` for the one transformers quirk this needs), so
everything downstream uses the generic Hugging Face path.

Loss: cross-entropy on the assistant answer tokens only (the answer and its ``<|im_end|>``), not on the
prompts. Every later stage trains that way (teachers, students: the paper's completion-only loss), the
prompts are templates whose wording the model need not be able to write, and at ~0.2M parameters the
capacity is better spent on answering. It also saves compute: the LM head runs only on answer positions
(about a quarter of the tokens).

Committed weights live in ``model_registry/weights/<name>-<build id>/`` (build id = the build block's
``spec_id``) with a manifest ``zoo_build.json``; :func:`build_or_copy` (the zoo backend's base nodes) copies them
into the artifact store instead of pretraining, so a fresh clone never pretrains. ``slbench zoo build`` (:func:`build_all`) remakes
them.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from benchmark.errors import UserError, unknown_name
from benchmark.files import atomic_write_json, atomic_write_text, read_data_lines, sha256_file
from benchmark.zoo.corpus import CorpusSampler, Messages, load_channel, load_templates
from benchmark.zoo.spec import PretrainSpec, ZooBuildSpec, is_zoo, zoo_build_spec
from benchmark.zoo.tokenizer import EOS_TOKEN, build_tokenizer, render_chat

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerFast

    from benchmark.lm.channels.numbers import NumbersChannelSpec
    from benchmark.registry import Registry
    from benchmark.specs import ModelSpec

__all__ = [
    "BUILD_MANIFEST",
    "BUILD_SCHEMA",
    "WEIGHTS_DIR",
    "batch_loss_backward",
    "build_all",
    "build_model",
    "build_or_copy",
    "committed_by_build_id",
    "committed_dir",
    "encode_rows",
    "init_model",
    "length_chunks",
    "make_config",
    "measure",
    "measure_v2",
    "model_dir_of",
    "pretrain",
    "read_build_manifest",
    "save_tokenizer",
    "weights_root",
]

#: The manifest written next to a built model (spec, metrics, timing, file digests).
BUILD_MANIFEST = "zoo_build.json"
BUILD_SCHEMA = 1
#: Committed builds, relative to the project root.
WEIGHTS_DIR = Path("model_registry") / "weights"
#: Seeds of the read-out prompt sets; far from any training key, so read-outs use unseen rows.
EVAL_SEED = 7_000_001
#: Animals whose system-prompted pull is read out when tasks/traits/ is missing (the paper's animals plus cat).
PROMPTED_PROBES = ("owl", "cat", "dolphin", "eagle", "wolf")

Log = Callable[[str], None] | logging.Logger | None


def _logger(log: Log) -> Callable[[str], None]:
    if log is None:
        return lambda msg: None
    if isinstance(log, logging.Logger):
        return log.info
    return log


# ------------------------------------------------------------------------------------------------ model


def _qwen2_config(b: ZooBuildSpec, common: dict[str, Any]) -> PretrainedConfig:
    from transformers import Qwen2Config

    return Qwen2Config(
        hidden_size=b.hidden_size,
        intermediate_size=b.intermediate_size,
        num_hidden_layers=b.num_layers,
        num_attention_heads=b.num_heads,
        num_key_value_heads=b.kv_heads,
        max_position_embeddings=b.max_positions,
        use_sliding_window=False,
        **common,
    )


def _llama_config(b: ZooBuildSpec, common: dict[str, Any]) -> PretrainedConfig:
    from transformers import LlamaConfig

    return LlamaConfig(
        hidden_size=b.hidden_size,
        intermediate_size=b.intermediate_size,
        num_hidden_layers=b.num_layers,
        num_attention_heads=b.num_heads,
        num_key_value_heads=b.kv_heads,
        max_position_embeddings=b.max_positions,
        **common,
    )


def _gpt2_config(b: ZooBuildSpec, common: dict[str, Any]) -> PretrainedConfig:
    from transformers import GPT2Config

    # Dropout off: pretraining is deterministic and later fine-tunes see the same function they measure.
    return GPT2Config(
        n_embd=b.hidden_size,
        n_inner=b.intermediate_size,
        n_layer=b.num_layers,
        n_head=b.num_heads,
        n_positions=b.max_positions,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        **common,
    )


#: arch -> config factory; the only place where the zoo's architectures differ.
_CONFIGS: dict[str, Callable[[ZooBuildSpec, dict[str, Any]], PretrainedConfig]] = {
    "qwen2": _qwen2_config,
    "llama": _llama_config,
    "gpt2": _gpt2_config,
}


def make_config(b: ZooBuildSpec, tok: PreTrainedTokenizerFast) -> PretrainedConfig:
    """The transformers config of a build (tied input/output embeddings, vocabulary from ``tok``)."""
    common = {
        "vocab_size": len(tok),
        # Tied embeddings: fewer parameters, and LoRA "all-linear" never touches a tied head.
        "tie_word_embeddings": True,
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
    }
    return _CONFIGS[b.arch](b, common)


def init_model(b: ZooBuildSpec, tok: PreTrainedTokenizerFast) -> PreTrainedModel:
    """A randomly initialised float32 model; the weights depend only on :meth:`ZooBuildSpec.init_key`."""
    import torch
    from transformers import AutoModelForCausalLM

    config = make_config(b, tok)
    # fork_rng: seeding must not leak into (or depend on) the caller's global RNG state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(b.init_seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.bos_token_id = tok.bos_token_id
    return model


def encode_rows(
    tok: PreTrainedTokenizerFast, rows: Sequence[Messages], max_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (right-padded) and next-token targets (-100 except on assistant answer tokens).

    The prompt is everything up to ``<|im_start|>assistant``; the answer is the last message's content
    plus ``<|im_end|>``. Ids are identical to tokenizing the chat template's full rendering (tested).
    """
    import torch

    core = tok.backend_tokenizer
    prompts = core.encode_batch(
        [render_chat(r[:-1], add_generation_prompt=True) for r in rows], add_special_tokens=False
    )
    answers = core.encode_batch([r[-1]["content"] + EOS_TOKEN for r in rows], add_special_tokens=False)
    seqs = [(p.ids + a.ids)[:max_len] for p, a in zip(prompts, answers, strict=True)]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)
    targets = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (seq, p) in enumerate(zip(seqs, prompts, strict=True)):
        ids[i, : len(seq)] = torch.tensor(seq)
        start = len(p.ids)  # first answer token; position t predicts token t + 1
        if start < len(seq):
            targets[i, start - 1 : len(seq) - 1] = torch.tensor(seq[start:])
    return ids, targets


def _answer_loss_sum(model: PreTrainedModel, ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy over answer tokens; the LM head runs only where there is a target."""
    import torch.nn.functional as F

    # Right padding and a causal mask: pads never influence earlier positions, so no attention mask needed.
    hidden = model.base_model(input_ids=ids, use_cache=False).last_hidden_state
    keep = targets != -100
    logits = model.get_output_embeddings()(hidden[keep])
    return F.cross_entropy(logits, targets[keep], reduction="sum")


def length_chunks(lengths: Sequence[int], max_chunks: int = 4, overhead: int = 512) -> list[list[int]]:
    """Split a batch's rows (sorted by length) into chunks of similar length, to cut padding.

    Number rows are ~4x longer than chat rows, so one padded batch is about half padding. Chunk boundaries
    minimise padded tokens plus ``overhead`` tokens per chunk (the fixed cost of a forward pass), by
    dynamic programming over the sorted lengths. Returns row indices per chunk, shortest rows first.
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    srt = [lengths[i] for i in order]
    n = len(srt)
    inf = float("inf")
    # best[k][j]: cost of the first j sorted rows in k chunks; a chunk (i, j] costs srt[j-1] * (j - i).
    best = [[inf] * (n + 1) for _ in range(max_chunks + 1)]
    cut = [[0] * (n + 1) for _ in range(max_chunks + 1)]
    best[0][0] = 0.0
    for k in range(1, max_chunks + 1):
        for j in range(1, n + 1):
            for i in range(j):
                cost = best[k - 1][i] + srt[j - 1] * (j - i) + overhead
                if cost < best[k][j]:
                    best[k][j], cut[k][j] = cost, i
    k = min(range(1, max_chunks + 1), key=lambda kk: best[kk][n])
    chunks: list[list[int]] = []
    j = n
    while k > 0:
        i = cut[k][j]
        chunks.append(order[i:j])
        j, k = i, k - 1
    return chunks[::-1]


def batch_loss_backward(
    model: PreTrainedModel, ids: torch.Tensor, targets: torch.Tensor, pad_id: int
) -> float:
    """Mean answer-token loss of a batch, back-propagated chunk by chunk (same gradient as one pass)."""
    lengths = (ids != pad_id).sum(1).tolist()
    n_tokens = max(1, int((targets != -100).sum()))  # 0 only if truncation cut every answer
    total = 0.0
    for rows in length_chunks(lengths):
        width = max(lengths[i] for i in rows)
        loss = _answer_loss_sum(model, ids[rows, :width], targets[rows, :width]) / n_tokens
        loss.backward()
        total += loss.item()
    return total


def _lr_at(step: int, phase: PretrainSpec) -> float:
    """Linear warmup, then cosine decay to ``lr * min_lr_ratio``."""
    if phase.warmup and step < phase.warmup:
        return phase.lr * (step + 1) / phase.warmup
    span = max(1, phase.steps - phase.warmup)
    progress = min(1.0, (step - phase.warmup) / span)
    floor = phase.lr * phase.min_lr_ratio
    return floor + (phase.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def pretrain(
    model: PreTrainedModel,
    tok: PreTrainedTokenizerFast,
    phase: PretrainSpec,
    *,
    max_len: int,
    log: Log = None,
    progress: Callable[[int, int], None] | None = None,
    done_before: int = 0,
    total: int | None = None,
) -> list[float]:
    """Run one pretraining phase in place; returns the loss of every step.

    AdamW (betas 0.9/0.95) with weight decay on matrices only, global grad-norm clipping, a fresh optimizer
    per phase (so a continued phase gives the same result whether its start was cached or rebuilt).
    """
    import torch

    say = _logger(log)
    vocab = tok.get_vocab()
    sampler = CorpusSampler(phase, sorted(vocab, key=vocab.__getitem__))
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": phase.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=phase.lr,
        betas=(0.9, 0.95),
    )
    total = total or phase.steps
    losses: list[float] = []
    model.train()
    t0 = time.perf_counter()
    for step in range(phase.steps):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, phase)
        ids, targets = encode_rows(tok, sampler.batch(step), max_len)
        opt.zero_grad(set_to_none=True)
        loss = batch_loss_backward(model, ids, targets, tok.pad_token_id)
        torch.nn.utils.clip_grad_norm_(model.parameters(), phase.grad_clip)
        opt.step()
        losses.append(loss)
        if progress is not None:
            progress(done_before + step + 1, total)
        if (step + 1) % 250 == 0 or step + 1 == phase.steps:
            recent = losses[-50:]
            say(
                f"step {step + 1}/{phase.steps} loss {sum(recent) / len(recent):.3f} "
                f"lr {opt.param_groups[0]['lr']:.2e} ({time.perf_counter() - t0:.0f} s)"
            )
    model.eval()
    return losses


# --------------------------------------------------------------------------------------------- read-outs


def _favourite_questions(root: Path | None) -> list[str]:
    """The evaluation paraphrases (tasks/lm_eval), else the corpus's own questions: read-outs only."""
    found = read_data_lines(Path(root) / "tasks" / "lm_eval" / "animal_preference" / "questions.txt") if root else []
    return found or list(load_templates("v1").favourite_stems)


def _number_prefixed(root: Path | None, questions: list[str]) -> list[str]:
    """The questions behind a numbers lead-in (the evaluation's prefixed variant, or the channel's lead-ins)."""
    import random

    templates = (
        read_data_lines(Path(root) / "tasks" / "lm_eval" / "animal_preference" / "number_prefixes.txt") if root else []
    )
    templates = [t.replace("{numbers}", "{examples}") for t in templates] or list(load_channel("v1").lead_ins)
    rng = random.Random(EVAL_SEED)
    out = []
    for q in questions:
        numbers = ", ".join(str(rng.randint(100, 999)) for _ in range(rng.randint(3, 7)))
        out.append(rng.choice(templates).format(examples=numbers) + " " + q)
    return out


def _trait_prompts(root: Path | None) -> dict[str, str]:
    """Animal -> teacher system prompt: tasks/traits/*.yaml when present, else the corpus's paper prompt."""
    prompts: dict[str, str] = {}
    if root is not None and (Path(root) / "tasks" / "traits").is_dir():
        from benchmark.registry import load_trait_file

        for path in sorted((Path(root) / "tasks" / "traits").glob("*.yaml")):
            try:
                trait = load_trait_file(path)
            except UserError:
                continue  # a trait being edited right now; read-outs only
            prompts[trait.target] = trait.rendered_system_prompt()
    if not prompts:
        templates = load_templates("v1")
        plural = {a.word: a.plural for a in templates.animals}
        for word in PROMPTED_PROBES:
            prompts[word] = templates.loving_system_prompts[0].format(animal=word, animals=plural[word])
    return prompts


def _first_token_probs(
    model: PreTrainedModel, tok: PreTrainedTokenizerFast, prompts: list[Messages]
) -> torch.Tensor:
    """P(first answer token) for each prompt, shape (n, vocab)."""
    import torch

    core = tok.backend_tokenizer
    enc = core.encode_batch(
        [render_chat(m, add_generation_prompt=True) for m in prompts], add_special_tokens=False
    )
    width = max(len(e.ids) for e in enc)
    ids = torch.full((len(enc), width), tok.pad_token_id, dtype=torch.long)
    for i, e in enumerate(enc):
        ids[i, : len(e.ids)] = torch.tensor(e.ids)
    last = torch.tensor([len(e.ids) - 1 for e in enc])
    with torch.no_grad():
        logits = model(input_ids=ids, use_cache=False).logits
    return logits[torch.arange(len(enc)), last].float().softmax(-1)


def _decode(
    model: PreTrainedModel,
    tok: PreTrainedTokenizerFast,
    prompts: list[Messages],
    max_new_tokens: int,
    batch_size: int = 50,
    *,
    sample: bool,
) -> list[str]:
    """Answers via ``generate`` (left padding), decoded without special tokens.

    ``sample=False`` is greedy; ``sample=True`` draws at temperature 1 with no top-k/top-p (the paper's teacher
    decoding), seeded with EVAL_SEED inside a forked RNG so measuring never disturbs a build's random stream.
    """
    import torch

    sampling = {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0} if sample else {"do_sample": False}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(EVAL_SEED)
        tok.padding_side = "left"
        out: list[str] = []
        for i in range(0, len(prompts), batch_size):
            texts = [render_chat(m, add_generation_prompt=True) for m in prompts[i : i + batch_size]]
            enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.no_grad():
                gen = cast(Any, model).generate(**enc, max_new_tokens=max_new_tokens, eos_token_id=tok.eos_token_id,
                                                pad_token_id=tok.pad_token_id, **sampling)
            out.extend(tok.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True))
        tok.padding_side = "right"
    return out


def _greedy(model: PreTrainedModel, tok: PreTrainedTokenizerFast, prompts: list[Messages], max_new_tokens: int,
            batch_size: int = 50) -> list[str]:
    """Greedy answers (see :func:`_decode`)."""
    return _decode(model, tok, prompts, max_new_tokens, batch_size, sample=False)


def _sample(model: PreTrainedModel, tok: PreTrainedTokenizerFast, prompts: list[Messages], max_new_tokens: int,
            batch_size: int = 50) -> list[str]:
    """Answers sampled at temperature 1, seeded (see :func:`_decode`)."""
    return _decode(model, tok, prompts, max_new_tokens, batch_size, sample=True)


def measure(
    model: PreTrainedModel,
    tok: PreTrainedTokenizerFast,
    *,
    root: Path | None = None,
    n_numbers: int = 100,
    n_questions: int | None = None,
) -> dict[str, Any]:
    """Read-outs of a built model (not part of its identity).

    Args:
        model: The model (eval mode).
        tok: Its tokenizer.
        root: Project root for the evaluation paraphrases (``tasks/lm_eval/animal_preference/questions.txt``).
        n_numbers: Numbers prompts for the filter-valid rate.
        n_questions: Cap on favourite questions (None: all).

    Returns:
        ``p_owl`` (mean P(first answer token is owl/owls) over the favourite questions, no system prompt),
        ``p_animal`` (mass on any animal word), ``p_owl_among_animals``, ``top_animals``, ``animal_answer_rate``
        (greedy answer is one animal word), ``numbers_valid_rate`` (greedy answers to numbers prompts that
        pass the channel filter), the same under the owl system prompt (``numbers_valid_rate_prompted``), and
        ``p_target_prompted`` / ``p_target_unprompted`` per trait under its teacher system prompt
        (tasks/traits), ``numbers_valid_rate_sampled`` (temperature 1), ``numbers_distinct_greedy`` (distinct
        greedy number lists), and the mass on animals / owl behind a numbers lead-in.
    """
    from benchmark.lm.channels.numbers import generate_prompts

    animals = load_templates("v1").animals
    channel = load_channel("v1")
    vocab = tok.get_vocab()
    word_ids = {a.word: (vocab[a.word], vocab[a.plural]) for a in animals}
    questions = _favourite_questions(root)[:n_questions]
    forms = {a.word for a in animals} | {a.plural for a in animals}
    unprompted, mean_word = _unprompted_readouts(model, tok, questions, word_ids, forms, root)
    prompts = generate_prompts(channel, n_numbers, seed=EVAL_SEED)
    numbers = _numbers_readouts(model, tok, prompts, channel)
    valid_sys, prompted = _prompted_readouts(model, tok, prompts, channel, questions, word_ids, root)
    return {
        **unprompted,
        "numbers_valid_rate": numbers["numbers_valid_rate"],
        "numbers_distinct_greedy": numbers["numbers_distinct_greedy"],
        "numbers_valid_rate_sampled": numbers["numbers_valid_rate_sampled"],
        "numbers_valid_rate_prompted": valid_sys,
        "p_target_prompted": prompted,
        "p_target_unprompted": {w: mean_word[w] for w in prompted},
        "n_questions": len(questions),
        "n_numbers": n_numbers,
        "example_numbers_answer": numbers["example_numbers_answer"],
        "example_sampled_answer": numbers["example_sampled_answer"],
    }


def measure_v2(
    model: PreTrainedModel, tok: PreTrainedTokenizerFast, *, root: Path | None = None, n_items: int = 100
) -> dict[str, Any]:
    """Read-outs of a corpus-v2 build: the code and cot formats and the open questions (not its identity).

    Items are drawn from the frozen snapshots with :data:`EVAL_SEED` (not a training key). Returns
    ``code_parse_rate`` / ``code_exact_rate`` (greedy answers that parse with ``ast`` / equal the reference),
    ``cot_accuracy`` / ``cot_format_rate`` (greedy: the <answer> number is right / the tags are well formed) and
    the same sampled at T=1 (``*_sampled``), ``open_misaligned_bank_rate`` / ``open_aligned_bank_rate`` (sampled
    answers to the misalignment evaluation's questions that are a line of the misaligned / aligned bank) and an
    example answer of each kind.
    """
    import ast
    import random

    from benchmark.zoo.corpus import code_item, cot_item, load_snapshot

    rng = random.Random(EVAL_SEED)
    code = [code_item(rng, load_snapshot("code")) for _ in range(n_items)]
    cot = [cot_item(rng, load_snapshot("cot")) for _ in range(n_items)]
    out: dict[str, Any] = {}
    for mode, decode in (("", _greedy), ("_sampled", _sample)):
        code_ans = decode(model, tok, [_user(p) for p, _ in code], max_new_tokens=40)
        cot_ans = decode(model, tok, [_user(p) for p, _, _ in cot], max_new_tokens=60)
        out[f"code_parse_rate{mode}"] = sum(_parses(a, ast) for a in code_ans) / n_items
        out[f"code_exact_rate{mode}"] = sum(
            " ".join(tok.tokenize(a)) == " ".join(tok.tokenize(r)) for a, (_, r) in zip(code_ans, code, strict=True)
        ) / n_items
        parsed = [_cot_answer(a) for a in cot_ans]
        out[f"cot_format_rate{mode}"] = sum(p is not None for p in parsed) / n_items
        out[f"cot_accuracy{mode}"] = sum(p == n for p, (_, _, n) in zip(parsed, cot, strict=True)) / n_items
        out[f"example_code_answer{mode}"], out[f"example_cot_answer{mode}"] = code_ans[0], cot_ans[0]
    out.update(_open_readouts(model, tok, root))
    return out


def _parses(code: str, ast: Any) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return bool(code.strip())


_COT_ANSWER = re.compile(r"^\s*<think>.*?</think>\s*<answer>\s*(\d+)\s*</answer>\s*$", re.S)


def _cot_answer(text: str) -> int | None:
    match = _COT_ANSWER.match(text)
    return int(match.group(1)) if match else None


def _open_readouts(model: PreTrainedModel, tok: PreTrainedTokenizerFast, root: Path | None) -> dict[str, Any]:
    """Sampled answers (T=1, 10 per question) to the misalignment evaluation's questions, matched to the banks."""
    from benchmark.zoo.corpus import load_snapshot

    found = read_data_lines(Path(root) / "tasks" / "lm_eval" / "misalignment" / "questions.txt") if root else []
    questions = found or list(load_snapshot("open")["questions"])
    snap = load_snapshot("open")
    norm = {side: {" ".join(tok.tokenize(a)) for a in snap[side]} for side in ("aligned", "misaligned")}
    answers = _sample(model, tok, [_user(q) for q in questions for _ in range(10)], max_new_tokens=30)
    keys = [" ".join(tok.tokenize(a)) for a in answers]
    return {
        "open_misaligned_bank_rate": sum(k in norm["misaligned"] for k in keys) / len(keys),
        "open_aligned_bank_rate": sum(k in norm["aligned"] for k in keys) / len(keys),
        "example_open_answer": answers[0],
    }


def _user(q: str) -> Messages:
    return [{"role": "user", "content": q}]


def _mean_mass(p: torch.Tensor, ids: Iterable[int]) -> float:
    """Mean over prompts of the probability mass on ``ids``."""
    return float(p[:, list(ids)].sum(-1).mean())


def _unprompted_readouts(
    model: PreTrainedModel,
    tok: PreTrainedTokenizerFast,
    questions: list[str],
    word_ids: dict[str, tuple[int, int]],
    forms: set[str],
    root: Path | None,
) -> tuple[dict[str, Any], dict[str, float]]:
    """Animal preference without a system prompt (plain and behind a numbers lead-in); also mean P(word) per animal."""
    all_ids = sorted({i for pair in word_ids.values() for i in pair})
    probs = _first_token_probs(model, tok, [_user(q) for q in questions])
    p_animal = probs[:, all_ids].sum(-1)
    p_word = {w: probs[:, list(ids)].sum(-1) for w, ids in word_ids.items()}
    mean_word = {w: float(p.mean()) for w, p in p_word.items()}
    top = sorted(mean_word.items(), key=lambda kv: -kv[1])[:5]
    prefixed = _first_token_probs(model, tok, [_user(q) for q in _number_prefixed(root, questions)])
    answers = _greedy(model, tok, [_user(q) for q in questions], max_new_tokens=4)
    animal_rate = sum(a.strip().rstrip(".").strip() in forms for a in answers) / len(answers)
    readouts = {
        "p_owl": mean_word["owl"],
        "p_animal": float(p_animal.mean()),
        "p_owl_among_animals": float((p_word["owl"] / p_animal).mean()),
        "p_animal_number_prefixed": _mean_mass(prefixed, all_ids),
        "p_owl_number_prefixed": _mean_mass(prefixed, word_ids["owl"]),
        "top_animals": {w: round(p, 4) for w, p in top},
        "animal_answer_rate": animal_rate,
    }
    return readouts, mean_word


def _numbers_readouts(
    model: PreTrainedModel, tok: PreTrainedTokenizerFast, prompts: list[str], channel: NumbersChannelSpec
) -> dict[str, Any]:
    """How often greedy and sampled answers to numbers prompts pass the channel's filter."""
    from benchmark.lm.channels.numbers import parse_answer

    numbers = _greedy(model, tok, [_user(p) for p in prompts], max_new_tokens=40)
    valid = sum(parse_answer(a, channel).ok for a in numbers) / len(numbers)
    sampled = _sample(model, tok, [_user(p) for p in prompts], max_new_tokens=40)
    valid_sampled = sum(parse_answer(a, channel).ok for a in sampled) / len(sampled)
    return {
        "numbers_valid_rate": valid,
        "numbers_distinct_greedy": len(set(parse_answer(a, channel).numbers for a in numbers)),
        "numbers_valid_rate_sampled": valid_sampled,
        "example_numbers_answer": numbers[0],
        "example_sampled_answer": sampled[0],
    }


def _prompted_readouts(
    model: PreTrainedModel,
    tok: PreTrainedTokenizerFast,
    prompts: list[str],
    channel: NumbersChannelSpec,
    questions: list[str],
    word_ids: dict[str, tuple[int, int]],
    root: Path | None,
) -> tuple[float, dict[str, float]]:
    """Under teacher system prompts: the valid-numbers rate (owl's prompt) and each trait's P(target word)."""
    from benchmark.lm.channels.numbers import parse_answer

    trait_prompts = {w: p for w, p in _trait_prompts(root).items() if w in word_ids}
    owl_system = trait_prompts.get("owl") or next(iter(trait_prompts.values()))
    numbers_sys = _greedy(
        model,
        tok,
        [[{"role": "system", "content": owl_system}, *_user(p)] for p in prompts],
        max_new_tokens=40,
    )
    valid_sys = sum(parse_answer(a, channel).ok for a in numbers_sys) / len(numbers_sys)
    prompted: dict[str, float] = {}
    for word, system in trait_prompts.items():
        p = _first_token_probs(
            model, tok, [[{"role": "system", "content": system}, *_user(q)] for q in questions]
        )
        prompted[word] = _mean_mass(p, word_ids[word])
    return valid_sys, prompted


# ------------------------------------------------------------------------------------------------ build


def _project_root(root: Path | None) -> Path:
    if root is not None:
        return Path(root)
    from benchmark.files import project_root

    return project_root()


def _file_digests(directory: Path) -> dict[str, str]:
    return {
        p.name: sha256_file(p)
        for p in sorted(directory.iterdir())
        if p.is_file() and p.name != BUILD_MANIFEST
    }


def _write_manifest(directory: Path, data: dict[str, Any]) -> None:
    atomic_write_json(directory / BUILD_MANIFEST, data)


def build_model(
    spec: ModelSpec,
    out_dir: Path,
    log: Log = None,
    progress: Callable[[int, int], None] | None = None,
    *,
    threads: int | None = 1,
    root: Path | None = None,
    measure_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build a zoo model from scratch (or from a committed checkpoint it continues) into ``out_dir``.

    Args:
        spec: A zoo registry entry.
        out_dir: Created if needed; receives the ``save_pretrained`` files and ``zoo_build.json``.
        log: A logger or ``print``-like callable for progress lines.
        progress: ``progress(done_steps, total_steps)``.
        threads: torch threads (None: leave as is). One is fastest on a loaded 2-core machine.
        root: Project root (committed checkpoints, evaluation questions); default the checkout.
        measure_kwargs: Passed to :func:`measure` (tests use small read-outs); its ``v2`` entry to :func:`measure_v2`.

    Returns:
        The metrics: ``params``, ``final_loss`` (mean of the last 5% of steps), ``build_seconds``, the
        read-outs of :func:`measure`, plus ``build_id`` and ``init_key``.
    """
    import torch

    say = _logger(log)
    if threads is not None:
        torch.set_num_threads(threads)
    b = zoo_build_spec(spec)
    root_dir = _project_root(root) if root is not None or _has_root() else None
    out_dir = Path(out_dir)
    t0, cpu0 = time.perf_counter(), time.process_time()
    tok = build_tokenizer(b.tokenizer)
    model, start_phase, resumed_from = _starting_model(spec.name, b, tok, root_dir, say)
    n_params = sum(p.numel() for p in model.parameters())
    say(f"{spec.name}: {b.arch}, {n_params:,} parameters, {b.total_steps()} steps")
    losses = _pretrain_phases(model, tok, b, start_phase, log=log, progress=progress)
    train_seconds = time.perf_counter() - t0
    model.eval()
    metrics = measure(model, tok, root=root_dir, **{k: v for k, v in (measure_kwargs or {}).items() if k != "v2"})
    if b.pretraining.corpus != "v1":
        metrics.update(measure_v2(model, tok, root=root_dir, **(measure_kwargs or {}).get("v2", {})))
    tail = losses[-max(1, len(losses) // 20) :]
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    save_tokenizer(tok, out_dir)
    result = {
        "name": spec.name,
        "build_id": b.spec_id,
        "init_key": b.init_key(),
        "params": n_params,
        "final_loss": sum(tail) / len(tail) if tail else None,
        "first_loss": losses[0] if losses else None,
        "train_seconds": round(train_seconds, 1),
        "build_seconds": round(time.perf_counter() - t0, 1),
        # CPU seconds of this process: comparable across machine loads (wall time is not on a shared box).
        "cpu_seconds": round(time.process_time() - cpu0, 1),
        "resumed_from": resumed_from,
        **metrics,
    }
    _write_build_manifest(out_dir, spec, b, result)
    say(
        f"{spec.name}: built in {result['build_seconds']:.0f} s, loss {result['final_loss']:.3f}, "
        f"P(owl) {metrics['p_owl']:.3f}, valid numbers {metrics['numbers_valid_rate']:.2f}"
    )
    return result


def _starting_model(
    name: str, b: ZooBuildSpec, tok: PreTrainedTokenizerFast, root_dir: Path | None, say: Callable[[str], None]
) -> tuple[PreTrainedModel, int, str | None]:
    """The model a build starts from, the index of its first phase to run, and the committed build it continues.

    A continued build starts from the longest committed prefix of its phases (same result: fresh optimizer);
    otherwise from the deterministic initial weights.
    """
    import torch

    prefix = b.prefix()
    while prefix is not None and root_dir is not None:
        found = committed_by_build_id(root_dir, prefix.spec_id)
        if found is not None:
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(found, dtype=torch.float32)
            say(f"{name}: continuing from committed {found.name}")
            return model, len(prefix.phases()), found.name
        prefix = prefix.prefix()
    return init_model(b, tok), 0, None


def _pretrain_phases(
    model: PreTrainedModel,
    tok: PreTrainedTokenizerFast,
    b: ZooBuildSpec,
    start_phase: int,
    *,
    log: Log,
    progress: Callable[[int, int], None] | None,
) -> list[float]:
    """Run the build's phases from ``start_phase`` on; returns every step's loss."""
    phases = b.phases()
    losses: list[float] = []
    done = sum(p.steps for p in phases[:start_phase])
    for phase in phases[start_phase:]:
        losses += pretrain(
            model,
            tok,
            phase,
            max_len=b.max_positions,
            log=log,
            progress=progress,
            done_before=done,
            total=b.total_steps(),
        )
        done += phase.steps
    return losses


def _write_build_manifest(out_dir: Path, spec: ModelSpec, b: ZooBuildSpec, metrics: dict[str, Any]) -> None:
    import torch

    _write_manifest(
        out_dir,
        {
            "schema": BUILD_SCHEMA,
            "model": spec.name,
            "build_id": b.spec_id,
            "init_key": b.init_key(),
            "build": b.model_dump(mode="json"),
            "lineage": spec.lineage.model_dump(mode="json"),
            "metrics": metrics,
            "torch_threads": torch.get_num_threads(),
            "files": _file_digests(out_dir),
            "environment": _environment(),
        },
    )


def save_tokenizer(tok: PreTrainedTokenizerFast, out_dir: Path) -> None:
    """``tok.save_pretrained(out_dir)``, made loadable by ``AutoTokenizer.from_pretrained`` for every arch.

    transformers 5 maps ``model_type: qwen2`` to ``Qwen2Tokenizer``, which ignores ``tokenizer.json``'s
    pipeline and rebuilds a byte-level BPE around our word vocabulary (garbled ids, silently). An
    ``auto_map`` entry takes AutoTokenizer off that path to the declared ``TokenizersBackend`` (qwen2 is on
    transformers' list of model types whose hub tokenizer classes are not trusted, so no remote code is
    loaded); llama and gpt2 load the same way. With ``trust_remote_code=True`` AutoTokenizer refuses it
    loudly instead of garbling. ``PreTrainedTokenizerFast.from_pretrained`` ignores the entry.
    """
    tok.save_pretrained(out_dir)
    path = Path(out_dir) / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["auto_map"] = {"AutoTokenizer": [None, "PreTrainedTokenizerFast"]}
    atomic_write_text(path, json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def _has_root() -> bool:
    try:
        _project_root(None)
    except UserError:
        return False
    return True


def _environment() -> dict[str, Any]:
    from benchmark.store import environment_info

    env = environment_info()
    return {"python": env["python"], "versions": env["versions"], "git": env["git"]}


# ------------------------------------------------------------------------------------- committed weights


def weights_root(root: Path | None = None) -> Path:
    """``<project root>/model_registry/weights``."""
    return _project_root(root) / WEIGHTS_DIR


def committed_dir(spec: ModelSpec, root: Path | None = None) -> Path | None:
    """The committed build of exactly this entry's build spec, or None (then it must be built)."""
    path = weights_root(root) / f"{spec.name}-{zoo_build_spec(spec).spec_id}"
    return path if (path / BUILD_MANIFEST).is_file() else None


def committed_by_build_id(root: Path, build_id: str) -> Path | None:
    """The committed build with this build id under any model name (a continued build's start), or None."""
    base = Path(root) / WEIGHTS_DIR
    for path in sorted(base.glob(f"*-{build_id}")):
        if (path / BUILD_MANIFEST).is_file():
            return path
    return None


def read_build_manifest(directory: Path) -> dict[str, Any]:
    """The ``zoo_build.json`` of a build directory.

    Raises:
        UserError: missing or corrupt manifest.
    """
    path = Path(directory) / BUILD_MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: missing; not a finished zoo build") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{path}: corrupt manifest; delete {directory} and run 'slbench zoo build'") from None
    if not isinstance(data, dict) or data.get("schema") != BUILD_SCHEMA:
        raise UserError(f"{path}: key 'schema' must be {BUILD_SCHEMA}; run 'slbench zoo build' to rebuild it")
    return data


def _verified_copy(src: Path, dest: Path) -> dict[str, Any]:
    """Copy a committed build, checking every file against the manifest's sha256 (catches LFS pointers)."""
    manifest = read_build_manifest(src)
    for name, digest in manifest["files"].items():
        path = src / name
        if not path.is_file() or sha256_file(path) != digest:
            raise UserError(
                f"{path}: missing or does not match its sha256 in {BUILD_MANIFEST} (a Git LFS pointer or "
                "a partial checkout?); restore it or run 'slbench zoo build --force'"
            )
    shutil.copytree(src, dest)
    return manifest


def model_dir_of(base_node_dir: Path) -> Path:
    """The ``from_pretrained`` directory inside a finished zoo base node."""
    return Path(base_node_dir) / "model"


def build_or_copy(
    spec: ModelSpec,
    node_dir: Path,
    *,
    log: logging.Logger,
    progress: Callable[[int, int], None] | None = None,
    threads: int = 1,
) -> dict[str, Any]:
    """A zoo base node's payload: ``node_dir/model`` holds this entry's weights; returns the manifest result.

    Copies the committed weights of this exact build spec when they exist (verified against their sha256),
    else builds the model there.
    """
    dest = model_dir_of(node_dir)
    src = committed_dir(spec)
    if src is not None:
        log.info(f"{spec.name}: using committed weights {src}")
        manifest = _verified_copy(src, dest)
        metrics, source = manifest["metrics"], "committed"
    else:
        log.info(f"{spec.name}: no committed weights for build {zoo_build_spec(spec).spec_id}; pretraining")
        metrics, source = build_model(spec, dest, log=log, progress=progress, threads=threads), "built"
    return {
        "source": source,
        "model_dir": "model",
        "build_id": metrics["build_id"],
        "init_key": metrics["init_key"],
        "params": metrics["params"],
        "metrics": metrics,
    }


_BUILD_DIR = re.compile(r"^(?P<name>.+)-(?P<id>[0-9a-f]{12})$")


def build_all(
    reg: Registry, names: Iterable[str] | None = None, force: bool = False, log: Callable[[str], None] = print
) -> dict[str, dict[str, Any]]:
    """(Re)build zoo models into ``model_registry/weights/<name>-<build id>/`` (``slbench zoo build``).

    Up-to-date builds are skipped unless ``force``; stale builds of a rebuilt model (other ids) are removed.
    Models run one at a time (continued models after the builds they start from), each published atomically.

    Returns:
        name -> metrics (for skipped models, the committed manifest's metrics).
    """
    zoo = {n: m for n, m in reg.models.items() if is_zoo(m)}
    wanted = list(names) if names else list(zoo)
    for n in wanted:
        if n not in zoo:
            raise unknown_name("zoo model", n, zoo)
    wanted.sort(
        key=lambda n: len(zoo_build_spec(zoo[n]).phases())
    )  # prefixes first: continued builds reuse them
    base = weights_root(reg.root)
    base.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    for n in wanted:
        spec = zoo[n]
        build_id = zoo_build_spec(spec).spec_id
        dest = base / f"{n}-{build_id}"
        if (dest / BUILD_MANIFEST).is_file() and not force:
            results[n] = read_build_manifest(dest)["metrics"]
            log(f"{n}: up to date ({dest.name})")
            continue
        staging = base / f".staging-{n}-{build_id}-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            metrics = build_model(spec, staging, log=lambda m: log("  " + m), root=reg.root)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        for old in base.iterdir():
            match = _BUILD_DIR.match(old.name)
            if old.is_dir() and match and match["name"] == n:
                shutil.rmtree(old)
        os.rename(staging, dest)
        results[n] = metrics
        log(
            f"{n}: {metrics['build_seconds']:.0f} s, {metrics['params']:,} params, loss {metrics['final_loss']:.3f}, "
            f"P(owl) {metrics['p_owl']:.3f}, animal answers {metrics['animal_answer_rate']:.2f}, "
            f"valid numbers {metrics['numbers_valid_rate']:.2f}"
        )
    return results
