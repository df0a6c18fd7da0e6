"""Base-model stages of the LM track (zoo models are built by :func:`benchmark.zoo.build.stage_build`)."""

from __future__ import annotations

from typing import Any

from benchmark.dag import StageContext
from benchmark.files import atomic_write_json
from benchmark.lm.stages.common import MODEL_REF, strip_marker
from benchmark.specs import ModelSpec

__all__ = ["run_hf", "run_api"]


def run_hf(ctx: StageContext) -> dict[str, Any]:
    """Resolve an hf model (local dir or hub id) without copying weights; record revision and template hash."""
    from benchmark.lm.backend import load_tokenizer_only, template_hash

    spec = ModelSpec.model_validate(strip_marker(ctx.node.spec["model"]))
    assert spec.source is not None
    tok = load_tokenizer_only(spec.source, spec=spec)
    ref = {"path": spec.source, "revision": spec.revision, "template_hash": template_hash(tok)}
    atomic_write_json(ctx.out / MODEL_REF, ref)
    return ref


def run_api(ctx: StageContext) -> dict[str, Any]:
    """API models have nothing to build: record the exact model name (a dated snapshot) for manifests."""
    spec = ModelSpec.model_validate(strip_marker(ctx.node.spec["model"]))
    ref = {"path": spec.source, "provider": "openai", "revision": spec.revision}
    atomic_write_json(ctx.out / MODEL_REF, ref)
    return ref
