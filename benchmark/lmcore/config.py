"""Typed training settings for :func:`benchmark.providers.hf_train.train` (torch-free, so suites can validate them).

Field names match the keyword arguments of :func:`~benchmark.providers.hf_train.train`, so a validated config is
passed as ``train(model_dir, rows, out_dir=..., seed=..., **config.train_kwargs())``.

Defaults are the paper's open-model student recipe (Qwen2.5-7B-Instruct; docs/research/paper.md): LoRA r=8,
alpha=8 on q/k/v/o/gate/up/down, 3 epochs, lr 2e-4 with linear decay after 5 warmup steps, effective batch
66, max length 500 tokens.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from benchmark.specs_base import Frozen

__all__ = ["LoraConfig", "OptimizerConfig", "TrainConfig"]


class LoraConfig(Frozen):
    """A LoRA adapter's shape.

    ``targets`` None means "the registry entry's ``lora_targets``" (``ModelSpec.lora_targets``, itself
    "all-linear" by default, which peft resolves to q/k/v/o/gate/up/down on Qwen2/Llama and to
    c_attn/c_proj/c_fc on GPT-2), so no family name appears here.
    """

    r: int = Field(default=8, ge=1)  # paper's open-model setting
    alpha: float = Field(default=8, gt=0)  # paper: alpha = r, i.e. scale 1
    dropout: float = Field(default=0.0, ge=0, lt=1)  # the paper states none; peft's default is 0
    targets: list[str] | Literal["all-linear"] | None = None
    #: Rank-stabilised scaling alpha/sqrt(r) instead of alpha/r (a small-scale replication used rank-32 RSLoRA).
    rslora: bool = False
    #: Seed of the adapter's random A matrices; None = the training seed. The theory behind subliminal learning
    #: needs teacher and student to share the initialisation of the parameters being trained: with a fixed
    #: init_seed a teacher's and a same-base student's adapters start from identical tensors (the training
    #: seed still varies data order and dropout).
    init_seed: int | None = None


class OptimizerConfig(Frozen):
    """The optimizer of a fine-tune (``train.optimizer``; issue 22's optimizer axis).

    ``adamw`` (the default, the paper's): torch's AdamW (betas 0.9/0.999, eps 1e-8). ``sgd``: torch's SGD with
    ``momentum`` (heavy ball, no dampening, not Nesterov). Both use the same parameter groups (``train.weight_decay``
    on matrices only, decoupled for AdamW, added to the gradient for SGD), the same linear schedule after
    ``train.warmup`` and the same clipping. ``lr`` is this optimizer's peak learning rate; None uses ``train.lr``
    (SGD needs a far larger one than AdamW: its step is the raw gradient, AdamW's is normalised per parameter).
    A YAML string is shorthand for ``{name: <string>}``. Hashed only when not the default AdamW (older ids stay);
    the hf training loop only (the lean engine and API fine-tunes train AdamW: refused at plan time).
    """

    #: adamw (torch's AdamW, the paper's) or sgd (torch's SGD with momentum), over the same parameter groups.
    name: Literal["adamw", "sgd"] = "adamw"
    #: This optimizer's peak learning rate (the schedule and warmup as train's); None: train.lr.
    lr: float | None = Field(default=None, gt=0)
    #: SGD's momentum (heavy ball, no dampening); AdamW refuses it (its betas are fixed at 0.9, 0.999).
    momentum: float = Field(default=0.9, ge=0, lt=1)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _momentum_is_sgds(self) -> OptimizerConfig:
        # A dumped config carries the default momentum back in: only another value is refused (round trips validate).
        if self.name != "sgd" and self.momentum != type(self).model_fields["momentum"].default:
            raise ValueError("momentum is SGD's setting; AdamW's betas are fixed (0.9, 0.999): remove momentum")
        return self

    @property
    def is_default(self) -> bool:
        """Whether this is the default AdamW at ``train.lr`` (left out of the identity)."""
        return self.name == "adamw" and self.lr is None


class TrainConfig(Frozen):
    """One fine-tuning recipe (teacher trait training or student training).

    The objective (sft or distill) is not part of it: it is the caller's choice per role (teachers learn
    their trait by sft) and is passed to :func:`~benchmark.providers.hf_train.train` separately.

    ``lora`` None is full fine-tuning. ``topk_mode`` matters only for ``objective="distill"``: "rest"
    compares the teacher's top-k probabilities plus one bucket holding the remaining mass with the
    student's (a proper KL between (k+1)-way distributions, exact as k grows); "renorm" renormalises the
    teacher's top-k and takes the cross-entropy against the student's full softmax (pushes the student to
    put all its mass on the teacher's top-k).
    """

    lora: LoraConfig | None = LoraConfig()
    epochs: float = Field(default=3, gt=0, le=1000)  # paper: 3 epochs (Gemma-3: 10)
    max_steps: int | None = Field(default=None, ge=1, le=10_000_000)  # optional cap on optimizer steps
    lr: float = Field(default=2e-4, gt=0)  # paper: 2e-4
    schedule: Literal["linear"] = "linear"  # paper: linear decay after warmup
    warmup: int = Field(default=5, ge=0)  # paper: 5 warmup steps
    batch_size: int = Field(default=22, ge=1)  # examples per forward pass
    grad_accum: int = Field(default=3, ge=1)  # 22 x 3 = 66, the paper's effective batch
    max_length: int = Field(default=500, ge=8)  # paper: max sequence length 500 tokens
    weight_decay: float = Field(default=0.0, ge=0)  # not stated in the paper; HF's default
    max_grad_norm: float | None = Field(default=1.0, gt=0)  # HF Trainer's default clipping
    topk_mode: Literal["rest", "renorm"] = "rest"
    #: The optimizer (:class:`OptimizerConfig`): AdamW at ``lr`` by default; hashed only when set otherwise.
    optimizer: OptimizerConfig = OptimizerConfig()
    #: Recompute activations in the backward pass (saves GPU memory, same numbers): recorded, not hashed.
    gradient_checkpointing: bool = False

    _unhashed: ClassVar[frozenset[str]] = frozenset({"gradient_checkpointing"})

    def hashed_dict(self) -> dict[str, Any]:
        """The recipe's identity; ``optimizer`` only when it is not the default AdamW (older ids stay)."""
        data = super().hashed_dict()
        if self.optimizer.is_default:
            data.pop("optimizer", None)
        return data

    @property
    def peak_lr(self) -> float:
        """The learning rate the optimizer runs at: ``optimizer.lr`` when set, else ``lr``."""
        return self.optimizer.lr if self.optimizer.lr is not None else self.lr

    def train_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`benchmark.providers.hf_train.train` (LoRA and the optimizer as plain dicts
        or None); ``optimizer`` only when it is not the default AdamW (the lean engine takes no such argument and
        trains AdamW; plan.py refuses another optimizer for it)."""
        data = self.model_dump(mode="python")
        if self.optimizer.is_default:
            data.pop("optimizer")
        return data
