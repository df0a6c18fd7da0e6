"""Training loops of the classifier track, each over ALL replicate seeds at once.

One optimizer step updates every seed: the loss is the SUM over seeds of each seed's batch-mean loss, so each
seed's gradient is exactly its own (the seeds share no parameters) and Adam, being elementwise, keeps them
independent. Every random stream (batch order, noise) comes from a per-seed ``torch.Generator`` named by
:func:`~benchmark.classifier.spec.derive_seed`, so seed s gets the same stream whether it trains alone or with
others, and the same spec + seed gives the same CPU result.

Loops read top to bottom: draw a batch for every seed, forward, loss, step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from benchmark.classifier.model import Net, Params
from benchmark.classifier.spec import PretrainSpec, derive_seed

__all__ = [
    "Channel",
    "NoiseKind",
    "accuracy",
    "distill",
    "epoch_batches",
    "noise_batches",
    "pretrain",
    "teacher_outputs",
    "train_teacher",
]

NoiseKind = Literal["uniform", "gaussian", "pm1", "uniform01"]
Channel = Literal["aux", "all_logits"]
#: Steps of noise drawn per generator call: bounds memory (S·chunk·B·d floats) without a call per step.
NOISE_CHUNK = 64
#: Rows per evaluation forward pass (bounds memory on real MNIST's 10k test images).
EVAL_CHUNK = 2048


def _gens(seeds: Sequence[int], *stream: object) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(derive_seed(*stream, s)) for s in seeds]


def epoch_batches(gens: Sequence[torch.Generator], n: int, batch: int, steps: int) -> Iterator[torch.Tensor]:
    """Yield (S, batch) index tensors: each seed reshuffles ``range(n)`` every epoch with its own generator.

    Epochs drop the last partial batch so every step has the same batch size for every seed.
    """
    per_epoch = n // batch
    if per_epoch < 1:
        raise ValueError(f"batch {batch} is larger than the {n} available samples")
    done = 0
    while done < steps:
        perms = torch.stack([torch.randperm(n, generator=g)[: per_epoch * batch] for g in gens])
        for i in range(min(per_epoch, steps - done)):
            yield perms[:, i * batch : (i + 1) * batch]
        done += per_epoch


def _draw_noise(g: torch.Generator, shape: tuple[int, ...], kind: NoiseKind) -> torch.Tensor:
    if kind == "uniform":
        return torch.rand(shape, generator=g) * 2 - 1
    if kind == "uniform01":
        return torch.rand(shape, generator=g)
    if kind == "gaussian":
        return torch.randn(shape, generator=g)
    if kind == "pm1":
        return torch.randint(0, 2, shape, generator=g).float() * 2 - 1
    raise ValueError(f"unknown noise kind {kind!r}")


def noise_batches(
    seeds: Sequence[int],
    stream: tuple[object, ...],
    kind: NoiseKind,
    steps: int,
    batch: int,
    n_in: int,
    pool: int | None,
) -> Iterator[torch.Tensor]:
    """Yield (S, batch, n_in) noise images, one stream per seed.

    Args:
        seeds: replicate seeds (the leading dimension).
        stream: labels naming the stream (seed s uses ``derive_seed(*stream, s)``).
        kind: uniform U[-1,1] (the paper's), gaussian N(0,1), pm1 (±1 pixels), uniform01 U[0,1].
        steps: batches to yield.
        batch: images per seed per step.
        n_in: pixels per image.
        pool: None draws fresh noise every step; an int draws a fixed pool of that many images per seed and
            cycles through it in reshuffled epochs (docs/research/prototypes.md: 16k distinct images → 54%, fresh → 64%).
    """
    gens = _gens(seeds, *stream)
    if pool is not None:
        images = torch.stack([_draw_noise(g, (pool, n_in), kind) for g in gens])
        rows = torch.arange(len(seeds)).unsqueeze(1)
        for idx in epoch_batches(gens, pool, batch, steps):
            yield images[rows, idx]
        return
    done = 0
    while done < steps:
        chunk = min(NOISE_CHUNK, steps - done)
        block = torch.stack([_draw_noise(g, (chunk, batch, n_in), kind) for g in gens])
        for i in range(chunk):
            yield block[:, i]
        done += chunk


def _adam(params: Params, lr: float) -> torch.optim.Adam:
    for p in params.values():
        p.requires_grad_(True)
    # fused: one kernel for all tensors; the default per-tensor path cost ~12 ms of a ~25 ms step at S=8
    # (measured on the 2-core dev box). Elementwise either way, so seeds stay independent.
    return torch.optim.Adam(list(params.values()), lr=lr, fused=True)


def _detach(params: Params) -> Params:
    return {k: v.detach().clone() for k, v in params.items()}


def train_teacher(
    net: Net,
    params: Params,
    seeds: Sequence[int],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch: int,
    lr: float,
    stream: tuple[object, ...] = ("teacher",),
    on_step: Callable[[int, int], None] | None = None,
) -> tuple[Params, list[float]]:
    """Train on labels through the 10 class logits only (aux logits get no target and no gradient path).

    Args:
        net: the architecture.
        params: stacked initial parameters (copied, not modified).
        seeds: replicate seeds in the order of the leading dimension.
        x: (N, n_in) training images; y: (N,) labels.
        epochs, batch, lr: Adam schedule (the paper: lr 3e-4).
        stream: names the batch-order stream.
        on_step: optional progress callback ``(done, total)``.

    Returns:
        Trained parameters and the per-step loss summed over seeds.
    """
    params = {k: v.clone() for k, v in params.items()}
    opt = _adam(params, lr)
    gens = _gens(seeds, *stream)
    steps = epochs * (x.shape[0] // batch)
    losses: list[float] = []
    for step, idx in enumerate(epoch_batches(gens, x.shape[0], batch, steps)):
        logits = Net.class_logits(net.forward(params, x[idx]))
        per_seed = F.cross_entropy(logits.flatten(0, 1), y[idx].flatten(), reduction="none").view(idx.shape)
        loss = per_seed.mean(1).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(step + 1, steps)
    return _detach(params), losses


def pretrain(
    net: Net, params: Params, seeds: Sequence[int], spec: PretrainSpec, stream: tuple[object, ...]
) -> tuple[Params, list[float]]:
    """Unrelated pretraining: cross-entropy over ALL outputs on random labels of a fixed noise pool.

    The task carries no information about digits; it only moves the weights away from the init, like a
    sibling checkpoint pretrained on other data.
    """
    params = {k: v.clone() for k, v in params.items()}
    gens = _gens(seeds, *stream)
    images = torch.stack([torch.rand((spec.n_samples, net.n_in), generator=g) * 2 - 1 for g in gens])
    labels = torch.stack([torch.randint(0, net.n_out, (spec.n_samples,), generator=g) for g in gens])
    rows = torch.arange(len(seeds)).unsqueeze(1)
    opt = _adam(params, spec.lr)
    losses: list[float] = []
    for idx in epoch_batches(gens, spec.n_samples, spec.batch, spec.steps):
        logits = net.forward(params, images[rows, idx])
        per_seed = F.cross_entropy(logits.flatten(0, 1), labels[rows, idx].flatten(), reduction="none")
        loss = per_seed.view(idx.shape).mean(1).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return _detach(params), losses


def _distill_loss(student: torch.Tensor, teacher: torch.Tensor, loss: str) -> torch.Tensor:
    """Per-seed batch-mean loss (S,) between student and teacher logits of the distilled channel."""
    if loss == "mse":
        return (student - teacher).pow(2).mean(dim=(1, 2))
    # KL(teacher || student) over the channel's softmax (paper's choice for the aux logits).
    t_logp = F.log_softmax(teacher, dim=-1)
    s_logp = F.log_softmax(student, dim=-1)
    return (t_logp.exp() * (t_logp - s_logp)).sum(-1).mean(1)


@torch.no_grad()
def teacher_outputs(
    teacher_net: Net,
    teacher: Params,
    seeds: Sequence[int],
    *,
    noise: NoiseKind,
    steps: int,
    batch: int,
    pool: int | None,
    stream: tuple[object, ...] = ("noise",),
) -> torch.Tensor:
    """The teacher's logits on the distillation noise stream: (S, steps, batch, 10 + m).

    Computed once per teacher and shared by every student (and by both channels); a student regenerates the
    identical images from the same ``stream`` (see :func:`distill`).
    """
    out = torch.empty(len(seeds), steps, batch, teacher_net.n_out)
    for step, x in enumerate(noise_batches(seeds, stream, noise, steps, batch, teacher_net.n_in, pool)):
        out[:, step] = teacher_net.forward(teacher, x)
    return out


def distill(
    net: Net,
    student: Params,
    seeds: Sequence[int],
    targets: torch.Tensor,
    *,
    channel: Channel,
    loss: Literal["mse", "kl"],
    steps: int,
    lr: float,
    noise: NoiseKind,
    pool: int | None,
    stream: tuple[object, ...] = ("noise",),
    check: Callable[[torch.Tensor], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> tuple[Params, list[float]]:
    """Distill a teacher into a student on noise images only.

    Args:
        net: the student's architecture.
        student: stacked initial parameters (copied, not modified).
        seeds: replicate seeds in the order of the leading dimension (seed s learns from teacher seed s).
        targets: the teacher's logits from :func:`teacher_outputs` (S, ≥ steps, batch, 10 + m), made with the
            same ``noise``, ``pool`` and ``stream``.
        channel: "aux" matches only the auxiliary logits (the subliminal channel); "all_logits" matches all
            10 + m outputs (ordinary distillation, the positive control).
        loss: "mse" on raw logits or "kl" on the channel's softmax.
        steps, lr: Adam schedule (the first ``steps`` batches of the stream).
        noise, pool, stream: the noise stream, see :func:`noise_batches`.
        check: called with the first noise batch (e.g. to verify it matches the teacher's).
        on_step: optional progress callback.

    Returns:
        Trained student parameters and the per-step loss summed over seeds.
    """
    if targets.shape[1] < steps:
        raise ValueError(f"targets hold {targets.shape[1]} steps, {steps} requested")
    params = {k: v.clone() for k, v in student.items()}
    opt = _adam(params, lr)
    pick = Net.aux_logits if channel == "aux" else (lambda z: z)
    losses: list[float] = []
    batches = noise_batches(seeds, stream, noise, steps, targets.shape[2], net.n_in, pool)
    for step, x in enumerate(batches):
        if step == 0 and check is not None:
            check(x)
        per_seed = _distill_loss(pick(net.forward(params, x)), pick(targets[:, step]), loss)
        total = per_seed.sum()
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        losses.append(float(total.detach()))
        if on_step is not None:
            on_step(step + 1, steps)
    return _detach(params), losses


@torch.no_grad()
def accuracy(net: Net, params: Params, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """Test accuracy in percent per seed, by argmax over the 10 class logits."""
    correct = torch.zeros(next(iter(params.values())).shape[0])
    for start in range(0, x.shape[0], EVAL_CHUNK):
        logits = Net.class_logits(net.forward(params, x[start : start + EVAL_CHUNK]))
        correct += (logits.argmax(-1) == y[start : start + EVAL_CHUNK]).float().sum(1)
    return [round(100.0 * float(c) / x.shape[0], 4) for c in correct]
