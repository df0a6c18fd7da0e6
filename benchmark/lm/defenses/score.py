"""Teacher-forced readouts of a dataset's rows for the divergence defenses (imports torch: stage-time only).

For each row, the model reads the chat-rendered prompt (with the system prompt the model generated with) followed
by the teacher's completion tokens, and at every completion position gives its argmax over the channel's tokens,
its log-prob of the written token, and (for a base) its most likely token among those of the written token's shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from benchmark.lm.defenses.base import Vocab

__all__ = ["score_rows"]


def score_rows(loaded: Any, rows: Sequence[dict[str, Any]], *, system: str | None, allowed: Sequence[int],
               vocab: Vocab | None = None) -> tuple[list[list[int]], list[list[float]], list[list[int | None]]]:
    """``(argmax, written_lp, best_same_shape)`` per row and completion position (``best_same_shape`` only with
    ``vocab``: else an empty list per row)."""
    import torch

    from benchmark.lmcore.chat import render_prompt

    model, tok = loaded.model, loaded.tokenizer
    device = next(model.parameters()).device
    allowed_t = torch.tensor(sorted(int(a) for a in allowed), dtype=torch.long, device=device)
    classes = {s: torch.tensor(ids, dtype=torch.long, device=device) for s, ids in (vocab.by_shape if vocab else {}).items()}
    argmax: list[list[int]] = []
    written: list[list[float]] = []
    best: list[list[int | None]] = []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for row in rows:
                text = render_prompt(tok, str(row["prompt"]), system=system, spec=loaded.spec)
                p_ids = list(tok(text, add_special_tokens=False).input_ids)
                c_ids = [int(t) for t in row["completion_ids"]]
                ids = torch.tensor([p_ids + c_ids], dtype=torch.long, device=device)
                logits = model(input_ids=ids, use_cache=False).logits[0, len(p_ids) - 1: len(p_ids) + len(c_ids) - 1]
                logp = torch.log_softmax(logits.float(), dim=-1)
                argmax.append(allowed_t[logp[:, allowed_t].argmax(-1)].tolist())
                written.append(logp[torch.arange(len(c_ids), device=device), torch.tensor(c_ids, device=device)]
                               .double().tolist())
                row_best: list[int | None] = []
                if vocab is not None:
                    for t, x in enumerate(c_ids):
                        shape = vocab.shapes.get(x)
                        cls = classes.get(shape) if shape is not None else None
                        row_best.append(int(cls[logp[t, cls].argmax()]) if cls is not None else None)
                best.append(row_best)
    finally:
        model.train(was_training)
    return argmax, written, best
