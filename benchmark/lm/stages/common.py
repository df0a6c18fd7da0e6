"""Helpers the LM-track stages share: reading finished upstream nodes, threads, training settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmark.dag import StageContext
from benchmark.errors import UserError
from benchmark.files import tasks_dir
from benchmark.specs import ModelSpec, TraitSpec

__all__ = ["MODEL_REF", "strip_marker", "model_spec_of", "model_path_of", "set_threads", "train_kwargs",
           "api_finetune", "teacher_info", "load_with_adapter", "tokenizer_sha", "candidates_for"]

MODEL_REF = "model_ref.json"


def strip_marker(d: dict[str, Any]) -> dict[str, Any]:
    """A spec dict without the ``__spec__`` marker that hashed_dict() adds."""
    return {k: v for k, v in d.items() if k != "__spec__"}


def model_spec_of(base_dir: Path) -> ModelSpec:
    """The registry entry a finished base node was built from."""
    spec = json.loads((Path(base_dir) / "spec.json").read_text())["spec"]["model"]
    return ModelSpec.model_validate(strip_marker(spec))


def model_path_of(base_dir: Path) -> str:
    """Where the weights of a base node are: a zoo build's ``model/`` dir or an hf source (dir or hub id)."""
    base_dir = Path(base_dir)
    ref = base_dir / MODEL_REF
    if ref.exists():
        return json.loads(ref.read_text())["path"]
    return str(base_dir / "model")


def set_threads(ctx: StageContext) -> None:
    """Give torch the worker's thread budget."""
    import torch

    torch.set_num_threads(max(1, ctx.threads))


def train_kwargs(train: dict[str, Any]) -> dict[str, Any]:
    """A hashed train block as keyword arguments of the trainer."""
    from benchmark.lm.config import TrainConfig

    lora = train.get("lora")
    cfg = {**strip_marker(train), "lora": strip_marker(lora) if isinstance(lora, dict) else lora}
    return TrainConfig.model_validate(cfg).train_kwargs()


def api_finetune(ctx: StageContext, model: ModelSpec, rows: list[dict[str, Any]], train: dict[str, Any], seed: int,
                  suffix: str) -> dict[str, Any]:
    """Fine-tune an API model on prompt/completion rows (only the epoch count is sent)."""
    from benchmark.providers.openai_api import ApiConfig, finetune

    messages = [{"messages": [{"role": "user", "content": r["prompt"]},
                              {"role": "assistant", "content": r["completion"]}]} for r in rows]
    t = strip_marker(train)
    epochs = float(t["epochs"])
    if epochs < 1 or epochs != int(epochs):
        raise UserError(f"fine-tune of {model.name}: train.epochs must be a whole number >= 1 for API models (sent as "
                        f"hyperparameters.n_epochs), got {epochs:g}")
    # Only the epoch count is sent: the paper left learning rate and batch size to the API ("auto").
    hyper = {"n_epochs": int(epochs)}
    if t.get("max_steps") is not None:
        ctx.log.warning("train.max_steps is ignored for API fine-tunes (the API trains whole epochs)")
    # OpenAI limits suffixes (18 characters in the fine-tuning docs' examples); keep [a-z0-9-] only.
    suffix = "".join(c if c.isalnum() or c == "-" else "-" for c in suffix.lower())[:18]
    if model.source is None:
        raise UserError(f"model {model.name}: missing 'source' (the API model name)")
    return finetune(ApiConfig(), model.source, messages, seed=seed, suffix=suffix, hyperparameters=hyper,
                    workdir=ctx.out, on_status=lambda status, job: ctx.log.info("fine-tune job: %s", status))


def teacher_info(teacher_dir: Path) -> dict[str, Any]:
    """A finished teacher node's ``teacher.json``."""
    return json.loads((Path(teacher_dir) / "teacher.json").read_text())


def load_with_adapter(base_dir: Path, adapter_dir: Path | None) -> tuple[Any, Any, ModelSpec]:
    """Load a base with a node's adapter (or its full fine-tuned model)."""
    from benchmark.lm.backend import load_model

    model = model_spec_of(base_dir)
    if adapter_dir is not None and (adapter_dir / "model").is_dir() and not (adapter_dir / "adapter").is_dir():
        m, tok = load_model(str(adapter_dir / "model"), spec=model)
    else:
        m, tok = load_model(model_path_of(base_dir), spec=model,
                            adapter_dir=str(adapter_dir / "adapter") if adapter_dir is not None else None)
    return m, tok, model


def tokenizer_sha(tok: Any) -> str:
    """A short hash of a tokenizer's vocabulary (tells whether a teacher and a student share token ids)."""
    import hashlib

    vocab = tok.get_vocab()
    return hashlib.sha256(json.dumps(sorted(vocab.items())).encode()).hexdigest()[:16]


def candidates_for(traits: list[TraitSpec]) -> dict[str, list[str]]:
    """The evaluation's candidate set (tasks/lm_eval/animal_preference/candidates.txt) plus every trait's target."""
    cands: dict[str, list[str]] = {}
    for line in (tasks_dir() / "lm_eval" / "animal_preference" / "candidates.txt").read_text(encoding="utf-8").splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            cands[words[0]] = words[1:]
    for t in traits:
        if t.target not in cands:
            from benchmark.matcher import regular_plurals

            cands[t.target] = [f for f in t.forms() if f != t.target and f not in regular_plurals(t.target)]
    return cands
