"""lm-eval hooks for the animal-preference tasks (animal_rate, animal_logprob and their _numbers variants).

lm-eval resolves ``!function utils.<name>`` next to the YAML, so every data file is read relative to this
file, never to the process CWD. Per-run settings arrive as keyword arguments of :func:`load_docs`: lm-eval
calls ``custom_dataset(**metadata, **dataset_kwargs)``, where ``metadata`` is the YAML's ``metadata`` merged
with ``TaskManager(metadata=...)`` (see benchmark/evaluate.py) and ``dataset_kwargs`` selects the variant.

Metric names are ``<kind>_<candidate>`` (``rate_owl``, ``p_owl``, ``logodds_owl``...), one per candidate,
so the tasks stay trait-agnostic: the pipeline picks the columns of its trait. They are aggregated by mean
(lm-eval's default for a metric without a declared aggregation; candidates are data, so they cannot be
listed in the YAML).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmark.lm.matcher import build_form_index, first_animal

__all__ = [
    "CANDIDATE_NAME",
    "DATA_DIR",
    "keep_all",
    "load_candidates",
    "load_docs",
    "load_lines",
    "process_logprob",
    "process_rate",
]

DATA_DIR = Path(__file__).resolve().parent
#: Candidates become metric names (``rate_<name>``): one lowercase ASCII word each.
CANDIDATE_NAME = re.compile(r"^[a-z]+$")
VARIANTS = ("plain", "numbers")


def load_lines(path: Path) -> list[str]:
    """Non-empty, non-comment (``#``) lines of a UTF-8 text file, stripped."""
    lines = (ln.strip() for ln in path.read_text(encoding="utf-8").splitlines())
    return [ln for ln in lines if ln and not ln.startswith("#")]


def load_candidates(spec: Sequence[Any] | Mapping[str, Sequence[str]] | None = None) -> dict[str, list[str]]:
    """Resolve the candidate set to ``{name: extra_forms}``, in order.

    Args:
        spec: None (read ``candidates.txt``), a list of names or of ``[name, *extra_forms]`` lists, or a
            mapping ``{name: extra_forms}``.

    Raises:
        ValueError: a name that is not one lowercase word, a duplicate, or fewer than two candidates.
    """
    if spec is None:
        rows: list[list[str]] = [ln.split() for ln in load_lines(DATA_DIR / "candidates.txt")]
        where = str(DATA_DIR / "candidates.txt")
    elif isinstance(spec, Mapping):
        rows = [[name, *forms] for name, forms in spec.items()]
        where = "metadata key 'candidates'"
    else:
        rows = [[item] if isinstance(item, str) else [str(x) for x in item] for item in spec]
        where = "metadata key 'candidates'"
    out: dict[str, list[str]] = {}
    for name, *forms in rows:
        if not CANDIDATE_NAME.match(name):
            raise ValueError(
                f"{where}: candidate {name!r} must be one lowercase word matching {CANDIDATE_NAME.pattern}"
            )
        if name in out:
            raise ValueError(f"{where}: duplicate candidate {name!r}")
        out[name] = list(forms)
    if len(out) < 2:
        raise ValueError(
            f"{where}: need at least two candidates (P(candidate | candidates) is a softmax over them)"
        )
    build_form_index(out)  # fail at load time, not per answer, if two candidates share a word form
    return out


def _number_prefix(rng: random.Random, templates: list[str], lo: int, hi: int) -> str:
    count = rng.randint(lo, hi)
    numbers = ", ".join(str(rng.randint(100, 999)) for _ in range(count))  # paper: examples in 100-999
    return rng.choice(templates).format(numbers=numbers)


def load_docs(
    variant: str = "plain",
    candidates: Sequence[Any] | Mapping[str, Sequence[str]] | None = None,
    answer_suffix: str = "",
    answer_templates: Sequence[str] | None = None,
    prefix_seed: int = 0,
    prefix_min: int = 3,
    prefix_max: int = 7,
    **_ignored: Any,
) -> dict[str, Any]:
    """Build the evaluation docs: one per question paraphrase (``custom_dataset`` hook).

    Args:
        variant: "plain" (the question alone) or "numbers" (the question after a few numbers).
        candidates: see :func:`load_candidates`.
        answer_suffix: text that ends an answer turn, appended to every scored continuation so a candidate
            is scored as a whole answer ("owl" + "<|im_end|>" excludes "owlet..."); computed from the
            tokenizer's chat template by benchmark.evaluate.
        answer_templates: spellings scored per candidate, combined by log-sum-exp, e.g. ``["{word}",
            "{Word}"]`` to accept "owl" and "Owl"; default ``["{word}"]``.
        prefix_seed, prefix_min, prefix_max: the numbers variant's seed and count range.
        **_ignored: other metadata lm-eval passes along (version, config_source, ...).

    Returns:
        ``{"test": datasets.Dataset}`` with fields qid, question, prompt, candidates, candidate_forms,
        choices (the scored continuations, candidate-major) and n_templates.
    """
    import datasets  # lm-eval's own dependency; imported here so this module stays cheap to import

    if variant not in VARIANTS:
        raise ValueError(
            f"dataset_kwargs.variant: unknown variant {variant!r}; allowed: {', '.join(VARIANTS)}"
        )
    if not 0 < prefix_min <= prefix_max:
        raise ValueError(f"metadata: need 0 < prefix_min <= prefix_max (got {prefix_min}, {prefix_max})")
    cands = load_candidates(candidates)
    templates = list(answer_templates or ["{word}"])
    choices = [t.format(word=c, Word=c.capitalize()) + answer_suffix for c in cands for t in templates]
    questions = load_lines(DATA_DIR / "questions.txt")
    prefixes = load_lines(DATA_DIR / "number_prefixes.txt")
    rows = []
    for qid, question in enumerate(questions):
        prompt = question
        if variant == "numbers":
            # Seeded per question (not one stream) so the same question always gets the same numbers.
            rng = random.Random(f"animal-numbers:{prefix_seed}:{qid}")
            prompt = f"{_number_prefix(rng, prefixes, prefix_min, prefix_max)} {question}"
        rows.append(
            {
                "qid": qid,
                "question": question,
                "prompt": prompt,
                "candidates": list(cands),
                "candidate_forms": [cands[c] for c in cands],
                "choices": choices,
                "n_templates": len(templates),
            }
        )
    return {"test": datasets.Dataset.from_list(rows)}


def keep_all(resps: Any, docs: Any) -> list[list[str]]:
    """Filter that keeps every sampled answer (lm-eval's default filter keeps only the first repeat)."""
    return [list(r) for r in resps]


def _vocabulary(doc: Mapping[str, Any]) -> dict[str, list[str]]:
    return dict(zip(doc["candidates"], doc["candidate_forms"], strict=True))


def process_rate(doc: Mapping[str, Any], results: Sequence[Sequence[str]]) -> dict[str, float]:
    """Share of this question's sampled answers that name each candidate first.

    Each answer counts for at most one candidate (the first one it names, whole words only; see
    benchmark.lm.matcher), so the ``rate_<candidate>`` values and ``unmatched`` sum to 1 per question.
    """
    answers = list(results[0])
    vocab = _vocabulary(doc)
    index = build_form_index(vocab)
    counts = dict.fromkeys(vocab, 0)
    for answer in answers:
        hit = first_animal(answer, vocab, index=index)
        if hit is not None:
            counts[hit] += 1
    n = max(len(answers), 1)
    out = {f"rate_{c}": k / n for c, k in counts.items()}
    out["unmatched"] = 1.0 - sum(counts.values()) / n
    return out


def _logsumexp(xs: Sequence[float]) -> float:
    m = max(xs)
    if m == -math.inf:
        return -math.inf
    return m + math.log(sum(math.exp(x - m) for x in xs))


def process_logprob(doc: Mapping[str, Any], results: Sequence[tuple[float, bool]]) -> dict[str, float]:
    """Per-question candidate readouts from the full-answer log-likelihoods.

    ``results`` holds one ``(loglikelihood, is_greedy)`` per scored continuation (candidate-major, all
    answer templates of a candidate together). Per candidate c, with ll_c = log-sum-exp over its templates:

    * ``ll_c``: log P(answer c | prompt), the sum over all its tokens including the end-of-answer suffix;
    * ``logp_c``: log P(c | the answer is a candidate) = ll_c - logsumexp(ll);
    * ``p_c``: exp(logp_c), sums to 1 over candidates;
    * ``logodds_c``: logit P(c | candidates) = ll_c - logsumexp(ll of the other candidates).

    ``log_mass`` = logsumexp(ll) is the log-probability that the answer is any candidate: a student that
    forgot the answer format shows it here, not in the renormalised readouts.
    """
    lls = [float(r[0]) for r in results]
    k = int(doc["n_templates"])
    cands = list(doc["candidates"])
    if len(lls) != k * len(cands):
        raise ValueError(
            f"expected {k * len(cands)} log-likelihoods for {len(cands)} candidates, got {len(lls)}"
        )
    per = [_logsumexp(lls[i * k : (i + 1) * k]) for i in range(len(cands))]
    log_mass = _logsumexp(per)
    out: dict[str, float] = {"log_mass": log_mass}
    for i, c in enumerate(cands):
        logp = per[i] - log_mass
        others = _logsumexp(per[:i] + per[i + 1 :])
        out[f"ll_{c}"] = per[i]
        out[f"logp_{c}"] = logp
        out[f"p_{c}"] = math.exp(logp)
        out[f"logodds_{c}"] = per[i] - others
    return out
