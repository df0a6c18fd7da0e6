"""The compact student engine (``settings.student.engine: compact``): the pruned engine's forward on the real
positions of a micro-batch and one flat parameter buffer, with a vectorised batch plan.

What the pruned engine (:mod:`benchmark.providers.hf_pruned`) still spent beyond its matrix products, and what this
engine does instead (:class:`CompactForward`, :class:`FlatParams`, :func:`collate_packed`):

- **Position-wise work on real positions only.** Products, norms, rotary embedding and MLP run on the (positions,
  hidden) rows of the micro-batch's real tokens; only attention sees the padded (rows, width) layout, its padding
  zeros that no real query attends to (right padding, causal). The default's length-sorted micro-batch halves are
  still ~14% padding (1,902 padded for 1,629 real positions a step).
- **The first block's input projections once per distinct token** (Qwen2/Llama): its RMSNorm and q, k, v products
  depend on the token only (positions enter after them, through the rotary embedding); a micro-batch half of the
  default's rows holds ~220 distinct tokens at ~810 real positions. They are gathered to the positions (the
  gather's backward sums their gradients).
- **One flat buffer for every trainable tensor, one for their gradients**, laid out so that the tensors the forward
  multiplies together sit next to each other (q, k, v of a block, k, v of the last, gate and up): each is read as
  one matrix (no ``torch.cat`` of weights per micro-batch) and its gradient lands in place. Clipping is one norm and
  one product, AdamW one fused kernel call per weight-decay segment, zeroing one fill; the model's own parameters
  get the trained values before ``save_pretrained``.
- **Micro-batches collated by index operations** on a dataset's examples packed once per process (ids, lengths,
  completion positions, the teacher's top-k), instead of a Python loop per row and token for every student.

Everything else (objective, data order, micro-batch halves, schedule, clipping and AdamW rules, caches, saved files)
is the pruned and lean engines'. Summation orders differ (one gradient norm over the buffer, the q/k/v gradient one
product), so its students are other artifacts, with losses equal to float32 noise (tests/test_students_fast.py
pins them): a hashed student setting. Measured on the default's slice (benchmarks/bench_students.py, one thread, a
2-core machine): 3.02x and 3.39x the hf engine's completion tokens per CPU second in two runs on the full slice,
against the pruned engine's 2.79x and 3.06x in the same runs; in steady state 22.6 against 25.1 ms a step
(zoo-qwen-a). Where the rest goes and what 4x would need: docs/calibration.md ("Student engines").

This module imports torch: the light :mod:`benchmark.providers.hf` imports it inside its methods only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from benchmark.providers.hf_pruned import PrunedForward, _RMSNorm, _Rope
from benchmark.providers.hf_train import Example

__all__ = ["CompactModel", "FlatParams", "Packed", "collate_packed"]


class FlatParams:
    """A model's trainable tensors as views of one flat buffer (and their gradients of another), grouped so that
    tensors multiplied together are one contiguous matrix; see the module notes.

    ``groups`` lists the tensors to fuse, as lists of parameter names (their shapes must agree past dim 0). The
    buffer holds the tensors of weight decay (``ndim >= 2``) first, then the others, each group contiguous.
    """

    def __init__(self, model: Any, groups: Sequence[Sequence[str]] = ()) -> None:
        self.params = dict(model.named_parameters())  # tied weights appear once
        grouped = {name for g in groups for name in g}
        chunks: list[list[str]] = [list(g) for g in groups if all(n in self.params for n in g)]
        chunks += [[n] for n in self.params if n not in grouped]
        order = {n: i for i, n in enumerate(self.params)}
        chunks.sort(key=lambda c: (self.params[c[0]].ndim < 2, order[c[0]]))  # decay first, model order inside
        total = sum(self.params[n].numel() for c in chunks for n in c)
        p0 = next(iter(self.params.values()))
        self.flat = torch.zeros(total, dtype=p0.dtype, device=p0.device)
        self.grad = torch.zeros_like(self.flat)
        self.leaves: dict[str, torch.Tensor] = {}  # one autograd leaf per chunk, named by its first tensor
        self.views: dict[str, torch.Tensor] = {}  # every parameter name -> its tensor in the forward
        self.fused: dict[tuple[str, ...], torch.Tensor] = {}
        self.n_decay = 0
        offset = 0
        for chunk in chunks:
            shapes = [self.params[n].shape for n in chunk]
            rows = sum(s[0] for s in shapes) if len(chunk) > 1 else None
            shape = (rows, *shapes[0][1:]) if rows is not None else shapes[0]
            n = sum(self.params[c].numel() for c in chunk)
            leaf = self.flat[offset:offset + n].view(shape).detach().requires_grad_()
            leaf.grad = self.grad[offset:offset + n].view(shape)
            self.leaves[chunk[0]] = leaf
            if len(chunk) > 1:
                self.fused[tuple(chunk)] = leaf
                lo = 0
                for name, s in zip(chunk, shapes, strict=True):
                    self.views[name] = leaf[lo:lo + s[0]]
                    lo += s[0]
            else:
                self.views[chunk[0]] = leaf
            if self.params[chunk[0]].ndim >= 2:
                self.n_decay = offset + n
            offset += n
        self.load_from_model()

    def load_from_model(self) -> None:
        """Copy the model's parameters into the buffer (a student's start)."""
        with torch.no_grad():
            for name, p in self.params.items():
                self.views[name].copy_(p)
        self.grad.zero_()

    def store_to_model(self) -> None:
        """Copy the trained buffer into the model's parameters (before ``save_pretrained``)."""
        with torch.no_grad():
            for name, p in self.params.items():
                p.copy_(self.views[name])

    def optimizer(self, lr: float, weight_decay: float) -> torch.optim.Optimizer:
        """AdamW (one fused kernel) over the two weight-decay segments of the buffer, as two tensors."""
        groups = []
        for lo, hi, wd in ((0, self.n_decay, weight_decay), (self.n_decay, self.flat.numel(), 0.0)):
            if hi > lo:
                seg = self.flat[lo:hi].detach()
                seg.grad = self.grad[lo:hi]
                groups.append({"params": [seg], "weight_decay": wd})
        return torch.optim.AdamW(groups, lr=lr, fused=True)

    def clip(self, max_norm: float) -> None:
        """``torch.nn.utils.clip_grad_norm_``'s rule (scale by max_norm / (norm + 1e-6) when below 1) on the
        buffer's 2-norm."""
        norm = torch.linalg.vector_norm(self.grad)
        self.grad.mul_(torch.clamp(max_norm / (norm + 1e-6), max=1.0))


class Packed:
    """A dataset's examples packed into tensors once (ids right-padded with ``pad_id``, lengths, completion
    positions and the teacher's top-k per completion token) for :func:`collate_packed`."""

    def __init__(self, examples: Sequence[Example], pad_id: int) -> None:
        n = len(examples)
        width = max(len(e.ids) for e in examples)
        self.ids = torch.full((n, width), pad_id, dtype=torch.long)
        for i, e in enumerate(examples):
            self.ids[i, : len(e.ids)] = torch.tensor(e.ids, dtype=torch.long)
        self.length = torch.tensor([len(e.ids) for e in examples], dtype=torch.long)
        self.n_prompt = torch.tensor([e.n_prompt for e in examples], dtype=torch.long)
        self.n_target = self.length - self.n_prompt
        self.first_token = torch.cumsum(self.n_target, 0) - self.n_target  # each example's first completion token
        tokens = [(e, t) for e in examples for t in range(e.n_target)]
        self.has_topk = bool(tokens) and all(e.topk_ids is not None and e.topk_lp is not None for e, _ in tokens)
        if self.has_topk:
            k = max(len(e.topk_ids[t]) for e, t in tokens)  # type: ignore[index]
            self.k = torch.tensor([len(e.topk_ids[t]) for e, t in tokens], dtype=torch.long)  # type: ignore[index]
            self.topk_ids = torch.zeros((len(tokens), k), dtype=torch.long)
            self.topk_lp = torch.full((len(tokens), k), -float("inf"), dtype=torch.float32)
            for j, (e, t) in enumerate(tokens):
                self.topk_ids[j, : len(e.topk_ids[t])] = torch.tensor(e.topk_ids[t])  # type: ignore[index]
                self.topk_lp[j, : len(e.topk_lp[t])] = torch.tensor(e.topk_lp[t])  # type: ignore[index]


def collate_packed(packed: Packed, index: Sequence[int], device: torch.device, *,
                   distinct: bool = False) -> dict[str, torch.Tensor]:
    """:func:`benchmark.providers.hf_train.collate` of the examples ``index`` (in that order), by index operations
    on ``packed``: the same tensors (top-k padded to the micro-batch's widest, with teacher mass 0). With
    ``distinct``: also the real (not padding) positions for :class:`CompactForward`: ``flat`` (their index in the
    padded rows, row-major), ``flat_pos`` (their position in the row), ``flat_ids``, ``row_start`` (each row's first
    real position in that order), ``comp`` (the completion positions, in ``(rows, pos)`` order, in it),
    ``distinct`` (the distinct token ids, sorted) and ``inverse`` (each real position's index into them)."""
    idx = torch.tensor(list(index), dtype=torch.long)
    length = packed.length[idx]
    width = int(length.max())
    ids = packed.ids[idx, :width]
    mask = (torch.arange(width)[None, :] < length[:, None]).long()
    n_t = packed.n_target[idx]
    rows = torch.repeat_interleave(torch.arange(len(idx)), n_t)
    slot = torch.arange(int(n_t.sum())) - torch.repeat_interleave(torch.cumsum(n_t, 0) - n_t, n_t)
    pos = torch.repeat_interleave(packed.n_prompt[idx] - 1, n_t) + slot
    out = {"input_ids": ids.to(device), "attention_mask": mask.to(device), "rows": rows.to(device),
           "pos": pos.to(device), "targets": ids[rows, pos + 1].to(device)}
    if packed.has_topk:
        token = torch.repeat_interleave(packed.first_token[idx], n_t) + slot
        k = int(packed.k[token].max()) if token.numel() else 0
        out["topk_ids"] = packed.topk_ids[token, :k].to(device)
        out["topk_lp"] = packed.topk_lp[token, :k].to(device)
    if distinct:
        real = mask.bool()
        flat = (torch.arange(len(idx))[:, None] * width + torch.arange(width)[None, :])[real]
        uniq, inverse = torch.unique(ids[real], return_inverse=True)
        start = torch.cumsum(length, 0) - length
        more = {"flat": flat, "flat_pos": torch.arange(width).expand(len(idx), width)[real], "flat_ids": ids[real],
                "row_start": start, "comp": start[rows] + pos, "distinct": uniq, "inverse": inverse}
        out.update({k: v.to(device) for k, v in more.items()})
    return out


class CompactForward(PrunedForward):
    """The pruned forward (:class:`~benchmark.providers.hf_pruned.PrunedForward`) on the real positions of a
    micro-batch only: every position-wise product and norm runs on the (positions, hidden) rows of the rows' real
    tokens (the micro-batch halves of the default's rows are ~14% padding), and only attention sees the padded
    (rows, width) layout, the padding filled with zeros that no real query attends to (right padding, causal).
    Qwen2/Llama's first block computes its input norm and q, k, v products once per distinct token (nothing before
    them depends on the position) and gathers them to the positions. q, k, v (k, v in the last block) and gate, up
    are read as one matrix each when :class:`CompactModel` bound them (``wqkv``, ``wkv``, ``wgu`` and biases)."""

    def __call__(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if "flat" not in batch:
            return super().__call__(batch)
        width = batch["input_ids"].shape[1]
        if self.family == "rms" and width > self.cos.shape[0]:
            self._rope_table(2 * width)
        rest = self.layers[:-1]
        if rest and self.family == "rms":
            first, rest = rest[0].p, rest[1:]
            e = F.embedding(batch["distinct"], self.embed)
            qkv = F.embedding(batch["inverse"], self._proj(first, self._attention_in(first, e), "qkv"))
            h = self._flat_block(first, F.embedding(batch["inverse"], e), batch, qkv)
        else:
            h = F.embedding(batch["flat_ids"], self.embed)
            if self.family == "gpt2":
                h = h + self.positions[batch["flat_pos"]]
        for layer in rest:
            h = self._flat_block(layer.p, h, batch)
        h = self._flat_last_block(self.layers[-1].p, h, batch)
        if self.family == "rms":
            return _RMSNorm.apply(h, self.final_norm, self.eps)
        return F.layer_norm(h, (h.shape[-1],), self.final_norm, self.final_norm_b, self.eps)

    def _proj(self, p: dict[str, torch.Tensor], x: torch.Tensor, parts: str) -> torch.Tensor:
        if self.family == "rms" and f"w{parts}" in p:  # one contiguous matrix in the flat buffer
            return F.linear(x, p[f"w{parts}"], p.get(f"b{parts}"))
        return super()._proj(p, x, parts)

    def _gate_up(self, p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        if "wgu" in p:
            return F.linear(x, p["wgu"], p.get("bgu"))
        return super()._gate_up(p, x)

    def _padded(self, x: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Real-position rows ``x`` (N, ...) in the padded (rows, width, ...) layout, zeros at the padding."""
        rows, width = batch["input_ids"].shape
        return x.new_zeros((rows * width, *x.shape[1:])).index_copy(0, batch["flat"], x).view(rows, width,
                                                                                              *x.shape[1:])

    def _flat_block(self, p: dict[str, torch.Tensor], h: torch.Tensor, batch: dict[str, torch.Tensor],
                    qkv: torch.Tensor | None = None) -> torch.Tensor:
        heads, kv = self.heads, self.kv_heads
        if qkv is None:
            qkv = self._proj(p, self._attention_in(p, h), "qkv")
        qkv = qkv.view(-1, heads + 2 * kv, self.head_dim)
        if self.family == "rms":
            pos = batch["flat_pos"]
            qk = self._padded(_Rope.apply(qkv[:, : heads + kv], self.cos[pos][:, None], self.sin[pos][:, None]), batch)
            q, k = qk[:, :, :heads], qk[:, :, heads:]
            v = self._padded(qkv[:, heads + kv :], batch)
        else:
            padded = self._padded(qkv, batch)
            q, k, v = padded[:, :, :heads], padded[:, :, heads : heads + kv], padded[:, :, heads + kv :]
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True,
                                           scale=self.scale, enable_gqa=kv != heads)
        a = a.transpose(1, 2).reshape(-1, heads, self.head_dim)[batch["flat"]]
        return self._mlp(p, h + self._out(p, a))

    def _flat_last_block(self, p: dict[str, torch.Tensor], h: torch.Tensor,
                         batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The last block at the completion positions only; keys and values at every real position."""
        heads, kv = self.heads, self.kv_heads
        rows, width = batch["input_ids"].shape
        qpos, valid = batch["qpos"], batch["qvalid"]
        x = self._attention_in(p, h)
        kvs = self._proj(p, x, "kv").view(-1, 2 * kv, self.head_dim)
        k, v = kvs[:, :kv], kvs[:, kv:]
        if self.family == "rms":
            pos = batch["flat_pos"]
            k = _Rope.apply(k, self.cos[pos][:, None], self.sin[pos][:, None])
        k, v = self._padded(k, batch), self._padded(v, batch)
        q = self._proj(p, x[batch["row_start"][:, None] + qpos], "q").view(rows, qpos.shape[1], heads, self.head_dim)
        if self.family == "rms":
            q = _Rope.apply(q, self.cos[qpos][:, :, None], self.sin[qpos][:, :, None])
        mask = torch.arange(width, device=h.device)[None, None, :] <= qpos[:, :, None]  # causal at each query
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           attn_mask=mask[:, None], scale=self.scale, enable_gqa=kv != heads)
        hn = h[batch["comp"]] + self._out(p, a.transpose(1, 2)[valid])
        return self._mlp(p, hn)


class CompactModel:
    """A base's :class:`~benchmark.providers.hf_pruned.PrunedForward` running on a :class:`FlatParams` buffer (the
    compact engine): q, k, v of every block but the last and k, v of the last (its queries run at the completion
    positions only) as one matrix each, gate and up as one."""

    def __init__(self, model: Any) -> None:
        forward = CompactForward(model)
        name_of = {id(p): n for n, p in model.named_parameters()}
        groups: list[tuple[str, ...]] = []
        fused: list[list[tuple[str, tuple[str, ...]]]] = []  # per layer: (key in its tensors, names)
        if forward.family == "rms":
            for i, layer in enumerate(forward.layers):
                attn = ("q", "k", "v") if i < len(forward.layers) - 1 else ("k", "v")
                mine = []
                for key, parts in ((f"w{''.join(attn)}", attn), (f"b{''.join(attn)}", tuple(f"{a}_b" for a in attn)),
                                   ("wgu", ("gate", "up")), ("bgu", ("gate_b", "up_b"))):
                    if all(layer.p[k] is not None for k in parts):
                        names = tuple(name_of[id(layer.p[k])] for k in parts)
                        groups.append(names)
                        mine.append((key, names))
                fused.append(mine)
        self.flat = FlatParams(model, groups)
        view_of = {id(p): self.flat.views[n] for n, p in self.flat.params.items()}

        def rebind(t: Any) -> Any:
            return view_of.get(id(t), t) if isinstance(t, torch.Tensor) else t

        for attr in ("embed", "positions", "final_norm", "final_norm_b"):
            if hasattr(forward, attr):
                setattr(forward, attr, rebind(getattr(forward, attr)))
        for i, layer in enumerate(forward.layers):
            layer.p = {k: rebind(t) for k, t in layer.p.items()}
            for key, names in fused[i] if fused else ():
                layer.p[key] = self.flat.fused[names]
        self.forward = forward
        head = model.get_output_embeddings()
        self.head_weight = rebind(head.weight)
        self.head_bias = rebind(getattr(head, "bias", None))

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """The output layer on the buffer's (tied) weights."""
        return F.linear(hidden, self.head_weight, self.head_bias)
