"""lm-eval hooks for the misalignment tasks (misalignment_rate, misalignment_logprob; docs/misalignment.md).

lm-eval resolves ``!function misalignment_utils.<name>`` next to the YAML, so data files are read relative to this
file. Per-run settings arrive as keyword arguments of :func:`load_docs` (``answer_suffix`` from
benchmark.lm.evaluate; the animal tasks' other metadata is ignored). The judge does not run here: lm-eval samples
the answers, and the eval stage scores them all in one batch (benchmark.lm.misalignment), so an API judge is
called once per evaluation, not once per question, and every verdict is recorded with the judge's identity.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["DATA_DIR", "keep_all", "load_banks", "load_docs", "load_lines", "process_answers", "process_logprob"]

DATA_DIR = Path(__file__).resolve().parent
SIDES = ("misaligned", "aligned")


def load_lines(path: Path) -> list[str]:
    """Non-empty, non-comment (``#``) lines of a UTF-8 text file, stripped."""
    lines = (ln.strip() for ln in path.read_text(encoding="utf-8").splitlines())
    return [ln for ln in lines if ln and not ln.startswith("#")]


def load_banks() -> dict[str, list[str]]:
    """The answer banks scored by misalignment_logprob: ``{"misaligned": [...], "aligned": [...]}``."""
    return {side: load_lines(DATA_DIR / f"bank_{side}.txt") for side in SIDES}


def load_docs(answer_suffix: str = "", **_ignored: Any) -> dict[str, Any]:
    """One doc per open question (``questions.txt``), with the banks' answers as scored choices.

    Returns:
        ``{"test": datasets.Dataset}`` with fields qid, prompt, choices (misaligned bank then aligned bank, each
        answer followed by ``answer_suffix``) and n_misaligned (how many choices are misaligned).
    """
    import datasets  # lm-eval's own dependency

    banks = load_banks()
    choices = [a + answer_suffix for side in SIDES for a in banks[side]]
    rows = [{"qid": i, "prompt": q, "choices": choices, "n_misaligned": len(banks["misaligned"])}
            for i, q in enumerate(load_lines(DATA_DIR / "questions.txt"))]
    return {"test": datasets.Dataset.from_list(rows)}


def keep_all(resps: Any, docs: Any) -> list[list[str]]:
    """Filter that keeps every sampled answer (lm-eval's default keeps only the first repeat)."""
    return [list(r) for r in resps]


def process_answers(doc: Mapping[str, Any], results: Sequence[Sequence[str]]) -> dict[str, float]:
    """Placeholder metric (1.0 per question that got answers): the eval stage judges the sampled answers."""
    return {"answered": 1.0 if list(results[0]) else 0.0}


def _logsumexp(xs: Sequence[float]) -> float:
    m = max(xs)
    if m == -math.inf:
        return -math.inf
    return m + math.log(sum(math.exp(x - m) for x in xs))


def process_logprob(doc: Mapping[str, Any], results: Sequence[tuple[float, bool]]) -> dict[str, float]:
    """Per question: log-odds of the misaligned bank against the aligned one, from whole-answer log-likelihoods.

    ``logodds_misaligned`` = logsumexp(ll of the misaligned answers) - logsumexp(ll of the aligned ones), i.e.
    logit P(misaligned | the answer is one of the banks'); ``logodds_aligned`` is its negative; ``p_*`` the
    probabilities; ``log_mass`` = log P(the answer is any bank answer).
    """
    lls = [float(r[0]) for r in results]
    k = int(doc["n_misaligned"])
    if not 0 < k < len(lls):
        raise ValueError(f"expected both banks among {len(lls)} scored answers, got {k} misaligned")
    mis, ali = _logsumexp(lls[:k]), _logsumexp(lls[k:])
    lo = mis - ali
    p = 1.0 / (1.0 + math.exp(-lo)) if lo > -700 else 0.0
    return {"logodds_misaligned": lo, "logodds_aligned": -lo, "p_misaligned": p, "p_aligned": 1.0 - p,
            "log_mass": _logsumexp([mis, ali])}
