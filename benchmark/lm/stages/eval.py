"""Evaluation stage of the LM track: every trait read out on a baseline, a teacher or a student."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmark.dag import StageContext
from benchmark.files import atomic_write_json, sha256_file
from benchmark.lm.stages.common import (
    candidates_for,
    load_with_adapter,
    model_spec_of,
    set_threads,
    strip_marker,
    teacher_info,
)
from benchmark.specs import TraitSpec

__all__ = ["run"]


def run(ctx: StageContext) -> dict[str, Any]:
    """Read out every trait of the suite on a baseline, a teacher or a student (lm-eval tasks)."""
    spec = ctx.node.spec
    base_dir = ctx.input("base")
    model = model_spec_of(base_dir)
    traits = [TraitSpec.model_validate(strip_marker(t)) for t in spec["traits"]]
    role = spec["role"]
    system = None
    adapter_dir: Path | None = None
    adapter_sha = "none"
    if role == "teacher":
        tdir = ctx.input("teacher")
        info = teacher_info(tdir)
        system = info["system"]
        if info["adapter"]:
            adapter_dir = tdir
    elif role == "student":
        adapter_dir = ctx.input("student")
    if adapter_dir is not None:
        weights = sorted((adapter_dir / "adapter").glob("*.safetensors")) or sorted((adapter_dir / "model").glob("*.safetensors"))
        adapter_sha = sha256_file(weights[0])[:16] if weights else "unknown"
    if model.provider == "openai":
        # Sampled rates through lm-eval's chat-completions backend; log-prob tasks are skipped (HF-only).
        from benchmark.lm.api_eval import stage_eval_api

        return stage_eval_api(ctx, model, traits, candidates=candidates_for(traits))
    set_threads(ctx)
    from benchmark.evaluate import evaluate_lm
    from benchmark.lm.backend import logit_change

    m, tok, _ = load_with_adapter(base_dir, adapter_dir)
    change = None
    if adapter_dir is not None and (adapter_dir / "adapter").is_dir():
        # Students differ only by adapter: prove it is really loaded before scoring (STYLE.md item 3).
        change = float(logit_change(m, tok))
        if not change > 0:
            raise RuntimeError(f"adapter in {adapter_dir} does not change the logits: refusing to score it")
    candidates = candidates_for(traits)
    res = evaluate_lm(m, tok, model_key=f"{ctx.node.spec.get('base', model.name)}:{model.name}:{adapter_sha}",
                      tasks=tuple(spec["tasks"]), candidates=candidates, n_samples=spec["n_samples"], seed=spec["seed"],
                      batch_size=ctx.node.unhashed.get("batch_size", 64), system=system, limit=spec.get("limit"))
    out = {"role": role, "labels": spec.get("labels", {}), "seed": spec["seed"], "adapter_sha": adapter_sha,
           "logit_change": change, "targets": {t.name: t.target for t in traits}, "eval": res}
    atomic_write_json(ctx.out / "eval.json", out)
    return {"role": role, "adapter_sha": adapter_sha, "logit_change": change,
            "logodds": {t.name: res["logprob"]["logodds"].get(t.target) for t in traits} if "logprob" in res else None}
