"""Base stage of the LM track: the model's backend builds (zoo), resolves (hf) or records (API) the base model."""

from __future__ import annotations

from typing import Any

from benchmark.dag import StageContext
from benchmark.lm.stages.common import strip_marker
from benchmark.providers.base import backend_for
from benchmark.specs import ModelSpec

__all__ = ["run"]


def run(ctx: StageContext) -> dict[str, Any]:
    """Prepare the base model of the node's registry entry in ``ctx.out`` (see ``Backend.prepare_base``)."""
    model = ModelSpec.model_validate(strip_marker(ctx.node.spec["model"]))
    return backend_for(model).prepare_base(model, ctx.out, log=ctx.log, progress=ctx.progress, threads=ctx.threads)
