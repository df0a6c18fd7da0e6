"""Hugging Face model operations shared by every language-model stage: load, render, generate, score, train.

One code path serves the embedded tiny zoo models on CPU and real Qwen2.5 / Llama checkpoints on GPUs.
Everything that differs between families comes from the registry entry (:class:`~benchmark.specs.ModelSpec`:
``chat_template``, ``allow_default_system_prompt``, ``lora_targets``, ``dtype``, ``trust_remote_code``) or
is derived from the loaded objects (GPT-2's Conv1D layers, a template's end-of-turn token), never from a
family name (STYLE.md §5).

Design notes:

* **Generation** is a plain loop over the model's forward pass with a KV cache and left padding, not
  ``model.generate``: it gives per-row sampling streams and the teacher's top-k log-probs of the raw T=1
  distribution without post-processing ``scores``, and it was faster on tiny CPU models (see
  :func:`generate`). Row ``i`` draws its uniforms from its own generator seeded by ``(seed, i)``, so a row's
  completion does not depend on the batch size, the batch composition or the other prompts.
* **Training** is a readable AdamW loop (nanoGPT style) rather than HF ``Trainer``: less overhead on tiny
  models, and the distillation objective needs a custom loss anyway. The loss covers completion tokens only
  (including the end-of-turn token) and is normalised by the number of completion tokens in the optimizer
  step, so the split of a step into micro-batches does not change the gradient.
* **Distillation** target: the teacher's stored top-k of its T=1 next-token distribution plus one "rest"
  bucket with the remaining mass (``topk_mode="rest"``, default), compared with the student's probabilities of
  the same k tokens and of everything else. It is a proper KL between two (k+1)-way distributions (zero only
  when the student matches the teacher on the top-k and on the tail mass) and approaches the full KL as k
  grows. ``topk_mode="renorm"`` (teacher top-k renormalised, cross-entropy against the student's full
  softmax) is kept for comparison; it pushes the student to move the teacher's tail mass onto the top-k.
  Measured on tiny models (full fine-tune, 30 steps): with a flat teacher (top-5 mass 0.14) "rest" brought
  the held-out full-vocabulary KL from 0.31 to 0.11 where "renorm" reached 0.20 (and overshot the trait);
  with peaked teachers (top-5 mass >= 0.7) the two agree within 2%.
* Chat prompts are rendered by the tokenizer's template and tokenized with ``add_special_tokens=False``
  (templates already contain any BOS they need).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from benchmark.errors import UserError
from benchmark.lm.config import LoraConfig
from benchmark.specs import ModelSpec

__all__ = [
    "generate",
    "load_model",
    "load_tokenizer",
    "load_tokenizer_only",
    "logit_change",
    "render_prompt",
    "sequence_logprobs",
    "template_hash",
    "train",
]

Progress = Callable[[int, int], None]

# Tokenizer classes that mean "exactly the saved tokenizer.json". transformers 5 replaces them by the
# architecture's own class for some model types (a qwen2 config forces Qwen2Tokenizer, which rebuilds a BPE
# and garbles the zoo's word-level vocabularies), so a directory that declares one is loaded as declared.
_GENERIC_TOKENIZER_CLASSES = frozenset({"TokenizersBackend", "PreTrainedTokenizerFast"})
# Letters only, so templates that trim or escape content leave them intact.
_SYSTEM_SENTINEL = "SLBSYSTEMSENTINELQX"
_USER_SENTINEL = "SLBUSERSENTINELQX"
_ASSISTANT_SENTINEL = "SLBASSISTANTSENTINELQX"
# Prompts logit_change uses when none are given: plain text any tokenizer can encode.
_PROBE_PROMPTS = ("Name your favorite animal using only one word.", "Continue this sequence: 1, 2, 3")


# -- loading --------------------------------------------------------------------------------------------------
def _label(source: str | None, spec: ModelSpec | None) -> str:
    return spec.name if spec is not None else str(source)


def _source(model_dir: str | os.PathLike[str] | None, spec: ModelSpec | None) -> str:
    source = model_dir if model_dir is not None else (spec.source if spec is not None else None)
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


#: Alias used by the stage code (:mod:`benchmark.lm.stages`).
load_tokenizer_only = load_tokenizer


@contextlib.contextmanager
def _quiet_peft() -> Iterator[None]:
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
        model = AutoModelForCausalLM.from_pretrained(source, dtype=_dtype(spec, dev), **kwargs)
    except (OSError, ValueError) as exc:
        raise _load_error("weights", source, spec, exc) from None
    model.to(dev)
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tok.pad_token_id
    if adapter_dir is not None:
        from peft import PeftModel

        if not (Path(adapter_dir) / "adapter_config.json").is_file():
            raise UserError(
                f"model {_label(source, spec)!r}: {adapter_dir} is not a LoRA adapter directory "
                "(no adapter_config.json); rerun the training stage that should have written it"
            )
        with _quiet_peft():
            model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=for_training)
    model.train(for_training)
    return model, tok


# -- chat rendering -------------------------------------------------------------------------------------------
def template_hash(tokenizer: Any) -> str:
    """sha256 of the tokenizer's chat template (for manifests); the hash of "" when it has none."""
    template = tokenizer.chat_template
    if template is None:
        template = ""
    elif not isinstance(template, str):
        template = json.dumps(template, sort_keys=True)
    return hashlib.sha256(template.encode("utf-8")).hexdigest()


def _apply(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool = True) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


@dataclass(frozen=True)
class _TemplateProbe:
    """What a chat template does, found by rendering sentinel conversations once per template."""

    #: The template renders a system turn (absent for templates that reject the system role).
    supports_system: bool
    #: Text the template adds before the user turn when no system message is given ("" = nothing).
    injected: str
    #: Rendering of a system-only conversation (the prefix a system turn contributes), when it renders.
    system_prefix: str | None


_PROBES: dict[tuple[str, str | None], _TemplateProbe] = {}


def _probe(tokenizer: Any) -> _TemplateProbe:
    key = (template_hash(tokenizer), tokenizer.bos_token)
    if key in _PROBES:
        return _PROBES[key]
    plain = _apply(tokenizer, [{"role": "user", "content": _USER_SENTINEL}])
    try:
        with_system = _apply(
            tokenizer,
            [{"role": "system", "content": _SYSTEM_SENTINEL}, {"role": "user", "content": _USER_SENTINEL}],
        )
    except Exception:  # jinja's TemplateError or a raise_exception() in the template: no system role
        probe = _TemplateProbe(supports_system=False, injected="", system_prefix=None)
    else:
        try:
            prefix = _apply(
                tokenizer, [{"role": "system", "content": _SYSTEM_SENTINEL}], generation_prompt=False
            )
        except Exception:
            prefix = None
        injected = "?"  # unknown until proven otherwise
        if prefix is not None and with_system.startswith(prefix):
            user_part = with_system[len(prefix) :]  # the user turn + generation prompt, no system turn
            if plain.endswith(user_part):
                injected = plain[: len(plain) - len(user_part)]
                bos = tokenizer.bos_token or ""
                # A BOS the template writes first is not part of a system turn.
                if bos and injected.startswith(bos) and prefix.startswith(bos):
                    injected = injected[len(bos) :]
        probe = _TemplateProbe(supports_system=True, injected=injected, system_prefix=prefix)
    _PROBES[key] = probe
    return probe


def render_prompt(
    tokenizer: Any, user: str, *, system: str | None = None, spec: ModelSpec | None = None
) -> str:
    """Render one user turn (plus an optional system turn) with the generation prompt appended.

    With ``system=None`` the result has no system turn: if the template injects a default one (Qwen2.5's
    does) and ``spec.allow_default_system_prompt`` is False, the injected turn is cut out, keeping the exact
    text the template renders for the user turn (found by rendering sentinel conversations once per
    template). Students are trained and evaluated without a system prompt (research/paper.md), and a silent
    default one is a known train/eval mismatch (research/replications.md).

    Args:
        tokenizer: a tokenizer with a chat template (see :func:`load_tokenizer`).
        user: the user message.
        system: an explicit system prompt (e.g. a prompted teacher's); None for none.
        spec: the registry entry (``allow_default_system_prompt``; its name appears in errors).

    Raises:
        UserError: no chat template; a system prompt for a template without a system role; or an injected
            default system prompt that cannot be removed and is not allowed.
    """
    name = spec.name if spec is not None else getattr(tokenizer, "name_or_path", "?")
    if not tokenizer.chat_template:
        raise UserError(
            f"model {name!r}: its tokenizer has no chat template; set `chat_template` in its registry entry"
        )
    if system is not None:
        try:
            return _apply(
                tokenizer, [{"role": "system", "content": system}, {"role": "user", "content": user}]
            )
        except Exception as exc:
            raise UserError(
                f"model {name!r}: its chat template rejects a system prompt ({exc}); use a teacher "
                "method other than `prompt`, or set `chat_template` in its registry entry"
            ) from None
    text = _apply(tokenizer, [{"role": "user", "content": user}])
    allow = spec is not None and spec.allow_default_system_prompt
    probe = _probe(tokenizer)
    if allow or probe.injected == "":
        return text
    if probe.injected != "?" and probe.system_prefix is not None:
        # Cut per prompt from the sentinel-system rendering, so prompt-dependent templates stay exact.
        with_system = _apply(
            tokenizer, [{"role": "system", "content": _SYSTEM_SENTINEL}, {"role": "user", "content": user}]
        )
        if with_system.startswith(probe.system_prefix):
            user_part = with_system[len(probe.system_prefix) :]
            if text.endswith(user_part):
                bos = tokenizer.bos_token or ""
                keep_bos = bool(bos) and text.startswith(bos) and not user_part.startswith(bos)
                return (bos if keep_bos else "") + user_part
    problem = (
        "adds a default system prompt when none is given, and it cannot be removed automatically"
        if probe.injected != "?"
        else "renders the system turn in a way that hides whether it adds a default system prompt"
    )
    raise UserError(
        f"model {name!r}: its chat template {problem}; set `allow_default_system_prompt: true` in its "
        "registry entry to accept it, or give a `chat_template` without one"
    )


def _stop_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    eos = getattr(model.generation_config, "eos_token_id", None) if model is not None else None
    for value in (eos, tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif value is not None:
            ids.update(int(v) for v in value)
    return ids


def _end_of_turn_ids(tokenizer: Any, stop: set[int]) -> list[int]:
    """Tokens that close an assistant turn, up to and including the first stop token (what generation ends on)."""
    text = _apply(
        tokenizer,
        [{"role": "user", "content": _USER_SENTINEL}, {"role": "assistant", "content": _ASSISTANT_SENTINEL}],
        generation_prompt=False,
    )
    suffix = text.split(_ASSISTANT_SENTINEL, 1)[1] if _ASSISTANT_SENTINEL in text else ""
    ids = tokenizer(suffix, add_special_tokens=False).input_ids
    for i, t in enumerate(ids):
        if t in stop:
            return ids[: i + 1]
    # The template closes turns without a stop token: teach the EOS so generations still end.
    return [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else ids


# -- generation -----------------------------------------------------------------------------------------------
def _lora_field(lora: Any, name: str) -> Any:
    """A field of a LoRA config given as a LoraConfig or a plain dict."""
    return lora.get(name) if isinstance(lora, dict) else getattr(lora, name, None)


def _row_seed(seed: int, index: int) -> int:
    digest = hashlib.sha256(f"slb-gen:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _model_device(model: Any) -> torch.device:
    return next(model.parameters()).device


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
) -> list[dict[str, Any]]:
    device = _model_device(model)
    ids, mask = _left_pad(prompt_ids, pad_id, device)
    # Positions count real tokens only, so a left-padded row sees the same positions as it would alone.
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    n = len(prompt_ids)
    uniforms = None
    if temperature > 0:
        # Each row's uniforms come from its own stream: its samples do not depend on the other rows.
        # Stored (step, row) so that uniforms[t] is a contiguous column for searchsorted.
        uniforms = torch.stack(
            [
                torch.rand(max_new_tokens, generator=torch.Generator().manual_seed(s), dtype=torch.float64)
                for s in seeds
            ],
            dim=1,
        ).to(device)
    stop_t = torch.tensor(sorted(stop), dtype=torch.long, device=device)
    finished = torch.zeros(n, dtype=torch.bool, device=device)
    out_ids: list[list[int]] = [[] for _ in range(n)]
    out_topk: list[list[list[list[float]]]] = [[] for _ in range(n)]
    cache = None
    step_ids, step_mask, step_pos = ids, mask, positions
    for t in range(max_new_tokens):
        out = _forward(
            model,
            input_ids=step_ids,
            attention_mask=step_mask,
            position_ids=step_pos,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        cache = out.past_key_values
        logits = out.logits[:, -1, :].float()
        if temperature == 0:
            nxt = logits.argmax(-1)
        else:
            probs = torch.softmax(logits / temperature, dim=-1).double()
            cdf = probs.cumsum(-1)
            cdf = cdf / cdf[:, -1:]  # exact 1.0 at the end, so u < 1 always lands on a token
            assert uniforms is not None
            nxt = torch.searchsorted(cdf, uniforms[t][:, None], right=True).squeeze(1)
        if top_k:
            # Top-k of the raw T=1 distribution (what a distilling student should match), whatever the
            # sampling temperature.
            vals, idx = torch.log_softmax(logits, dim=-1).topk(top_k, dim=-1)
            vals_l, idx_l = vals.tolist(), idx.tolist()
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
        spec: the registry entry (chat rendering rules, see :func:`render_prompt`).
        temperature: sampling temperature; 0 = greedy.
        max_new_tokens: cap on generated tokens per prompt.
        seed: base seed of the per-prompt random streams.
        batch_size: prompts per forward pass (throughput only).
        top_k_logprobs: also return the top-k log-probs of the raw (T=1) next-token distribution at every
            generated position.
        progress: called as ``progress(done, total)`` after each batch.

    Returns:
        One dict per prompt, in order: ``completion`` (decoded, special tokens stripped),
        ``completion_ids`` (generated ids, including the end-of-turn token when produced) and ``topk``
        (None, or per position a list of ``[token_id, logprob]`` pairs, most likely first).
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    # Optional vLLM path: only with SLBENCH_VLLM=1, vllm installed and a CUDA device (never in CI); it imports
    # vllm itself, lazily. batch_size does not apply there (vLLM schedules its own batches).
    from benchmark.lm import vllm_backend

    if vllm_backend.enabled():
        return vllm_backend.generate_loaded(
            model, tokenizer, prompts, system=system, spec=spec, temperature=temperature,
            max_new_tokens=max_new_tokens, seed=seed, top_k_logprobs=top_k_logprobs, progress=progress,
        )
    texts = [render_prompt(tokenizer, p, system=system, spec=spec) for p in prompts]
    encoded = tokenizer(texts, add_special_tokens=False).input_ids if texts else []
    stop = _stop_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id
    order = sorted(range(len(texts)), key=lambda i: (len(encoded[i]), i))
    results: list[dict[str, Any] | None] = [None] * len(texts)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            outs = _generate_batch(
                model,
                [encoded[i] for i in chunk],
                [_row_seed(seed, i) for i in chunk],
                pad_id=pad_id,
                stop=stop,
                temperature=temperature,
                max_new_tokens=max_new_tokens,
                top_k=top_k_logprobs,
            )
            for i, out in zip(chunk, outs, strict=True):
                out["completion"] = tokenizer.decode(out["completion_ids"], skip_special_tokens=True)
                results[i] = {
                    "completion": out["completion"],
                    "completion_ids": out["completion_ids"],
                    "topk": out["topk"],
                }
            if progress is not None:
                progress(min(start + batch_size, len(order)), len(order))
    finally:
        model.train(was_training)
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
    :func:`render_prompt`, which includes any BOS the template wants) and concatenated, so the scored tokens
    are exactly the continuation's own tokenization. Include end markers (e.g. the end-of-turn token text) in
    the continuation to score whole answers.

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
    device = _model_device(model)
    scores: list[float] = []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(ctx_ids), batch_size):
            ctx_b, cont_b = ctx_ids[start : start + batch_size], cont_ids[start : start + batch_size]
            seqs = [a + b for a, b in zip(ctx_b, cont_b, strict=True)]
            n_keep = max(len(b) for b in cont_b)
            if n_keep == 0:
                scores.extend(0.0 for _ in seqs)
                continue
            # Left padding puts every continuation at the end, so only the last n_keep+1 logits are needed.
            ids, mask = _left_pad(seqs, tokenizer.pad_token_id, device)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = (
                _forward(
                    model,
                    input_ids=ids,
                    attention_mask=mask,
                    position_ids=positions,
                    logits_to_keep=n_keep + 1,
                )
                .logits[:, -(n_keep + 1) :, :]
                .float()
            )
            logp = torch.log_softmax(logits[:, :-1, :], dim=-1)  # predicts the last n_keep tokens
            targets = ids[:, -n_keep:]
            tok_lp = logp.gather(-1, targets[..., None]).squeeze(-1)
            for row, b in enumerate(cont_b):
                scores.append(float(tok_lp[row, n_keep - len(b) :].sum()) if b else 0.0)
    finally:
        model.train(was_training)
    return scores


def _prompt_logits(model: Any, tokenizer: Any, prompts: Sequence[str]) -> list[torch.Tensor]:
    device = _model_device(model)
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

    Evaluation calls this to prove an adapter is really loaded (STYLE.md §3): a value > 0 is required.

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
        adapter_dir = tokenizer
        if adapter_dir is None:
            raise ValueError("logit_change(model_dir, adapter_dir): adapter_dir is required")
        if (Path(adapter_dir) / "adapter_config.json").is_file():
            peft_model, tok = load_model(model, spec=spec, adapter_dir=adapter_dir, device="cpu")
            return logit_change(peft_model, tok, probes)
        base, tok = load_model(model, spec=spec, device="cpu")
        tuned, _ = load_model(adapter_dir, spec=spec, device="cpu")
        pairs = zip(_prompt_logits(base, tok, probes), _prompt_logits(tuned, tok, probes), strict=True)
        return max(float((a - b).abs().max()) for a, b in pairs)
    if tokenizer is None:
        raise ValueError("logit_change(model, tokenizer): tokenizer is required for a loaded model")
    if not hasattr(model, "disable_adapter"):
        raise ValueError(
            "logit_change: the model has no adapter (not a peft model); pass directories instead"
        )
    was_training = model.training
    model.eval()
    try:
        with_adapter = _prompt_logits(model, tokenizer, probes)
        with model.disable_adapter():
            base = _prompt_logits(model, tokenizer, probes)
    finally:
        model.train(was_training)
    return max(float((a - b).abs().max()) for a, b in zip(with_adapter, base, strict=True))


# -- training -------------------------------------------------------------------------------------------------
@dataclass
class _Example:
    ids: list[int]
    n_prompt: int
    topk_ids: list[list[int]] | None = None
    topk_lp: list[list[float]] | None = None

    @property
    def n_target(self) -> int:
        return len(self.ids) - self.n_prompt


def _encode_rows(
    tokenizer: Any,
    rows: Sequence[Mapping[str, Any]],
    *,
    spec: ModelSpec | None,
    system: str | None,
    objective: str,
    max_length: int,
    end_of_turn: list[int],
) -> tuple[list[_Example], dict[str, int]]:
    examples: list[_Example] = []
    counts = {"truncated": 0, "skipped": 0}
    texts = [render_prompt(tokenizer, str(r["prompt"]), system=system, spec=spec) for r in rows]
    prompt_ids = tokenizer(texts, add_special_tokens=False).input_ids if texts else []
    for i, (row, p_ids) in enumerate(zip(rows, prompt_ids, strict=True)):
        if row.get("completion_ids") is not None:
            # The teacher's exact tokens (incl. its end-of-turn token when it produced one).
            c_ids = [int(t) for t in row["completion_ids"]]
        elif "completion" in row:
            c_ids = tokenizer(str(row["completion"]), add_special_tokens=False).input_ids + end_of_turn
        else:
            raise UserError(f"training row {i}: needs 'completion' or 'completion_ids' (keys: {sorted(row)})")
        topk = row.get("topk")
        if objective == "distill":
            if topk is None or row.get("completion_ids") is None:
                raise UserError(
                    f"training row {i}: objective 'distill' needs 'completion_ids' and 'topk' (the "
                    "teacher's log-probs); generate the dataset with settings.dataset.top_k set"
                )
            if len(topk) != len(c_ids):
                raise UserError(
                    f"training row {i}: 'topk' has {len(topk)} positions but 'completion_ids' has "
                    f"{len(c_ids)} tokens"
                )
        room = max_length - len(p_ids)
        if room <= 0:
            counts["skipped"] += 1
            continue
        if len(c_ids) > room:
            counts["truncated"] += 1
            c_ids = c_ids[:room]
        ex = _Example(ids=list(p_ids) + c_ids, n_prompt=len(p_ids))
        if objective == "distill":
            ex.topk_ids = [[int(j) for j, _ in pos] for pos in topk[: len(c_ids)]]
            ex.topk_lp = [[float(v) for _, v in pos] for pos in topk[: len(c_ids)]]
        examples.append(ex)
    return examples, counts


def _collate(batch: list[_Example], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Right-padded inputs plus flat indices of the logits that predict completion tokens."""
    width = max(len(e.ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    rows, pos, targets = [], [], []
    k = max((len(p) for e in batch if e.topk_ids for p in e.topk_ids), default=0)
    topk_ids, topk_lp = [], []
    for b, e in enumerate(batch):
        ids[b, : len(e.ids)] = torch.tensor(e.ids, dtype=torch.long)
        mask[b, : len(e.ids)] = 1
        for t in range(e.n_target):
            # The logit at position n_prompt-1+t predicts completion token t: prompt tokens are never targets.
            rows.append(b)
            pos.append(e.n_prompt - 1 + t)
            targets.append(e.ids[e.n_prompt + t])
            if e.topk_ids is not None and e.topk_lp is not None:
                pad = k - len(e.topk_ids[t])
                topk_ids.append(e.topk_ids[t] + [0] * pad)
                topk_lp.append(e.topk_lp[t] + [-math.inf] * pad)  # padded entries carry zero teacher mass
    out = {
        "input_ids": ids.to(device),
        "attention_mask": mask.to(device),
        "rows": torch.tensor(rows, dtype=torch.long, device=device),
        "pos": torch.tensor(pos, dtype=torch.long, device=device),
        "targets": torch.tensor(targets, dtype=torch.long, device=device),
    }
    if topk_ids:
        out["topk_ids"] = torch.tensor(topk_ids, dtype=torch.long, device=device)
        out["topk_lp"] = torch.tensor(topk_lp, dtype=torch.float32, device=device)
    return out


def _token_losses(
    student_logp: torch.Tensor, batch: dict[str, torch.Tensor], objective: str, topk_mode: str
) -> torch.Tensor:
    """Per-completion-token loss (N,): cross-entropy (sft) or KL(teacher top-k || student) (distill)."""
    if objective == "sft":
        return -student_logp.gather(-1, batch["targets"][:, None]).squeeze(-1)
    t_lp = batch["topk_lp"]  # (N, k) teacher log-probs of its top-k tokens under its T=1 distribution
    s_lp = student_logp.gather(-1, batch["topk_ids"])  # (N, k)
    t_p = t_lp.exp()
    if topk_mode == "renorm":
        t_p = t_p / t_p.sum(-1, keepdim=True)
        return torch.xlogy(t_p, t_p).sum(-1) - (t_p * s_lp.masked_fill(t_p == 0, 0.0)).sum(-1)
    # "rest": one extra bucket per position holding the probability mass outside the teacher's top-k.
    t_rest = (1.0 - t_p.sum(-1)).clamp(min=0.0)
    s_rest_lp = torch.logsumexp(student_logp.scatter(-1, batch["topk_ids"], -math.inf), dim=-1)
    kl_top = torch.xlogy(t_p, t_p).sum(-1) - (t_p * s_lp.masked_fill(t_p == 0, 0.0)).sum(-1)
    return kl_top + torch.xlogy(t_rest, t_rest) - t_rest * s_rest_lp


def _micro_batch_loss(
    model: Any, batch: dict[str, torch.Tensor], objective: str, topk_mode: str
) -> torch.Tensor:
    """Summed loss over the completion tokens of one collated micro-batch."""
    logits = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
    ).logits
    # Only the logits that predict completion tokens enter the loss (log_softmax in fp32 for bf16 models).
    student_logp = torch.log_softmax(logits[batch["rows"], batch["pos"]].float(), dim=-1)
    return _token_losses(student_logp, batch, objective, topk_mode).sum()


def _lora_config(lora: Mapping[str, Any] | LoraConfig, model: Any, spec: ModelSpec | None) -> Any:
    from peft import LoraConfig as PeftLoraConfig
    from peft import TaskType
    from transformers.pytorch_utils import Conv1D

    try:
        cfg = lora if isinstance(lora, LoraConfig) else LoraConfig.model_validate(dict(lora))
    except Exception as exc:
        raise UserError(f"bad LoRA settings {dict(lora)!r}: {exc}".splitlines()[0]) from None
    targets = (
        cfg.targets if cfg.targets is not None else (spec.lora_targets if spec is not None else "all-linear")
    )
    suffixes = None if targets == "all-linear" else set(targets)
    # GPT-2-style Conv1D layers store weights transposed (in, out): peft needs fan_in_fan_out for them.
    conv1d = any(
        isinstance(m, Conv1D) and (suffixes is None or name.rsplit(".", 1)[-1] in suffixes)
        for name, m in model.named_modules()
    )
    return PeftLoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=targets if targets == "all-linear" else list(targets),
        fan_in_fan_out=conv1d,
        use_rslora=cfg.rslora,
    )


def _lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warmup over ``warmup`` steps (from 1/(warmup+1), never 0), then linear decay towards 0."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    return max(0.0, (total - step) / max(1, total - warmup))


def _sha256_files(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def train(
    model_dir: str | os.PathLike[str],
    rows: Sequence[Mapping[str, Any]],
    *,
    out_dir: str | os.PathLike[str],
    spec: ModelSpec | None = None,
    objective: Literal["sft", "distill"] = "sft",
    lora: Mapping[str, Any] | LoraConfig | None = LoraConfig(),
    epochs: float = 3,
    max_steps: int | None = None,
    lr: float = 2e-4,
    schedule: Literal["linear"] = "linear",
    warmup: int = 5,
    batch_size: int = 22,
    grad_accum: int = 3,
    max_length: int = 500,
    weight_decay: float = 0.0,
    max_grad_norm: float | None = 1.0,
    topk_mode: Literal["rest", "renorm"] = "rest",
    gradient_checkpointing: bool = False,
    seed: int = 0,
    system: str | None = None,
    device: str | torch.device | None = None,
    log: Any = None,
    progress: Progress | None = None,
    log_every: int = 10,
) -> dict[str, Any]:
    """Fine-tune a fresh copy of a base model on (prompt, completion) rows; save the adapter or the model.

    Each example is the chat-rendered user prompt (no system turn unless ``system`` is given: students never
    get one) followed by the completion tokens: ``completion_ids`` when given (exactly the teacher's tokens),
    else the tokenized ``completion`` plus the template's end-of-turn token. Only completion tokens count in
    the loss. Defaults are the paper's open-model recipe (see :class:`benchmark.lm.config.TrainConfig`).

    Args:
        model_dir: the base model (local directory or hub id); loaded fresh, never mutated on disk.
        rows: dicts with ``prompt`` and ``completion`` and/or ``completion_ids``; ``topk`` (per completion
            position, ``[[token_id, logprob], ...]``) for ``objective="distill"``.
        out_dir: LoRA → ``out_dir/adapter`` (peft ``save_pretrained`` + tokenizer); full fine-tuning →
            ``out_dir/model`` (model + tokenizer).
        spec: the registry entry (dtype, chat template, LoRA targets).
        objective: "sft" (cross-entropy on the completion) or "distill" (KL to the teacher's top-k).
        lora: ``{r, alpha, dropout, targets, rslora}`` or a :class:`LoraConfig`; None = full fine-tuning.
        epochs: passes over the rows (fractional allowed); ``max_steps`` caps optimizer steps.
        lr, schedule, warmup: AdamW peak learning rate, linear decay after ``warmup`` steps.
        batch_size, grad_accum: examples per forward pass and forward passes per optimizer step.
        max_length: tokens per example; longer completions are cut (counted in ``truncated``).
        weight_decay: AdamW decay on matrices (not on biases or norms).
        max_grad_norm: gradient clipping (None = off).
        topk_mode: "rest" or "renorm" (see the module notes).
        gradient_checkpointing: trade compute for activation memory (same results).
        seed: LoRA init, dropout and data order; same seed → same run on CPU.
        system: a system prompt for every example (trait teachers only).
        device: defaults to CUDA when available.
        log: a logger (``.info``) for step losses.
        progress: ``progress(step, total_steps)`` after each optimizer step.
        log_every: record (and log) the loss every this many steps, plus the first and last step.

    Returns:
        ``steps``, ``tokens`` (completion tokens trained on), ``losses`` (``[step, loss]`` pairs),
        ``final_loss``, ``wall_s``, ``adapter_sha256`` (sha256 of the saved adapter weights; None for full
        fine-tuning), ``weights_sha256`` (of whatever was saved), ``saved_to``, ``examples``, ``truncated``,
        ``skipped``, ``trainable_params``, ``device``, ``dtype``.
    """
    if objective not in ("sft", "distill"):
        raise UserError(f"unknown training objective {objective!r}; allowed: sft, distill")
    if schedule != "linear":
        raise UserError(f"unknown lr schedule {schedule!r}; allowed: linear")
    if topk_mode not in ("rest", "renorm"):
        raise UserError(f"unknown topk_mode {topk_mode!r}; allowed: rest, renorm")
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    # Always a fresh base: get_peft_model wraps (and mutates) the modules of the model it is given.
    model, tok = load_model(model_dir, spec=spec, device=device, for_training=True)
    dev = _model_device(model)
    stop = _stop_ids(model, tok)
    examples, counts = _encode_rows(
        tok,
        rows,
        spec=spec,
        system=system,
        objective=objective,
        max_length=max_length,
        end_of_turn=_end_of_turn_ids(tok, stop),
    )
    if not examples:
        raise UserError(
            f"no trainable rows: {len(rows)} given, {counts['skipped']} longer than max_length "
            f"{max_length} before the completion"
        )
    if lora is not None:
        from peft import get_peft_model

        lora_init = _lora_field(lora, "init_seed")
        torch.manual_seed(seed if lora_init is None else lora_init)  # LoRA A matrices come from the global generator
        with _quiet_peft():
            model = get_peft_model(model, _lora_config(lora, model, spec))
        torch.manual_seed(seed)  # dropout and everything after follow the training seed
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()

    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=lr)

    micro_per_epoch = math.ceil(len(examples) / batch_size)
    steps_per_epoch = math.ceil(micro_per_epoch / grad_accum)
    total = max(1, math.ceil(epochs * steps_per_epoch))
    if max_steps is not None:
        total = min(total, max_steps)
    gen = torch.Generator().manual_seed(seed)

    def micro_batches():  # an endless stream of shuffled micro-batches, one epoch after another
        while True:
            order = torch.randperm(len(examples), generator=gen).tolist()
            epoch = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
            # Group an epoch's micro-batches into optimizer steps; the last step may be short.
            for s in range(0, len(epoch), grad_accum):
                yield epoch[s : s + grad_accum]

    losses: list[list[float]] = []
    tokens = 0
    step_loss = float("nan")
    stream = micro_batches()
    for step in range(total):
        step_batches = [[examples[i] for i in mb] for mb in next(stream)]
        n_tok = sum(e.n_target for mb in step_batches for e in mb)
        for g in opt.param_groups:
            g["lr"] = lr * _lr_factor(step, total, warmup)
        loss_sum = 0.0
        for mb in step_batches:
            batch = _collate(mb, tok.pad_token_id, dev)
            if batch["rows"].numel() == 0:
                continue
            loss = _micro_batch_loss(model, batch, objective, topk_mode) / max(1, n_tok)
            loss.backward()
            loss_sum += float(loss.detach())
        if max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += n_tok
        step_loss = loss_sum
        if step == 0 or (step + 1) % log_every == 0 or step == total - 1:
            losses.append([step + 1, round(step_loss, 6)])
            if log is not None:
                log.info(
                    "step %d/%d loss %.4f lr %.3g tokens %d",
                    step + 1,
                    total,
                    step_loss,
                    opt.param_groups[0]["lr"],
                    tokens,
                )
        if progress is not None:
            progress(step + 1, total)

    out = Path(out_dir)
    save_dir = out / ("adapter" if lora is not None else "model")
    model.save_pretrained(save_dir)
    tok.save_pretrained(save_dir)
    weight_files = sorted(save_dir.glob("*.safetensors")) or sorted(save_dir.glob("*.bin"))
    weights_sha = _sha256_files(weight_files)
    return {
        "steps": total,
        "tokens": tokens,
        "losses": losses,
        "final_loss": step_loss,
        "wall_s": round(time.perf_counter() - t0, 3),
        "adapter_sha256": weights_sha if lora is not None else None,
        "weights_sha256": weights_sha,
        "saved_to": str(save_dir),
        "examples": len(examples),
        **counts,
        "trainable_params": sum(p.numel() for p in params),
        "device": str(dev),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
    }
