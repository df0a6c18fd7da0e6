"""Optional vLLM generation for hf models (the ``vllm`` extra): one loaded base serves every LoRA adapter.

:func:`generate_vllm` answers chat prompts like :func:`benchmark.providers.hf_model.generate` and returns the same
rows (``completion``, ``completion_ids``, ``topk``), using ``vllm.LLM(model, enable_lora=True, max_loras=K,
max_lora_rank=R)`` and one ``LoRARequest`` per request, so a teacher's adapter (or several students' adapters)
ride on a single copy of the base weights. It is never required: :func:`enabled` is False unless

* ``SLBENCH_VLLM=1`` is set (opt-in: the HF path is the reference; vLLM's kernels give different samples),
* ``vllm`` is importable (checked with ``importlib.util.find_spec``: nothing is imported), and
* a CUDA device is visible,

and :func:`benchmark.providers.hf_model.generate` dispatches here only then. vLLM is imported inside the functions
that need it (docs/research/stack.md: vLLM 0.x pins its own torch and transformers; it never enters CI).

What stays the same as the HF path (both use :mod:`benchmark.lmcore.chat`): prompts are rendered by the same chat
template code (:func:`~benchmark.lmcore.chat.render_prompt`, no silent default system prompt) and passed as token ids
(no second BOS); plain temperature sampling (no top-k / top-p truncation); generation stops on the same stop
tokens (:func:`~benchmark.lmcore.chat.stop_ids`); each prompt has its own seed :func:`~benchmark.lmcore.chat.row_seed`
``(seed, i)`` (a row's sample does not depend on its batch).
What differs: the random streams (vLLM's sampler, not ours: the same seed gives other, equally valid samples),
and top-k log-probs come from vLLM's ``logprobs`` (raw T=1 log-probs of the model by default in vLLM >= 0.10's
``logprobs_mode="raw_logprobs"``).

Environment knobs (throughput only, recorded in logs, never hashed): ``SLBENCH_VLLM_GPU_UTIL`` (fraction of the
GPU's memory vLLM may take; default: 90% of what is free when the engine starts, since the HF copy of the model
may already be resident), ``SLBENCH_VLLM_MAX_LORAS`` (adapters per batch, default 8).
"""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmark.errors import UserError
from benchmark.files import sha256_files
from benchmark.lmcore import chat

__all__ = ["ENV_FLAG", "enabled", "why_disabled", "generate_vllm", "generate_loaded", "lora_rank_bucket"]

#: Set to 1 to let :func:`benchmark.providers.hf_model.generate` use vLLM when it can.
ENV_FLAG = "SLBENCH_VLLM"
#: LoRA ranks vLLM pre-allocates kernels for; ``max_lora_rank`` must be one of them.
_VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
#: One engine per (base, dtype, revision, ...) per process: loading a 7B base takes ~30-60 s.
_ENGINES: dict[tuple[Any, ...], Any] = {}


def why_disabled() -> str | None:
    """None when vLLM generation is on; else the first reason it is off (cheap: imports nothing heavy)."""
    if os.environ.get(ENV_FLAG, "").strip().lower() not in ("1", "true", "yes", "on"):
        return f"{ENV_FLAG} is not set to 1"
    if importlib.util.find_spec("vllm") is None:
        return "vllm is not installed (pip install 'subliminal-bench[vllm]')"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device is visible"
    return None


def enabled() -> bool:
    """True when :func:`benchmark.providers.hf_model.generate` should use vLLM (see the module notes)."""
    return why_disabled() is None


def lora_rank_bucket(rank: int) -> int:
    """The smallest ``max_lora_rank`` vLLM accepts that fits an adapter of rank ``rank``."""
    for r in _VLLM_LORA_RANKS:
        if rank <= r:
            return r
    raise UserError(f"LoRA rank {rank} is larger than vLLM supports (max {_VLLM_LORA_RANKS[-1]}); "
                    f"unset {ENV_FLAG} to generate with the HF backend")


def _adapter_rank(adapter_dir: str) -> int:
    cfg = Path(adapter_dir) / "adapter_config.json"
    try:
        return int(json.loads(cfg.read_text(encoding="utf-8"))["r"])
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"{adapter_dir}: not a LoRA adapter directory vLLM can load ({exc})") from None


def _adapter_id(adapter_dir: str) -> int:
    """A positive int32 naming an adapter by the sha256 of its weight files (same bytes, same id)."""
    files = sorted(Path(adapter_dir).glob("*.safetensors")) or sorted(Path(adapter_dir).glob("*.bin"))
    if not files:
        raise UserError(f"{adapter_dir}: no adapter weights (*.safetensors) to serve with vLLM")
    return int(sha256_files(files)[:7], 16) + 1


def _per_prompt_adapters(adapter_dirs: Sequence[str | None] | str | None, n: int) -> list[str | None]:
    if adapter_dirs is None or isinstance(adapter_dirs, (str, os.PathLike)):
        return [str(adapter_dirs) if adapter_dirs is not None else None] * n
    out = [str(a) if a is not None else None for a in adapter_dirs]
    if len(out) != n:
        raise ValueError(f"adapter_dirs has {len(out)} entries for {n} prompts (give one per prompt, or one for all)")
    return out


def _engine(model_dir: str, spec: Any, max_rank: int) -> Any:
    """The process's vLLM engine for this base, reused across calls (and adapters) when its LoRA rank fits."""
    from vllm import LLM

    dtype = spec.dtype if spec is not None else "auto"
    revision = spec.revision if spec is not None and spec.revision and not Path(model_dir).is_dir() else None
    trust = bool(spec is not None and spec.trust_remote_code)
    key = (model_dir, dtype, revision, trust)
    held = _ENGINES.get(key)
    if held is not None and held[1] >= max_rank:
        return held[0]
    import torch

    util_env = os.environ.get("SLBENCH_VLLM_GPU_UTIL")
    if util_env:
        util = float(util_env)
    else:
        free, total = torch.cuda.mem_get_info()
        util = max(0.05, 0.9 * free / total)
    # Adapters served per batch; more distinct adapters than this are swapped in and out by vLLM.
    max_loras = max(1, int(os.environ.get("SLBENCH_VLLM_MAX_LORAS", "8")))
    _ENGINES.clear()  # one base per process: drop the previous engine before loading another
    llm = LLM(model=model_dir, dtype=dtype, revision=revision, trust_remote_code=trust, enable_lora=True,
              max_loras=max_loras, max_lora_rank=max_rank, gpu_memory_utilization=util, seed=0)
    _ENGINES[key] = (llm, max_rank)
    return llm


def generate_vllm(
    model_dir: str | os.PathLike[str],
    prompts: Sequence[str],
    *,
    adapter_dirs: Sequence[str | None] | str | None = None,
    system: str | None = None,
    spec: Any = None,
    temperature: float = 1.0,
    max_new_tokens: int = 40,
    seed: int = 0,
    top_k_logprobs: int | None = None,
    tokenizer: Any,
    stop_ids: Sequence[int] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Answer each prompt once with vLLM: one base, a ``LoRARequest`` per prompt that has an adapter.

    Args:
        model_dir: the base model (local directory or hub id, as in the registry's ``source``).
        prompts: user messages.
        adapter_dirs: a peft adapter directory for every prompt, one per prompt (None = the base), or None.
        system: a system prompt for every prompt (prompted teachers).
        spec: the registry entry (chat rendering, dtype, revision, trust_remote_code).
        temperature, max_new_tokens, seed, top_k_logprobs: as in :func:`benchmark.providers.hf_model.generate`.
        tokenizer: the tokenizer to render and decode with (``load_tokenizer(model_dir, spec=spec)`` of
            :mod:`benchmark.providers.hf_model`: the registry's chat template).
        stop_ids: tokens that end an answer (default: the tokenizer's EOS; vLLM adds the model's own EOS).
        progress: ``progress(done, total)`` once all prompts are answered.

    Returns:
        One ``{"completion", "completion_ids", "topk"}`` dict per prompt, in order.
    """
    from vllm import SamplingParams
    from vllm.lora.request import LoRARequest

    model_dir = str(model_dir)
    adapters = _per_prompt_adapters(adapter_dirs, len(prompts))
    distinct = list(dict.fromkeys(a for a in adapters if a is not None))
    max_rank = lora_rank_bucket(max([_adapter_rank(a) for a in distinct], default=8))
    llm = _engine(model_dir, spec, max_rank)
    # vLLM caches adapters by id for the engine's lifetime: ids come from the adapter's bytes, so a reused id
    # always means the same weights (two students never share an id, docs/architecture.md, convention 3).
    requests = {a: LoRARequest(f"adapter-{_adapter_id(a):08x}", _adapter_id(a), a) for a in distinct}
    stop = sorted(stop_ids) if stop_ids is not None else sorted(chat.stop_ids(None, tokenizer, spec))
    texts = [chat.render_prompt(tokenizer, p, system=system, spec=spec) for p in prompts]
    ids = tokenizer(texts, add_special_tokens=False).input_ids if texts else []
    params = [
        # vLLM's defaults do no top-k / top-p truncation: plain temperature sampling, as in the HF path.
        SamplingParams(temperature=temperature, max_tokens=max_new_tokens, seed=chat.row_seed(seed, i),
                       stop_token_ids=stop, logprobs=top_k_logprobs, detokenize=False)
        for i in range(len(prompts))
    ]
    outs = llm.generate([{"prompt_token_ids": x} for x in ids], params,
                        lora_request=[requests[a] if a is not None else None for a in adapters], use_tqdm=False)
    rows = [_row(o, tokenizer, top_k_logprobs) for o in outs]
    if progress is not None:
        progress(len(rows), len(rows))
    return rows


def _row(output: Any, tokenizer: Any, top_k: int | None) -> dict[str, Any]:
    """One vLLM ``RequestOutput`` as a ``generate`` row."""
    completion = output.outputs[0]
    ids = [int(t) for t in completion.token_ids]
    topk = None
    if top_k:
        topk = []
        for pos in completion.logprobs or []:
            best = sorted(pos.items(), key=lambda kv: -kv[1].logprob)[:top_k]
            topk.append([[int(t), float(lp.logprob)] for t, lp in best])
    return {"completion": tokenizer.decode(ids, skip_special_tokens=True), "completion_ids": ids, "topk": topk}


def generate_loaded(model: Any, tokenizer: Any, prompts: Sequence[str], **kwargs: Any) -> list[dict[str, Any]]:
    """:func:`generate_vllm` for a model already loaded by :func:`benchmark.providers.hf_model.load_model`.

    The base is the model's ``name_or_path`` (a peft model's ``base_model_name_or_path``); a loaded LoRA
    adapter is written to a temporary directory (a few MB) and served as a ``LoRARequest``, so whatever is
    loaded is exactly what vLLM runs. The HF copy stays resident: vLLM takes 90% of the *free* memory.
    """
    peft_config = getattr(model, "peft_config", None)
    if peft_config:
        cfg = model.active_peft_config if hasattr(model, "active_peft_config") else next(iter(peft_config.values()))
        base = cfg.base_model_name_or_path
        with tempfile.TemporaryDirectory(prefix="slb-vllm-adapter-") as tmp:
            model.save_pretrained(tmp)
            adapter = tmp
            sub = [p.parent for p in Path(tmp).rglob("adapter_config.json")]
            if sub:
                adapter = str(sub[0])
            return generate_vllm(base, prompts, adapter_dirs=adapter, tokenizer=tokenizer,
                                 stop_ids=sorted(chat.stop_ids(model, tokenizer, kwargs.get("spec"))), **kwargs)
    base = getattr(model.config, "_name_or_path", None) or getattr(model, "name_or_path", None)
    if not base:
        raise UserError(f"cannot generate with vLLM: the loaded model has no source path; unset {ENV_FLAG}")
    return generate_vllm(base, prompts, adapter_dirs=None, tokenizer=tokenizer,
                         stop_ids=sorted(chat.stop_ids(model, tokenizer, kwargs.get("spec"))), **kwargs)
