"""Fine-tuning of the zoo and hf backends: a readable AdamW (or SGD) loop (nanoGPT style) on chat-rendered rows.

A plain loop rather than HF ``Trainer``: less overhead on tiny models, and the distillation objective needs a
custom loss anyway. :func:`train` reads top to bottom: fresh base → encode rows → LoRA → optimizer → steps →
save. The loss covers completion tokens only (including the end-of-turn token) and is normalised by the number
of completion tokens in the optimizer step, so the split of a step into micro-batches does not change the
gradient.

**Distillation** target: the teacher's stored top-k of its T=1 next-token distribution plus one "rest" bucket
with the remaining mass (``topk_mode="rest"``, default), compared with the student's probabilities of the same
k tokens and of everything else. It is a proper KL between two (k+1)-way distributions (zero only when the
student matches the teacher on the top-k and on the tail mass) and approaches the full KL as k grows.
``topk_mode="renorm"`` (teacher top-k renormalised, cross-entropy against the student's full softmax) is kept
for comparison; it pushes the student to move the teacher's tail mass onto the top-k. Measured on tiny models
(full fine-tune, 30 steps): with a flat teacher (top-5 mass 0.14) "rest" brought the held-out full-vocabulary
KL from 0.31 to 0.11 where "renorm" reached 0.20 (and overshot the trait); with peaked teachers (top-5 mass
>= 0.7) the two agree within 2%.

This module imports torch: the light :mod:`benchmark.providers.hf` imports it inside its methods only.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from benchmark.errors import UserError
from benchmark.files import atomic_write_text, sha256_files
from benchmark.lmcore.chat import end_of_turn_ids, render_prompt, stop_ids
from benchmark.lmcore.config import LoraConfig, OptimizerConfig
from benchmark.providers.base import Progress
from benchmark.providers.hf_model import load_model, model_device, quiet_peft
from benchmark.specs import ModelSpec

__all__ = ["Example", "check_choices", "collate", "encode_rows", "lora_config", "lr_factor", "micro_batch_loss",
           "micro_batches", "token_losses", "total_steps", "train", "training_examples"]


@dataclass
class Example:
    """One training row as token ids: the rendered prompt, then the completion (and the teacher's top-k)."""

    ids: list[int]
    n_prompt: int
    topk_ids: list[list[int]] | None = None
    topk_lp: list[list[float]] | None = None

    @property
    def n_target(self) -> int:
        """Completion tokens (the positions the loss covers)."""
        return len(self.ids) - self.n_prompt


def encode_rows(
    tokenizer: Any,
    rows: Sequence[Mapping[str, Any]],
    *,
    spec: ModelSpec | None,
    system: str | None,
    objective: str,
    max_length: int,
    end_of_turn: list[int],
) -> tuple[list[Example], dict[str, int]]:
    """Chat-render and tokenize rows; returns the examples and ``{"truncated", "skipped"}`` counts."""
    examples: list[Example] = []
    counts = {"truncated": 0, "skipped": 0}
    texts = [render_prompt(tokenizer, str(r["prompt"]), system=system, spec=spec) for r in rows]
    prompt_ids = tokenizer(texts, add_special_tokens=False).input_ids if texts else []
    for i, (row, p_ids) in enumerate(zip(rows, prompt_ids, strict=True)):
        if row.get("completion_ids") is not None:
            # The teacher's exact tokens (incl. its end-of-turn token when it produced one).
            c_ids = [int(t) for t in row["completion_ids"]]
        elif "completion" in row:
            c_ids = tokenizer(str(row["completion"]), add_special_tokens=False).input_ids + end_of_turn
        else:
            raise UserError(f"training row {i}: needs 'completion' or 'completion_ids' (keys: {sorted(row)})")
        topk = row.get("topk")
        if objective == "distill":
            if topk is None or row.get("completion_ids") is None:
                raise UserError(
                    f"training row {i}: objective 'distill' needs 'completion_ids' and 'topk' (the "
                    "teacher's log-probs); generate the dataset with settings.dataset.top_k set"
                )
            if len(topk) != len(c_ids):
                raise UserError(
                    f"training row {i}: 'topk' has {len(topk)} positions but 'completion_ids' has "
                    f"{len(c_ids)} tokens"
                )
        room = max_length - len(p_ids)
        if room <= 0:
            counts["skipped"] += 1
            continue
        if len(c_ids) > room:
            counts["truncated"] += 1
            c_ids = c_ids[:room]
        ex = Example(ids=list(p_ids) + c_ids, n_prompt=len(p_ids))
        if objective == "distill":
            assert topk is not None  # checked above
            ex.topk_ids = [[int(j) for j, _ in pos] for pos in topk[: len(c_ids)]]
            ex.topk_lp = [[float(v) for _, v in pos] for pos in topk[: len(c_ids)]]
        examples.append(ex)
    return examples, counts


def collate(batch: list[Example], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Right-padded inputs plus flat indices of the logits that predict completion tokens."""
    width = max(len(e.ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    rows, pos, targets = [], [], []
    k = max((len(p) for e in batch if e.topk_ids for p in e.topk_ids), default=0)
    topk_ids, topk_lp = [], []
    for b, e in enumerate(batch):
        ids[b, : len(e.ids)] = torch.tensor(e.ids, dtype=torch.long)
        mask[b, : len(e.ids)] = 1
        for t in range(e.n_target):
            # The logit at position n_prompt-1+t predicts completion token t: prompt tokens are never targets.
            rows.append(b)
            pos.append(e.n_prompt - 1 + t)
            targets.append(e.ids[e.n_prompt + t])
            if e.topk_ids is not None and e.topk_lp is not None:
                pad = k - len(e.topk_ids[t])
                topk_ids.append(e.topk_ids[t] + [0] * pad)
                topk_lp.append(e.topk_lp[t] + [-math.inf] * pad)  # padded entries carry zero teacher mass
    out = {
        "input_ids": ids.to(device),
        "attention_mask": mask.to(device),
        "rows": torch.tensor(rows, dtype=torch.long, device=device),
        "pos": torch.tensor(pos, dtype=torch.long, device=device),
        "targets": torch.tensor(targets, dtype=torch.long, device=device),
    }
    if topk_ids:
        out["topk_ids"] = torch.tensor(topk_ids, dtype=torch.long, device=device)
        out["topk_lp"] = torch.tensor(topk_lp, dtype=torch.float32, device=device)
    return out


def token_losses(
    student_logp: torch.Tensor, batch: dict[str, torch.Tensor], objective: str, topk_mode: str
) -> torch.Tensor:
    """Per-completion-token loss (N,): cross-entropy (sft) or KL(teacher top-k || student) (distill)."""
    if objective == "sft":
        return -student_logp.gather(-1, batch["targets"][:, None]).squeeze(-1)
    t_lp = batch["topk_lp"]  # (N, k) teacher log-probs of its top-k tokens under its T=1 distribution
    s_lp = student_logp.gather(-1, batch["topk_ids"])  # (N, k)
    t_p = t_lp.exp()
    if topk_mode == "renorm":
        t_p = t_p / t_p.sum(-1, keepdim=True)
        return torch.xlogy(t_p, t_p).sum(-1) - (t_p * s_lp.masked_fill(t_p == 0, 0.0)).sum(-1)
    # "rest": one extra bucket per position holding the probability mass outside the teacher's top-k.
    t_rest = (1.0 - t_p.sum(-1)).clamp(min=0.0)
    s_rest_lp = torch.logsumexp(student_logp.scatter(-1, batch["topk_ids"], -math.inf), dim=-1)
    kl_top = torch.xlogy(t_p, t_p).sum(-1) - (t_p * s_lp.masked_fill(t_p == 0, 0.0)).sum(-1)
    return kl_top + torch.xlogy(t_rest, t_rest) - t_rest * s_rest_lp


def micro_batch_loss(
    model: Any, batch: dict[str, torch.Tensor], objective: str, topk_mode: str
) -> torch.Tensor:
    """Summed loss over the completion tokens of one collated micro-batch."""
    logits = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
    ).logits
    # Only the logits that predict completion tokens enter the loss (log_softmax in fp32 for bf16 models).
    student_logp = torch.log_softmax(logits[batch["rows"], batch["pos"]].float(), dim=-1)
    return token_losses(student_logp, batch, objective, topk_mode).sum()


def lora_config(lora: Mapping[str, Any] | LoraConfig, model: Any, spec: ModelSpec | None) -> Any:
    """The peft LoRA config of ``lora`` for ``model`` (targets default to the registry entry's ``lora_targets``)."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import TaskType
    from transformers.pytorch_utils import Conv1D

    try:
        cfg = lora if isinstance(lora, LoraConfig) else LoraConfig.model_validate(dict(lora))
    except Exception as exc:
        raise UserError(f"bad LoRA settings {dict(lora)!r}: {exc}".splitlines()[0]) from None
    targets = (
        cfg.targets if cfg.targets is not None else (spec.lora_targets if spec is not None else "all-linear")
    )
    suffixes = None if targets == "all-linear" else set(targets)
    # GPT-2-style Conv1D layers store weights transposed (in, out): peft needs fan_in_fan_out for them.
    conv1d = any(
        isinstance(m, Conv1D) and (suffixes is None or name.rsplit(".", 1)[-1] in suffixes)
        for name, m in model.named_modules()
    )
    return PeftLoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=cfg.r,
        lora_alpha=cfg.alpha,  # type: ignore[arg-type]  # peft annotates int; a float alpha is passed as given
        lora_dropout=cfg.dropout,
        target_modules=targets if targets == "all-linear" else list(targets),
        fan_in_fan_out=conv1d,
        use_rslora=cfg.rslora,
    )


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warmup over ``warmup`` steps (from 1/(warmup+1), never 0), then linear decay towards 0."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    return max(0.0, (total - step) / max(1, total - warmup))




def _lora_field(lora: Any, name: str) -> Any:
    """A field of a LoRA config given as a LoraConfig or a plain dict."""
    return lora.get(name) if isinstance(lora, dict) else getattr(lora, name, None)


def train(
    model_dir: str | os.PathLike[str],
    rows: Sequence[Mapping[str, Any]],
    *,
    out_dir: str | os.PathLike[str],
    spec: ModelSpec | None = None,
    objective: Literal["sft", "distill"] = "sft",
    lora: Mapping[str, Any] | LoraConfig | None = LoraConfig(),
    epochs: float = 3,
    max_steps: int | None = None,
    lr: float = 2e-4,
    schedule: Literal["linear"] = "linear",
    warmup: int = 5,
    batch_size: int = 22,
    grad_accum: int = 3,
    max_length: int = 500,
    weight_decay: float = 0.0,
    max_grad_norm: float | None = 1.0,
    topk_mode: Literal["rest", "renorm"] = "rest",
    gradient_checkpointing: bool = False,
    optimizer: Mapping[str, Any] | OptimizerConfig | None = None,
    seed: int = 0,
    system: str | None = None,
    device: str | torch.device | None = None,
    log: Any = None,
    progress: Progress | None = None,
    log_every: int = 10,
) -> dict[str, Any]:
    """Fine-tune a fresh copy of a base model on (prompt, completion) rows; save the adapter or the model.

    Each example is the chat-rendered user prompt (no system turn unless ``system`` is given: students never
    get one) followed by the completion tokens: ``completion_ids`` when given (exactly the teacher's tokens),
    else the tokenized ``completion`` plus the template's end-of-turn token. Only completion tokens count in
    the loss. Defaults are the paper's open-model recipe (see :class:`benchmark.lmcore.config.TrainConfig`).

    Args:
        model_dir: the base model (local directory or hub id); loaded fresh, never mutated on disk.
        rows: dicts with ``prompt`` and ``completion`` and/or ``completion_ids``; ``topk`` (per completion
            position, ``[[token_id, logprob], ...]``) for ``objective="distill"``.
        out_dir: LoRA → ``out_dir/adapter`` (peft ``save_pretrained`` + tokenizer); full fine-tuning →
            ``out_dir/model`` (model + tokenizer).
        spec: the registry entry (dtype, chat template, LoRA targets).
        objective: "sft" (cross-entropy on the completion) or "distill" (KL to the teacher's top-k).
        lora: ``{r, alpha, dropout, targets, rslora}`` or a :class:`LoraConfig`; None = full fine-tuning.
        epochs: passes over the rows (fractional allowed); ``max_steps`` caps optimizer steps.
        lr, schedule, warmup: AdamW peak learning rate, linear decay after ``warmup`` steps.
        batch_size, grad_accum: examples per forward pass and forward passes per optimizer step.
        max_length: tokens per example; longer completions are cut (counted in ``truncated``).
        weight_decay: AdamW decay on matrices (not on biases or norms).
        max_grad_norm: gradient clipping (None = off).
        topk_mode: "rest" or "renorm" (see the module notes).
        gradient_checkpointing: trade compute for activation memory (same results).
        optimizer: ``{name, lr, momentum}`` or an :class:`~benchmark.lmcore.config.OptimizerConfig`; None is AdamW at
            ``lr`` (see :func:`_optimizer`).
        seed: LoRA init, dropout and data order; same seed → same run on CPU.
        system: a system prompt for every example (trait teachers only).
        device: defaults to CUDA when available.
        log: a logger (``.info``) for step losses.
        progress: ``progress(step, total_steps)`` after each optimizer step.
        log_every: record (and log) the loss every this many steps, plus the first and last step.

    Returns:
        ``steps``, ``tokens`` (completion tokens trained on), ``losses`` (``[step, loss]`` pairs),
        ``final_loss``, ``wall_s``, ``adapter_sha256`` (sha256 of the saved adapter weights; None for full
        fine-tuning), ``weights_sha256`` (of whatever was saved), ``saved_to``, ``examples``, ``truncated``,
        ``skipped``, ``trainable_params``, ``device``, ``dtype``.
    """
    check_choices(objective, schedule, topk_mode)
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    # Always a fresh base: get_peft_model wraps (and mutates) the modules of the model it is given.
    model, tok = load_model(model_dir, spec=spec, device=device, for_training=True)
    dev = model_device(model)
    examples, counts = training_examples(model, tok, rows, spec=spec, system=system, objective=objective,
                                 max_length=max_length)
    if lora is not None:
        model = _with_lora(model, lora, spec, seed)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    opt_cfg = OptimizerConfig.model_validate(dict(optimizer) if isinstance(optimizer, Mapping) else
                                             optimizer if optimizer is not None else {})
    peak = opt_cfg.lr if opt_cfg.lr is not None else lr
    params, opt = _optimizer(model, opt_cfg, peak, weight_decay)
    total = total_steps(len(examples), batch_size, grad_accum, epochs, max_steps)
    stream = micro_batches(len(examples), batch_size, grad_accum, torch.Generator().manual_seed(seed))
    losses, tokens, final_loss = _fit(
        model, opt, params, examples, stream, total=total, lr=peak, warmup=warmup, pad_id=tok.pad_token_id,
        device=dev, objective=objective, topk_mode=topk_mode, max_grad_norm=max_grad_norm, log=log,
        progress=progress, log_every=log_every,
    )
    save_dir, weights_sha = _save(model, tok, Path(out_dir) / ("adapter" if lora is not None else "model"))
    return {
        "steps": total,
        "tokens": tokens,
        "losses": losses,
        "final_loss": final_loss,
        "wall_s": round(time.perf_counter() - t0, 3),
        "adapter_sha256": weights_sha if lora is not None else None,
        "weights_sha256": weights_sha,
        "saved_to": str(save_dir),
        "examples": len(examples),
        **counts,
        "trainable_params": sum(p.numel() for p in params),
        "device": str(dev),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        **({} if opt_cfg.is_default else {"optimizer": {**opt_cfg.model_dump(), "peak_lr": peak}}),
    }


def check_choices(objective: str, schedule: str, topk_mode: str) -> None:
    if objective not in ("sft", "distill"):
        raise UserError(f"unknown training objective {objective!r}; allowed: sft, distill")
    if schedule != "linear":
        raise UserError(f"unknown lr schedule {schedule!r}; allowed: linear")
    if topk_mode not in ("rest", "renorm"):
        raise UserError(f"unknown topk_mode {topk_mode!r}; allowed: rest, renorm")


def training_examples(model: Any, tok: Any, rows: Sequence[Mapping[str, Any]], *, spec: ModelSpec | None,
              system: str | None, objective: str, max_length: int) -> tuple[list[Example], dict[str, int]]:
    """The rows as examples, ending each plain completion with the template's end-of-turn tokens."""
    end_of_turn = end_of_turn_ids(tok, stop_ids(model, tok, spec))
    examples, counts = encode_rows(tok, rows, spec=spec, system=system, objective=objective, max_length=max_length,
                                   end_of_turn=end_of_turn)
    if not examples:
        raise UserError(
            f"no trainable rows: {len(rows)} given, {counts['skipped']} longer than max_length "
            f"{max_length} before the completion"
        )
    return examples, counts


def _with_lora(model: Any, lora: Mapping[str, Any] | LoraConfig, spec: ModelSpec | None, seed: int) -> Any:
    """``model`` wrapped with a fresh LoRA adapter, its A matrices drawn from ``lora.init_seed`` (or ``seed``)."""
    from peft import get_peft_model

    lora_init = _lora_field(lora, "init_seed")
    torch.manual_seed(seed if lora_init is None else lora_init)  # LoRA A matrices come from the global generator
    with quiet_peft():
        model = get_peft_model(model, lora_config(lora, model, spec))
    torch.manual_seed(seed)  # dropout and everything after follow the training seed
    return model


def _adamw(model: Any, lr: float, weight_decay: float) -> tuple[list[torch.nn.Parameter], torch.optim.AdamW]:
    """The trainable parameters and an AdamW over them (weight decay on matrices only)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return params, torch.optim.AdamW([g for g in groups if g["params"]], lr=lr)


def _optimizer(model: Any, cfg: OptimizerConfig, lr: float, weight_decay: float
               ) -> tuple[list[torch.nn.Parameter], torch.optim.Optimizer]:
    """The trainable parameters and the optimizer ``cfg`` names over them at peak ``lr``: AdamW (:func:`_adamw`), or
    SGD with ``cfg.momentum`` over the same parameter groups (weight decay on matrices only, added to the gradient)."""
    params, adamw = _adamw(model, lr, weight_decay)
    if cfg.name == "adamw":
        return params, adamw
    groups = [{"params": g["params"], "weight_decay": g["weight_decay"]} for g in adamw.param_groups]
    return params, torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum)


def total_steps(n_examples: int, batch_size: int, grad_accum: int, epochs: float, max_steps: int | None) -> int:
    """Optimizer steps of ``epochs`` passes (at least one), capped at ``max_steps``."""
    micro_per_epoch = math.ceil(n_examples / batch_size)
    steps_per_epoch = math.ceil(micro_per_epoch / grad_accum)
    total = max(1, math.ceil(epochs * steps_per_epoch))
    return min(total, max_steps) if max_steps is not None else total


def micro_batches(n_examples: int, batch_size: int, grad_accum: int,
                   gen: torch.Generator) -> Iterator[list[list[int]]]:
    """An endless stream of optimizer steps, each a list of micro-batches of example indices, epoch after epoch."""
    while True:
        order = torch.randperm(n_examples, generator=gen).tolist()
        epoch = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        # Group an epoch's micro-batches into optimizer steps; the last step may be short.
        for s in range(0, len(epoch), grad_accum):
            yield epoch[s : s + grad_accum]


def _fit(model: Any, opt: torch.optim.Optimizer, params: list[torch.nn.Parameter], examples: list[Example],
         stream: Iterator[list[list[int]]], *, total: int, lr: float, warmup: int, pad_id: int, device: torch.device,
         objective: str, topk_mode: str, max_grad_norm: float | None, log: Any, progress: Progress | None,
         log_every: int) -> tuple[list[list[float]], int, float]:
    """Run ``total`` optimizer steps; returns the recorded ``[step, loss]`` pairs, tokens seen and the last loss."""
    losses: list[list[float]] = []
    tokens = 0
    step_loss = float("nan")
    for step in range(total):
        step_batches = [[examples[i] for i in mb] for mb in next(stream)]
        for g in opt.param_groups:
            g["lr"] = lr * lr_factor(step, total, warmup)
        step_loss, n_tok = _optimizer_step(model, opt, params, step_batches, pad_id=pad_id, device=device,
                                           objective=objective, topk_mode=topk_mode, max_grad_norm=max_grad_norm)
        tokens += n_tok
        if step == 0 or (step + 1) % log_every == 0 or step == total - 1:
            losses.append([step + 1, round(step_loss, 6)])
            if log is not None:
                log.info("step %d/%d loss %.4f lr %.3g tokens %d", step + 1, total, step_loss,
                         opt.param_groups[0]["lr"], tokens)
        if progress is not None:
            progress(step + 1, total)
    return losses, tokens, step_loss


def _optimizer_step(model: Any, opt: torch.optim.Optimizer, params: list[torch.nn.Parameter],
                    step_batches: list[list[Example]], *, pad_id: int, device: torch.device, objective: str,
                    topk_mode: str, max_grad_norm: float | None) -> tuple[float, int]:
    """One optimizer step over its micro-batches; returns the step's loss and its completion tokens.

    Each micro-batch's summed loss is divided by the step's completion tokens, so the accumulated gradient
    is the step's per-token mean however the step is split.
    """
    n_tok = sum(e.n_target for mb in step_batches for e in mb)
    loss_sum = 0.0
    for mb in step_batches:
        batch = collate(mb, pad_id, device)
        if batch["rows"].numel() == 0:
            continue
        loss = micro_batch_loss(model, batch, objective, topk_mode) / max(1, n_tok)
        loss.backward()
        loss_sum += float(loss.detach())
    if max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss_sum, n_tok


def _save(model: Any, tok: Any, save_dir: Path) -> tuple[Path, str]:
    """Save the model (or adapter) and tokenizer; returns the directory and the sha256 of its weight files."""
    model.save_pretrained(save_dir)
    tok.save_pretrained(save_dir)
    _normalise_adapter_files(save_dir)
    weight_files = sorted(save_dir.glob("*.safetensors")) or sorted(save_dir.glob("*.bin"))
    return save_dir, sha256_files(weight_files)


def _normalise_adapter_files(save_dir: Path) -> None:
    """Make a saved adapter's bytes depend only on its weights and settings, not on the run that saved it.

    peft keeps ``target_modules`` in a set (saved order follows the process's string-hash seed) and writes the
    base model's path (here a store path) into ``adapter_config.json`` and a generated ``README.md`` model card.
    The list is sorted, the path dropped (loading sets it to the base actually loaded), the card removed.
    """
    config = save_dir / "adapter_config.json"
    if not config.is_file():
        return
    data = json.loads(config.read_text(encoding="utf-8"))
    if isinstance(data.get("target_modules"), list):
        data["target_modules"] = sorted(data["target_modules"])
    data["base_model_name_or_path"] = None
    atomic_write_text(config, json.dumps(data, indent=2, sort_keys=True) + "\n")
    (save_dir / "README.md").unlink(missing_ok=True)
