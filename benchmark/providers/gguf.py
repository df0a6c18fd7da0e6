"""GGUF checkpoints for the hf provider: convert a ``.gguf`` file once into a safetensors checkpoint directory.

transformers reads GGUF files (with the optional ``gguf`` package: ``pip install -e '.[gguf]'``) by dequantising
every tensor, which takes minutes on a CPU for a 135M-parameter model and gives a model that refuses
``save_pretrained``. So a GGUF source is converted once: the dequantised state dict is copied into a fresh model of
the same config and saved with its tokenizer (chat template included) as an ordinary checkpoint directory, which
loads in seconds and runs the same code as every other hf model.

What a conversion is not: a quantised file dequantised to float32 holds the quantised weights exactly, not the
original model's (a Q4_1 file rounds every block of 32 weights to 16 levels), so a converted checkpoint is its own
model and is named and hashed as such.

This module imports torch and transformers inside its functions only.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from benchmark.errors import UserError

__all__ = ["GGUF_SUFFIX", "convert_gguf", "is_gguf", "require_gguf"]

GGUF_SUFFIX = ".gguf"


def is_gguf(source: str | None) -> bool:
    """Whether a registry ``source`` names a GGUF file (a path ending in ``.gguf``)."""
    return bool(source) and str(source).lower().endswith(GGUF_SUFFIX)


def require_gguf(what: str) -> None:
    """Stop with a one-line error naming the install command when the optional ``gguf`` package is missing."""
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise UserError(f"{what}: reading a .gguf file needs the optional `gguf` package; install it with "
                        "`pip install -e '.[gguf]'` (or `pip install gguf`)") from None


def convert_gguf(gguf_path: Path, out_dir: Path, *, log: logging.Logger | None = None,
                 dtype: str = "float32") -> dict[str, Any]:
    """Dequantise ``gguf_path`` into a safetensors checkpoint with its tokenizer in ``out_dir``.

    Args:
        gguf_path: the ``.gguf`` file.
        out_dir: an empty (or new) directory; receives config.json, model.safetensors and the tokenizer files.
        log: progress messages (the GGUF load takes minutes on a CPU).
        dtype: the saved weights' dtype; float32 keeps the dequantised values exactly.

    Returns:
        What was converted: architecture, parameter count, dtype, whether the chat template came along.

    Raises:
        UserError: the file is missing or the ``gguf`` package is not installed.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise UserError(f"{gguf_path}: GGUF file not found")
    require_gguf(str(gguf_path))
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    say = log.info if log is not None else (lambda _msg: None)
    say(f"dequantising {gguf_path.name} (minutes on a CPU)")
    kw = {"gguf_file": gguf_path.name}
    tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), **kw)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), dtype=torch_dtype, **kw)
    fresh = _fresh_copy(loaded, torch_dtype)
    out_dir.mkdir(parents=True, exist_ok=True)
    fresh.save_pretrained(str(out_dir), safe_serialization=True)
    tok.save_pretrained(str(out_dir))
    n_params = sum(p.numel() for p in fresh.parameters())
    say(f"saved {type(fresh).__name__} ({n_params / 1e6:.1f}M parameters, {dtype}) to {out_dir}")
    return {"architecture": type(fresh).__name__, "n_params": n_params, "dtype": dtype,
            "chat_template": bool(getattr(tok, "chat_template", None))}


def _fresh_copy(loaded: Any, dtype: Any) -> Any:
    """A plain model of ``loaded``'s config holding its weights (GGUF-loaded models refuse ``save_pretrained``)."""
    import torch
    from transformers import AutoModelForCausalLM

    # The loaded config records the GGUF quantisation; the saved checkpoint is a plain float model.
    data = {k: v for k, v in loaded.config.to_dict().items() if k not in ("quantization_config", "_model_name_or_path")}
    config = type(loaded.config).from_dict(data)
    with torch.device("meta"):
        fresh = AutoModelForCausalLM.from_config(config, dtype=dtype)
    fresh.load_state_dict(loaded.state_dict(), assign=True, strict=True)
    fresh.tie_weights()
    fresh.eval()
    return fresh
