"""Teacher stage of the classifier track: the base trained on digits."""

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
from benchmark.dag import StageContext
from benchmark.errors import UserError
from benchmark.files import atomic_write_json

__all__ = ["run"]


def run(ctx: StageContext) -> dict[str, Any]:
    """Train the base on digit labels through the class logits only (all seeds at once)."""
    import torch

    from benchmark.classifier.train import accuracy
    from benchmark.classifier.train import train_teacher as fit

    set_threads(ctx)
    started, cpu = time.time(), time.process_time()
    base_dir = ctx.input("base")
    meta = read_json(base_dir / "meta.json")
    net, seeds = make_net(meta), list(meta["seeds"])
    train = ctx.node.spec["train"]
    data = load_node_data(ctx)
    if int(train["batch"]) > len(data.y_train):
        raise UserError(
            f"settings.teacher.batch: {train['batch']} is larger than the {len(data.y_train)} "
            f"training images of {data.name!r}"
        )
    params, losses = fit(
        net,
        load_params(base_dir / "params.pt"),
        seeds,
        torch.from_numpy(data.x_train),
        torch.from_numpy(data.y_train),
        epochs=int(train["epochs"]),
        batch=int(train["batch"]),
        lr=float(train["lr"]),
        on_step=ctx.progress,
    )
    acc = accuracy(net, params, *test_tensors(data))
    torch.save(params, ctx.out / "params.pt")
    atomic_write_json(ctx.out / "meta.json", meta)
    result = {
        "seeds": seeds,
        "steps": len(losses),
        "accuracy": acc,
        **accuracy_summary(acc),
        "loss": loss_curve(losses),
    }
    atomic_write_json(ctx.out / "metrics.json", result)
    ctx.log.info("teacher %s: %d steps, accuracy %.1f%%", ctx.node.name, len(losses), result["mean_accuracy"])
    return {**result, **timing(started, cpu)}
