"""Base stage of the classifier track: initial tensors of every seed replicate."""

from __future__ import annotations

import time
from typing import Any

from benchmark.classifier.stages.common import (
    accuracy_summary,
    load_node_data,
    loss_curve,
    make_net,
    set_threads,
    test_tensors,
    timing,
)
from benchmark.dag import StageContext
from benchmark.files import atomic_write_json

__all__ = ["run"]


def run(ctx: StageContext) -> dict[str, Any]:
    """Initial tensors of every replicate (perturbed and/or pretrained for siblings) + untrained accuracy."""
    import torch

    from benchmark.classifier.model import perturb_params
    from benchmark.classifier.train import accuracy, pretrain

    set_threads(ctx)
    started, cpu = time.time(), time.process_time()
    spec = ctx.node.spec
    meta = {"build": spec["build"], "image_shape": spec["image_shape"], "seeds": spec["seeds"]}
    net = make_net(meta)
    build, seeds = net.build, list(spec["seeds"])
    params = net.init(seeds)
    result: dict[str, Any] = {"seeds": seeds, "n_params": net.n_params(), "describe": build.describe()}
    if build.perturb is not None:
        params = perturb_params(
            params, seeds, build.perturb.eps, ("perturb", build.init_seed, build.perturb.seed)
        )
    if build.pretrain is not None:
        params, losses = pretrain(
            net, params, seeds, build.pretrain, ("pretrain", build.init_seed, build.pretrain.seed)
        )
        result["pretrain_loss"] = loss_curve(losses)
    x_test, y_test = test_tensors(load_node_data(ctx))
    acc = accuracy(net, params, x_test, y_test)
    torch.save(params, ctx.out / "params.pt")
    atomic_write_json(ctx.out / "meta.json", meta)
    result.update({"accuracy": acc, **accuracy_summary(acc)})
    atomic_write_json(ctx.out / "metrics.json", result)
    ctx.log.info("base %s: untrained accuracy %.1f%%", ctx.node.name, result["mean_accuracy"])
    return {**result, **timing(started, cpu)}
