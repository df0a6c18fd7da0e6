"""Helpers the classifier-track stages share: data loading, threads, small JSON records."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from benchmark.classifier.data import DigitData, data_fingerprint, load_digits_split, load_idx_dataset
from benchmark.classifier.spec import ClassifierBuildSpec
from benchmark.dag import StageContext
from benchmark.errors import UserError

__all__ = ["LOSS_HEAD", "LOSS_POINTS", "set_threads", "load_node_data", "test_tensors", "loss_curve",
           "accuracy_summary", "timing", "read_json", "make_net", "load_params"]

#: Loss values kept in metrics.json: the first few (golden-value tests) and a thinned curve.
LOSS_HEAD = 5
LOSS_POINTS = 64


def set_threads(ctx: StageContext) -> None:
    import torch

    # One thread per worker: on the shared 2-core box, 1 thread per process beat 2 (docs/research/prototypes.md).
    torch.set_num_threads(max(1, int(ctx.threads)))


def load_node_data(ctx: StageContext) -> DigitData:
    """Load the node's data; for IDX files check the bytes are the ones the plan hashed."""
    fp = ctx.node.spec["data"]
    if fp["name"] == "digits":
        return load_digits_split(float(fp["test_fraction"]), int(fp["split_seed"]))
    path = ctx.node.unhashed.get("idx_path")
    now = data_fingerprint("idx", path, 0.3, 0)
    if now["sha256"] != fp["sha256"]:
        raise UserError(
            f"settings.idx_path: the IDX files in {path} changed since the plan was made; re-plan"
        )
    return load_idx_dataset(Path(str(path)))


def test_tensors(data: DigitData) -> tuple[Any, Any]:
    import torch

    return torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)


def loss_curve(losses: list[float]) -> dict[str, Any]:
    stride = max(1, len(losses) // LOSS_POINTS)
    return {"head": losses[:LOSS_HEAD], "every": stride, "curve": losses[::stride], "final": losses[-1]}


def accuracy_summary(acc: list[float]) -> dict[str, float]:
    n = len(acc)
    return {"mean_accuracy": round(sum(acc) / n, 4), "min_accuracy": min(acc), "max_accuracy": max(acc)}


def timing(started: float, cpu: float) -> dict[str, float]:
    """Wall and CPU seconds of the stage, for the manifest only.

    Payload files stay byte-identical between runs (a resumed run must equal a clean one), so timings never
    go into metrics.json. CPU time is what counts on the oversubscribed shared box.
    """
    return {"seconds": round(time.time() - started, 3), "cpu_seconds": round(time.process_time() - cpu, 3)}


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def make_net(meta: dict[str, Any]) -> Any:
    from benchmark.classifier.model import Net

    return Net(
        ClassifierBuildSpec.model_validate(meta["build"]),
        (int(meta["image_shape"][0]), int(meta["image_shape"][1])),
    )


def load_params(path: Path) -> Any:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)
