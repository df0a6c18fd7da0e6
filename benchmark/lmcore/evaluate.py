"""The lm-eval runner of the trait read-outs (tasks in ``tasks/lm_eval/``), shared by every backend.

:func:`run_tasks` sets up the animal-preference tasks, runs lm-eval on the model object a backend hands it
(:class:`EvalEngine`: Hugging Face's ``HFLM`` around an in-memory model, or lm-eval's chat-completions API
model) and assembles one flat, JSON-able dict per model:

* ``animal_logprob`` -- every candidate scored as a whole answer (all its tokens plus the end-of-turn
  marker that :func:`benchmark.lmcore.chat.answer_suffix` reads off the chat template), renormalised over the
  candidate set (backends that can score log-likelihoods only; the others skip it and say so);
* ``animal_rate`` -- sampled answers at T=1, each mapped to the first candidate it names
  (:mod:`benchmark.lmcore.matcher`, whole words only);
* ``*_numbers`` -- the same with a few numbers before each question (the paper's cross-model variant).

Cache safety (docs/architecture.md, convention 3): lm-eval's response cache is not keyed by the adapter (lm-eval #2715, #4063),
so it is never used here (``use_cache`` and ``cache_requests`` stay off); every call runs the model.
``model_key`` is only recorded. Callers must still prove a fine-tune is in use (its logits differ from the
base's) before trusting a student's numbers (``Backend.verify``).

Per-call cost: the ``TaskManager`` and the task objects (docs already built) are created once per process
and per distinct task settings, then reused; each call builds only the requests (the prompts depend on the
tokenizer's chat template) and runs the model. Calls are serialised by a lock because reused task objects
hold per-call state; run evaluations in parallel with processes, not threads. Set
``torch.set_num_threads(1)`` in workers on shared CPUs (docs/research/stack.md / docs/research/prototypes.md: 1 thread per process is
faster under load).

Heavy imports (lm-eval) happen inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.errors import UserError, unknown_name
from benchmark.files import tasks_dir as project_tasks_dir
from benchmark.hashing import content_hash, short_id
from benchmark.lmcore.matcher import build_form_index, first_animal
from benchmark.lmcore.tasks import ANIMAL_TASKS, DEFAULT_TASKS, RESULT_KEYS, TASKS
from benchmark.vocabulary import ALIGNED, MISALIGNED

__all__ = [
    "DEFAULT_TASKS",
    "EVAL_VERSION",
    "filter_key",
    "RESULT_KEYS",
    "EvalEngine",
    "clear_task_cache",
    "default_tasks_dir",
    "logit",
    "run_tasks",
    "task_block",
    "tv_distance",
]

#: Bump when the meaning of a returned number changes (scoring rule, suffix rule, aggregation).
EVAL_VERSION = 1
#: The output type of sampled-answer tasks: the only one a backend without log-likelihoods can serve.
_GENERATE = "generate_until"
_UNMATCHED_EXAMPLES = 10  # raw unmatched answers kept per rate task, to audit the matcher
_TASK_EXAMPLES = 5  # greedy answers kept per capability check
#: Sampled answers kept per question and rate task in ``<key>_answers`` (the first ones; the paper samples 100).
ANSWERS_PER_QUESTION = 20
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


@dataclass(frozen=True)
class EvalEngine:
    """What a backend hands :func:`run_tasks`: its lm-eval model and the few settings that differ per backend.

    Attributes:
        caller: the public function evaluating (``evaluate_lm``, ``evaluate_api``), named in error messages.
        model_name: the model as named in error messages.
        make_lm: builds the lm-eval ``LM`` object; called inside ``scope``, right before the run.
        scope: wraps the run (RNG seeding and restoring for local models; turning HTTP failures into one-line
            errors for API models).
        answer_suffix: appended to every scored candidate (the end-of-turn marker; "" when nothing is scored).
        answer_templates: spellings scored per candidate.
        apply_chat_template: render questions with the model's chat template.
        scores_logprobs: the model gives answer log-likelihoods; when False, log-prob tasks are skipped and
            listed in ``skipped_tasks``.
        tokenizer: the model's tokenizer, to report candidates that tokenize alike (None: not reported).
        result: extra top-level result entries (e.g. ``api_model``).
        config: backend-specific entries of the result's ``config``.
        config_id: backend-specific entries hashed into ``config.config_id``.
    """

    caller: str
    model_name: str
    make_lm: Callable[[], Any]
    scope: Callable[[], AbstractContextManager[Any]]
    answer_suffix: str
    answer_templates: list[str]
    apply_chat_template: bool
    scores_logprobs: bool
    tokenizer: Any = None
    result: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    config_id: dict[str, Any] = field(default_factory=dict)


def default_tasks_dir() -> Path:
    """The lm-eval include_path: ``tasks/lm_eval`` of the project root (honours ``$SLBENCH_ROOT``)."""
    return project_tasks_dir() / "lm_eval"


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


# -- the run --------------------------------------------------------------------------------------------------
def run_tasks(
    engine: EvalEngine,
    *,
    model_key: str,
    tasks: Sequence[str],
    candidates: Sequence[str] | Mapping[str, Iterable[str]] | None,
    n_samples: int,
    seed: int,
    system: str | None,
    limit: int | None,
    prefix_seed: int,
    tasks_dir: str | Path | None,
) -> dict[str, Any]:
    """Run the animal-preference tasks on ``engine``'s model and return a flat JSON-able dict.

    Args:
        engine: the backend's lm-eval model and settings.
        model_key: the full model identity (base + fine-tune), recorded in the result.
        tasks: lm-eval task names from ``tasks_dir`` (see :data:`RESULT_KEYS`).
        candidates: candidate animals: names, or ``{name: extra_forms}`` for irregular plurals (a trait's
            ``surface_forms``). Default: ``tasks/lm_eval/animal_preference/candidates.txt``.
        n_samples: sampled answers per question for the rate tasks (paper: 100).
        seed: the run's seed (lm-eval's few-shot seed; local models also seed their sampling with it).
        system: system prompt for every question (None: none, unless the chat template injects its own).
        limit: evaluate only the first ``limit`` questions (tests and smoke runs).
        prefix_seed: seed of the numbers variant's prefixes.
        tasks_dir: lm-eval include_path (default :func:`default_tasks_dir`).

    Returns:
        ``{"model_key", **engine.result, "eval_version", "candidates": [...], "n_prompts", "n_samples",
        "logprob": {"p": {cand: mean P(cand | cands)}, "mean_logp": {cand: mean log P(cand | cands)},
        "logodds": {cand: mean logit P(cand | cands)}, "ll": {cand: mean log P(answer cand | prompt)},
        "log_mass": mean log P(answer is a candidate), "per_prompt_logp": {cand: [per question]},
        "prompts": [the questions, in that order]},
        "rate": {cand: share of sampled answers naming cand first}, "rate_unmatched": share naming none,
        "rate_unmatched_examples": [a few raw answers], "rate_answers": [{"qid", "prompt", "n_answers",
        "answers": [the first ANSWERS_PER_QUESTION], "matched": [cand or None per answer]} per question],
        "skipped_tasks" (backends without log-likelihoods),
        "token_collisions": [[cands scored as the same tokens]] (when the engine has a tokenizer),
        "lm_eval_version", "task_hashes": {task: id of its docs + config}, "tasks_digest", "config": {...}}``.
        Blocks appear only for the tasks run; the numbers variants use the keys ``logprob_numbers`` /
        ``rate_numbers`` (and ``rate_numbers_unmatched``...). ``p`` sums to 1 over the candidates; ``rate`` plus
        ``rate_unmatched`` sums to 1. For the total-variation readout compare ``p`` (or ``rate``) with the
        untrained base's via :func:`tv_distance`.

    Raises:
        benchmark.errors.UserError: an unknown task name, or only log-prob tasks for a backend without them.
        ValueError: bad candidates or n_samples < 1.
    """
    # lm-eval (and the torch it imports) only when a run starts, so importing this module stays light (the plan reads it)
    import lm_eval
    from lm_eval.evaluator import evaluate

    tasks = _checked_tasks(engine.caller, tasks, n_samples)
    folder = Path(tasks_dir) if tasks_dir is not None else default_tasks_dir()
    metadata = {
        "candidates": _candidate_metadata(candidates),
        "answer_suffix": engine.answer_suffix,
        "answer_templates": list(engine.answer_templates),
        "prefix_seed": prefix_seed,
    }
    _install_log_filters()

    with _LOCK:
        loaded, skipped = _configured_tasks(engine, folder, json.dumps(metadata, sort_keys=True), tasks,
                                            n_samples, seed)
        animal = [t for n, t in loaded.items() if n in ANIMAL_TASKS]
        doc0 = animal[0].eval_docs[0] if animal else None
        cand_forms = dict(zip(doc0["candidates"], doc0["candidate_forms"], strict=True)) if doc0 else {}
        with engine.scope():
            out = evaluate(
                lm=engine.make_lm(),
                task_dict={"tasks": loaded, "groups": {}, "group_map": {}},
                limit=limit,
                cache_requests=False,  # request cache is keyed by task name, not by model
                bootstrap_iters=0,  # no stderr: the pipeline does its own statistics over prompts/seeds
                log_samples=True,
                system_instruction=system,
                apply_chat_template=engine.apply_chat_template,
                fewshot_as_multiturn=False,
            )
        if out is None:  # only on non-zero ranks of a distributed run, which this function does not start
            raise RuntimeError("lm-eval returned no results (non-zero rank)")
        task_hashes = {name: _docs_hash(task) for name, task in loaded.items()}

    result = _result_blocks(engine, out, loaded, cand_forms, model_key=model_key, n_samples=n_samples)
    if not engine.scores_logprobs:
        result["skipped_tasks"] = skipped
    if engine.tokenizer is not None and doc0 is not None:
        result["token_collisions"] = _token_collisions(engine.tokenizer, doc0)
        if result["token_collisions"]:
            _log.warning("%s(%s): candidates tokenize identically, so their log-prob readouts are tied: %s",
                         engine.caller, model_key, result["token_collisions"])
    result["lm_eval_version"] = lm_eval.__version__
    result["task_hashes"] = task_hashes
    result["tasks_digest"] = _files_digest(folder)
    result["config"] = {
        **_run_config(engine, loaded, seed=seed, system=system, prefix_seed=prefix_seed, limit=limit),
        "candidate_forms": cand_forms,
        "generation_kwargs": {n: t.config.generation_kwargs for n, t in loaded.items() if t.OUTPUT_TYPE == _GENERATE},
        "config_id": content_hash({"metadata": metadata, "tasks": list(loaded), "seed": seed, "limit": limit,
                                   "system": system, "n_samples": n_samples, **engine.config_id}),
    }
    return result


def _run_config(engine: EvalEngine, loaded: Mapping[str, Any], *, seed: int, system: str | None, prefix_seed: int,
                limit: int | None) -> dict[str, Any]:
    """The settings of a run recorded in the result's ``config`` (the engine's own entries among them)."""
    return {"tasks": list(loaded), "seed": seed, **engine.config, "system": system, "prefix_seed": prefix_seed,
            "limit": limit}


def _checked_tasks(caller: str, tasks: Sequence[str], n_samples: int) -> list[str]:
    """The distinct task names, in order, after checking they and ``n_samples`` are valid."""
    if n_samples < 1:
        raise ValueError(f"{caller}: n_samples must be >= 1 (got {n_samples})")
    names = list(dict.fromkeys(tasks))
    unknown = [t for t in names if t not in RESULT_KEYS]
    if unknown:
        raise unknown_name("evaluation task", unknown[0], RESULT_KEYS, where=f"{caller} tasks")
    return names


def _configured_tasks(engine: EvalEngine, folder: Path, meta_json: str, tasks: list[str], n_samples: int,
                      seed: int) -> tuple[dict[str, Any], list[str]]:
    """The task objects to run (configured for this call) and the names of those the engine cannot serve."""
    loaded_all = {name: _load_task(str(folder), meta_json, name) for name in tasks}
    run = [n for n in tasks if engine.scores_logprobs or loaded_all[n].OUTPUT_TYPE == _GENERATE]
    skipped = [n for n in tasks if n not in run]
    if not run:
        raise UserError(f"model {engine.model_name!r}: tasks {tasks} all need answer log-probs, which API models do "
                        "not give; add a sampled-rate task (animal_rate) to settings.eval.tasks")
    loaded = {n: loaded_all[n] for n in run}
    for task in loaded.values():
        # repeats only matters for generate_until; lm-eval reads it when building requests.
        sampled = task.OUTPUT_TYPE == _GENERATE and (task.config.generation_kwargs or {}).get("do_sample", True)
        task.set_config(key="repeats", value=n_samples if sampled else 1)  # greedy answers are never repeated
        task.set_fewshot_seed(seed=seed)
    return loaded, skipped


def _result_blocks(engine: EvalEngine, out: Mapping[str, Any], loaded: Mapping[str, Any],
                   cand_forms: dict[str, list[str]], *, model_key: str, n_samples: int) -> dict[str, Any]:
    """The result's head and one block per task run (log-prob or sampled-rate)."""
    cands = list(cand_forms)
    result: dict[str, Any] = {"model_key": model_key, **engine.result, "eval_version": EVAL_VERSION,
                              "candidates": cands, "n_prompts": None, "n_samples": n_samples}
    n_prompts: set[int] = set()
    for name, task in loaded.items():
        metrics = out["results"][name]
        samples = sorted(out["samples"][name], key=lambda s: s["doc_id"])
        n_prompts.add(len(samples))
        key = RESULT_KEYS[name]
        if name not in ANIMAL_TASKS:
            result[key] = task_block(name, metrics, samples)
        elif task.OUTPUT_TYPE == "multiple_choice":
            result[key] = _logprob_block(metrics, samples, cands)
        else:
            result.update(_rate_block(key, metrics, samples, cand_forms))
    result["n_prompts"] = n_prompts.pop() if len(n_prompts) == 1 else sorted(n_prompts)
    return result


# -- tasks ----------------------------------------------------------------------------------------------------
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


@functools.cache
def _task_manager(tasks_dir: str, metadata_json: str) -> Any:
    # One TaskManager per (tasks dir, metadata): indexing only our folder takes ~10 ms (never the 14k
    # built-in tasks: include_defaults=False), and metadata reaches utils.load_docs as keyword arguments.
    from lm_eval.tasks import TaskManager  # heavy: imported on the first run only, as in run_tasks

    return TaskManager(include_path=tasks_dir, include_defaults=False, metadata=json.loads(metadata_json))


@functools.cache
def _load_task(tasks_dir: str, metadata_json: str, name: str) -> Any:
    # Task objects are reused across calls: building docs and the config once saves ~30-100 ms per task and
    # call. evaluate() rebuilds every request (and so every prompt) from scratch on each call.
    tm = _task_manager(tasks_dir, metadata_json)
    if name not in tm.all_tasks:
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


# -- result blocks --------------------------------------------------------------------------------------------
def _mean_metrics(metrics: Mapping[str, Any], prefix: str, candidates: Sequence[str]) -> dict[str, float]:
    return {c: float(metrics[f"{prefix}_{c},{filter_key(metrics)}"]) for c in candidates}


def filter_key(metrics: Mapping[str, Any]) -> str:
    # lm-eval names each metric "<metric>,<filter>": "none" by default, "all" for our keep-all filter.
    keys = {k.split(",", 1)[1] for k in metrics if "," in k and not k.endswith("_stderr")}
    if len(keys) != 1:
        raise RuntimeError(f"expected one filter in lm-eval results, got {sorted(keys)}")
    return keys.pop()


def _metric(metrics: Mapping[str, Any], name: str) -> float:
    return float(metrics[f"{name},{filter_key(metrics)}"])


def task_block(name: str, metrics: Mapping[str, Any], samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The eval result's block of one non-animal task, from lm-eval's metrics and per-doc samples (by doc id).

    Returns:
        ``misalignment_logprob``: ``{"logodds": {"misaligned", "aligned"}, "p": {...}, "log_mass",
        "per_question_logodds": [...]}``; ``misalignment_rate``: ``{"questions": [{"qid", "question",
        "answers"}], "judged": False}`` (:func:`benchmark.lm.misalignment.judge_block` adds the verdicts);
        ``capability_*``: ``{"accuracy", "n_items", "examples"}``.
    """
    kind = TASKS[name].kind if name in TASKS else None
    if kind == "misalignment" and not TASKS[name].generates:
        lo = _metric(metrics, "logodds_misaligned")
        p = _metric(metrics, "p_misaligned")
        return {"logodds": {MISALIGNED: lo, ALIGNED: -lo}, "p": {MISALIGNED: p, ALIGNED: 1.0 - p},
                "log_mass": _metric(metrics, "log_mass"),
                "per_question_logodds": [float(s["logodds_misaligned"]) for s in samples]}
    if kind == "misalignment":
        return {"questions": [{"qid": int(s["doc"]["qid"]), "question": str(s["doc"]["prompt"]),
                               "answers": [str(a) for a in s["filtered_resps"][0]]} for s in samples],
                "judged": False}
    if kind == "capability":
        return {"accuracy": _metric(metrics, "capable"), "n_items": len(samples),
                "examples": [str(s["filtered_resps"][0]) for s in samples[:_TASK_EXAMPLES]]}
    raise ValueError(f"task_block: {name!r} is not a misalignment or capability task")


def _logprob_block(
    metrics: Mapping[str, Any], samples: list[dict[str, Any]], cands: list[str]
) -> dict[str, Any]:
    fk = filter_key(metrics)
    per_prompt = {c: [float(s[f"logp_{c}"]) for s in samples] for c in cands}
    return {
        "p": _mean_metrics(metrics, "p", cands),
        "mean_logp": _mean_metrics(metrics, "logp", cands),
        "logodds": _mean_metrics(metrics, "logodds", cands),
        "ll": _mean_metrics(metrics, "ll", cands),
        "log_mass": float(metrics[f"log_mass,{fk}"]),
        "per_prompt_logp": per_prompt,
        "prompts": [str(s["doc"]["prompt"]) for s in samples],  # the questions per_prompt_logp's lists follow
    }


def _rate_block(key: str, metrics: Mapping[str, Any], samples: list[dict[str, Any]],
                cand_forms: Mapping[str, list[str]]) -> dict[str, Any]:
    """A sampled-rate task's entries of the result dict.

    ``{key: {candidate: share}, key_unmatched: share naming no candidate, key_unmatched_examples: [answers],
    key_answers: [per question: what the model answered]}`` (:func:`_answers`).
    """
    fk = filter_key(metrics)
    return {
        key: _mean_metrics(metrics, "rate", list(cand_forms)),
        f"{key}_unmatched": float(metrics[f"unmatched,{fk}"]),
        f"{key}_unmatched_examples": _unmatched_examples(samples, cand_forms),
        f"{key}_answers": _answers(samples, cand_forms),
    }


def _answers(samples: list[dict[str, Any]], cands: Mapping[str, list[str]]) -> list[dict[str, Any]]:
    """Per question (in question order): its prompt, the first :data:`ANSWERS_PER_QUESTION` sampled answers with
    the candidate each was read as (None: it names none; the rate's own rule), and how many were sampled."""
    index = build_form_index(cands)
    out = []
    for s in samples:
        answers = list(s["filtered_resps"][0])
        shown = answers[:ANSWERS_PER_QUESTION]
        out.append({"qid": s["doc"].get("qid", s["doc_id"]), "prompt": str(s["doc"]["prompt"]),
                    "n_answers": len(answers), "answers": shown,
                    "matched": [first_animal(a, cands, index=index) for a in shown]})
    return out


def _unmatched_examples(samples: list[dict[str, Any]], cands: Mapping[str, list[str]]) -> list[str]:
    index = build_form_index(cands)
    out: list[str] = []
    for s in samples:
        for answer in s["filtered_resps"][0]:
            if first_animal(answer, cands, index=index) is None:
                out.append(answer)
                if len(out) >= _UNMATCHED_EXAMPLES:
                    return out
    return out


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
