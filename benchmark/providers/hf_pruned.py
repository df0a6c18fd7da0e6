"""The pruned student engine (``settings.student.engine: pruned``): the lean engine's loop on a hand-written forward
that computes only what the distillation loss reads.

The loss of a student step reads the logits at the completion positions only (1 in 6 positions of rows with
10-token completions, 1 in 50 with the one-token rows of the published default). The lean engine already applies
the output layer there only; this engine also prunes the body, which is exact in a causal transformer:

- **The last layer at the completion positions only.** Its keys and values are needed at every position (the
  completion positions attend to the prompt), its queries, attention, output projection and MLP only where the
  loss is: on the zoo (2 layers, 64 wide) 40% less work per step.
- **A plain functional forward** of the Qwen2/Llama (RMSNorm, rotary, SwiGLU, grouped-query attention) and GPT-2
  (LayerNorm, learned positions, GELU) blocks on the module's own parameter tensors: no per-call wrappers, masks
  or output records (at 64 wide the model's own forward spends as long in Python as in its matrix products);
  q, k, v (and gate, up) as one product each, queries and keys rotated in one call.
- **Hand-written backward passes** where autograd records many small operations: RMSNorm (torch's one-pass
  forward kernel), the rotary embedding (the rotation's transpose, no rotated copy) and the distillation loss
  with its rest bucket (:class:`_RestKL`: two passes over the vocabulary instead of log-softmax, scatter and
  logsumexp, each differentiated apart).
- Padding, data order, micro-batch halves, loss, schedule, clipping, AdamW, caches and saved files are the lean
  engine's (:mod:`benchmark.providers.hf_lean`).

Measured with benchmarks/bench_students.py (the default's slice: 24 students of 45 steps on one-token rows, one
thread, load average ~1): 1,865 completion tokens per CPU second against the hf engine's 634 (2.97x) and the lean
engine's 1,132 (1.65x); 35% of the pruned work's matmul limit (0.63 GFLOP a step). What is left is mostly the first
layer, which every position needs: for a micro-batch half (16 rows of ~58 tokens) its five products take 3.8 ms
forward and backward (78 GFLOP/s at 64 wide) and its attention 1.3 ms, of the ~5.8 ms the whole block takes here.
``torch.compile`` of that block was 5-10% faster than this eager code and is not used (~15 s of compilation per
graph in every worker process, and a C++ toolchain); stacking students (``torch.func.vmap``) was not faster on the
lean engine either.

Same objective, other numbers in the last float digits (other summation orders): a hashed student setting, so
its students are other artifacts than the lean engine's. Each base is checked once per process: the pruned
forward's logits at the completion positions of the first micro-batch must match the model's own forward (with
its attention mask) within 1e-4, else the engine refuses the model (architectures it does not know, dropout,
rotary scaling, softcapping).

This module imports torch: the light :mod:`benchmark.providers.hf` imports it inside its methods only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from benchmark.errors import UserError
from benchmark.providers.hf_train import token_losses

__all__ = ["PrunedForward", "query_positions"]

#: Config keys whose non-zero value means dropout in training (the pruned forward has none).
_DROPOUT_KEYS = ("attention_dropout", "attn_pdrop", "resid_pdrop", "embd_pdrop", "hidden_dropout", "dropout")


@dataclass
class _Layer:
    """One block's parameter tensors (the model's own, so the optimizer and ``save_pretrained`` see the updates)."""

    p: dict[str, torch.Tensor]


class PrunedForward:
    """Hidden states at the completion positions of a collated micro-batch, for one Qwen2/Llama or GPT-2 model."""

    def __init__(self, model: Any) -> None:
        cfg = model.config
        self.family = _family(cfg)
        for key in _DROPOUT_KEYS:
            if float(getattr(cfg, key, 0.0) or 0.0) != 0.0:
                raise UserError(f"{model.name_or_path}: settings.student.engine 'pruned' trains without dropout but "
                                f"the model's config sets {key}={getattr(cfg, key)}; use engine 'lean' or 'hf'")
        self.heads = cfg.num_attention_heads
        self.hidden = cfg.hidden_size
        self.head_dim = getattr(cfg, "head_dim", None) or self.hidden // self.heads
        self.kv_heads = getattr(cfg, "num_key_value_heads", None) or self.heads
        if getattr(cfg, "use_sliding_window", False):
            raise UserError(f"{model.name_or_path}: settings.student.engine 'pruned' attends to every earlier position "
                            "but the model's config sets use_sliding_window; use engine 'lean' or 'hf'")
        body = model.base_model
        if self.family == "rms":
            self.embed = body.embed_tokens.weight
            self.eps = float(cfg.rms_norm_eps)
            self.final_norm = body.norm.weight
            self.layers = [_Layer({
                "in_norm": layer.input_layernorm.weight, "post_norm": layer.post_attention_layernorm.weight,
                "q": layer.self_attn.q_proj.weight, "q_b": layer.self_attn.q_proj.bias,
                "k": layer.self_attn.k_proj.weight, "k_b": layer.self_attn.k_proj.bias,
                "v": layer.self_attn.v_proj.weight, "v_b": layer.self_attn.v_proj.bias,
                "o": layer.self_attn.o_proj.weight, "o_b": layer.self_attn.o_proj.bias,
                "gate": layer.mlp.gate_proj.weight, "gate_b": layer.mlp.gate_proj.bias,
                "up": layer.mlp.up_proj.weight, "up_b": layer.mlp.up_proj.bias,
                "down": layer.mlp.down_proj.weight, "down_b": layer.mlp.down_proj.bias,
            }) for layer in body.layers]
            self._rotary = body.rotary_emb
            self._rope_table(cfg.max_position_embeddings)
        else:
            self.embed = body.wte.weight
            self.positions = body.wpe.weight
            self.eps = float(cfg.layer_norm_epsilon)
            self.final_norm, self.final_norm_b = body.ln_f.weight, body.ln_f.bias
            self.layers = [_Layer({
                "ln1": block.ln_1.weight, "ln1_b": block.ln_1.bias, "ln2": block.ln_2.weight, "ln2_b": block.ln_2.bias,
                "qkv": block.attn.c_attn.weight, "qkv_b": block.attn.c_attn.bias,  # Conv1D: weight is (in, out)
                "o": block.attn.c_proj.weight, "o_b": block.attn.c_proj.bias,
                "fc": block.mlp.c_fc.weight, "fc_b": block.mlp.c_fc.bias,
                "proj": block.mlp.c_proj.weight, "proj_b": block.mlp.c_proj.bias,
            }) for block in body.h]
        self.scale = 1.0 / math.sqrt(self.head_dim)

    def _rope_table(self, width: int) -> None:
        """cos/sin of positions 0..width-1 (``self.cos``, ``self.sin``: (positions, head_dim)), from the model's own
        rotary module (its rope type and scaling)."""
        positions = torch.arange(width, device=self.embed.device)[None]
        with torch.no_grad():
            cos, sin = self._rotary(self.embed[:1][None], positions)
        self.cos, self.sin = cos[0].detach(), sin[0].detach()

    def loss(self, head: Any, batch: dict[str, torch.Tensor], objective: str, topk_mode: str) -> torch.Tensor:
        """Summed loss over one micro-batch's completion tokens (the lean engine's :func:`lean_loss`)."""
        logits = head(self(batch)).float()
        if objective == "distill" and topk_mode == "rest":
            return _RestKL.apply(logits, batch["topk_ids"], batch["topk_lp"]).sum()
        return token_losses(torch.log_softmax(logits, dim=-1), batch, objective, topk_mode).sum()

    # -- the forward ----------------------------------------------------------------------------------------------
    def __call__(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Final hidden states (after the last norm) at ``batch``'s completion positions, in its (rows, pos) order."""
        ids = batch["input_ids"]
        if self.family == "rms" and ids.shape[1] > self.cos.shape[0]:
            self._rope_table(2 * ids.shape[1])
        h = F.embedding(ids, self.embed)
        if self.family == "gpt2":
            h = h + self.positions[: ids.shape[1]]
        for layer in self.layers[:-1]:
            h = self._block(layer.p, h)
        h = self._last_block(self.layers[-1].p, h, batch)
        if self.family == "rms":
            return _RMSNorm.apply(h, self.final_norm, self.eps)
        return F.layer_norm(h, (h.shape[-1],), self.final_norm, self.final_norm_b, self.eps)

    def _proj(self, p: dict[str, torch.Tensor], x: torch.Tensor, parts: str) -> torch.Tensor:
        """The projections ``parts`` ("q", "k", "v" in that order) of ``x`` (..., hidden) as one product."""
        if self.family == "rms":
            weight = torch.cat([p[w] for w in parts]) if len(parts) > 1 else p[parts]
            biases = [p[f"{w}_b"] for w in parts]
            bias = None if biases[0] is None else torch.cat(biases) if len(parts) > 1 else biases[0]
            return F.linear(x, weight, bias)
        d = self.hidden  # GPT-2: one Conv1D weight (in, 3 * hidden) holds q, k, v
        lo = "qkv".index(parts[0]) * d
        hi = lo + d * len(parts)
        return torch.addmm(p["qkv_b"][lo:hi], x.reshape(-1, d), p["qkv"][:, lo:hi]).view(*x.shape[:-1], hi - lo)

    def _attention_in(self, p: dict[str, torch.Tensor], h: torch.Tensor) -> torch.Tensor:
        if self.family == "rms":
            return _RMSNorm.apply(h, p["in_norm"], self.eps)
        return F.layer_norm(h, (h.shape[-1],), p["ln1"], p["ln1_b"], self.eps)

    def _mlp(self, p: dict[str, torch.Tensor], h: torch.Tensor) -> torch.Tensor:
        """``h`` plus the block's MLP of its normed ``h``."""
        if self.family == "rms":
            x = _RMSNorm.apply(h, p["post_norm"], self.eps)
            gate, up = self._gate_up(p, x).chunk(2, dim=-1)  # autograd's chunk, silu and product beat a fused backward
            return h + F.linear(F.silu(gate) * up, p["down"], p["down_b"])
        x = F.layer_norm(h, (h.shape[-1],), p["ln2"], p["ln2_b"], self.eps)
        return h + _conv1d(F.gelu(_conv1d(x, p["fc"], p["fc_b"]), approximate="tanh"), p["proj"], p["proj_b"])

    def _gate_up(self, p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        bias = None if p["gate_b"] is None else torch.cat([p["gate_b"], p["up_b"]])
        return F.linear(x, torch.cat([p["gate"], p["up"]]), bias)

    def _out(self, p: dict[str, torch.Tensor], a: torch.Tensor) -> torch.Tensor:
        """Attention outputs (..., heads, head_dim) through the output projection: (..., hidden)."""
        a = a.reshape(*a.shape[:-2], -1)
        return F.linear(a, p["o"], p["o_b"]) if self.family == "rms" else _conv1d(a, p["o"], p["o_b"])

    def _block(self, p: dict[str, torch.Tensor], h: torch.Tensor) -> torch.Tensor:
        rows, width = h.shape[:2]
        heads, kv = self.heads, self.kv_heads
        qkv = self._proj(p, self._attention_in(p, h), "qkv").view(rows, width, heads + 2 * kv, self.head_dim)
        if self.family == "rms":  # queries and keys rotated in one call
            qk = _Rope.apply(qkv[:, :, : heads + kv], self.cos[:width, None], self.sin[:width, None])
            q, k = qk[:, :, :heads], qk[:, :, heads:]
        else:
            q, k = qkv[:, :, :heads], qkv[:, :, heads : heads + kv]
        v = qkv[:, :, heads + kv :]
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True,
                                           scale=self.scale, enable_gqa=kv != heads)
        return self._mlp(p, h + self._out(p, a.transpose(1, 2)))

    def _last_block(self, p: dict[str, torch.Tensor], h: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The last block at the completion positions only (N, hidden); keys and values at every position."""
        rows, width = h.shape[:2]
        heads, kv = self.heads, self.kv_heads
        qpos, valid = batch["qpos"], batch["qvalid"]  # (B, C): each row's completion positions, and the real ones
        x = self._attention_in(p, h)
        kvs = self._proj(p, x, "kv").view(rows, width, 2 * kv, self.head_dim)
        k, v = kvs[:, :, :kv], kvs[:, :, kv:]
        q = self._proj(p, x[torch.arange(rows, device=h.device)[:, None], qpos], "q").view(
            rows, qpos.shape[1], heads, self.head_dim)
        if self.family == "rms":
            k = _Rope.apply(k, self.cos[:width, None], self.sin[:width, None])
            q = _Rope.apply(q, self.cos[qpos][:, :, None], self.sin[qpos][:, :, None])
        mask = torch.arange(width, device=h.device)[None, None, :] <= qpos[:, :, None]  # causal at each query
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           attn_mask=mask[:, None], scale=self.scale, enable_gqa=kv != heads)
        # From here on only the real completion positions, in the (rows, pos) order of the loss.
        hn = h[batch["rows"], batch["pos"]] + self._out(p, a.transpose(1, 2)[valid])
        return self._mlp(p, hn)


def _rms_norm_composite(x: torch.Tensor, shape: list[int], w: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    r = torch.rsqrt(x.pow(2).mean(-1, keepdim=True).add_(eps))
    return x * r * w, r


#: RMSNorm's output and reciprocal root mean square: torch's one-pass kernel where this torch has it.
_fused_rms_norm = getattr(torch.ops.aten, "_fused_rms_norm", None) or _rms_norm_composite


class _RMSNorm(torch.autograd.Function):
    """RMSNorm with a hand-written backward (autograd's composite records six operations and differentiates each)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
        y, r = _fused_rms_norm(x, [x.shape[-1]], w, eps)  # one pass (its CPU kernel has no backward)
        ctx.save_for_backward(x, r, w)
        return y

    @staticmethod
    def backward(ctx: Any, gy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        x, r, w = ctx.saved_tensors
        xn = x * r
        gw = (gy * xn).reshape(-1, xn.shape[-1]).sum(0)
        gxn = gy * w
        gx = (gxn - xn * (gxn * xn).mean(-1, keepdim=True)).mul_(r)
        return gx, gw, None


class _Rope(torch.autograd.Function):
    """Rotary embedding ``x * cos + rotate_half(x) * sin`` (cos and sin repeat their first half, as the Qwen2/Llama
    rotary modules make them) without materialising the rotated copy; the backward is the rotation's transpose."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        s = sin[..., :half]
        ctx.save_for_backward(cos, s)
        y = x * cos
        y[..., :half].addcmul_(x[..., half:], s, value=-1.0)
        y[..., half:].addcmul_(x[..., :half], s)
        return y

    @staticmethod
    def backward(ctx: Any, gy: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        cos, s = ctx.saved_tensors
        half = gy.shape[-1] // 2
        gx = gy * cos
        gx[..., :half].addcmul_(gy[..., half:], s)
        gx[..., half:].addcmul_(gy[..., :half], s, value=-1.0)
        return gx, None, None


class _RestKL(torch.autograd.Function):
    """Per-token KL of the teacher's top-k plus rest bucket to the student (``topk_mode="rest"``), from the
    student's logits, with a hand-written backward.

    The same quantity as :func:`benchmark.providers.hf_train.token_losses` on ``log_softmax(logits)`` (the rest
    bucket's student mass summed over the tokens outside the teacher's top-k, padded top-k entries included in the
    top-k as there), in two passes over the vocabulary instead of autograd's log-softmax, scatter and logsumexp.
    """

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, topk_ids: torch.Tensor, t_lp: torch.Tensor) -> torch.Tensor:
        m = z.max(-1, keepdim=True).values
        e = (z - m).exp_()
        lse = e.sum(-1, keepdim=True).log_().add_(m)
        e_rest = e.scatter(-1, topk_ids, 0.0)
        rest_sum = e_rest.sum(-1, keepdim=True)
        s_lp = z.gather(-1, topk_ids) - lse
        s_rest_lp = rest_sum.log() + m - lse
        t_p = t_lp.exp()
        t_rest = (1.0 - t_p.sum(-1, keepdim=True)).clamp(min=0.0)
        kl_top = torch.xlogy(t_p, t_p).sum(-1) - (t_p * s_lp.masked_fill(t_p == 0, 0.0)).sum(-1)
        ctx.save_for_backward(e, e_rest, rest_sum, t_p, t_rest, topk_ids)
        return kl_top + (torch.xlogy(t_rest, t_rest) - t_rest * s_rest_lp)[:, 0]

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        # d/dz_j = (sum_k t_k + t_rest) softmax_j - t_rest e_j [j outside the top-k] / rest_sum - t_j [j in the top-k]
        e, e_rest, rest_sum, t_p, t_rest, topk_ids = ctx.saved_tensors
        g = g[:, None]
        total = t_p.sum(-1, keepdim=True) + t_rest
        grad = e.mul_(g * total / e.sum(-1, keepdim=True))
        grad.sub_(e_rest.mul_(g * t_rest / rest_sum))
        return grad.scatter_add_(-1, topk_ids, -(t_p * g)), None, None


def _conv1d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """GPT-2's Conv1D: ``x @ w + b`` with ``w`` stored (in, out)."""
    return torch.addmm(b, x.reshape(-1, x.shape[-1]), w).view(*x.shape[:-1], w.shape[1])


def _family(cfg: Any) -> str:
    """"rms" (Qwen2, Llama: RMSNorm, rotary, gated MLP) or "gpt2"; a UserError for other architectures."""
    kind = getattr(cfg, "model_type", None)
    if kind in ("qwen2", "llama") and getattr(cfg, "hidden_act", "silu") == "silu":
        return "rms"
    if kind == "gpt2" and getattr(cfg, "activation_function", None) in ("gelu_new", "gelu_pytorch_tanh") \
            and not getattr(cfg, "scale_attn_by_inverse_layer_idx", False) and getattr(cfg, "scale_attn_weights", True) \
            and not getattr(cfg, "reorder_and_upcast_attn", False):
        return "gpt2"
    raise UserError(f"settings.student.engine 'pruned' knows Qwen2, Llama (SiLU) and GPT-2 (gelu_new) models, not "
                    f"model_type {kind!r}; use engine 'lean' or 'hf'")


def query_positions(rows: torch.Tensor, pos: torch.Tensor, n_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's completion-predicting positions as a (B, C) index (C = the longest completion; shorter rows
    repeat their last position) and the (B, C) mask of the real ones, whose row-major order is ``(rows, pos)``'s."""
    counts = torch.bincount(rows, minlength=n_rows)
    width = int(counts.max()) if rows.numel() else 0
    slot = torch.arange(rows.numel()) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    qpos = torch.zeros((n_rows, max(1, width)), dtype=torch.long)
    qpos[rows, slot] = pos
    valid = torch.zeros_like(qpos, dtype=torch.bool)
    valid[rows, slot] = True
    last = torch.where(counts > 0, qpos.gather(1, (counts - 1).clamp(min=0)[:, None])[:, 0], 0)
    qpos = torch.where(valid, qpos, last[:, None])
    return qpos, valid
