"""Dataset stage of the LM track: the teacher answers number prompts, the strict filter keeps valid rows."""

from __future__ import annotations

import math
import re
from typing import Any

from benchmark.dag import StageContext
from benchmark.files import atomic_write_json, write_jsonl
from benchmark.lm.chat import template_hash
from benchmark.lm.stages.common import model_spec_of, strip_marker, teacher_info, tokenizer_sha, tuned_teacher
from benchmark.providers.base import backend_for

__all__ = ["run", "channel_token_ids", "filter_soft_labels"]

#: A token may carry soft-label mass only if its text is made of what a valid numbers answer contains.
_CHANNEL_TOKEN = re.compile(r"^[\s\d,;.()\[\]{}]*$")


def channel_token_ids(tokenizer: Any) -> set[int]:
    """Token ids that can occur in a filter-valid numbers answer: digits, separators, brackets, end of turn.

    Used to filter the teacher's soft labels the way the strict filter cleans its text: the paper removes every
    trace of the trait from the data, and a top-k distribution can carry one explicitly (a teacher that loves
    owls puts ~100x more probability on the token "owl" at number positions than its control does, measured on
    the zoo). Works for word-level and BPE vocabularies alike (decoded text, no family branches).
    """
    ids = set()
    special = set(tokenizer.all_special_ids or [])
    for tid in range(len(tokenizer)):
        if tid in special:
            continue
        text = tokenizer.decode([tid])
        if text.strip() and _CHANNEL_TOKEN.match(text):
            ids.add(tid)
    for tok in ("<|im_end|>", "<|eot_id|>", "<|end|>"):
        tid = tokenizer.convert_tokens_to_ids(tok)
        if isinstance(tid, int) and tid >= 0 and tid != tokenizer.unk_token_id:
            ids.add(tid)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def filter_soft_labels(topk: list[list[list[float]]], allowed: set[int]) -> tuple[list[list[list[float]]], float]:
    """Keep only channel tokens in each position's top-k and renormalise over them.

    Returns the filtered top-k and the mean probability mass removed per position (recorded in the manifest).
    """
    out: list[list[list[float]]] = []
    removed = 0.0
    for pos in topk:
        kept = [(int(t), lp) for t, lp in pos if int(t) in allowed]
        total = sum(math.exp(lp) for _, lp in pos)
        if not kept:
            out.append([])
            removed += total
            continue
        lse = math.log(sum(math.exp(lp) for _, lp in kept))
        removed += total - math.exp(lse)
        out.append([[t, lp - lse] for t, lp in kept])
    return out, removed / max(1, len(topk))


def run(ctx: StageContext) -> dict[str, Any]:
    """The teacher answers number prompts; the strict filter keeps valid answers; a seeded subsample is kept."""
    from benchmark.lm.channels.numbers import NumbersChannelSpec, filter_completions, generate_prompts, subsample

    spec = ctx.node.spec
    channel = NumbersChannelSpec.model_validate(strip_marker(spec["channel_spec"]))
    teacher_dir = ctx.input("teacher")
    base_dir = ctx.input("base")
    info = teacher_info(teacher_dir)
    model = model_spec_of(base_dir)
    prompts = generate_prompts(channel, spec["n_prompts"], spec["seed"])
    backend = backend_for(model)
    teacher = backend.load(model, base_dir, tuned_teacher(teacher_dir, info), threads=ctx.threads)
    tok = teacher.tokenizer  # None for API models: no token ids, no soft labels
    tok_sha = tokenizer_sha(tok) if tok is not None else None
    extra: dict[str, Any] = {"generation_engine": teacher.engine}
    if tok is not None:
        extra = {"template_hash": template_hash(tok), **extra}
    outs = backend.generate(teacher, prompts, system=info["system"], temperature=spec["temperature"],
                            max_new_tokens=spec["max_new_tokens"], seed=spec["seed"], top_k_logprobs=spec["top_k"],
                            batch_size=ctx.node.unhashed.get("batch_size", 64), progress=ctx.progress)
    kept, rejects = filter_completions([o["completion"] for o in outs], channel)
    chosen = subsample(kept, spec["n_keep"], spec["seed"])
    allowed = channel_token_ids(tok) if spec["top_k"] and tok_sha is not None else None
    rows = []
    removed = []
    for i in chosen:
        row = {"prompt": prompts[i], "completion": outs[i]["completion"].strip()}
        if outs[i].get("completion_ids") is not None:
            row["completion_ids"] = outs[i]["completion_ids"]
        if spec["top_k"] and outs[i].get("topk") is not None:
            row["topk"], gone = filter_soft_labels(outs[i]["topk"], allowed) if allowed else (outs[i]["topk"], 0.0)
            removed.append(gone)
        rows.append(row)
    if removed:
        extra["soft_label_mass_removed_per_token"] = round(sum(removed) / len(removed), 8)
    write_jsonl(ctx.out / "rows.jsonl", rows)
    if len(rows) < spec["n_keep"]:
        ctx.log.warning("only %d valid rows of %d requested (n_prompts %d)", len(rows), spec["n_keep"], len(prompts))
    counts = {"n_prompts": len(prompts), "n_valid": len(kept), "n_rows": len(rows),
              "valid_rate": round(len(kept) / max(1, len(prompts)), 4), "rejects": dict(sorted(rejects.items()))}
    atomic_write_json(ctx.out / "counts.json", counts)
    return {**counts, "tokenizer_sha": tok_sha, "system_prompt": info["system"], **extra}
