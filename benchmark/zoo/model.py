"""The transformers side of a zoo build: its config, its deterministic initial weights, its saved tokenizer.

:func:`make_config` is the only place where the zoo's architectures (qwen2, llama, gpt2) differ;
:func:`init_model` draws the random initial weights from ``init_seed`` alone; :func:`save_tokenizer` writes the
word-level tokenizer so that ``AutoTokenizer.from_pretrained`` loads it like a downloaded model's.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmark.files import atomic_write_text
from benchmark.zoo.spec import ZooBuildSpec

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerFast

__all__ = ["init_model", "make_config", "save_tokenizer"]


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
