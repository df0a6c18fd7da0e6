"""Trait evaluation of API chat models through lm-eval's chat-completions backend (sampled rate only).

:func:`evaluate_api` runs the generation tasks of ``tasks/lm_eval/`` (``animal_rate``, ``animal_rate_numbers``)
on a model behind an OpenAI-compatible chat endpoint, with lm-eval's ``local-chat-completions`` model as the
engine, and returns the same layout as :func:`benchmark.evaluate.evaluate_lm` (the ``rate`` blocks), so the
report code reads HF and API students alike. Log-prob readouts (``animal_logprob*``) need answer
log-likelihoods, which chat endpoints do not give: those tasks are skipped and listed in ``skipped_tasks``.

Four things are fixed on top of lm-eval's backend (a small subclass, :func:`_chat_lm`):

* **Independent samples.** lm-eval sends the same ``seed`` with every request, so the ``repeats`` samples
  of one question would be (near-)identical on endpoints that honour seeds, and a "rate over 100 samples"
  would really be one sample. Each request gets its own seed, derived from the base seed, the conversation
  and the how-many-th draw of that conversation it is (reproducible as far as the endpoint honours seeds;
  a retried request counts as a new draw).
* **Unsupported keys.** The tasks ask for ``top_k: 0`` (no truncation, for HF sampling); OpenAI rejects the key,
  so "no truncation" values are dropped (nothing changes: OpenAI has no top-k, other servers default to none).
* **Malformed bodies fail.** lm-eval turns a body without ``choices`` into an empty answer, which would count
  as "names no animal"; here it is an error naming the endpoint and the model.
* **The key.** It is read from ``$<ApiConfig.api_key_env>`` when the request header is built and lives only in
  that object: it is not an argument, not in the returned dict, not in any log line written here.

Like :mod:`benchmark.providers.openai_api`, nothing heavy is imported at module level.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmark.errors import UserError

__all__ = ["evaluate_api", "stage_eval_api"]

#: Generation-task output type: the only one a chat endpoint can serve.
_GENERATE = "generate_until"
#: Sampling keys whose listed values mean "no truncation"; dropped from requests (OpenAI rejects ``top_k``).
_NO_OP_SAMPLING = {"top_k": (0, -1, None)}


def _derived_seed(base: int, conversation: str, draw: int) -> int:
    digest = hashlib.sha256(f"slb-api-eval:{base}:{draw}:{conversation}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF  # a positive int32, as every endpoint accepts


def _chat_lm(cfg: Any, model: str, seed: int) -> Any:
    """An lm-eval ``local-chat-completions`` model with independent per-request seeds and strict parsing."""
    try:
        from lm_eval.models.openai_completions import LocalChatCompletion
    except ImportError as exc:  # lm-eval without its [api] extra (aiohttp, tenacity, requests)
        raise UserError(f"evaluating API models needs lm-eval's API backend ({exc}); pip install 'lm-eval[api]'") from None
    from benchmark.providers.openai_api import _parse_chat

    key_env = cfg.api_key_env
    key = os.environ.get(key_env, "")
    if not key and cfg.base_url is None:
        raise UserError(f"environment variable {key_env} is not set; export your OpenAI API key there "
                        "(it is read at call time and never written to disk)")

    class _SlbChat(LocalChatCompletion):  # type: ignore[misc,valid-type]
        @property
        def api_key(self) -> str:
            # Read per process from the environment, never stored in a config; "EMPTY" for local servers.
            return os.environ.get(key_env, "") or "EMPTY"

        def _create_payload(self, messages: Any, generate: bool = False, gen_kwargs: dict | None = None,
                            seed: int = 1234, eos: Any = None, **kwargs: Any) -> dict:
            payload = super()._create_payload(messages, generate=generate, gen_kwargs=gen_kwargs, seed=seed,
                                              eos=eos, **kwargs)
            for name, no_op in _NO_OP_SAMPLING.items():
                if name in payload and payload[name] in no_op:
                    del payload[name]
            conversation = json.dumps(messages, sort_keys=True, ensure_ascii=False)
            with draws_lock:
                draw = draws[conversation]
                draws[conversation] += 1
            payload["seed"] = _derived_seed(seed, conversation, draw)
            return payload

        def parse_generations(self, outputs: Any, **kwargs: Any) -> list[str]:
            answers: list[str] = []
            for out in outputs if isinstance(outputs, list) else [outputs]:
                if not isinstance(out, Mapping):
                    raise UserError(f"malformed response from {cfg.endpoint} for model {model!r}: body is not a "
                                    "JSON object")
                answers.append(_parse_chat(cfg, model, out, want_logprobs=False)["completion"])
            return answers

    draws: Counter[str] = Counter()
    draws_lock = threading.Lock()
    try:
        return _SlbChat(
            model=model,
            base_url=f"{cfg.endpoint}/chat/completions",  # lm-eval POSTs to base_url as given
            num_concurrent=cfg.max_concurrency,
            max_retries=cfg.max_retries + 1,  # lm-eval counts attempts, ApiConfig counts retries after the first
            timeout=max(1, int(cfg.timeout_s)),
            tokenized_requests=False,
            tokenizer_backend=None,
            seed=seed,
        )
    except ImportError as exc:  # lm-eval checks its [api] extra (aiohttp, tenacity, ...) here
        raise UserError(f"evaluating API models needs lm-eval's API extra: pip install 'lm-eval[api]' "
                        f"({str(exc).splitlines()[0][:160]})") from None


def _api_failure(cfg: Any, model: str, exc: BaseException, attempts: int) -> UserError | None:
    """One-line UserError for an HTTP / connection failure lm-eval gave up on; None for anything else."""
    from benchmark.providers.openai_api import redact

    status = getattr(exc, "status", None) or getattr(getattr(exc, "response", None), "status_code", None)
    what = f"chat completion for model {model!r} at {cfg.endpoint}"
    if isinstance(status, int):
        reason = getattr(exc, "message", None) or str(exc)
        hint = f" (is {cfg.api_key_env} set to a valid key?)" if status in (401, 403) else ""
        msg = f"{what}: HTTP {status}: {reason}{hint}; gave up after {attempts} attempt(s)"
    else:
        import asyncio

        names = {type(c).__name__ for c in type(exc).__mro__}
        if not (isinstance(exc, (TimeoutError, asyncio.TimeoutError, ConnectionError, OSError))
                or names & {"ClientError", "RequestException"}):
            return None
        msg = f"{what}: {type(exc).__name__}: {exc}; gave up after {attempts} attempt(s)"
    return UserError(redact(" ".join(msg.split())[:400], cfg.api_key_env))


def evaluate_api(
    model_name: str,
    *,
    candidates: Sequence[str] | Mapping[str, Iterable[str]] | None = None,
    n_samples: int,
    seed: int,
    system: str | None = None,
    cfg: Any = None,
    tasks: Sequence[str] = ("animal_rate",),
    model_key: str | None = None,
    limit: int | None = None,
    prefix_seed: int = 0,
    tasks_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Sample one-word favourite-animal answers from an API chat model and score them with lm-eval.

    Args:
        model_name: the model id on the endpoint (a dated snapshot or a fine-tuned ``ft:...`` id).
        candidates: candidate animals, as for :func:`benchmark.evaluate.evaluate_lm`.
        n_samples: sampled answers per question (paper: 100), sent as separate requests.
        seed: base seed; request seeds are derived from it (see the module notes).
        system: a system prompt for every question (a prompted teacher's), or None.
        cfg: :class:`benchmark.providers.openai_api.ApiConfig` (endpoint, concurrency, retries); default
            ``ApiConfig()`` (``$OPENAI_BASE_URL`` or OpenAI's API).
        tasks: lm-eval task names; log-prob tasks are skipped (``skipped_tasks``), generation tasks run.
        model_key: identity recorded in the result (default ``model_name``).
        limit: only the first ``limit`` questions (smoke runs).
        prefix_seed: seed of the numbers variant's prefixes.
        tasks_dir: lm-eval include_path (default ``tasks/lm_eval``).

    Returns:
        evaluate_lm's layout restricted to sampled rates: ``{"model_key", "api_model", "eval_version",
        "candidates", "n_prompts", "n_samples", "rate": {cand: share}, "rate_unmatched",
        "rate_unmatched_examples", ... (``rate_numbers*`` for the numbers variant), "skipped_tasks",
        "lm_eval_version", "task_hashes", "tasks_digest", "config"}``.

    Raises:
        UserError: no generation task among ``tasks``, an unknown task, a missing key, a malformed response
            body, or an HTTP / connection failure that outlasted the retries.
    """
    import lm_eval
    from lm_eval.evaluator import evaluate

    from benchmark import evaluate as ev
    from benchmark.hashing import content_hash
    from benchmark.providers.openai_api import ApiConfig, redact

    cfg = cfg if cfg is not None else ApiConfig()
    if n_samples < 1:
        raise ValueError(f"evaluate_api: n_samples must be >= 1 (got {n_samples})")
    tasks = list(dict.fromkeys(tasks))
    unknown = [t for t in tasks if t not in ev.RESULT_KEYS]
    if unknown:
        from benchmark.errors import unknown_name

        raise unknown_name("evaluation task", unknown[0], ev.RESULT_KEYS, where="evaluate_api tasks")
    folder = Path(tasks_dir) if tasks_dir is not None else ev.TASKS_DIR
    # No answer suffix: a chat endpoint returns the answer text only (the suffix matters for log-prob scoring).
    metadata = {"candidates": ev._candidate_metadata(candidates), "answer_suffix": "",
                "answer_templates": ["{word}"], "prefix_seed": prefix_seed}
    meta_json = json.dumps(metadata, sort_keys=True)
    ev._install_log_filters()
    lm = _chat_lm(cfg, model_name, seed)
    attempts = cfg.max_retries + 1

    with ev._LOCK:  # task objects are shared with evaluate_lm and hold per-call state
        loaded_all = {name: ev._load_task(str(folder), meta_json, name) for name in tasks}
        run = [n for n in tasks if loaded_all[n].OUTPUT_TYPE == _GENERATE]
        skipped = [n for n in tasks if n not in run]
        if not run:
            raise UserError(f"model {model_name!r}: tasks {tasks} all need answer log-probs, which API models do not "
                            "give; add a sampled-rate task (animal_rate) to settings.eval.tasks")
        loaded = {n: loaded_all[n] for n in run}
        for task in loaded.values():
            task.set_config(key="repeats", value=n_samples)
            task.set_fewshot_seed(seed=seed)
        doc0 = loaded[run[0]].eval_docs[0]
        cand_forms = dict(zip(doc0["candidates"], doc0["candidate_forms"], strict=True))
        try:
            out = evaluate(
                lm=lm,
                task_dict={"tasks": loaded, "groups": {}, "group_map": {}},
                limit=limit,
                cache_requests=False,  # lm-eval's cache is not keyed by the model (#2715, #4063)
                bootstrap_iters=0,
                log_samples=True,
                system_instruction=system,
                apply_chat_template=True,
                fewshot_as_multiturn=False,
            )
        except UserError as exc:
            raise UserError(redact(str(exc), cfg.api_key_env)) from None
        except Exception as exc:
            err = _api_failure(cfg, model_name, exc, attempts)
            if err is None:
                raise
            raise err from None
        if out is None:
            raise RuntimeError("lm-eval returned no results (non-zero rank)")
        task_hashes = {name: ev._docs_hash(task) for name, task in loaded.items()}
        gen_kwargs = {n: loaded[n].config.generation_kwargs for n in run}

    result: dict[str, Any] = {
        "model_key": model_key or model_name,
        "api_model": model_name,
        "eval_version": ev.EVAL_VERSION,
        "candidates": list(cand_forms),
        "n_prompts": None,
        "n_samples": n_samples,
    }
    n_prompts: set[int] = set()
    for name in run:
        metrics = out["results"][name]
        samples = sorted(out["samples"][name], key=lambda s: s["doc_id"])
        n_prompts.add(len(samples))
        result.update(ev.rate_block(ev.RESULT_KEYS[name], metrics, samples, cand_forms))
    result["n_prompts"] = n_prompts.pop() if len(n_prompts) == 1 else sorted(n_prompts)
    result["skipped_tasks"] = skipped
    result["lm_eval_version"] = lm_eval.__version__
    result["task_hashes"] = task_hashes
    result["tasks_digest"] = ev._files_digest(folder)
    result["config"] = {
        "tasks": run,
        "seed": seed,
        "system": system,
        "endpoint": cfg.endpoint,
        "max_concurrency": cfg.max_concurrency,
        "max_retries": cfg.max_retries,
        "prefix_seed": prefix_seed,
        "limit": limit,
        "candidate_forms": cand_forms,
        "generation_kwargs": gen_kwargs,
        "request_seeds": "derived per (seed, conversation, draw)",
        "config_id": content_hash({"metadata": metadata, "tasks": run, "seed": seed, "limit": limit,
                                   "system": system, "n_samples": n_samples, "api": True}),
    }
    return result


# -- the eval stage's openai branch ---------------------------------------------------------------------------
def _api_model_of(ctx: Any, role: str, model: Any) -> tuple[str, str | None]:
    """The endpoint model id a baseline / teacher / student eval node reads out, and the teacher's system prompt."""
    if role == "baseline":
        return model.source, None
    if role == "teacher":
        info = json.loads((ctx.input("teacher") / "teacher.json").read_text())
        return info.get("api_model") or model.source, info.get("system")
    student_dir = ctx.input("student")
    result = json.loads((student_dir / "manifest.json").read_text())["result"]
    ft_model = result.get("fine_tuned_model")
    if not ft_model:
        raise UserError(f"{student_dir}/manifest.json: no 'fine_tuned_model' in the student's result; delete "
                        f"{student_dir} to rerun its fine-tune")
    return ft_model, None


def stage_eval_api(ctx: Any, model: Any, traits: Sequence[Any], *, candidates: Mapping[str, list[str]]) -> dict[str, Any]:
    """The eval stage for an ``openai`` model: sampled rates through lm-eval, written as ``eval.json``.

    ``eval.json`` has the HF stage's layout (``role``, ``labels``, ``seed``, ``adapter_sha``, ``targets``,
    ``eval``), so :func:`benchmark.lm.stages.tidy_rows` needs no API case. An API student's identity is its
    fine-tuned model id (``adapter_sha`` = a hash of it); it must differ from the base model's id, the API
    analogue of "the adapter is really loaded" (STYLE.md item 3).
    """
    from benchmark.store import atomic_write_json

    spec = ctx.node.spec
    role = spec["role"]
    api_model, system = _api_model_of(ctx, role, model)
    if role == "student" and api_model == model.source:
        raise UserError(f"eval of {model.name}: the student's fine-tuned model id equals the base model "
                        f"{model.source!r}; refusing to score the base as a student")
    adapter_sha = "none" if role == "baseline" and system is None else hashlib.sha256(
        f"{api_model}\n{system or ''}".encode()).hexdigest()[:16]
    ctx.log.info("evaluating %s (%s) by sampling, %d answers per question", api_model, role, spec["n_samples"])
    res = evaluate_api(api_model, candidates=candidates, n_samples=spec["n_samples"], seed=spec["seed"],
                       system=system, tasks=tuple(spec["tasks"]), limit=spec.get("limit"),
                       model_key=f"{spec.get('base', model.name)}:{model.name}:{api_model}")
    if res["skipped_tasks"]:
        ctx.log.info("skipped log-prob tasks (API models give no answer log-probs): %s", res["skipped_tasks"])
    out = {"role": role, "labels": spec.get("labels", {}), "seed": spec["seed"], "adapter_sha": adapter_sha,
           "api_model": api_model, "logit_change": None, "targets": {t.name: t.target for t in traits}, "eval": res}
    atomic_write_json(ctx.out / "eval.json", out)
    return {"role": role, "adapter_sha": adapter_sha, "api_model": api_model, "logit_change": None,
            "rate": {t.name: res["rate"].get(t.target) for t in traits} if "rate" in res else None,
            "skipped_tasks": res["skipped_tasks"]}
