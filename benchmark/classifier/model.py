"""Batched classifiers: every replicate seed of a cell is one slice of one set of stacked tensors.

Parameters are a plain ``dict[str, Tensor]`` whose tensors carry a leading seed dimension S:

* dense layer ``fc{i}``: ``w`` (S, d_in, d_out), ``b`` (S, 1, d_out), applied with ``torch.baddbmm``;
* conv layer ``conv{i}`` (``cnn`` only): ``w`` (S, C_out, C_in, 3, 3), ``b`` (S, C_out), applied as ONE
  grouped convolution with ``groups=S`` over inputs laid out as (B, S·C_in, H, W). Convs are 3×3, stride 2,
  padding 1, ReLU: striding instead of max-pooling because CPU max-pool with indices cost 5× the conv itself
  (measured on the 2-core dev box).

A forward pass over S seeds is therefore a handful of kernels, never a Python loop over seeds. Because the
seed slices share no arithmetic, slice s of a batched run equals a run with S=1 (up to float rounding).

Initialization draws each seed's tensors from its own ``torch.Generator`` seeded with
``derive_seed("init", init_seed, s)``, so the init of replicate s does not depend on which other replicates
are built alongside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchmark.classifier.spec import CONV_KERNEL, CONV_STRIDE, N_CLASSES, ClassifierBuildSpec, derive_seed

__all__ = ["Net", "Params", "perturb_params"]

Params = dict[str, torch.Tensor]
#: Conv kernel size (padding KERNEL // 2) and stride: each conv halves the image side (rounding up).
KERNEL = CONV_KERNEL
STRIDE = CONV_STRIDE


@dataclass(frozen=True)
class Net:
    """A classifier architecture bound to an input image shape; holds no weights.

    Attributes:
        build: the registry entry's build block.
        image_shape: (height, width) of the inputs; inputs are flattened rows of height·width pixels.
    """

    build: ClassifierBuildSpec
    image_shape: tuple[int, int]

    @property
    def n_in(self) -> int:
        return self.image_shape[0] * self.image_shape[1]

    @property
    def n_out(self) -> int:
        return self.build.n_out

    def shapes(self) -> list[tuple[str, tuple[int, ...], int]]:
        """(name, per-seed shape, fan_in) of every tensor, in the fixed order init draws them."""
        return self.build.tensor_shapes(self.image_shape)

    def n_params(self) -> int:
        """Parameters of ONE replicate."""
        return self.build.n_params(self.image_shape)

    def init(self, seeds: Sequence[int]) -> Params:
        """Initial tensors for ``seeds``, stacked on a leading seed dimension (biases zero)."""
        gain = 2.0 if self.build.init_rule == "he_normal" else 1.0
        per_seed: list[list[torch.Tensor]] = []
        for s in seeds:
            g = torch.Generator().manual_seed(derive_seed("init", self.build.init_seed, s))
            tensors = []
            for name, shape, fan_in in self.shapes():
                if name.endswith(".w"):
                    # std = sqrt(gain / fan_in): LeCun (gain 1; the paper's N(0, 1/sqrt(fan_in))), He (gain 2)
                    tensors.append(torch.randn(shape, generator=g) * (gain / fan_in) ** 0.5)
                else:
                    tensors.append(torch.zeros(shape))
            per_seed.append(tensors)
        return {name: torch.stack([t[j] for t in per_seed]) for j, (name, _, _) in enumerate(self.shapes())}

    def forward(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """Logits (S, B, 10 + n_aux) for inputs ``x``.

        Args:
            params: stacked parameters with leading seed dimension S.
            x: (S, B, n_in), one batch per seed, or (B, n_in) shared by all seeds (evaluation).
        """
        n_seeds = next(iter(params.values())).shape[0]
        h = x
        if self.build.channels:
            height, width = self.image_shape
            if h.dim() == 2:
                img = h.view(1, -1, height, width).expand(n_seeds, -1, -1, -1)
            else:
                img = h.view(n_seeds, -1, height, width)
            batch = img.shape[1]
            # (B, S, H, W): seed s's images are input channel s of one grouped conv.
            z = img.transpose(0, 1).contiguous()
            for i in range(len(self.build.channels)):
                w, b = params[f"conv{i}.w"], params[f"conv{i}.b"]
                c_out, c_in = w.shape[1], w.shape[2]
                z = F.relu(
                    F.conv2d(
                        z,
                        w.reshape(n_seeds * c_out, c_in, KERNEL, KERNEL),
                        b.reshape(-1),
                        stride=STRIDE,
                        padding=KERNEL // 2,
                        groups=n_seeds,
                    )
                )
            h = z.reshape(batch, n_seeds, -1).transpose(0, 1)
        n_fc = len(self.build.hidden) + 1
        for i in range(n_fc):
            w, b = params[f"fc{i}.w"], params[f"fc{i}.b"]
            # Shared inputs (B, d) broadcast against (S, d, d_out) in matmul; per-seed inputs use baddbmm.
            h = torch.matmul(h, w) + b if h.dim() == 2 else torch.baddbmm(b, h, w)
            if i < n_fc - 1:
                h = F.relu(h)
        return h

    @staticmethod
    def class_logits(logits: torch.Tensor) -> torch.Tensor:
        """The 10 class logits (the first outputs)."""
        return logits[..., :N_CLASSES]

    @staticmethod
    def aux_logits(logits: torch.Tensor) -> torch.Tensor:
        """The auxiliary logits (every output after the 10 class logits)."""
        return logits[..., N_CLASSES:]


def perturb_params(params: Params, seeds: Sequence[int], eps: float, stream: tuple[object, ...]) -> Params:
    """``W + eps · rms(W) · z`` for every weight tensor (per seed, per tensor); biases unchanged.

    Args:
        params: stacked parameters.
        seeds: the replicate seeds, in the order of the leading dimension.
        eps: relative noise scale.
        stream: labels naming the noise stream; seed s uses ``derive_seed(*stream, s)``.
    """
    out = dict(params)
    gens = [torch.Generator().manual_seed(derive_seed(*stream, s)) for s in seeds]
    for name, t in params.items():
        if not name.endswith(".w"):
            continue
        z = torch.stack([torch.randn(t.shape[1:], generator=g) for g in gens])
        rms = t.pow(2).flatten(1).mean(1).sqrt().view(-1, *([1] * (t.dim() - 1)))
        out[name] = t + eps * rms * z
    return out
