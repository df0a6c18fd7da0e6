"""Hugging Face model operations of the zoo and hf backends: load, generate, score, evaluate (training: hf_train).

One code path serves the embedded tiny zoo models on CPU and real Qwen2.5 / Llama checkpoints on GPUs.
Everything that differs between families comes from the registry entry (:class:`~benchmark.specs.ModelSpec`:
``chat_template``, ``allow_default_system_prompt``, ``lora_targets``, ``dtype``, ``trust_remote_code``) or
is derived from the loaded objects (GPT-2's Conv1D layers, a template's end-of-turn token), never from a
family name (docs/architecture.md, convention 5). Chat rendering, stop tokens and row seeds come from :mod:`benchmark.lmcore.chat`.

**Generation** is a plain loop over the model's forward pass with a KV cache and left padding, not
``model.generate``: it gives per-row sampling streams and the teacher's top-k log-probs of the raw T=1
distribution without post-processing ``scores``, and it was faster on tiny CPU models (see :func:`generate`).
Row ``i`` draws its uniforms from its own generator seeded by ``row_seed(seed, i)``, so a row's completion does
not depend on the batch size, the batch composition or the other prompts.

This module imports torch: the light :mod:`benchmark.providers.hf` imports it inside its methods only.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from benchmark.errors import UserError
from benchmark.lmcore.chat import answer_suffix, render_prompt, row_seed, stop_ids
from benchmark.lmcore.evaluate import DEFAULT_TASKS, EvalEngine, run_tasks
from benchmark.providers import vllm as vllm_generation
from benchmark.providers.base import Progress
from benchmark.specs import ModelSpec

__all__ = [
    "evaluate_lm",
    "generate",
    "load_model",
    "load_tokenizer",
    "logit_change",
    "model_device",
    "quiet_peft",
    "sequence_logprobs",
]

# Tokenizer classes that mean "exactly the saved tokenizer.json". transformers 5 replaces them by the
# architecture's own class for some model types (a qwen2 config forces Qwen2Tokenizer, which rebuilds a BPE
# and garbles the zoo's word-level vocabularies), so a directory that declares one is loaded as declared.
_GENERIC_TOKENIZER_CLASSES = frozenset({"TokenizersBackend", "PreTrainedTokenizerFast"})
# Prompts logit_change uses when none are given: plain text any tokenizer can encode.
_PROBE_PROMPTS = ("Name your favorite animal using only one word.", "Continue this sequence: 1, 2, 3")


# -- loading --------------------------------------------------------------------------------------------------
def _label(source: str | None, spec: ModelSpec | None) -> str:
    return spec.name if spec is not None else str(source)


def _source(model_dir: str | os.PathLike[str] | None, spec: ModelSpec | None) -> str:
    source = model_dir if model_dir is not None else (spec.source if spec is not None else None)
    if model_dir is None and spec is not None and spec.source is not None:
        from benchmark.models_fetch import resolve_source

        source = resolve_source(spec)  # a fetched entry's cache directory; other sources as written
    if source is None:
        name = spec.name if spec is not None else "?"
        raise UserError(
            f"model {name!r}: no weights location; set `source:` in its registry entry to a local "
            "directory or a Hugging Face hub id"
        )
    return str(source)


def _hub_kwargs(source: str, spec: ModelSpec | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"trust_remote_code": bool(spec is not None and spec.trust_remote_code)}
    if spec is not None and spec.revision and not Path(source).is_dir():
        kwargs["revision"] = spec.revision
    return kwargs


def _load_error(what: str, source: str, spec: ModelSpec | None, exc: BaseException) -> UserError:
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    looks_local = Path(source).is_dir() or source.startswith(("/", ".", "~")) or os.sep + os.sep in source
    if looks_local:
        fix = (
            "put the checkpoint (config, weights, tokenizer files) in that directory, or point `source:` in "
            "its registry entry at the directory that holds it"
        )
    else:
        fix = (
            f"download it into the Hugging Face cache first (`hf download {source}` with the same HF_HOME) "
            "when running offline, or set `source:` in its registry entry to a local directory holding it"
        )
    return UserError(
        f"model {_label(source, spec)!r}: cannot load its {what} from {source!r} ({reason}); {fix}"
    )


def _declares_generic_tokenizer(source: str) -> bool:
    cfg = Path(source) / "tokenizer_config.json"
    if not cfg.is_file() or not (Path(source) / "tokenizer.json").is_file():
        return False
    try:
        declared = json.loads(cfg.read_text(encoding="utf-8")).get("tokenizer_class")
    except (OSError, json.JSONDecodeError):
        return False
    return declared in _GENERIC_TOKENIZER_CLASSES


def load_tokenizer(model_dir: str | os.PathLike[str] | None = None, *, spec: ModelSpec | None = None) -> Any:
    """Load a model's tokenizer with the registry's chat template, a pad token and left padding.

    Args:
        model_dir: local directory or hub id; defaults to ``spec.source``.
        spec: the registry entry: ``chat_template`` overrides the tokenizer's, ``revision`` and
            ``trust_remote_code`` are passed to ``from_pretrained``.

    Raises:
        UserError: the tokenizer cannot be found (offline and not cached, or a wrong path).
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    source = _source(model_dir, spec)
    kwargs = _hub_kwargs(source, spec)
    try:
        if _declares_generic_tokenizer(source):
            tok = PreTrainedTokenizerFast.from_pretrained(source, **kwargs)
        else:
            tok = AutoTokenizer.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        raise _load_error("tokenizer", source, spec, exc) from None
    if spec is not None and spec.chat_template is not None:
        tok.chat_template = spec.chat_template
    if tok.pad_token_id is None:
        # Padding positions are always masked out, so reusing EOS as padding is harmless.
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


@contextlib.contextmanager
def quiet_peft() -> Iterator[None]:
    """Silence peft 0.21's use of a transformers-5-deprecated attribute (a FutureWarning in every stage log)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def _device(device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _dtype(spec: ModelSpec | None, device: torch.device) -> torch.dtype:
    name = spec.dtype if spec is not None else "auto"
    if name == "auto":
        # bf16 halves memory on GPUs; CPUs run fp32 (bf16 matmuls are slow there and tiny models are cheap).
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if cuda_bf16 else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def load_model(
    model_dir: str | os.PathLike[str] | None = None,
    *,
    spec: ModelSpec | None = None,
    adapter_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
    for_training: bool = False,
    tokenizer_only: bool = False,
) -> tuple[Any, Any]:
    """Load a causal LM (optionally with a LoRA adapter) and its tokenizer.

    Args:
        model_dir: local directory or hub id; defaults to ``spec.source``.
        spec: the registry entry (dtype, chat template, revision, trust_remote_code).
        adapter_dir: a peft adapter directory to load on top (kept unmerged, so ``disable_adapter()``
            gives the base back).
        device: defaults to CUDA when available, else CPU.
        for_training: train mode and trainable adapter weights; otherwise eval mode.
        tokenizer_only: return ``(None, tokenizer)`` without loading weights.

    Returns:
        ``(model, tokenizer)``; the tokenizer pads on the left (generation) and has a pad token.

    Raises:
        UserError: weights or adapter not found (one line naming the model and how to provide it).
    """
    from transformers import AutoModelForCausalLM

    tok = load_tokenizer(model_dir, spec=spec)
    if tokenizer_only:
        return None, tok
    source = _source(model_dir, spec)
    dev = _device(device)
    kwargs = _hub_kwargs(source, spec)
    if dev.type == "cuda":
        # Load straight onto the GPU instead of materialising a 7B model in CPU memory first.
        kwargs["device_map"] = str(dev)
    try:
        model: Any = AutoModelForCausalLM.from_pretrained(source, dtype=_dtype(spec, dev), **kwargs)
    except (OSError, ValueError) as exc:
        raise _load_error("weights", source, spec, exc) from None
    model.to(dev)
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tok.pad_token_id
    if adapter_dir is not None:
        model = _with_adapter(model, adapter_dir, for_training, _label(source, spec))
    model.train(for_training)
    return model, tok


def _with_adapter(model: Any, adapter_dir: str | os.PathLike[str], trainable: bool, label: str) -> Any:
    """``model`` wrapped with the peft adapter saved in ``adapter_dir``."""
    from peft import PeftModel

    if not (Path(adapter_dir) / "adapter_config.json").is_file():
        raise UserError(
            f"model {label!r}: {adapter_dir} is not a LoRA adapter directory "
            "(no adapter_config.json); rerun the training stage that should have written it"
        )
    with quiet_peft():
        peft_model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=trainable)
    # Saved adapters do not record where their base was (a store path would make identical adapters differ
    # between stores): the base is the model just loaded, whatever the file says (vLLM reads this field).
    for cfg in peft_model.peft_config.values():
        cfg.base_model_name_or_path = getattr(model, "name_or_path", None) or cfg.base_model_name_or_path
    return peft_model


def model_device(model: Any) -> torch.device:
    """The device of a model's (first) parameters."""
    return next(model.parameters()).device


@contextlib.contextmanager
def _eval_mode(model: Any) -> Iterator[None]:
    """Eval mode for the duration (no dropout), then the caller's train/eval mode back."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


# -- generation -----------------------------------------------------------------------------------------------
def _forward(model: Any, **kwargs: Any) -> Any:
    """``model(**kwargs)``, dropping ``logits_to_keep`` for (remote-code) models that do not accept it."""
    try:
        return model(**kwargs)
    except TypeError as exc:
        if "logits_to_keep" not in str(exc):
            raise
        kwargs.pop("logits_to_keep")
        return model(**kwargs)


def _left_pad(
    seqs: Sequence[Sequence[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s) :] = 1
    return ids.to(device), mask.to(device)


def _row_uniforms(seeds: list[int], max_new_tokens: int, device: torch.device) -> torch.Tensor:
    """(step, row) uniforms, each row from its own stream, so its samples do not depend on the other rows.

    Stored (step, row) so that ``uniforms[t]`` is a contiguous column for searchsorted.
    """
    return torch.stack(
        [torch.rand(max_new_tokens, generator=torch.Generator().manual_seed(s), dtype=torch.float64) for s in seeds],
        dim=1,
    ).to(device)


def threshold_mask(logits: torch.Tensor, temperature: float, threshold: float) -> torch.Tensor:
    """Threshold sampling's kept tokens (``settings.dataset.threshold``, temperature > 0): those whose probability at
    the sampling temperature is at least ``threshold``, and the most likely token always."""
    probs = torch.softmax(logits / temperature, dim=-1)
    keep = probs >= threshold
    keep[torch.arange(len(logits), device=logits.device), logits.argmax(-1)] = True
    return keep


def _sample(logits: torch.Tensor, temperature: float, uniforms: torch.Tensor | None,
            keep: torch.Tensor | None = None) -> torch.Tensor:
    """Next token per row: argmax at temperature 0, else inverse-CDF sampling with the row's uniform (over the
    ``keep`` tokens only when given, renormalised)."""
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / temperature, dim=-1).double()
    if keep is not None:
        probs = probs * keep
    cdf = probs.cumsum(-1)
    cdf = cdf / cdf[:, -1:]  # exact 1.0 at the end, so u < 1 always lands on a token
    assert uniforms is not None
    return torch.searchsorted(cdf, uniforms[:, None], right=True).squeeze(1)


@torch.inference_mode()
def _generate_batch(
    model: Any,
    prompt_ids: list[list[int]],
    seeds: list[int],
    *,
    pad_id: int,
    stop: set[int],
    temperature: float,
    max_new_tokens: int,
    top_k: int | None,
    threshold: float | None = None,
) -> list[dict[str, Any]]:
    device = model_device(model)
    ids, mask = _left_pad(prompt_ids, pad_id, device)
    # Positions count real tokens only, so a left-padded row sees the same positions as it would alone.
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    n = len(prompt_ids)
    uniforms = _row_uniforms(seeds, max_new_tokens, device) if temperature > 0 else None
    stop_t = torch.tensor(sorted(stop), dtype=torch.long, device=device)
    finished = torch.zeros(n, dtype=torch.bool, device=device)
    out_ids: list[list[int]] = [[] for _ in range(n)]
    out_topk: list[list[list[list[float]]]] = [[] for _ in range(n)]
    cache = None
    step_ids, step_mask, step_pos = ids, mask, positions
    for t in range(max_new_tokens):
        out = _forward(model, input_ids=step_ids, attention_mask=step_mask, position_ids=step_pos,
                       past_key_values=cache, use_cache=True, logits_to_keep=1)
        cache = out.past_key_values
        logits = out.logits[:, -1, :].float()
        keep = threshold_mask(logits, temperature, threshold) if threshold and temperature > 0 else None
        nxt = _sample(logits, temperature, uniforms[t] if uniforms is not None else None, keep)
        if top_k:
            # Top-k of the raw T=1 distribution (what a distilling student should match), whatever the
            # sampling temperature; with a threshold, of the T=1 distribution over the kept tokens, renormalised
            # (tokens the threshold removed are left out of the top-k: they could never be written).
            raw = logits if keep is None else logits.masked_fill(~keep, float("-inf"))
            vals, idx = torch.log_softmax(raw, dim=-1).topk(top_k, dim=-1)
            vals_l, idx_l = vals.tolist(), idx.tolist()
            if keep is not None:
                pairs = [[(j, v) for j, v in zip(r_i, r_v, strict=True) if v != float("-inf")]
                         for r_i, r_v in zip(idx_l, vals_l, strict=True)]
                idx_l = [[j for j, _ in p] for p in pairs]
                vals_l = [[v for _, v in p] for p in pairs]
        nxt = torch.where(finished, torch.full_like(nxt, pad_id), nxt)
        nxt_l = nxt.tolist()
        done_l = finished.tolist()
        for i in range(n):
            if not done_l[i]:
                out_ids[i].append(nxt_l[i])
                if top_k:
                    out_topk[i].append([[j, v] for j, v in zip(idx_l[i], vals_l[i], strict=True)])
        finished = finished | torch.isin(nxt, stop_t)
        if bool(finished.all()):
            break
        step_ids = nxt[:, None]
        step_mask = torch.cat([step_mask, torch.ones((n, 1), dtype=step_mask.dtype, device=device)], dim=1)
        step_pos = step_pos[:, -1:] + 1
    return [{"completion_ids": out_ids[i], "topk": out_topk[i] if top_k else None} for i in range(n)]


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    system: str | None = None,
    spec: ModelSpec | None = None,
    temperature: float = 1.0,
    max_new_tokens: int = 40,
    seed: int = 0,
    batch_size: int = 64,
    top_k_logprobs: int | None = None,
    progress: Progress | None = None,
    threshold: float | None = None,
) -> list[dict[str, Any]]:
    """Answer each prompt once as a chat assistant (batched, KV cache, left padding).

    Sampling is plain temperature sampling (no top-p / top-k truncation, as in the paper); ``temperature=0``
    is greedy. Prompt ``i`` samples from its own random stream seeded by ``(seed, i)``: results depend on the
    seed and the prompt's position, not on ``batch_size`` (prompts are batched by length to cut padding), and
    repeated prompts get independent samples. Deterministic on CPU.

    Args:
        model: a causal LM (with or without adapter), e.g. from :func:`load_model`.
        tokenizer: its tokenizer.
        prompts: user messages.
        system: a system prompt for every prompt (prompted teachers); None for none.
        spec: the registry entry (chat rendering rules, see :func:`benchmark.lmcore.chat.render_prompt`).
        temperature: sampling temperature; 0 = greedy.
        max_new_tokens: cap on generated tokens per prompt.
        seed: base seed of the per-prompt random streams.
        batch_size: prompts per forward pass (throughput only).
        top_k_logprobs: also return the top-k log-probs of the raw (T=1) next-token distribution at every
            generated position.
        progress: called as ``progress(done, total)`` after each batch.
        threshold: threshold sampling (temperature > 0): tokens with probability below it at the sampling temperature
            are never sampled (the most likely token always may be), the rest renormalised; the returned top-k is
            then the T=1 distribution over the kept tokens, renormalised. None: plain sampling.

    Returns:
        One dict per prompt, in order: ``completion`` (decoded, special tokens stripped),
        ``completion_ids`` (generated ids, including the end-of-turn token when produced) and ``topk``
        (None, or per position a list of ``[token_id, logprob]`` pairs, most likely first).
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    # Optional vLLM path: only with SLBENCH_VLLM=1, vllm installed and a CUDA device (never in CI); it imports
    # vllm itself, lazily. batch_size does not apply there (vLLM schedules its own batches).
    if threshold and vllm_generation.enabled():
        raise ValueError("settings.dataset.threshold: threshold sampling runs on the hf generation path only; unset "
                         "SLBENCH_VLLM for this suite")
    if vllm_generation.enabled():
        return vllm_generation.generate_loaded(
            model, tokenizer, prompts, system=system, spec=spec, temperature=temperature,
            max_new_tokens=max_new_tokens, seed=seed, top_k_logprobs=top_k_logprobs, progress=progress,
        )
    texts = [render_prompt(tokenizer, p, system=system, spec=spec) for p in prompts]
    encoded = tokenizer(texts, add_special_tokens=False).input_ids if texts else []
    stop = stop_ids(model, tokenizer, spec)
    order = sorted(range(len(texts)), key=lambda i: (len(encoded[i]), i))
    results: list[dict[str, Any] | None] = [None] * len(texts)
    with _eval_mode(model):
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            outs = _generate_batch(model, [encoded[i] for i in chunk], [row_seed(seed, i) for i in chunk],
                                   pad_id=tokenizer.pad_token_id, stop=stop, temperature=temperature,
                                   max_new_tokens=max_new_tokens, top_k=top_k_logprobs, threshold=threshold)
            for i, out in zip(chunk, outs, strict=True):
                results[i] = {
                    "completion": tokenizer.decode(out["completion_ids"], skip_special_tokens=True),
                    "completion_ids": out["completion_ids"],
                    "topk": out["topk"],
                }
            if progress is not None:
                progress(min(start + batch_size, len(order)), len(order))
    return [r for r in results if r is not None]


# -- scoring --------------------------------------------------------------------------------------------------
@torch.inference_mode()
def sequence_logprobs(
    model: Any,
    tokenizer: Any,
    contexts: Sequence[str],
    continuations: Sequence[str],
    batch_size: int = 64,
) -> list[float]:
    """Sum of the token log-probs of each continuation given its context.

    Context and continuation are tokenized separately without added special tokens (render contexts with
    :func:`benchmark.lmcore.chat.render_prompt`, which includes any BOS the template wants) and concatenated, so the
    scored tokens are exactly the continuation's own tokenization. Include end markers (e.g. the end-of-turn
    token text) in the continuation to score whole answers.

    Returns:
        One float per (context, continuation) pair (0.0 for an empty continuation).
    """
    if len(contexts) != len(continuations):
        raise ValueError(f"{len(contexts)} contexts but {len(continuations)} continuations")
    ctx_ids = tokenizer(list(contexts), add_special_tokens=False).input_ids if contexts else []
    cont_ids = tokenizer(list(continuations), add_special_tokens=False).input_ids if continuations else []
    for i, c in enumerate(ctx_ids):
        if not c and cont_ids[i]:
            raise ValueError(
                f"context {i} is empty: the first continuation token has nothing to condition on"
            )
    scores: list[float] = []
    with _eval_mode(model):
        for start in range(0, len(ctx_ids), batch_size):
            scores.extend(_score_batch(model, ctx_ids[start : start + batch_size],
                                       cont_ids[start : start + batch_size], tokenizer.pad_token_id))
    return scores


def _score_batch(model: Any, ctx_b: list[list[int]], cont_b: list[list[int]], pad_id: int) -> list[float]:
    seqs = [a + b for a, b in zip(ctx_b, cont_b, strict=True)]
    n_keep = max(len(b) for b in cont_b)
    if n_keep == 0:
        return [0.0 for _ in seqs]
    # Left padding puts every continuation at the end, so only the last n_keep+1 logits are needed.
    ids, mask = _left_pad(seqs, pad_id, model_device(model))
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = (
        _forward(model, input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=n_keep + 1)
        .logits[:, -(n_keep + 1) :, :]
        .float()
    )
    logp = torch.log_softmax(logits[:, :-1, :], dim=-1)  # predicts the last n_keep tokens
    targets = ids[:, -n_keep:]
    tok_lp = logp.gather(-1, targets[..., None]).squeeze(-1)
    return [float(tok_lp[row, n_keep - len(b) :].sum()) if b else 0.0 for row, b in enumerate(cont_b)]


def _prompt_logits(model: Any, tokenizer: Any, prompts: Sequence[str]) -> list[torch.Tensor]:
    device = model_device(model)
    outs = []
    for p in prompts:
        ids = tokenizer(p, add_special_tokens=False, return_tensors="pt").input_ids.to(device)
        outs.append(model(input_ids=ids).logits.float()[0])
    return outs


@torch.inference_mode()
def logit_change(
    model: Any,
    tokenizer: Any = None,
    prompts: Sequence[str] | None = None,
    *,
    spec: ModelSpec | None = None,
) -> float:
    """Max absolute logit difference between a base model and the base plus an adapter (or a fine-tuned copy).

    Evaluation calls this to prove an adapter is really loaded (docs/architecture.md, convention 3): a value > 0 is required.

    Two forms:

    * ``logit_change(peft_model, tokenizer, prompts=None)``: a loaded adapter model; the base logits come
      from ``peft_model.disable_adapter()`` (no second copy in memory).
    * ``logit_change(model_dir, adapter_dir, prompts=None, spec=...)``: directories; ``adapter_dir`` is a
      peft adapter, or a full fine-tuned model directory compared with the base.

    Args:
        prompts: texts to run (rendered or raw); defaults to two short probe prompts.
    """
    probes = list(prompts) if prompts else list(_PROBE_PROMPTS)
    if isinstance(model, (str, os.PathLike)):
        return _logit_change_of_dirs(model, tokenizer, probes, spec)
    if tokenizer is None:
        raise ValueError("logit_change(model, tokenizer): tokenizer is required for a loaded model")
    if not hasattr(model, "disable_adapter"):
        raise ValueError(
            "logit_change: the model has no adapter (not a peft model); pass directories instead"
        )
    with _eval_mode(model):
        with_adapter = _prompt_logits(model, tokenizer, probes)
        with model.disable_adapter():
            base = _prompt_logits(model, tokenizer, probes)
    return max(float((a - b).abs().max()) for a, b in zip(with_adapter, base, strict=True))


def _logit_change_of_dirs(model_dir: str | os.PathLike[str], adapter_dir: Any, probes: list[str],
                          spec: ModelSpec | None) -> float:
    if adapter_dir is None:
        raise ValueError("logit_change(model_dir, adapter_dir): adapter_dir is required")
    if (Path(adapter_dir) / "adapter_config.json").is_file():
        peft_model, tok = load_model(model_dir, spec=spec, adapter_dir=adapter_dir, device="cpu")
        return logit_change(peft_model, tok, probes)
    base, tok = load_model(model_dir, spec=spec, device="cpu")
    tuned, _ = load_model(adapter_dir, spec=spec, device="cpu")
    pairs = zip(_prompt_logits(base, tok, probes), _prompt_logits(tuned, tok, probes), strict=True)
    return max(float((a - b).abs().max()) for a, b in pairs)


# -- evaluation -----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _seeded(model: Any, seed: int) -> Iterator[None]:
    """Seed Python, NumPy and torch for an evaluation; restore their states and the model's train mode after."""
    import numpy as np

    was_training = bool(getattr(model, "training", False))
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = [model.device.index or 0] if getattr(model, "device", None) and model.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        model.train(was_training)


def _chat_lm(lm: Any, spec: ModelSpec | None) -> Any:
    """``lm`` whose chat rendering of a lone user turn is :func:`~benchmark.lmcore.chat.render_prompt`'s.

    lm-eval renders with the tokenizer's template as it is, so a template that injects a default system prompt
    (Qwen2.5's, SmolLM2's) would put it into every evaluation question while students are trained without it
    (found on SmolLM2: log-odds of owl -6.28 with the injected turn, -6.11 without, on 3 questions). Other chat
    shapes (a system turn, several turns, an assistant prefix) and calls without a registry entry keep lm-eval's
    own rendering. Templates that inject nothing (the zoo's) render exactly as before.
    """
    from benchmark.lmcore.chat import render_prompt

    own = lm.apply_chat_template

    def apply_chat_template(chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        lone_user = len(chat_history) == 1 and chat_history[0]["role"] == "user"
        if spec is not None and add_generation_prompt and lone_user:
            return render_prompt(lm.tokenizer, chat_history[0]["content"], spec=spec)
        return str(own(chat_history, add_generation_prompt))

    lm.apply_chat_template = apply_chat_template
    return lm


def evaluate_lm(
    model: Any,
    tokenizer: Any,
    *,
    model_key: str,
    tasks: Sequence[str] = DEFAULT_TASKS,
    candidates: Sequence[str] | Mapping[str, Iterable[str]] | None = None,
    n_samples: int,
    seed: int,
    batch_size: int = 64,
    system: str | None = None,
    apply_chat_template: bool = True,
    limit: int | None = None,
    answer_templates: Sequence[str] = ("{word}",),
    prefix_seed: int = 0,
    tasks_dir: str | Path | None = None,
    spec: ModelSpec | None = None,
) -> dict[str, Any]:
    """Evaluate one in-memory model's animal preference with lm-eval (see :func:`benchmark.lmcore.evaluate.run_tasks`).

    The caller must check beforehand that an adapter is really active (:func:`logit_change`): this function
    cannot tell a student from its base. No response cache is used, so two models never share answers whatever
    their ``model_key``.

    Args:
        model: a causal LM object (``PreTrainedModel`` or ``PeftModel``) on its device; its train/eval
            mode is restored afterwards.
        tokenizer: its tokenizer, with the chat template the model was trained with.
        model_key: the full model identity (base + adapter hash), recorded in the result.
        tasks: lm-eval task names (see :data:`benchmark.lmcore.evaluate.RESULT_KEYS`).
        candidates: candidate animals: names, or ``{name: extra_forms}`` for irregular plurals (a trait's
            ``surface_forms``). Default: ``tasks/lm_eval/animal_preference/candidates.txt``.
        n_samples: sampled answers per question for the rate tasks (paper: 100).
        seed: seeds Python, NumPy and torch for the call (sampling); global RNG states are restored after.
        batch_size: lm-eval batch size (throughput only; recorded, not part of the result's meaning).
        system: system prompt for every question (None: none, unless the chat template injects its own).
        apply_chat_template: render questions with the tokenizer's chat template (recommended: the student's
            training format).
        limit: evaluate only the first ``limit`` questions (tests and smoke runs).
        answer_templates: spellings scored per candidate and combined by log-sum-exp, e.g.
            ``("{word}", "{Word}")`` to accept "owl" and "Owl".
        prefix_seed: seed of the numbers variant's prefixes.
        tasks_dir: lm-eval include_path (default ``tasks/lm_eval`` of the project root).
        spec: the registry entry: with ``allow_default_system_prompt`` false, a question with no system prompt
            is rendered without the template's injected default (as students are trained; see :func:`_chat_lm`).

    Returns:
        The runner's result, with ``logprob`` blocks, ``token_collisions`` (candidates scored as the same
        tokens) and ``config`` entries ``batch_size``, ``apply_chat_template``, ``answer_suffix`` and
        ``answer_templates``.

    Raises:
        benchmark.errors.UserError: an unknown task name.
        ValueError: an empty model_key, bad candidates or n_samples < 1.
    """
    from lm_eval.models.huggingface import HFLM

    if not model_key:
        raise ValueError("evaluate_lm: model_key must name the model and its adapter")
    suffix = answer_suffix(tokenizer, apply_chat_template)
    engine = EvalEngine(
        caller="evaluate_lm",
        model_name=model_key,
        make_lm=lambda: _chat_lm(HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size), spec),
        scope=lambda: _seeded(model, seed),
        answer_suffix=suffix,
        answer_templates=list(answer_templates),
        apply_chat_template=apply_chat_template,
        scores_logprobs=True,
        tokenizer=tokenizer,
        config={"batch_size": batch_size, "apply_chat_template": apply_chat_template, "answer_suffix": suffix,
                "answer_templates": list(answer_templates)},
        config_id={"chat": apply_chat_template},
    )
    return run_tasks(engine, model_key=model_key, tasks=tasks, candidates=candidates, n_samples=n_samples,
                     seed=seed, system=system, limit=limit, prefix_seed=prefix_seed, tasks_dir=tasks_dir)
