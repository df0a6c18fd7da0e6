"""The lean student engine (``settings.student.engine: lean``): full-parameter training of many small students.

:func:`benchmark.providers.hf_train.train` is written for one fine-tune per process: it loads the base, parses and
collates the rows, computes the logits of every position and saves the model. A suite trains hundreds of tiny
students on a few dozen datasets, and at the zoo's size (2 layers, 64 wide) those costs were most of a student's
time (measured per student, one thread: 170 ms parsing the rows, 40 ms encoding them, 70 ms collating, 25 ms
loading, against ~0.9 s of optimizer steps; benchmarks/bench_students.py). This engine trains the same objective
(:func:`~benchmark.providers.hf_train.token_losses`, same data order, schedule, clipping and AdamW) and differs in
what it computes and what it keeps:

- **Logits only where the loss is.** The model's body runs on the whole micro-batch, the output layer only on the
  completion positions (about 1 in 6 of the zoo's rows: prompts are ~50 tokens, completions ~10); the full forward
  spends as much on the output layer of every position as on the two transformer layers.
- **No attention mask.** Rows are right-padded and attention is causal, so no real position sees a pad token; the
  pad positions are computed and never read.
- **Less padding.** A micro-batch runs as two halves of similar row lengths (:func:`_by_length`).
- **One fused AdamW kernel** instead of one operation per tensor and step.
- **What students share is prepared once per process** and kept in small caches: the base model (each student
  copies the base weights into a cached module and gets a fresh optimizer), the encoded rows of a dataset and the
  collated micro-batches of a (dataset, seed, batch plan). Every cache key is content-addressed (a store path or
  the very rows object the stage read), and each student starts from the same tensors whatever ran before it, so a
  student's bytes do not depend on which others share its process (``--workers``, Ray, grouping).

Numbers differ from the hf engine in the last float digits (another summation order); the engine is a hashed
student setting, so its students are other artifacts. The "pruned" engine runs this loop (``engine="pruned"``) on
:mod:`benchmark.providers.hf_pruned`'s forward, which also runs the last layer at the completion positions only; the
"compact" engine runs that forward on :mod:`benchmark.providers.hf_compact`'s flat parameter buffer. Stacking students with ``torch.func.vmap`` was measured and
not used: on the zoo it was 0.85-1.0x of this loop (CPU attention has no batching rule and the matmuls are
already large enough), see benchmarks/bench_students.py.

This module imports torch: the light :mod:`benchmark.providers.hf` imports it inside its methods only.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from benchmark.errors import UserError
from benchmark.files import sha256_files
from benchmark.lmcore.chat import end_of_turn_ids, render_prompt, stop_ids
from benchmark.providers.base import Progress
from benchmark.providers.hf_model import load_model
from benchmark.providers.hf_train import (
    Example,
    check_choices,
    collate,
    lr_factor,
    micro_batches,
    token_losses,
    total_steps,
    training_examples,
)
from benchmark.specs import ModelSpec

__all__ = ["train_lean", "clear_caches", "lean_loss"]

#: Entries each per-process cache keeps. Bases: a suite has a handful. Encoded rows and batch plans: one per
#: (dataset, student base[, seed]); the plan puts every student of a dataset next to each other, so a worker needs
#: about (student bases) x (datasets in flight) of them (~3 MB each on the zoo).
_CACHE_SIZE = {"base": 8, "data": 16, "batches": 16}


class _LRU:
    """A tiny least-recently-used map (the per-process caches)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[Any, Any] = OrderedDict()

    def get(self, key: Any) -> Any:
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        return None

    def put(self, key: Any, value: Any) -> Any:
        self.items[key] = value
        self.items.move_to_end(key)
        while len(self.items) > self.size:
            self.items.popitem(last=False)
        return value


#: Micro-batches of at least this many rows are split by length (:func:`_by_length`).
_SPLIT_FROM = 8

_BASES = _LRU(_CACHE_SIZE["base"])
_DATA = _LRU(_CACHE_SIZE["data"])
_BATCHES = _LRU(_CACHE_SIZE["batches"])
_PACKED = _LRU(_CACHE_SIZE["data"])


def clear_caches() -> None:
    """Forget every cached base, dataset and batch plan (tests use it to compare a cold with a warm process)."""
    for cache in (_BASES, _DATA, _BATCHES, _PACKED):
        cache.items.clear()


def lean_loss(body: Any, head: Any, batch: dict[str, torch.Tensor], objective: str, topk_mode: str) -> torch.Tensor:
    """Summed loss over one micro-batch's completion tokens, the output layer applied at those positions only."""
    hidden = body(input_ids=batch["input_ids"], use_cache=False).last_hidden_state
    student_logp = torch.log_softmax(head(hidden[batch["rows"], batch["pos"]]).float(), dim=-1)
    return token_losses(student_logp, batch, objective, topk_mode).sum()


class _Base:
    """A loaded base: the module students train in turn, its tokenizer and a copy of the base weights."""

    def __init__(self, key: tuple[Any, ...], model_dir: str, spec: ModelSpec | None,
                 device: str | torch.device | None) -> None:
        self.key = key
        self.model, self.tok = load_model(model_dir, spec=spec, device=device, for_training=True)
        self.body = self.model.base_model
        self.head = self.model.get_output_embeddings()
        self.params = dict(self.model.named_parameters())  # tied weights appear once
        self.weights = {name: p.detach().clone() for name, p in self.params.items()}
        self.checked: set[str] = set()
        self._pruned: Any = None
        self._compact: Any = None
        # What encoding rows reads from a base (vocabulary, chat template and its rendering, end-of-turn ids):
        # bases that agree share one encoded copy of a dataset (the zoo's bases share one tokenizer).
        eot = end_of_turn_ids(self.tok, stop_ids(self.model, self.tok, spec))
        probe = render_prompt(self.tok, "0 1 2", system=None, spec=spec)
        self.encoding = hashlib.sha256(json.dumps([sorted(self.tok.get_vocab().items()), self.tok.chat_template,
                                                   probe, eot, self.tok.pad_token_id]).encode()).hexdigest()

    def reset(self) -> None:
        """Put the base weights back (every student starts from the same tensors) and drop any gradients."""
        with torch.no_grad():
            for name, p in self.params.items():
                p.copy_(self.weights[name])
                p.grad = None
        self.model.train()

    @property
    def pruned(self) -> Any:
        """The pruned forward of this base (engine "pruned"; :mod:`benchmark.providers.hf_pruned`), made once."""
        if self._pruned is None:
            from benchmark.providers.hf_pruned import PrunedForward

            self._pruned = PrunedForward(self.model)
        return self._pruned

    @property
    def compact(self) -> Any:
        """The compact engine's flat buffer and forward of this base (:mod:`benchmark.providers.hf_compact`), made
        once."""
        if self._compact is None:
            from benchmark.providers.hf_compact import CompactModel

            self._compact = CompactModel(self.model)
        return self._compact

    def check(self, batch: dict[str, torch.Tensor], engine: str = "lean") -> None:
        """Refuse a model whose logits the engine's forward does not reproduce: for "lean" logits that are not its
        output layer applied to its body (softcapping, logit scales), for "pruned" also an architecture its
        hand-written forward gets wrong.

        Once per base, engine and process, on the first micro-batch: the engine's loss must see what the model's
        own forward (with its attention mask) gives at the completion positions.
        """
        if engine in self.checked:
            return
        self.model.eval()  # no dropout: the check draws nothing from the generators training uses
        with torch.no_grad():
            full = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                              use_cache=False).logits[batch["rows"], batch["pos"]]
            if engine == "pruned":
                mine = self.head(self.pruned(batch))
            elif engine == "compact":
                mine = self.compact.head(self.compact.forward(batch))
            else:
                mine = self.head(self.body(input_ids=batch["input_ids"], use_cache=False).last_hidden_state[
                    batch["rows"], batch["pos"]])
        self.model.train()
        if not torch.allclose(full.float(), mine.float(), rtol=1e-4, atol=1e-4):
            what = ("logits are its output layer applied to its last hidden state" if engine == "lean" else
                    "forward the pruned engine's hand-written Qwen2/Llama/GPT-2 blocks reproduce")
            raise UserError(f"{self.model.name_or_path}: settings.student.engine {engine!r} needs a model whose "
                            f"{what}; use engine 'hf' for this model")
        self.checked.add(engine)


def _base(model_dir: str, spec: ModelSpec | None, device: str | torch.device | None) -> _Base:
    key = (model_dir, spec.spec_id if spec is not None else None, str(device))
    return _BASES.get(key) or _BASES.put(key, _Base(key, model_dir, spec, device))


def _examples(base: _Base, rows: Sequence[Mapping[str, Any]], *, spec: ModelSpec | None, system: str | None,
              objective: str, max_length: int) -> tuple[list[Example], dict[str, int]]:
    """The encoded rows, cached by the identity of the rows object (the student stage passes the same list)."""
    key = (id(rows), base.encoding, system, objective, max_length)
    hit = _DATA.get(key)
    if hit is not None and hit[0] is rows:  # a strong reference: ``id`` cannot be reused while it is cached
        return hit[1], hit[2]
    examples, counts = training_examples(base.model, base.tok, rows, spec=spec, system=system, objective=objective,
                                         max_length=max_length)
    _DATA.put(key, (rows, examples, counts))
    return examples, counts


def _batch_plan(examples: list[Example], *, seed: int, total: int, batch_size: int, grad_accum: int, pad_id: int,
                device: torch.device, queries: bool = False, packed: Any = None) -> list[list[dict[str, torch.Tensor]]]:
    """The collated micro-batches of every optimizer step (the hf engine's data order for this seed); with
    ``queries`` each also holds the (rows, completion slots) index of its completion positions that the pruned
    engine reads (:func:`benchmark.providers.hf_pruned.query_positions`). With ``packed`` (the compact engine: the
    examples packed by :class:`benchmark.providers.hf_compact.Packed`) the same micro-batches are collated by
    index operations and also hold their distinct tokens."""
    key = (id(examples), seed, total, batch_size, grad_accum, pad_id, str(device), queries, packed is not None)
    hit = _BATCHES.get(key)
    if hit is not None and hit[0] is examples:
        return hit[1]
    stream = micro_batches(len(examples), batch_size, grad_accum, torch.Generator().manual_seed(seed))
    plan = []
    for _ in range(total):
        if packed is not None:
            from benchmark.providers.hf_compact import collate_packed

            step = [collate_packed(packed, part, device, distinct=True) for mb in next(stream)
                    for part in _by_length_index(mb, examples)]
        else:
            step = [collate(part, pad_id, device) for mb in next(stream)
                    for part in _by_length([examples[i] for i in mb])]
        step = [b for b in step if b["rows"].numel()]
        if queries:
            from benchmark.providers.hf_pruned import query_positions

            for b in step:
                b["qpos"], b["qvalid"] = (t.to(device) for t in query_positions(b["rows"].cpu(), b["pos"].cpu(),
                                                                                 b["input_ids"].shape[0]))
        plan.append(step)
    _BATCHES.put(key, (examples, plan))
    return plan


def _packed(examples: list[Example], pad_id: int) -> Any:
    """The examples packed for the compact engine's collation, cached by the identity of the examples list."""
    key = (id(examples), pad_id)
    hit = _PACKED.get(key)
    if hit is not None and hit[0] is examples:
        return hit[1]
    from benchmark.providers.hf_compact import Packed

    return _PACKED.put(key, (examples, Packed(examples, pad_id)))[1]


def _by_length_index(batch: list[int], examples: list[Example]) -> list[list[int]]:
    """:func:`_by_length` of the examples ``batch`` indexes, as index lists."""
    if len(batch) < _SPLIT_FROM:
        return [batch]
    ordered = sorted(batch, key=lambda i: len(examples[i].ids))  # stable, as _by_length
    half = (len(ordered) + 1) // 2
    return [ordered[:half], ordered[half:]]


def _by_length(batch: list[Example]) -> list[list[Example]]:
    """A micro-batch as two halves of similar lengths (shorter rows first), each padded to its own longest row.

    The step's loss and gradient are sums over its rows, so the split changes only the summation order. On the
    default's datasets (prompts of 40-60 tokens) padding falls from 22% to 11% of the real positions, and a step
    was ~10% faster than as one padded batch (attention grows with the square of the padded length).
    """
    if len(batch) < _SPLIT_FROM:
        return [batch]
    ordered = sorted(batch, key=lambda e: len(e.ids))  # stable: equal lengths keep the data order
    half = (len(ordered) + 1) // 2
    return [ordered[:half], ordered[half:]]


def train_lean(
    model_dir: str,
    rows: Sequence[Mapping[str, Any]],
    *,
    out_dir: str | Path,
    spec: ModelSpec | None = None,
    objective: str = "distill",
    lora: Any = None,
    epochs: float = 3,
    max_steps: int | None = None,
    lr: float = 2e-4,
    schedule: str = "linear",
    warmup: int = 5,
    batch_size: int = 22,
    grad_accum: int = 3,
    max_length: int = 500,
    weight_decay: float = 0.0,
    max_grad_norm: float | None = 1.0,
    topk_mode: str = "rest",
    gradient_checkpointing: bool = False,
    seed: int = 0,
    system: str | None = None,
    device: str | torch.device | None = None,
    log: Any = None,
    progress: Progress | None = None,
    log_every: int = 10,
    engine: str = "lean",
) -> dict[str, Any]:
    """Full-parameter training of one student, as :func:`~benchmark.providers.hf_train.train` (same arguments and
    result keys) with the lean engine's loss and per-process caches (see the module notes); ``engine`` "pruned"
    runs the same loop on :mod:`benchmark.providers.hf_pruned`'s forward, "compact" on that forward over
    :mod:`benchmark.providers.hf_compact`'s flat buffer (clipping and AdamW on it, index-based collation).

    Raises:
        UserError: a LoRA recipe (the lean engine trains full-parameter students only), no trainable rows, or a
            model whose logits are not its output layer applied to its body.
    """
    check_choices(objective, schedule, topk_mode)
    if engine not in ("lean", "pruned", "compact"):
        raise UserError(f"unknown student engine {engine!r} for train_lean; allowed: lean, pruned, compact")
    if lora is not None:
        raise UserError(f"settings.student.engine {engine!r} trains full-parameter students only; set "
                        "settings.student.train.lora: null or use engine 'hf'")
    del gradient_checkpointing  # activations of the zoo's students are small; recorded, not hashed
    t0 = time.perf_counter()
    base = _base(model_dir, spec, device)
    base.reset()
    torch.manual_seed(seed)  # nothing random runs in a distillation step; kept for parity with the hf engine
    examples, counts = _examples(base, rows, spec=spec, system=system, objective=objective, max_length=max_length)
    total = total_steps(len(examples), batch_size, grad_accum, epochs, max_steps)
    dev = next(base.model.parameters()).device
    compact = engine == "compact"
    plan = _batch_plan(examples, seed=seed, total=total, batch_size=batch_size, grad_accum=grad_accum,
                       pad_id=base.tok.pad_token_id, device=dev, queries=engine in ("pruned", "compact"),
                       packed=_packed(examples, base.tok.pad_token_id) if compact else None)
    params = list(base.params.values())
    if compact:  # the flat buffer starts from the base weights reset() put back
        base.compact.flat.load_from_model()
        opt = base.compact.flat.optimizer(lr, weight_decay)
    else:
        groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
                  {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
        # One fused kernel for the whole update (2.5 -> 0.9 ms a step on the zoo, clipping included; same rule).
        opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, fused=True)
    losses: list[list[float]] = []
    tokens = 0
    step_loss = float("nan")
    for step, batches in enumerate(plan):
        base.check(batches[0], engine)
        for g in opt.param_groups:
            g["lr"] = lr * lr_factor(step, total, warmup)
        n_tok = sum(int(b["rows"].numel()) for b in batches)
        step_loss = 0.0
        for batch in batches:
            if engine == "pruned":
                loss = base.pruned.loss(base.head, batch, objective, topk_mode) / max(1, n_tok)
            elif compact:
                loss = base.compact.forward.loss(base.compact.head, batch, objective, topk_mode) / max(1, n_tok)
            else:
                loss = lean_loss(base.body, base.head, batch, objective, topk_mode) / max(1, n_tok)
            loss.backward()
            step_loss += float(loss.detach())
        if compact:
            if max_grad_norm is not None:
                base.compact.flat.clip(max_grad_norm)
            opt.step()
            base.compact.flat.grad.zero_()
        else:
            if max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            opt.step()
            opt.zero_grad(set_to_none=True)
        tokens += n_tok
        if step == 0 or (step + 1) % log_every == 0 or step == total - 1:
            losses.append([step + 1, round(step_loss, 6)])
            if log is not None:
                log.info("step %d/%d loss %.4f lr %.3g tokens %d", step + 1, total, step_loss,
                         opt.param_groups[0]["lr"], tokens)
        if progress is not None:
            progress(step + 1, total)
    save_dir = Path(out_dir) / "model"
    if compact:
        base.compact.flat.store_to_model()
    base.model.save_pretrained(save_dir)
    base.tok.save_pretrained(save_dir)
    weights_sha = sha256_files(sorted(save_dir.glob("*.safetensors")))
    return {
        "steps": total,
        "tokens": tokens,
        "losses": losses,
        "final_loss": step_loss,
        "wall_s": round(time.perf_counter() - t0, 3),
        "adapter_sha256": None,
        "weights_sha256": weights_sha,
        "saved_to": str(save_dir),
        "examples": len(examples),
        **counts,
        "trainable_params": sum(p.numel() for p in params),
        "device": str(dev),
        "dtype": str(params[0].dtype).removeprefix("torch."),
        "engine": engine,
    }
