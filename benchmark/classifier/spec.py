"""The ``build:`` block of a classifier registry entry (``model_registry/classifiers.yaml``).

Torch-free: the registry validates these blocks without importing torch.

A classifier base model is a recipe, not a checkpoint: the architecture, the number of auxiliary logits and
the initialization rule plus ``init_seed``. Replicate ``s`` of a suite draws its initial tensors from a
generator seeded with ``derive_seed("init", init_seed, s)``, so two entries with the same architecture and
``init_seed`` start from *identical* tensors in every replicate (the paper's "same init"). Siblings of an init
are made from those tensors by

* ``perturb``: adding Gaussian noise of relative scale ``eps`` to every weight matrix (the lineage gradient
  of docs/research/prototypes.md: eps 0.01 → 54%, 0.1 → 51%, 0.3 → 36%, 1.0 → 12% same-init transfer), and/or
* ``pretrain``: ``steps`` Adam steps on an unrelated task (fitting random labels of a fixed pool of noise
  images over all outputs), which moves every layer without teaching anything about digits.

Perturbation is applied before pretraining when both are given.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from benchmark.hashing import derive_seed
from benchmark.specs_base import Frozen

__all__ = [
    "CONV_KERNEL",
    "CONV_STRIDE",
    "ClassifierBuildSpec",
    "N_CLASSES",
    "PerturbSpec",
    "PretrainSpec",
    "derive_seed",
]

#: Digit classes; the first ``N_CLASSES`` outputs are class logits, the remaining ``n_aux`` are auxiliary.
N_CLASSES = 10
#: CNN convs: 3×3 kernels, padding 1, stride 2 (each conv halves the image side, rounding up).
CONV_KERNEL = 3
CONV_STRIDE = 2


class PerturbSpec(Frozen):
    """Perturb the initial tensors: ``W + eps * rms(W) * z`` per weight tensor, z ~ N(0, 1); biases kept."""

    #: Relative noise scale (0.1 = noise with 10% of the weight tensor's root-mean-square).
    eps: float = Field(gt=0)
    #: Names the perturbation noise stream (siblings with different seeds get different noise).
    seed: int = 0


class PretrainSpec(Frozen):
    """Unrelated pretraining from the init: fit random labels of a fixed pool of noise images.

    Inputs are U[-1, 1] noise images (no digit structure); labels are uniform over all ``10 + n_aux``
    outputs; loss is cross-entropy over all outputs, so every layer and every logit moves.
    """

    steps: int = Field(ge=1)
    #: Adam learning rate (the paper's 3e-4 by default).
    lr: float = Field(default=3e-4, gt=0)
    batch: int = Field(default=64, ge=1)
    #: Size of the fixed noise pool with fixed random labels (a memorisation task, so gradients stay large).
    n_samples: int = Field(default=1024, ge=1)
    #: Names the pretraining data stream.
    seed: int = 0


class ClassifierBuildSpec(Frozen):
    """How to build one classifier base model, for every replicate seed at once.

    Output layout is always ``10 + n_aux`` logits: 10 class logits (trained on labels by teachers) then
    ``n_aux`` auxiliary logits that never see a label.
    """

    arch: Literal["mlp", "cnn"] = "mlp"
    #: Widths of the fully connected hidden layers (after the convolutions for ``cnn``); the paper's 256-256.
    hidden: list[int] = Field(default_factory=lambda: [256, 256])
    #: ``cnn`` only: output channels of each 3×3 conv (stride 2, padding 1, ReLU); 8×8 → 4×4 → 2×2.
    channels: list[int] = Field(default_factory=list)
    #: Auxiliary logits m (the paper's 3).
    n_aux: int = Field(default=3, ge=1)
    init_seed: int = 0
    #: Weight init: lecun_normal = N(0, 1/fan_in) (the paper's N(0, 1/sqrt(fan_in)) std), he_normal =
    #: N(0, 2/fan_in). Biases start at zero.
    init_rule: Literal["lecun_normal", "he_normal"] = "lecun_normal"
    perturb: PerturbSpec | None = None
    pretrain: PretrainSpec | None = None

    @model_validator(mode="after")
    def _arch_fields(self) -> ClassifierBuildSpec:
        if any(w < 1 for w in self.hidden):
            raise ValueError(f"hidden widths must be >= 1 (got {self.hidden})")
        if any(c < 1 for c in self.channels):
            raise ValueError(f"channels must be >= 1 (got {self.channels})")
        if self.arch == "cnn" and not self.channels:
            raise ValueError("arch 'cnn' needs a non-empty 'channels' list, e.g. [16, 32]")
        if self.arch == "mlp" and self.channels:
            raise ValueError("'channels' is only for arch 'cnn'; an mlp takes 'hidden' widths only")
        return self

    @property
    def n_out(self) -> int:
        """Total outputs: 10 class logits + ``n_aux`` auxiliary logits."""
        return N_CLASSES + self.n_aux

    def tensor_shapes(self, image_shape: tuple[int, int]) -> list[tuple[str, tuple[int, ...], int]]:
        """(name, per-replicate shape, fan_in) of every tensor, in the fixed order the init draws them.

        Dense layer ``fc{i}``: weight (d_in, d_out), bias (1, d_out); conv layer ``conv{i}``: weight
        (C_out, C_in, 3, 3), bias (C_out,).
        """
        out: list[tuple[str, tuple[int, ...], int]] = []
        c_in, (h, w) = 1, image_shape
        k = CONV_KERNEL
        for i, c in enumerate(self.channels):
            fan = c_in * k * k
            out += [(f"conv{i}.w", (c, c_in, k, k), fan), (f"conv{i}.b", (c,), fan)]
            # Stride 2, padding 1: ceil(h / 2).
            c_in, h, w = c, (h + 1) // 2, (w + 1) // 2
        d_in = c_in * h * w if self.channels else image_shape[0] * image_shape[1]
        for i, d_out in enumerate([*self.hidden, self.n_out]):
            out += [(f"fc{i}.w", (d_in, d_out), d_in), (f"fc{i}.b", (1, d_out), d_in)]
            d_in = d_out
        return out

    def n_params(self, image_shape: tuple[int, int]) -> int:
        """Parameters of ONE replicate for inputs of ``image_shape``."""
        total = 0
        for _, shape, _ in self.tensor_shapes(image_shape):
            n = 1
            for d in shape:
                n *= d
            total += n
        return total

    def flops_per_image(self, image_shape: tuple[int, int]) -> int:
        """Multiply-adds of one forward pass on one image (conv layers counted per output position)."""
        total, (h, w) = 0, image_shape
        for name, shape, fan_in in self.tensor_shapes(image_shape):
            if name.startswith("conv") and name.endswith(".w"):
                h, w = (h + 1) // 2, (w + 1) // 2
                total += shape[0] * fan_in * h * w
            elif name.endswith(".w"):
                total += shape[0] * shape[1]
        return total

    def init_identity(self) -> dict[str, object]:
        """What fixes the initial tensors before any perturbation or pretraining.

        Two entries with equal identities start from the same tensors in every replicate; the plan checks
        this against the registry's ``lineage.init`` so "sibling" in a table is never a mislabel.
        """
        return {
            "arch": self.arch,
            "hidden": list(self.hidden),
            "channels": list(self.channels),
            "n_aux": self.n_aux,
            "init_seed": self.init_seed,
            "init_rule": self.init_rule,
        }

    def describe(self) -> str:
        """Short human-readable architecture, e.g. ``mlp 256-256 +3 aux``."""
        if self.arch == "cnn":
            body = (
                "conv "
                + "-".join(map(str, self.channels))
                + (" fc " + "-".join(map(str, self.hidden)) if self.hidden else "")
            )
        else:
            body = "mlp " + "-".join(map(str, self.hidden))
        extra = ""
        if self.perturb:
            extra += f", perturbed eps={self.perturb.eps:g}"
        if self.pretrain:
            extra += f", pretrained {self.pretrain.steps} steps"
        return f"{body} +{self.n_aux} aux (init seed {self.init_seed}{extra})"
