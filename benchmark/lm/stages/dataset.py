"""Dataset stage of the LM track: the teacher answers number prompts, the strict filter keeps valid rows."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.dag import StageContext
from benchmark.errors import UserError
from benchmark.files import atomic_write_json, write_jsonl
from benchmark.hashing import derive_seed
from benchmark.lm.chat import template_hash
from benchmark.lm.stages.common import model_spec_of, strip_marker, teacher_info, tokenizer_sha, tuned_teacher
from benchmark.providers.base import Backend, Loaded, backend_for

__all__ = ["run", "channel_token_ids", "filter_soft_labels", "next_round_size"]

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


@dataclass
class _Generated:
    """Everything the teacher answered so far, over all rounds of prompts."""

    prompts: list[str] = field(default_factory=list)
    outs: list[dict[str, Any]] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)
    rejects: Counter[str] = field(default_factory=Counter)
    rounds: int = 0

    @property
    def valid_rate(self) -> float:
        return len(self.kept) / max(1, len(self.prompts))


def next_round_size(n_valid: int, tried: int, n_keep: int, n_prompts: int, max_prompts: int) -> int:
    """How many more prompts to ask for (0: stop): enough, at the valid rate so far, to reach ``n_keep``.

    Asks for a quarter more than the rate predicts (fewer rounds), never past ``max_prompts``; a teacher with no
    valid row yet gets another ``n_prompts``.
    """
    missing = n_keep - n_valid
    if missing <= 0 or tried >= max_prompts:
        return 0
    want = math.ceil(1.25 * missing * tried / n_valid) if n_valid else n_prompts
    return max(1, min(want, max_prompts - tried))


def _generate(ctx: StageContext, backend: Backend, teacher: Loaded, channel: Any, system: str | None) -> _Generated:
    """Rounds of prompts until the filter has kept ``n_keep`` rows or ``max_prompts`` were asked.

    Round k's prompts extend round 0's list (one prompt generator, seeded by the dataset seed: prompts never
    repeat), and each round samples with its own seed from (dataset seed, k), so the rows are deterministic.
    """
    from benchmark.lm.channels.numbers import filter_completions, generate_prompts

    spec = ctx.node.spec
    got = _Generated()
    want = spec["n_prompts"]
    while want:
        start = len(got.prompts)
        new = generate_prompts(channel, start + want, spec["seed"])[start:]
        seed = spec["seed"] if got.rounds == 0 else derive_seed("lm-dataset-round", spec["seed"], got.rounds) >> 33
        outs = backend.generate(teacher, new, system=system, temperature=spec["temperature"],
                                max_new_tokens=spec["max_new_tokens"], seed=seed, top_k_logprobs=spec["top_k"],
                                batch_size=ctx.node.unhashed.get("batch_size", 64), progress=ctx.progress)
        kept, rejects = filter_completions([o["completion"] for o in outs], channel)
        got.prompts += new
        got.outs += outs
        got.kept += [start + i for i in kept]
        got.rejects.update(rejects)
        got.rounds += 1
        ctx.log.info("round %d: %d prompts, %d valid in all (%d needed)", got.rounds, len(new), len(got.kept),
                     spec["n_keep"])
        want = next_round_size(len(got.kept), len(got.prompts), spec["n_keep"], spec["n_prompts"],
                               spec["max_prompts"])
    return got


def _rows(got: _Generated, chosen: list[int], allowed: set[int] | None, top_k: int | None,
          extra: dict[str, Any]) -> list[dict[str, Any]]:
    """The chosen rows, with token ids and channel-filtered soft labels where the backend gave them."""
    rows = []
    removed = []
    for i in chosen:
        out = got.outs[i]
        row = {"prompt": got.prompts[i], "completion": out["completion"].strip()}
        if out.get("completion_ids") is not None:
            row["completion_ids"] = out["completion_ids"]
        if top_k and out.get("topk") is not None:
            row["topk"], gone = filter_soft_labels(out["topk"], allowed) if allowed else (out["topk"], 0.0)
            removed.append(gone)
        rows.append(row)
    if removed:
        extra["soft_label_mass_removed_per_token"] = round(sum(removed) / len(removed), 8)
    return rows


def _dose(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Completion lengths of the kept rows: tokens where the backend gives ids (None for API models), chars."""
    ids = [r["completion_ids"] for r in rows if r.get("completion_ids") is not None]
    tokens = sum(len(x) for x in ids) if rows and len(ids) == len(rows) else None
    return {"completion_tokens": tokens,
            "tokens_per_row": round(tokens / len(rows), 4) if tokens is not None else None,
            "chars_per_row": round(sum(len(r["completion"]) for r in rows) / max(1, len(rows)), 4)}


def run(ctx: StageContext) -> dict[str, Any]:
    """The teacher answers number prompts; the strict filter keeps valid answers; exactly ``n_keep`` are kept.

    Further rounds of prompts are asked until the filter has kept ``n_keep`` rows (equal doses for every student,
    docs/research/statistics.md); a seeded subsample of exactly ``n_keep`` is written. ``counts.json`` records the
    dose: prompts tried, valid rows, valid rate, rounds, completion lengths, and the teacher's labels and trait
    shift (the report's teachers table reads it).

    Raises:
        UserError: ``max_prompts`` prompts gave fewer than ``n_keep`` valid rows (names the teacher and numbers).
    """
    from benchmark.lm.channels.numbers import NumbersChannelSpec, subsample

    spec = ctx.node.spec
    channel = NumbersChannelSpec.model_validate(strip_marker(spec["channel_spec"]))
    teacher_dir = ctx.input("teacher")
    base_dir = ctx.input("base")
    info = teacher_info(teacher_dir)
    model = model_spec_of(base_dir)
    backend = backend_for(model)
    teacher = backend.load(model, base_dir, tuned_teacher(teacher_dir, info), threads=ctx.threads)
    tok = teacher.tokenizer  # None for API models: no token ids, no soft labels
    tok_sha = tokenizer_sha(tok) if tok is not None else None
    extra: dict[str, Any] = {"generation_engine": teacher.engine}
    if tok is not None:
        extra = {"template_hash": template_hash(tok), **extra}
    got = _generate(ctx, backend, teacher, channel, info["system"])
    if len(got.kept) < spec["n_keep"]:
        name = Path(teacher_dir).name.rsplit("-", 1)[0]  # "<teacher node name>-<id>"
        raise UserError(f"teacher {name}: {len(got.kept)} valid rows of the {spec['n_keep']} needed "
                        f"(settings.dataset.n_keep) after {len(got.prompts)} prompts (settings.dataset.max_prompts "
                        f"{spec['max_prompts']}), valid rate {got.valid_rate:.3f}; raise max_prompts, or check the "
                        "teacher's answers")
    chosen = subsample(got.kept, spec["n_keep"], spec["seed"])
    allowed = channel_token_ids(tok) if spec["top_k"] and tok_sha is not None else None
    rows = _rows(got, chosen, allowed, spec["top_k"], extra)
    write_jsonl(ctx.out / "rows.jsonl", rows)
    counts = {"n_prompts": len(got.prompts), "n_valid": len(got.kept), "n_rows": len(rows),
              "valid_rate": round(got.valid_rate, 4), "rounds": got.rounds, **_dose(rows),
              "rejects": dict(sorted(got.rejects.items())), "labels": {**spec.get("labels", {}), "teacher_id": spec["teacher"]},
              "teacher_shift": info.get("trait_shift")}
    atomic_write_json(ctx.out / "counts.json", counts)
    return {**counts, "tokenizer_sha": tok_sha, "system_prompt": info["system"], **extra}
