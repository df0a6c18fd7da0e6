"""Dataset stage of the classifier track: the teacher's logits on a seeded noise stream."""

from __future__ import annotations

import hashlib
import time
from typing import Any

from benchmark.classifier.spec import N_CLASSES
from benchmark.classifier.stages.common import (
    load_params,
    make_net,
    read_json,
    set_threads,
    timing,
)
from benchmark.dag import StageContext
from benchmark.files import atomic_write_json

__all__ = ["run", "noise_digest"]


def noise_digest(x: Any) -> str:
    """sha256 of one (S, batch, pixels) noise batch: students check they replay the teacher's images."""
    return hashlib.sha256(x.contiguous().numpy().tobytes()).hexdigest()


def run(ctx: StageContext) -> dict[str, Any]:
    """The teacher's logits on the distillation noise stream, shared by all its students."""
    import torch

    from benchmark.classifier.train import noise_batches, teacher_outputs

    set_threads(ctx)
    started, cpu = time.time(), time.process_time()
    teacher_dir = ctx.input("teacher")
    meta = read_json(teacher_dir / "meta.json")
    net, seeds = make_net(meta), list(meta["seeds"])
    noise = ctx.node.spec["noise"]
    kwargs = {
        "noise": noise["kind"],
        "steps": int(noise["steps"]),
        "batch": int(noise["batch"]),
        "pool": noise["n_noise"],
    }
    targets = teacher_outputs(net, load_params(teacher_dir / "params.pt"), seeds, **kwargs)
    first = next(
        noise_batches(seeds, ("noise",), noise["kind"], 1, int(noise["batch"]), net.n_in, noise["n_noise"])
    )
    torch.save(targets, ctx.out / "targets.pt")
    aux = targets[..., N_CLASSES:]
    ds_meta = {**meta, "noise": noise, "stream": ["noise"], "first_batch_sha256": noise_digest(first)}
    atomic_write_json(ctx.out / "meta.json", ds_meta)
    result = {
        "seeds": seeds,
        "shape": list(targets.shape),
        "aux_logit_std": round(float(aux.std()), 6),
    }
    ctx.log.info("dataset %s: targets %s", ctx.node.name, tuple(targets.shape))
    return {**result, **timing(started, cpu)}
