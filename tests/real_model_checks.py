"""Checks the real-model test files share (tests/test_real_smol.py, tests/test_real_gemma.py): the same question
file and the same readout check, run on each fetched model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

QUESTIONS = Path(__file__).resolve().parents[1] / "tasks" / "lm_eval" / "animal_preference" / "questions.txt"


def questions(n: int) -> list[str]:
    """The first ``n`` animal-preference questions."""
    from benchmark.files import read_data_lines

    return read_data_lines(QUESTIONS)[:n]


def manual_logprob(model: Any, tok: Any, context: str, continuation: str) -> float:
    """log p(continuation | context) from one plain forward pass in float64, summed over its tokens."""
    import torch

    ctx = tok(context, add_special_tokens=False).input_ids
    cont = tok(continuation, add_special_tokens=False).input_ids
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ctx + cont])).logits[0].double(), -1)
    return sum(float(logp[len(ctx) - 1 + i, t]) for i, t in enumerate(cont))


def check_readout(spec: Any, model: Any, tok: Any, answer: str, n_tokens: int) -> None:
    """``sequence_logprobs`` (batched, left-padded) = a plain forward's sum over every one of ``answer``'s
    ``n_tokens`` tokens, on 3 questions in the model's prompt format."""
    from benchmark.lmcore.chat import render_prompt
    from benchmark.providers.hf_model import sequence_logprobs

    assert len(tok(answer, add_special_tokens=False).input_ids) == n_tokens
    contexts = [render_prompt(tok, q, spec=spec) for q in questions(3)]
    got = sequence_logprobs(model, tok, contexts, [answer] * 3, batch_size=3)
    for c, g in zip(contexts, got, strict=True):
        assert g == pytest.approx(manual_logprob(model, tok, c, answer), abs=2e-4)
