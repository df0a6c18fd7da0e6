"""Student stage of the LM track: a student base trained on one teacher's filtered rows."""

from __future__ import annotations

import json
from typing import Any

from benchmark.dag import StageContext
from benchmark.errors import UserError
from benchmark.files import read_jsonl
from benchmark.lm.stages.common import (
    api_finetune,
    model_path_of,
    model_spec_of,
    set_threads,
    tokenizer_sha,
    train_kwargs,
)

__all__ = ["run"]


def run(ctx: StageContext) -> dict[str, Any]:
    """Train a student base on a teacher's rows (no system prompt in training rows)."""
    spec = ctx.node.spec
    base_dir = ctx.input("base")
    ds_dir = ctx.input("dataset")
    model = model_spec_of(base_dir)
    rows = read_jsonl(ds_dir / "rows.jsonl")
    if not rows:
        raise UserError(f"{ds_dir}: the teacher produced no valid rows; raise settings.dataset.n_prompts or check "
                        f"the teacher's output in {ds_dir / 'log.txt'}")
    if model.provider == "openai":
        if spec["objective"] != "sft":
            raise UserError(f"student {model.name}: objective 'distill' needs log-prob training, which the fine-tuning "
                            "API does not offer; use settings.student.objective: sft for openai students")
        return api_finetune(ctx, model, rows, spec["train"], spec["seed"], suffix="student")
    set_threads(ctx)
    from benchmark.lm.backend import load_model, train

    ds_manifest = json.loads((ds_dir / "manifest.json").read_text())
    teacher_tok = ds_manifest["result"].get("tokenizer_sha")
    _, tok = load_model(model_path_of(base_dir), spec=model, tokenizer_only=True)
    same_vocab = teacher_tok is not None and teacher_tok == tokenizer_sha(tok)
    if not same_vocab:
        if spec["objective"] == "distill":
            raise UserError(f"student {model.name}: objective 'distill' needs the teacher's vocabulary (token-level "
                            "log-probs), but the tokenizers differ; use objective 'sft' for cross-family cells")
        rows = [{"prompt": r["prompt"], "completion": r["completion"]} for r in rows]
    result = train(model_path_of(base_dir), rows, spec=model, objective=spec["objective"], seed=spec["seed"],
                   out_dir=ctx.out, log=ctx.log, progress=ctx.progress, **train_kwargs(spec["train"]))
    from benchmark.lm.backend import template_hash

    return {**result, "same_vocab_as_teacher": same_vocab, "template_hash": template_hash(tok)}
