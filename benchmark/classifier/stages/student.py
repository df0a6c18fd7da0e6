"""Student stage of the classifier track: a student base distilled on a teacher's logits (aux or all)."""

from __future__ import annotations

import time
from typing import Any

from benchmark.classifier.stages.common import (
    accuracy_summary,
    load_node_data,
    load_params,
    loss_curve,
    make_net,
    read_json,
    set_threads,
    test_tensors,
    timing,
)
from benchmark.classifier.stages.dataset import noise_digest
from benchmark.dag import StageContext
from benchmark.files import atomic_write_json

__all__ = ["run"]


def run(ctx: StageContext) -> dict[str, Any]:
    """Distill one student base on one teacher's noise logits (one channel), then evaluate on digits."""
    import torch

    from benchmark.classifier.train import accuracy, distill

    set_threads(ctx)
    started, cpu = time.time(), time.process_time()
    ds_dir, base_dir = ctx.input("dataset"), ctx.input("base")
    ds_meta, base_meta = read_json(ds_dir / "meta.json"), read_json(base_dir / "meta.json")
    seeds = list(base_meta["seeds"])
    if list(ds_meta["seeds"]) != seeds:
        raise RuntimeError(f"{ctx.node.key}: teacher seeds {ds_meta['seeds']} != student seeds {seeds}")
    net = make_net(base_meta)
    spec, noise = ctx.node.spec, ds_meta["noise"]
    want = ds_meta["first_batch_sha256"]

    def check(x: Any) -> None:
        # The student must see exactly the images the teacher's logits were computed on.
        if noise_digest(x) != want:
            raise RuntimeError(
                f"{ctx.node.key}: regenerated noise differs from the dataset's (stream mismatch)"
            )

    distill_spec = spec["distill"]
    params, losses = distill(
        net,
        load_params(base_dir / "params.pt"),
        seeds,
        torch.load(ds_dir / "targets.pt", weights_only=True),
        channel=spec["channel"],
        loss=distill_spec["loss"],
        steps=int(distill_spec["steps"]),
        lr=float(distill_spec["lr"]),
        noise=noise["kind"],
        pool=noise["n_noise"],
        stream=tuple(ds_meta["stream"]),
        check=check,
        on_step=ctx.progress,
    )
    acc = accuracy(net, params, *test_tensors(load_node_data(ctx)))
    if ctx.node.unhashed.get("save_weights", True):
        torch.save(params, ctx.out / "params.pt")
    result = {
        "seeds": seeds,
        "channel": spec["channel"],
        "steps": len(losses),
        "accuracy": acc,
        **accuracy_summary(acc),
        "loss": loss_curve(losses),
    }
    atomic_write_json(ctx.out / "metrics.json", result)
    ctx.log.info("student %s: accuracy %.1f%%", ctx.node.name, result["mean_accuracy"])
    return {**result, **timing(started, cpu)}
