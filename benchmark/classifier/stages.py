"""Stage functions of the classifier track (named by ``Node.fn``; each takes a StageContext).

Payloads (all tensors carry a leading seed dimension in the order of ``spec["seeds"]``):

* base:    ``params.pt`` (initial tensors), ``meta.json`` (build, image shape, seeds), ``metrics.json``
* teacher: ``params.pt`` (trained tensors), ``meta.json``, ``metrics.json`` (accuracy, loss curve)
* dataset: ``targets.pt`` (teacher logits on the noise stream, (S, steps, batch, 10+m)), ``meta.json``
* student: ``params.pt`` (unless ``save_weights`` is off), ``metrics.json`` (accuracy, loss curve)
* report:  the shared report files (tidy.csv, cells.csv, matrix.csv, heatmaps, report.md, index.html)

Torch is imported inside the functions so that planning never imports it.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from benchmark.classifier.data import DigitData, data_fingerprint, load_digits_split, load_idx_dataset
from benchmark.classifier.spec import N_CLASSES, ClassifierBuildSpec
from benchmark.dag import StageContext
from benchmark.errors import UserError
from benchmark.store import atomic_write_json

__all__ = ["build_base", "distill_student", "report", "teacher_logits", "train_teacher"]

#: Loss values kept in metrics.json: the first few (golden-value tests) and a thinned curve.
_LOSS_HEAD = 5
_LOSS_POINTS = 64


def _threads(ctx: StageContext) -> None:
    import torch

    # One thread per worker: on the shared 2-core box, 1 thread per process beat 2 (prototypes.md).
    torch.set_num_threads(max(1, int(ctx.threads)))


def _data(ctx: StageContext) -> DigitData:
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


def _test_tensors(data: DigitData) -> tuple[Any, Any]:
    import torch

    return torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)


def _curve(losses: list[float]) -> dict[str, Any]:
    stride = max(1, len(losses) // _LOSS_POINTS)
    return {"head": losses[:_LOSS_HEAD], "every": stride, "curve": losses[::stride], "final": losses[-1]}


def _summary(acc: list[float]) -> dict[str, float]:
    n = len(acc)
    return {"mean_accuracy": round(sum(acc) / n, 4), "min_accuracy": min(acc), "max_accuracy": max(acc)}


def _timing(started: float, cpu: float) -> dict[str, float]:
    """Wall and CPU seconds of the stage, for the manifest only.

    Payload files stay byte-identical between runs (a resumed run must equal a clean one), so timings never
    go into metrics.json. CPU time is what counts on the oversubscribed shared box.
    """
    return {"seconds": round(time.time() - started, 3), "cpu_seconds": round(time.process_time() - cpu, 3)}


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_json(path, obj)


def _read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _net(meta: dict[str, Any]) -> Any:
    from benchmark.classifier.model import Net

    return Net(
        ClassifierBuildSpec.model_validate(meta["build"]),
        (int(meta["image_shape"][0]), int(meta["image_shape"][1])),
    )


def _load_params(path: Path) -> Any:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def build_base(ctx: StageContext) -> dict[str, Any]:
    """Initial tensors of every replicate (perturbed and/or pretrained for siblings) + untrained accuracy."""
    import torch

    from benchmark.classifier.model import perturb_params
    from benchmark.classifier.train import accuracy, pretrain

    _threads(ctx)
    started, cpu = time.time(), time.process_time()
    spec = ctx.node.spec
    meta = {"build": spec["build"], "image_shape": spec["image_shape"], "seeds": spec["seeds"]}
    net = _net(meta)
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
        result["pretrain_loss"] = _curve(losses)
    x_test, y_test = _test_tensors(_data(ctx))
    acc = accuracy(net, params, x_test, y_test)
    torch.save(params, ctx.out / "params.pt")
    _write_json(ctx.out / "meta.json", meta)
    result.update({"accuracy": acc, **_summary(acc)})
    _write_json(ctx.out / "metrics.json", result)
    ctx.log.info("base %s: untrained accuracy %.1f%%", ctx.node.name, result["mean_accuracy"])
    return {**result, **_timing(started, cpu)}


def train_teacher(ctx: StageContext) -> dict[str, Any]:
    """Train the base on digit labels through the class logits only (all seeds at once)."""
    import torch

    from benchmark.classifier.train import accuracy
    from benchmark.classifier.train import train_teacher as fit

    _threads(ctx)
    started, cpu = time.time(), time.process_time()
    base_dir = ctx.input("base")
    meta = _read_json(base_dir / "meta.json")
    net, seeds = _net(meta), list(meta["seeds"])
    train = ctx.node.spec["train"]
    data = _data(ctx)
    if int(train["batch"]) > len(data.y_train):
        raise UserError(
            f"settings.teacher.batch: {train['batch']} is larger than the {len(data.y_train)} "
            f"training images of {data.name!r}"
        )
    params, losses = fit(
        net,
        _load_params(base_dir / "params.pt"),
        seeds,
        torch.from_numpy(data.x_train),
        torch.from_numpy(data.y_train),
        epochs=int(train["epochs"]),
        batch=int(train["batch"]),
        lr=float(train["lr"]),
        on_step=ctx.progress,
    )
    acc = accuracy(net, params, *_test_tensors(data))
    torch.save(params, ctx.out / "params.pt")
    _write_json(ctx.out / "meta.json", meta)
    result = {
        "seeds": seeds,
        "steps": len(losses),
        "accuracy": acc,
        **_summary(acc),
        "loss": _curve(losses),
    }
    _write_json(ctx.out / "metrics.json", result)
    ctx.log.info("teacher %s: %d steps, accuracy %.1f%%", ctx.node.name, len(losses), result["mean_accuracy"])
    return {**result, **_timing(started, cpu)}


def _noise_digest(x: Any) -> str:
    """sha256 of one (S, batch, pixels) noise batch: students check they replay the teacher's images."""
    return hashlib.sha256(x.contiguous().numpy().tobytes()).hexdigest()


def teacher_logits(ctx: StageContext) -> dict[str, Any]:
    """The teacher's logits on the distillation noise stream, shared by all its students."""
    import torch

    from benchmark.classifier.train import noise_batches, teacher_outputs

    _threads(ctx)
    started, cpu = time.time(), time.process_time()
    teacher_dir = ctx.input("teacher")
    meta = _read_json(teacher_dir / "meta.json")
    net, seeds = _net(meta), list(meta["seeds"])
    noise = ctx.node.spec["noise"]
    kwargs = {
        "noise": noise["kind"],
        "steps": int(noise["steps"]),
        "batch": int(noise["batch"]),
        "pool": noise["n_noise"],
    }
    targets = teacher_outputs(net, _load_params(teacher_dir / "params.pt"), seeds, **kwargs)
    first = next(
        noise_batches(seeds, ("noise",), noise["kind"], 1, int(noise["batch"]), net.n_in, noise["n_noise"])
    )
    torch.save(targets, ctx.out / "targets.pt")
    aux = targets[..., N_CLASSES:]
    ds_meta = {**meta, "noise": noise, "stream": ["noise"], "first_batch_sha256": _noise_digest(first)}
    _write_json(ctx.out / "meta.json", ds_meta)
    result = {
        "seeds": seeds,
        "shape": list(targets.shape),
        "aux_logit_std": round(float(aux.std()), 6),
    }
    ctx.log.info("dataset %s: targets %s", ctx.node.name, tuple(targets.shape))
    return {**result, **_timing(started, cpu)}


def distill_student(ctx: StageContext) -> dict[str, Any]:
    """Distill one student base on one teacher's noise logits (one channel), then evaluate on digits."""
    import torch

    from benchmark.classifier.train import accuracy, distill

    _threads(ctx)
    started, cpu = time.time(), time.process_time()
    ds_dir, base_dir = ctx.input("dataset"), ctx.input("base")
    ds_meta, base_meta = _read_json(ds_dir / "meta.json"), _read_json(base_dir / "meta.json")
    seeds = list(base_meta["seeds"])
    if list(ds_meta["seeds"]) != seeds:
        raise RuntimeError(f"{ctx.node.key}: teacher seeds {ds_meta['seeds']} != student seeds {seeds}")
    net = _net(base_meta)
    spec, noise = ctx.node.spec, ds_meta["noise"]
    want = ds_meta["first_batch_sha256"]

    def check(x: Any) -> None:
        # The student must see exactly the images the teacher's logits were computed on.
        if _noise_digest(x) != want:
            raise RuntimeError(
                f"{ctx.node.key}: regenerated noise differs from the dataset's (stream mismatch)"
            )

    distill_spec = spec["distill"]
    params, losses = distill(
        net,
        _load_params(base_dir / "params.pt"),
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
    acc = accuracy(net, params, *_test_tensors(_data(ctx)))
    if ctx.node.unhashed.get("save_weights", True):
        torch.save(params, ctx.out / "params.pt")
    result = {
        "seeds": seeds,
        "channel": spec["channel"],
        "steps": len(losses),
        "accuracy": acc,
        **_summary(acc),
        "loss": _curve(losses),
    }
    _write_json(ctx.out / "metrics.json", result)
    ctx.log.info("student %s: accuracy %.1f%%", ctx.node.name, result["mean_accuracy"])
    return {**result, **_timing(started, cpu)}


def report(ctx: StageContext) -> dict[str, Any]:
    """Collect every node's accuracies into the tidy table and write the suite's report files."""
    from benchmark.classifier.report import tidy_rows, write_classifier_report

    spec = ctx.node.spec
    metrics = {
        key: _read_json(path / "metrics.json")
        for key, path in ctx.inputs.items()
        if (path / "metrics.json").exists()
    }
    df = tidy_rows(spec, metrics)
    return write_classifier_report(ctx.out, df, spec, metrics)
