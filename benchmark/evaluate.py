"""Trait evaluation of an in-memory Hugging Face model through lm-eval (tasks in ``tasks/lm_eval/``).

:func:`evaluate_lm` runs the animal-preference tasks on a model object (plain or ``PeftModel``) with lm-eval
as the engine and returns one flat, JSON-able dict per model:

* ``animal_logprob`` -- every candidate scored as a whole answer (all its tokens plus the end-of-turn
  marker that :func:`answer_suffix` reads off the chat template), renormalised over the candidate set;
* ``animal_rate`` -- sampled answers at T=1, each mapped to the first candidate it names
  (:mod:`benchmark.matcher`, whole words only);
* ``*_numbers`` -- the same with a few numbers before each question (the paper's cross-model variant).

Cache safety (STYLE.md item 3): lm-eval's response cache is not keyed by the adapter (lm-eval #2715, #4063),
so it is never used here (``use_cache`` and ``cache_requests`` stay off); every call runs the model.
``model_key`` is only recorded. Callers must still prove the adapter is loaded (its logits differ from the
base's) with ``benchmark.lm.backend.logit_change`` before trusting a student's numbers.

Per-call cost: the ``TaskManager`` and the task objects (docs already built) are created once per process
and per distinct task settings, then reused; each call builds only the requests (the prompts depend on the
tokenizer's chat template) and runs the model. Calls are serialised by a lock because reused task objects
hold per-call state; run evaluations in parallel with processes, not threads. Set
``torch.set_num_threads(1)`` in workers on shared CPUs (stack.md / prototypes.md: 1 thread per process is
faster under load).

Heavy imports (torch, lm-eval) happen inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import random
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmark.hashing import content_hash, short_id

__all__ = [
    "DEFAULT_TASKS",
    "EVAL_VERSION",
    "RESULT_KEYS",
    "TASKS_DIR",
    "answer_suffix",
    "clear_task_cache",
    "evaluate_lm",
    "logit",
    "rate_block",
    "tv_distance",
]

#: Bump when the meaning of a returned number changes (scoring rule, suffix rule, aggregation).
EVAL_VERSION = 1
#: The task YAMLs (include_path for lm-eval); a source checkout's ``tasks/lm_eval``.
TASKS_DIR = Path(__file__).resolve().parents[1] / "tasks" / "lm_eval"
DEFAULT_TASKS: tuple[str, ...] = ("animal_logprob", "animal_rate")
#: task name -> key of its block in the returned dict.
RESULT_KEYS: dict[str, str] = {
    "animal_logprob": "logprob",
    "animal_rate": "rate",
    "animal_logprob_numbers": "logprob_numbers",
    "animal_rate_numbers": "rate_numbers",
}
_SENTINEL = "zqxjsentinelanswer"  # a word no tokenizer/template rewrites, to locate the answer in a chat
_UNMATCHED_EXAMPLES = 10  # raw unmatched answers kept per rate task, to audit the matcher
_LOCK = threading.Lock()
_log = logging.getLogger(__name__)
# Warnings lm-eval logs on every call for exactly the usage this module chooses, dropped so that 200
# evaluations do not bury real warnings: per-candidate metrics (rate_owl, p_owl, ...) cannot be declared in
# the YAML (candidates are data), so lm-eval aggregates them with its default, mean, and says so per metric;
# and HFLM warns that a model object (not a hub name) was passed.
_EXPECTED_WARNINGS: dict[str, re.Pattern[str]] = {
    "lm_eval.evaluator_utils": re.compile(
        r"^\[animal_\w+\] No aggregation function defined for metric (rate|p|logp|logodds|ll)_"
    ),
    "lm_eval.models.huggingface": re.compile(
        r"^(`pretrained` model kwarg is not of type `str`"
        r"|Passed an already-initialized model through `pretrained`)"
    ),
}


class _DropExpectedWarnings(logging.Filter):
    def __init__(self, pattern: re.Pattern[str]) -> None:
        super().__init__()
        self.pattern = pattern

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.match(record.getMessage())


def _install_log_filters() -> None:
    for name, pattern in _EXPECTED_WARNINGS.items():
        log = logging.getLogger(name)
        if not any(isinstance(f, _DropExpectedWarnings) for f in log.filters):
            log.addFilter(_DropExpectedWarnings(pattern))


def logit(p: float) -> float:
    """log(p / (1 - p)), with ±inf at 0 and 1."""
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    return math.log(p) - math.log1p(-p)


def tv_distance(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    """Total-variation distance ½·Σ|p(x) − q(x)| between two distributions over candidates.

    Keys missing from one side count as probability 0 there, so distributions over different candidate
    sets compare fairly (the extra mass shows up as distance). Neither side is renormalised: pass
    distributions (e.g. ``result["logprob"]["p"]``; for sampled rates include ``rate_unmatched`` as its
    own outcome if the unmatched share should count).

    Raises:
        ValueError: on a negative probability.
    """
    # Sorted: a set's order follows the per-process hash seed, and float addition is not associative, so an
    # unsorted sum differs in the last digit between runs (found by comparing two runs' tidy tables).
    keys = sorted(set(p) | set(q))
    if any(v < 0 for v in (*p.values(), *q.values())):
        raise ValueError("tv_distance: probabilities must be non-negative")
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in keys)


def answer_suffix(tokenizer: Any, apply_chat_template: bool = True) -> str:
    """The text that ends an assistant answer: appended to every scored candidate.

    With a chat template it is what the template writes right after the assistant's content (trailing
    whitespace dropped): ``"<|im_end|>"`` for ChatML, ``"<|eot_id|>"`` for Llama 3, read from the
    template, so no model family is special-cased. Without a chat template, or when the template writes
    nothing after the answer, it is the tokenizer's EOS token (or "" if there is none).
    """
    if apply_chat_template and getattr(tokenizer, "chat_template", None):
        chat = [{"role": "user", "content": "question"}, {"role": "assistant", "content": _SENTINEL}]
        text = tokenizer.apply_chat_template(chat, tokenize=False)
        if isinstance(text, str) and _SENTINEL in text:
            tail = text[text.rindex(_SENTINEL) + len(_SENTINEL) :].rstrip()
            if tail:
                return tail
    return getattr(tokenizer, "eos_token", None) or ""


@functools.cache
def _task_manager(tasks_dir: str, metadata_json: str) -> Any:
    # One TaskManager per (tasks dir, metadata): indexing only our folder takes ~10 ms (never the 14k
    # built-in tasks: include_defaults=False), and metadata reaches utils.load_docs as keyword arguments.
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=tasks_dir, include_defaults=False, metadata=json.loads(metadata_json))


@functools.cache
def _load_task(tasks_dir: str, metadata_json: str, name: str) -> Any:
    # Task objects are reused across calls: building docs and the config once saves ~30-100 ms per task and
    # call. evaluate() rebuilds every request (and so every prompt) from scratch on each call.
    tm = _task_manager(tasks_dir, metadata_json)
    if name not in tm.all_tasks:
        from benchmark.errors import unknown_name

        raise unknown_name("evaluation task", name, tm.all_tasks, where=f"evaluate_lm tasks ({tasks_dir})")
    task = tm.load([name])["tasks"][name]
    if task.get_config("num_fewshot") is None:
        task.set_config(key="num_fewshot", value=0)
    return task


def clear_task_cache() -> None:
    """Forget cached TaskManagers and task objects (after editing task files in a long-lived process)."""
    _load_task.cache_clear()
    _task_manager.cache_clear()


def _candidate_metadata(candidates: Sequence[str] | Mapping[str, Iterable[str]] | None) -> Any:
    if candidates is None:
        return None
    if isinstance(candidates, Mapping):
        # [name, *forms] rows, not a mapping: the metadata is serialised with sorted keys, and candidate order
        # is part of the result's layout.
        return [[str(k), *(str(f) for f in v)] for k, v in candidates.items()]
    if isinstance(candidates, str):
        raise TypeError("candidates must be a list of names or a {name: forms} mapping, not a string")
    return [str(c) for c in candidates]


def _docs_hash(task: Any) -> str:
    cfg = task.config
    return short_id(
        {
            "docs": [dict(d) for d in task.eval_docs],
            "output_type": cfg.output_type,
            "generation_kwargs": cfg.generation_kwargs,
            "target_delimiter": cfg.target_delimiter,
            "version": task.VERSION,
        }
    )


def _files_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(str(path.relative_to(folder)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _mean_metrics(metrics: Mapping[str, Any], prefix: str, candidates: Sequence[str]) -> dict[str, float]:
    return {c: float(metrics[f"{prefix}_{c},{_filter_key(metrics)}"]) for c in candidates}


def _filter_key(metrics: Mapping[str, Any]) -> str:
    # lm-eval names each metric "<metric>,<filter>": "none" by default, "all" for our keep-all filter.
    keys = {k.split(",", 1)[1] for k in metrics if "," in k and not k.endswith("_stderr")}
    if len(keys) != 1:
        raise RuntimeError(f"expected one filter in lm-eval results, got {sorted(keys)}")
    return keys.pop()


def _logprob_block(
    metrics: Mapping[str, Any], samples: list[dict[str, Any]], cands: list[str]
) -> dict[str, Any]:
    fk = _filter_key(metrics)
    per_prompt = {c: [float(s[f"logp_{c}"]) for s in samples] for c in cands}
    return {
        "p": _mean_metrics(metrics, "p", cands),
        "mean_logp": _mean_metrics(metrics, "logp", cands),
        "logodds": _mean_metrics(metrics, "logodds", cands),
        "ll": _mean_metrics(metrics, "ll", cands),
        "log_mass": float(metrics[f"log_mass,{fk}"]),
        "per_prompt_logp": per_prompt,
    }


def _token_collisions(tokenizer: Any, doc: Mapping[str, Any]) -> list[list[str]]:
    # Candidates whose scored answers tokenize identically (typically several unknown words -> "<unk>" in a
    # word-level vocabulary) get identical log-probs: their readouts cannot tell them apart.
    k = int(doc["n_templates"])
    seen: dict[tuple[tuple[int, ...], ...], list[str]] = {}
    for i, cand in enumerate(doc["candidates"]):
        ids = tuple(
            tuple(tokenizer(choice, add_special_tokens=False)["input_ids"])
            for choice in doc["choices"][i * k : (i + 1) * k]
        )
        seen.setdefault(ids, []).append(cand)
    return [group for group in seen.values() if len(group) > 1]


def rate_block(key: str, metrics: Mapping[str, Any], samples: list[dict[str, Any]],
               cand_forms: Mapping[str, list[str]]) -> dict[str, Any]:
    """A sampled-rate task's entries of the result dict (shared by HF and API evaluation).

    ``{key: {candidate: share}, key_unmatched: share naming no candidate, key_unmatched_examples: [answers]}``.
    """
    fk = _filter_key(metrics)
    return {
        key: _mean_metrics(metrics, "rate", list(cand_forms)),
        f"{key}_unmatched": float(metrics[f"unmatched,{fk}"]),
        f"{key}_unmatched_examples": _unmatched_examples(samples, cand_forms),
    }


def _unmatched_examples(samples: list[dict[str, Any]], cands: Mapping[str, list[str]]) -> list[str]:
    from benchmark.matcher import build_form_index, first_animal

    index = build_form_index(cands)
    out: list[str] = []
    for s in samples:
        for answer in s["filtered_resps"][0]:
            if first_animal(answer, cands, index=index) is None:
                out.append(answer)
                if len(out) >= _UNMATCHED_EXAMPLES:
                    return out
    return out


def evaluate_lm(
    model: Any,
    tokenizer: Any,
    *,
    model_key: str,
    tasks: Sequence[str] = DEFAULT_TASKS,
    candidates: Sequence[str] | Mapping[str, Iterable[str]] | None = None,
    n_samples: int,
    seed: int,
    batch_size: int = 64,
    system: str | None = None,
    apply_chat_template: bool = True,
    limit: int | None = None,
    answer_templates: Sequence[str] = ("{word}",),
    prefix_seed: int = 0,
    tasks_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate one model's animal preference with lm-eval and return a flat JSON-able dict.

    The caller must check beforehand that an adapter is really active (``benchmark.lm.backend.logit_change``):
    this function cannot tell a student from its base. No response cache is used, so two models never share
    answers whatever their ``model_key``.

    Args:
        model: a causal LM object (``PreTrainedModel`` or ``PeftModel``) on its device; its train/eval
            mode is restored afterwards.
        tokenizer: its tokenizer, with the chat template the model was trained with.
        model_key: the full model identity (base + adapter hash), recorded in the result.
        tasks: lm-eval task names from ``tasks_dir`` (see :data:`RESULT_KEYS`).
        candidates: candidate animals: names, or ``{name: extra_forms}`` for irregular plurals (a trait's
            ``surface_forms``). Default: ``tasks/lm_eval/animal_preference/candidates.txt``.
        n_samples: sampled answers per question for the rate tasks (paper: 100).
        seed: seeds Python, NumPy and torch for the call (sampling); global RNG states are restored after.
        batch_size: lm-eval batch size (throughput only; recorded, not part of the result's meaning).
        system: system prompt for every question (None: none, unless the chat template injects its own).
        apply_chat_template: render questions with the tokenizer's chat template (recommended: the student's
            training format).
        limit: evaluate only the first ``limit`` questions (tests and smoke runs).
        answer_templates: spellings scored per candidate and combined by log-sum-exp, e.g.
            ``("{word}", "{Word}")`` to accept "owl" and "Owl".
        prefix_seed: seed of the numbers variant's prefixes.
        tasks_dir: lm-eval include_path (default :data:`TASKS_DIR`).

    Returns:
        ``{"model_key", "eval_version", "candidates": [...], "n_prompts", "n_samples",
        "logprob": {"p": {cand: mean P(cand | cands)}, "mean_logp": {cand: mean log P(cand | cands)},
        "logodds": {cand: mean logit P(cand | cands)}, "ll": {cand: mean log P(answer cand | prompt)},
        "log_mass": mean log P(answer is a candidate), "per_prompt_logp": {cand: [per question]}},
        "rate": {cand: share of sampled answers naming cand first}, "rate_unmatched": share naming none,
        "rate_unmatched_examples": [a few raw answers], "token_collisions": [[cands scored as the same
        tokens]], "lm_eval_version", "task_hashes": {task: id of its docs + config}, "tasks_digest",
        "config": {...}}``. Blocks appear only for the tasks run; the numbers variants use the keys
        ``logprob_numbers`` / ``rate_numbers`` (and ``rate_numbers_unmatched``...). ``p`` sums to 1 over
        the candidates; ``rate`` plus ``rate_unmatched`` sums to 1. For the total-variation readout compare
        ``p`` (or ``rate``) with the untrained base's via :func:`tv_distance`.

    Raises:
        benchmark.errors.UserError: an unknown task name.
        ValueError: bad candidates or n_samples < 1.
    """
    import lm_eval
    import numpy as np
    import torch
    from lm_eval.evaluator import evaluate
    from lm_eval.models.huggingface import HFLM

    if not model_key:
        raise ValueError("evaluate_lm: model_key must name the model and its adapter")
    if n_samples < 1:
        raise ValueError(f"evaluate_lm: n_samples must be >= 1 (got {n_samples})")
    tasks = list(dict.fromkeys(tasks))
    unknown = [t for t in tasks if t not in RESULT_KEYS]
    if unknown:
        from benchmark.errors import unknown_name

        raise unknown_name("evaluation task", unknown[0], RESULT_KEYS, where="evaluate_lm tasks")
    folder = Path(tasks_dir) if tasks_dir is not None else TASKS_DIR
    suffix = answer_suffix(tokenizer, apply_chat_template)
    metadata = {
        "candidates": _candidate_metadata(candidates),
        "answer_suffix": suffix,
        "answer_templates": list(answer_templates),
        "prefix_seed": prefix_seed,
    }
    meta_json = json.dumps(metadata, sort_keys=True)
    _install_log_filters()

    with _LOCK:
        loaded = {name: _load_task(str(folder), meta_json, name) for name in tasks}
        for task in loaded.values():
            # repeats only matters for generate_until; lm-eval reads it when building requests.
            task.set_config(key="repeats", value=n_samples if task.OUTPUT_TYPE == "generate_until" else 1)
            task.set_fewshot_seed(seed=seed)
        doc0 = loaded[tasks[0]].eval_docs[0]
        cand_forms = dict(zip(doc0["candidates"], doc0["candidate_forms"], strict=True))
        cands = list(cand_forms)

        was_training = bool(getattr(model, "training", False))
        py_state, np_state = random.getstate(), np.random.get_state()
        devices = (
            [model.device.index or 0]
            if getattr(model, "device", None) and model.device.type == "cuda"
            else []
        )
        try:
            with torch.random.fork_rng(devices=devices):
                random.seed(seed)
                np.random.seed(seed)
                torch.manual_seed(seed)
                lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
                out = evaluate(
                    lm=lm,
                    task_dict={"tasks": loaded, "groups": {}, "group_map": {}},
                    limit=limit,
                    cache_requests=False,  # request cache is keyed by task name, not by model
                    bootstrap_iters=0,  # no stderr: the pipeline does its own statistics over prompts/seeds
                    log_samples=True,
                    system_instruction=system,
                    apply_chat_template=apply_chat_template,
                    fewshot_as_multiturn=False,
                )
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
            model.train(was_training)
        if out is None:  # only on non-zero ranks of a distributed run, which this function does not start
            raise RuntimeError("lm-eval returned no results (non-zero rank)")
        task_hashes = {name: _docs_hash(task) for name, task in loaded.items()}

    result: dict[str, Any] = {
        "model_key": model_key,
        "eval_version": EVAL_VERSION,
        "candidates": cands,
        "n_prompts": None,
        "n_samples": n_samples,
    }
    n_prompts: set[int] = set()
    for name in tasks:
        metrics = out["results"][name]
        samples = sorted(out["samples"][name], key=lambda s: s["doc_id"])
        n_prompts.add(len(samples))
        key = RESULT_KEYS[name]
        if loaded[name].OUTPUT_TYPE == "multiple_choice":
            result[key] = _logprob_block(metrics, samples, cands)
        else:
            result.update(rate_block(key, metrics, samples, cand_forms))
    result["n_prompts"] = n_prompts.pop() if len(n_prompts) == 1 else sorted(n_prompts)
    result["token_collisions"] = _token_collisions(tokenizer, doc0)
    if result["token_collisions"]:
        _log.warning(
            "evaluate_lm(%s): candidates tokenize identically, so their log-prob readouts are tied: %s",
            model_key,
            result["token_collisions"],
        )
    result["lm_eval_version"] = lm_eval.__version__
    result["task_hashes"] = task_hashes
    result["tasks_digest"] = _files_digest(folder)
    result["config"] = {
        "tasks": tasks,
        "seed": seed,
        "batch_size": batch_size,
        "system": system,
        "apply_chat_template": apply_chat_template,
        "answer_suffix": suffix,
        "answer_templates": list(answer_templates),
        "prefix_seed": prefix_seed,
        "limit": limit,
        "candidate_forms": cand_forms,
        "generation_kwargs": {
            n: loaded[n].config.generation_kwargs for n in tasks if loaded[n].OUTPUT_TYPE == "generate_until"
        },
        "config_id": content_hash(
            {
                "metadata": metadata,
                "tasks": tasks,
                "seed": seed,
                "limit": limit,
                "system": system,
                "chat": apply_chat_template,
                "n_samples": n_samples,
            }
        ),
    }
    return result
