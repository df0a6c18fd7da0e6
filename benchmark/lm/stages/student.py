"""Student stage of the LM track: a student base trained on one teacher's filtered rows.

``spec["engine"]`` (``settings.student.engine``; absent means "hf") picks the training loop: "lean", "pruned" and
"compact" train full-parameter students with per-process caches (:mod:`benchmark.providers.hf_lean`; "pruned" on
:mod:`benchmark.providers.hf_pruned`'s forward, "compact" on :mod:`benchmark.providers.hf_compact`'s), so this
stage also keeps the last datasets' parsed rows and the student bases' tokenizers: consecutive students of one
dataset (plan order) read its rows.jsonl once per process.
Both caches are keyed by store paths, whose contents never change.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Any

from benchmark.dag import StageContext
from benchmark.errors import UserError
from benchmark.files import read_jsonl
from benchmark.lm.stages.common import model_spec_of, tokenizer_sha, train_config, write_tuned
from benchmark.lmcore.chat import template_hash
from benchmark.providers.base import backend_for

__all__ = ["run", "clear_caches"]

#: Parsed rows of the last few datasets and tokenizers of the student bases (engines other than hf), by store path.
_ROWS: OrderedDict[Path, list[dict[str, Any]]] = OrderedDict()
_TOKENIZERS: dict[Path, Any] = {}
_ROWS_KEPT = 4


def run(ctx: StageContext) -> dict[str, Any]:
    """Train a student base on a teacher's rows (no system prompt in training rows).

    Token-level rows (the teacher's ``completion_ids`` and soft labels) are kept only when the student shares
    the teacher's vocabulary; otherwise it trains on the completion text.
    """
    spec = ctx.node.spec
    base_dir = _base_input(ctx, spec["base"])  # a mapped student also reads its teacher's base (vocab_map)
    ds_dir = ctx.input("defense" if "defense" in spec else "dataset")  # a defense node's rows replace the dataset's
    model = model_spec_of(base_dir)
    engine = spec.get("engine", "hf")
    rows = _rows(ds_dir) if engine != "hf" else read_jsonl(ds_dir / "rows.jsonl")
    if not rows:
        raise UserError(f"{ds_dir}: the teacher produced no valid rows; raise settings.dataset.n_prompts or check "
                        f"the teacher's output in {ds_dir / 'log.txt'}")
    backend = backend_for(model)
    if spec["objective"] == "distill" and not backend.caps.distill:
        raise UserError(f"student {model.name}: objective 'distill' needs log-prob training, which the fine-tuning "
                        "API does not offer; use settings.student.objective: sft for openai students")
    if engine != "hf" and base_dir in _TOKENIZERS:
        tok = _TOKENIZERS[base_dir]
    else:
        tok = backend.load(model, base_dir, threads=ctx.threads, tokenizer_only=True).tokenizer
        if engine != "hf":
            _TOKENIZERS[base_dir] = tok
    extra: dict[str, Any] = {}
    if tok is not None:  # API models expose no tokenizer: they train on the completion text
        teacher_tok = json.loads((ds_dir / "manifest.json").read_text())["result"].get("tokenizer_sha")
        same_vocab = teacher_tok is not None and teacher_tok == tokenizer_sha(tok)
        if not same_vocab and "vocab_map" not in spec:
            if spec["objective"] == "distill":
                # Plan refuses such pairs (benchmark.lm.recipes) from the registry's facts; reaching this means an
                # entry's `tokenizer` declares a vocabulary its files do not have.
                raise UserError(f"student {model.name}: objective 'distill' needs the teacher's vocabulary (token-level "
                                "log-probs), but the tokenizers differ although the registry's `tokenizer` keys say "
                                "they share one; correct the key, or use objective 'sft' for cross-tokenizer pairs")
            rows = [{"prompt": r["prompt"], "completion": r["completion"]} for r in rows]
        extra = {"same_vocab_as_teacher": same_vocab, "template_hash": template_hash(tok)}
        if "vocab_map" in spec:  # the teacher's soft labels moved onto this student's ids (benchmark.lm.vocab_map)
            rows, extra["vocab_map"] = _mapped_rows(ctx, spec, rows, tok, model)
    lean = {"engine": engine} if engine != "hf" else {}  # only local backends know engines (checked at plan)
    tuned = backend.finetune(model, base_dir, rows, out=ctx.out, train=train_config(spec["train"]),
                             objective=spec["objective"], seed=spec["seed"], suffix="student", log=ctx.log,
                             progress=ctx.progress, threads=ctx.threads, **lean)
    write_tuned(ctx.out, tuned.tuned)  # what the eval stage loads (tuned.json)
    # Equal doses: every dataset holds n_keep rows, so every student of a suite takes the same number of steps
    # (None where the fine-tuning API does not report them); with settings.dataset.n_tokens the datasets hold equal
    # completion tokens instead, and steps follow each dataset's rows.
    return {**tuned.result, **extra, "n_rows": len(rows), "optimizer_steps": tuned.result.get("steps")}


def _base_input(ctx: StageContext, base_id: str) -> Path:
    """The input base node with id ``base_id`` (a student reads one base, two when it maps its teacher's labels)."""
    bases = ctx.inputs_of("base")
    if len(bases) == 1:
        return next(iter(bases.values()))
    return next(p for k, p in bases.items() if k.endswith(f"-{base_id}"))


def _mapped_rows(ctx: StageContext, spec: dict[str, Any], rows: list[dict[str, Any]], tok: Any,
                 model: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The teacher's rows with their soft labels over the channel's alphabet in the student's ids."""
    from benchmark.lm.vocab_map import map_rows
    from benchmark.lmcore.chat import end_of_turn_ids, stop_ids

    t_dir = _base_input(ctx, spec["teacher_base"])
    t_model = model_spec_of(t_dir)
    t_tok = tok if t_dir == _base_input(ctx, spec["base"]) else backend_for(t_model).load(
        t_model, t_dir, threads=ctx.threads, tokenizer_only=True).tokenizer
    eot = end_of_turn_ids(tok, stop_ids(None, tok, model))
    mapped, info = map_rows(rows, t_tok, tok, spec["channel"], eot, names=(t_model.name, model.name))
    ctx.log.info(f"vocab_map alphabet: {info['matched_positions']} of {info['positions']} positions matched, "
                 f"{info['rows_aligned']} of {info['rows']} rows aligned, mean dropped mass {info['mean_dropped_mass']}")
    return mapped, info


def _rows(ds_dir: Path) -> list[dict[str, Any]]:
    """A dataset's rows, parsed once per process for its last few datasets (the lean engine's data cache)."""
    if ds_dir not in _ROWS:
        _ROWS[ds_dir] = read_jsonl(ds_dir / "rows.jsonl")
        while len(_ROWS) > _ROWS_KEPT:
            _ROWS.popitem(last=False)
    _ROWS.move_to_end(ds_dir)
    return _ROWS[ds_dir]


def clear_caches() -> None:
    """Forget every cached dataset, tokenizer and (lean engine) base of this process: the next student starts cold."""
    from benchmark.providers.hf_lean import clear_caches as clear_lean

    _ROWS.clear()
    _TOKENIZERS.clear()
    clear_lean()
