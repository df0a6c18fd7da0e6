"""The zoo's pretraining loop: answer-only loss, length-chunked batches, warmup + cosine, one phase at a time.

Loss: cross-entropy on the assistant answer tokens only (the answer and its ``<|im_end|>``), not on the
prompts. Every later stage trains that way (teachers, students: the paper's completion-only loss), the
prompts are templates whose wording the model need not be able to write, and at ~0.2M parameters the
capacity is better spent on answering. It also saves compute: the LM head runs only on answer positions
(about a quarter of the tokens).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from benchmark.zoo.corpus import CorpusSampler, Messages
from benchmark.zoo.spec import PretrainSpec
from benchmark.zoo.tokenizer import EOS_TOKEN, render_chat

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

__all__ = ["Log", "batch_loss_backward", "encode_rows", "length_chunks", "pretrain", "say_fn"]

#: Where progress lines go: a logger, a ``print``-like callable, or nowhere.
Log = Callable[[str], None] | logging.Logger | None


def say_fn(log: Log) -> Callable[[str], None]:
    """The ``print``-like callable behind ``log`` (a no-op for None)."""
    if log is None:
        return lambda msg: None
    if isinstance(log, logging.Logger):
        return log.info
    return log


def encode_rows(
    tok: PreTrainedTokenizerFast, rows: Sequence[Messages], max_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (right-padded) and next-token targets (-100 except on assistant answer tokens).

    The prompt is everything up to ``<|im_start|>assistant``; the answer is the last message's content
    plus ``<|im_end|>``. Ids are identical to tokenizing the chat template's full rendering (tested).
    """
    import torch

    core = tok.backend_tokenizer
    prompts = core.encode_batch(
        [render_chat(r[:-1], add_generation_prompt=True) for r in rows], add_special_tokens=False
    )
    answers = core.encode_batch([r[-1]["content"] + EOS_TOKEN for r in rows], add_special_tokens=False)
    seqs = [(p.ids + a.ids)[:max_len] for p, a in zip(prompts, answers, strict=True)]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)
    targets = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (seq, p) in enumerate(zip(seqs, prompts, strict=True)):
        ids[i, : len(seq)] = torch.tensor(seq)
        start = len(p.ids)  # first answer token; position t predicts token t + 1
        if start < len(seq):
            targets[i, start - 1 : len(seq) - 1] = torch.tensor(seq[start:])
    return ids, targets


def _answer_loss_sum(model: PreTrainedModel, ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy over answer tokens; the LM head runs only where there is a target."""
    import torch.nn.functional as F

    # Right padding and a causal mask: pads never influence earlier positions, so no attention mask needed.
    hidden = model.base_model(input_ids=ids, use_cache=False).last_hidden_state
    keep = targets != -100
    logits = model.get_output_embeddings()(hidden[keep])
    return F.cross_entropy(logits, targets[keep], reduction="sum")


def length_chunks(lengths: Sequence[int], max_chunks: int = 4, overhead: int = 512) -> list[list[int]]:
    """Split a batch's rows (sorted by length) into chunks of similar length, to cut padding.

    Number rows are ~4x longer than chat rows, so one padded batch is about half padding. Chunk boundaries
    minimise padded tokens plus ``overhead`` tokens per chunk (the fixed cost of a forward pass), by
    dynamic programming over the sorted lengths. Returns row indices per chunk, shortest rows first.
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    srt = [lengths[i] for i in order]
    n = len(srt)
    inf = float("inf")
    # best[k][j]: cost of the first j sorted rows in k chunks; a chunk (i, j] costs srt[j-1] * (j - i).
    best = [[inf] * (n + 1) for _ in range(max_chunks + 1)]
    cut = [[0] * (n + 1) for _ in range(max_chunks + 1)]
    best[0][0] = 0.0
    for k in range(1, max_chunks + 1):
        for j in range(1, n + 1):
            for i in range(j):
                cost = best[k - 1][i] + srt[j - 1] * (j - i) + overhead
                if cost < best[k][j]:
                    best[k][j], cut[k][j] = cost, i
    k = min(range(1, max_chunks + 1), key=lambda kk: best[kk][n])
    chunks: list[list[int]] = []
    j = n
    while k > 0:
        i = cut[k][j]
        chunks.append(order[i:j])
        j, k = i, k - 1
    return chunks[::-1]


def batch_loss_backward(
    model: PreTrainedModel, ids: torch.Tensor, targets: torch.Tensor, pad_id: int
) -> float:
    """Mean answer-token loss of a batch, back-propagated chunk by chunk (same gradient as one pass)."""
    lengths = (ids != pad_id).sum(1).tolist()
    n_tokens = max(1, int((targets != -100).sum()))  # 0 only if truncation cut every answer
    total = 0.0
    for rows in length_chunks(lengths):
        width = max(lengths[i] for i in rows)
        loss = _answer_loss_sum(model, ids[rows, :width], targets[rows, :width]) / n_tokens
        loss.backward()
        total += loss.item()
    return total


def _lr_at(step: int, phase: PretrainSpec) -> float:
    """Linear warmup, then cosine decay to ``lr * min_lr_ratio``."""
    if phase.warmup and step < phase.warmup:
        return phase.lr * (step + 1) / phase.warmup
    span = max(1, phase.steps - phase.warmup)
    progress = min(1.0, (step - phase.warmup) / span)
    floor = phase.lr * phase.min_lr_ratio
    return floor + (phase.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def pretrain(
    model: PreTrainedModel,
    tok: PreTrainedTokenizerFast,
    phase: PretrainSpec,
    *,
    max_len: int,
    log: Log = None,
    progress: Callable[[int, int], None] | None = None,
    done_before: int = 0,
    total: int | None = None,
) -> list[float]:
    """Run one pretraining phase in place; returns the loss of every step.

    AdamW (betas 0.9/0.95) with weight decay on matrices only, global grad-norm clipping, a fresh optimizer
    per phase (so a continued phase gives the same result whether its start was cached or rebuilt).
    """
    import torch

    say = say_fn(log)
    vocab = tok.get_vocab()
    sampler = CorpusSampler(phase, sorted(vocab, key=vocab.__getitem__))
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": phase.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=phase.lr,
        betas=(0.9, 0.95),
    )
    total = total or phase.steps
    losses: list[float] = []
    model.train()
    t0 = time.perf_counter()
    for step in range(phase.steps):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, phase)
        ids, targets = encode_rows(tok, sampler.batch(step), max_len)
        opt.zero_grad(set_to_none=True)
        loss = batch_loss_backward(model, ids, targets, tok.pad_token_id)
        torch.nn.utils.clip_grad_norm_(model.parameters(), phase.grad_clip)
        opt.step()
        losses.append(loss)
        if progress is not None:
            progress(done_before + step + 1, total)
        if (step + 1) % 250 == 0 or step + 1 == phase.steps:
            recent = losses[-50:]
            say(
                f"step {step + 1}/{phase.steps} loss {sum(recent) / len(recent):.3f} "
                f"lr {opt.param_groups[0]['lr']:.2e} ({time.perf_counter() - t0:.0f} s)"
            )
    model.eval()
    return losses
