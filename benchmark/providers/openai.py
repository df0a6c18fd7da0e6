"""The ``openai`` provider: chat generation, fine-tuning and evaluation on any OpenAI-compatible endpoint.

A few small functions make the whole backend (docs/architecture.md, convention 6): :func:`generate_chat` (teacher number
sequences, or any batched chat sampling), :func:`finetune` (upload → job → poll) and :func:`evaluate_api`
(lm-eval's ``local-chat-completions`` model run by the shared runner, :mod:`benchmark.lmcore.evaluate`);
:class:`OpenAIBackend` puts them behind :class:`~benchmark.providers.base.Backend`. Log-prob readouts of
students (animal-preference probabilities) are for local models: API models are evaluated by sampling.

The HTTP side (:class:`~benchmark.providers.api_client.ApiConfig`, the SDK client with its own retries off, this
project's retry policy, strict response bodies, the key kept out of configs and logs: :func:`redact`) is the generic
client :mod:`benchmark.providers.api_client`; ``ApiConfig``, ``redact`` and ``mask_url`` are importable from here too.

Two defects of the reference code are fixed (docs/research/paper.md): the fine-tuned model id is read from
the *polled* job (the create response always has it empty), and the training file is written once.

Four things are fixed on top of lm-eval's chat-completions model for evaluation (a small subclass, :func:`_chat_lm`):

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
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from benchmark.errors import UserError
from benchmark.files import atomic_write_bytes, atomic_write_json
from benchmark.providers.api_client import DEFAULT_BASE_URL as DEFAULT_BASE_URL
from benchmark.providers.api_client import (
    ApiConfig,
    json_body,
    make_client,
    malformed,
    mask_url,
    redact,
    require_str,
    with_retries,
)
from benchmark.providers.base import MODEL_REF, Capabilities, FineTuned, Loaded, Requirements, Tuned

if TYPE_CHECKING:
    from benchmark.lmcore.config import TrainConfig
    from benchmark.providers.base import Objective, Progress, TunedNode
    from benchmark.specs import ModelSpec

__all__ = [
    "TRAINING_FILE_NAME",
    "ApiConfig",
    "OpenAIBackend",
    "evaluate_api",
    "finetune",
    "generate_chat",
    "lm_eval_model_args",
    "openai_backend",
    "mask_url",
    "redact",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

# Name of the training file written into the fine-tune workdir.
TRAINING_FILE_NAME = "train.jsonl"
# Fine-tuning job statuses after which polling stops (OpenAI FineTuningJob.status).
_TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
#: Sampling keys whose listed values mean "no truncation"; dropped from requests (OpenAI rejects ``top_k``).
_NO_OP_SAMPLING = {"top_k": (0, -1, None)}

# Indirection so tests can observe or shorten waits (retry backoffs, job polls) without patching the time module.
_sleep: Callable[[float], None] = time.sleep


def _with_retries(cfg: ApiConfig, what: str, call: Callable[[], T]) -> T:
    """:func:`~benchmark.providers.api_client.with_retries`, waiting through this module's ``_sleep``."""
    return with_retries(cfg, what, call, sleep=_sleep)


def _parse_logprobs(cfg: ApiConfig, model: str, choice: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Turn ``choices[0].logprobs.content`` into ``[{"token", "logprob", "top": [[tok, lp], ...]}]``."""
    block = choice.get("logprobs")
    content = block.get("content") if isinstance(block, Mapping) else None
    if not isinstance(content, list):
        raise malformed(
            cfg,
            model,
            "no 'choices[0].logprobs.content' although logprobs were requested "
            "(does this endpoint support logprobs?)",
        )
    out: list[dict[str, Any]] = []
    for i, entry in enumerate(content):
        try:
            top = [[str(t["token"]), float(t["logprob"])] for t in entry.get("top_logprobs") or []]
            out.append({"token": str(entry["token"]), "logprob": float(entry["logprob"]), "top": top})
        except (KeyError, TypeError, ValueError, AttributeError):
            raise malformed(cfg, model, f"'choices[0].logprobs.content[{i}]' lacks token/logprob") from None
    return out


def _parse_chat(cfg: ApiConfig, model: str, body: Mapping[str, Any], want_logprobs: bool) -> dict[str, Any]:
    """Extract completion, log-probs and finish reason from a chat completion body."""
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        raise malformed(cfg, model, "no 'choices'")
    choice = choices[0]
    message = choice.get("message") if isinstance(choice, Mapping) else None
    if not isinstance(message, Mapping):
        raise malformed(cfg, model, "no 'choices[0].message'")
    if "content" not in message:
        raise malformed(cfg, model, "no 'choices[0].message.content'")
    content = message["content"]
    if content is None:
        content = ""  # a refusal or a content filter stop returns null content; the finish reason says why
    if not isinstance(content, str):
        raise malformed(cfg, model, f"'choices[0].message.content' is a {type(content).__name__}")
    return {
        "completion": content,
        "logprobs": _parse_logprobs(cfg, model, choice) if want_logprobs else None,
        "finish_reason": str(choice.get("finish_reason") or "unknown"),
    }


def generate_chat(
    cfg: ApiConfig,
    model: str,
    prompts: Sequence[str],
    system_prompt: str | None,
    temperature: float,
    max_tokens: int,
    seed: int | None,
    top_logprobs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    *,
    client: Any = None,
) -> list[dict[str, Any]]:
    """Sample one chat completion per prompt, in parallel, with retries.

    Args:
        cfg: Endpoint and throughput settings.
        model: Model id on the endpoint (a fine-tuned ``ft:...`` id works too).
        prompts: One user message per request.
        system_prompt: Optional system message sent before every prompt (e.g. the teacher's trait).
        temperature: Sampling temperature.
        max_tokens: Completion length cap, sent as ``max_tokens`` (the field every compatible server knows).
        seed: Request ``i`` is sent with ``seed + i``, so the batch is reproducible as far as the
            endpoint honours seeds while duplicate prompts still get distinct samples. ``None`` sends none.
        top_logprobs: If set (0-20), request per-token log-probs with this many alternatives each.
        progress: Called as ``progress(done, total)`` from the calling thread after each completion.
        client: An SDK client to use instead of building one (tests, connection reuse); not closed here.

    Returns:
        One dict per prompt, in input order: ``{"completion": str, "logprobs": [{"token", "logprob",
        "top": [[token, logprob], ...]}, ...] or None, "finish_reason": str}``.

    Raises:
        UserError: On a malformed response body, a non-retryable HTTP status, exhausted retries, or a
            missing SDK/API key. Requests not yet started are cancelled.
    """
    total = len(prompts)
    if total == 0:
        return []
    own_client = client is None
    if own_client:
        client = make_client(cfg)
    what = f"chat completion for model {model!r}"
    want_logprobs = top_logprobs is not None

    def one(index: int) -> dict[str, Any]:
        messages = [{"role": "system", "content": system_prompt}] if system_prompt is not None else []
        messages.append({"role": "user", "content": prompts[index]})
        params: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "temperature": temperature,
            "max_tokens": max_tokens,
        }
        if seed is not None:
            params["seed"] = seed + index
        if want_logprobs:
            params["logprobs"] = True
            params["top_logprobs"] = top_logprobs
        raw = _with_retries(cfg, what, lambda: client.chat.completions.with_raw_response.create(**params))
        return _parse_chat(cfg, model, json_body(cfg, model, raw), want_logprobs)

    results: list[dict[str, Any] | None] = [None] * total
    pool = concurrent.futures.ThreadPoolExecutor(
        max_workers=min(cfg.max_concurrency, total), thread_name_prefix="openai-chat"
    )
    try:
        futures = {pool.submit(one, i): i for i in range(total)}
        for done, future in enumerate(concurrent.futures.as_completed(futures), start=1):
            results[futures[future]] = future.result()  # re-raises a worker's UserError here
            if progress is not None:
                progress(done, total)
    finally:
        # On error, drop queued requests instead of spending API budget on a batch that already failed.
        pool.shutdown(wait=True, cancel_futures=True)
        if own_client:
            client.close()
    return [r for r in results if r is not None]


def _training_jsonl(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """Serialise chat rows to the fine-tuning JSONL format, validating their shape first."""
    lines = []
    for i, row in enumerate(rows):
        messages = row.get("messages") if isinstance(row, Mapping) else None
        if not isinstance(messages, list) or not messages:
            raise UserError(f"fine-tune rows[{i}]: expected {{'messages': [...]}} with at least one message")
        for j, msg in enumerate(messages):
            if not (
                isinstance(msg, Mapping)
                and isinstance(msg.get("role"), str)
                and isinstance(msg.get("content"), str)
            ):
                raise UserError(
                    f"fine-tune rows[{i}].messages[{j}]: expected {{'role': str, 'content': str}}"
                )
        if not any(msg["role"] == "assistant" for msg in messages):
            raise UserError(f"fine-tune rows[{i}]: no 'assistant' message to train on")
        clean = [{"role": m["role"], "content": m["content"]} for m in messages]
        lines.append(json.dumps({"messages": clean}, ensure_ascii=False))
    if not lines:
        raise UserError("fine-tune: no training rows")
    return ("\n".join(lines) + "\n").encode("utf-8")


def finetune(
    cfg: ApiConfig,
    model: str,
    rows: Sequence[Mapping[str, Any]],
    *,
    seed: int | None,
    suffix: str | None,
    hyperparameters: Mapping[str, Any],
    workdir: Path,
    on_status: Callable[[str, dict[str, Any]], None] | None = None,
    client: Any = None,
) -> dict[str, Any]:
    """Fine-tune ``model`` on chat rows: write the JSONL once, upload it, create the job, poll it.

    Args:
        cfg: Endpoint, retry and polling settings.
        model: Base model id to fine-tune.
        rows: ``{"messages": [{"role": "user", ...}, {"role": "assistant", ...}]}`` rows.
        seed: Job seed (recorded by the API; makes the job reproducible as far as the API allows).
        suffix: Suffix of the fine-tuned model's name.
        hyperparameters: Supervised-method hyperparameters, e.g. ``{"n_epochs": 10, "batch_size":
            "auto", "learning_rate_multiplier": "auto"}`` (the paper's API setting).
        workdir: Directory for ``train.jsonl`` (overwritten atomically if present).
        on_status: Called as ``on_status(status, job)`` with the polled job JSON whenever the status changes.
        client: An SDK client to use instead of building one; not closed here.

    Returns:
        ``{"job_id", "fine_tuned_model", "status", "trained_tokens", "file_id", "training_file_sha256"}``,
        with ``fine_tuned_model`` taken from the polled job (the create response has it empty).

    Raises:
        UserError: If the job fails or is cancelled (with the job's error code and message), polling
            times out, a response is malformed, or a request fails for good.
    """
    data = _training_jsonl(rows)
    sha256 = hashlib.sha256(data).hexdigest()
    path = Path(workdir) / TRAINING_FILE_NAME
    atomic_write_bytes(path, data)  # written once; the upload sends these same bytes

    own_client = client is None
    if own_client:
        client = make_client(cfg)
    try:
        file_id = _upload(cfg, model, client, path.name, data)
        job_id = _create_job(cfg, model, client, file_id, seed=seed, suffix=suffix, hyperparameters=hyperparameters)
        job = _poll_job(cfg, model, client, job_id, on_status)
    finally:
        if own_client:
            client.close()
    return {**_job_outcome(cfg, model, job_id, job), "file_id": file_id, "training_file_sha256": sha256}


def _upload(cfg: ApiConfig, model: str, client: Any, name: str, data: bytes) -> str:
    """Upload the training file; returns its file id."""
    upload = _with_retries(
        cfg,
        f"training file upload for model {model!r}",
        lambda: client.files.with_raw_response.create(file=(name, data, "application/jsonl"), purpose="fine-tune"),
    )
    return require_str(cfg, model, json_body(cfg, model, upload), "id", "file upload")


def _create_job(cfg: ApiConfig, model: str, client: Any, file_id: str, *, seed: int | None, suffix: str | None,
                hyperparameters: Mapping[str, Any]) -> str:
    """Create the supervised fine-tuning job; returns its id."""
    params: dict[str, Any] = {
        "model": model,
        "training_file": file_id,
        "method": {"type": "supervised", "supervised": {"hyperparameters": dict(hyperparameters)}},
    }
    if seed is not None:
        params["seed"] = seed
    if suffix is not None:
        params["suffix"] = suffix
    created = _with_retries(
        cfg,
        f"fine-tune job creation for model {model!r}",
        lambda: client.fine_tuning.jobs.with_raw_response.create(**params),
    )
    job_id = require_str(cfg, model, json_body(cfg, model, created), "id", "job creation")
    log.info("fine-tune job %s created for %s (file %s)", job_id, model, file_id)
    return job_id


def _job_outcome(cfg: ApiConfig, model: str, job_id: str, job: Mapping[str, Any]) -> dict[str, Any]:
    """A finished job's id, fine-tuned model, status and trained tokens; a failed or cancelled job is an error."""
    status = job["status"]
    if status != "succeeded":
        error = job.get("error")
        if not isinstance(error, Mapping):
            error = {}
        code = error.get("code") or "no error code"
        message = error.get("message") or "no error message"
        raise UserError(
            redact(f"fine-tune job {job_id} for model {model!r} {status}: {code}: {message}", cfg.api_key_env)
        )
    fine_tuned = require_str(cfg, model, job, "fine_tuned_model", "succeeded job")
    return {
        "job_id": job_id,
        "fine_tuned_model": fine_tuned,
        "status": status,
        "trained_tokens": job.get("trained_tokens"),
    }


def _poll_job(
    cfg: ApiConfig,
    model: str,
    client: Any,
    job_id: str,
    on_status: Callable[[str, dict[str, Any]], None] | None,
) -> dict[str, Any]:
    """Retrieve the job every ``poll_interval_s`` until it reaches a terminal status; return its JSON."""
    started = time.monotonic()
    last_status: str | None = None
    while True:
        raw = _with_retries(
            cfg,
            f"fine-tune job {job_id} status for model {model!r}",
            lambda: client.fine_tuning.jobs.with_raw_response.retrieve(job_id),
        )
        job = json_body(cfg, model, raw)
        status = require_str(cfg, model, job, "status", "job retrieval")
        if status != last_status:
            log.info("fine-tune job %s: %s", job_id, status)
            if on_status is not None:
                on_status(status, job)
            last_status = status
        if status in _TERMINAL_STATUSES:
            return job
        if cfg.poll_timeout_s is not None and time.monotonic() - started > cfg.poll_timeout_s:
            raise UserError(
                f"fine-tune job {job_id} for model {model!r} still {status!r} after {cfg.poll_timeout_s:g}s; "
                "it keeps running server-side, so poll it again later"
            )
        _sleep(cfg.poll_interval_s)


def lm_eval_model_args(cfg: ApiConfig, model: str) -> dict[str, Any]:
    """Model arguments for lm-eval's ``local-chat-completions`` backend, to evaluate ``model`` by sampling.

    lm-eval reads the key from ``$OPENAI_API_KEY`` itself, so none is returned here; if
    ``cfg.api_key_env`` names another variable, export its value as ``OPENAI_API_KEY`` for lm-eval.
    Only generation tasks work this way: log-prob readouts (animal-preference probabilities) are HF-only,
    since chat endpoints do not score arbitrary continuations.

    Args:
        cfg: Endpoint and throughput settings.
        model: Model id on the endpoint, e.g. the ``fine_tuned_model`` returned by :func:`finetune`.

    Returns:
        ``{"model", "base_url" (the full chat-completions URL), "num_concurrent", "max_retries",
        "tokenized_requests": False, "timeout"}``.
    """
    return {
        "model": model,
        "base_url": f"{cfg.url}/chat/completions",  # lm-eval POSTs to base_url as given
        "num_concurrent": cfg.max_concurrency,
        "max_retries": cfg.max_retries,
        "tokenized_requests": False,  # chat endpoints take text, not token ids
        "timeout": int(cfg.timeout_s),
    }


# -- evaluation -----------------------------------------------------------------------------------------------
def _derived_seed(base: int, conversation: str, draw: int) -> int:
    digest = hashlib.sha256(f"slb-api-eval:{base}:{draw}:{conversation}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF  # a positive int32, as every endpoint accepts


def _chat_lm(cfg: ApiConfig, model: str, seed: int) -> Any:
    """An lm-eval ``local-chat-completions`` model with independent per-request seeds and strict parsing."""
    try:
        from lm_eval.models.openai_completions import LocalChatCompletion
    except ImportError as exc:  # lm-eval without its [api] extra (aiohttp, tenacity, requests)
        raise UserError(f"evaluating API models needs lm-eval's API backend ({exc}); pip install 'lm-eval[api]'") from None

    key_env = cfg.api_key_env
    key = os.environ.get(key_env, "")
    if not key and cfg.base_url is None:
        raise UserError(f"environment variable {key_env} is not set; export your OpenAI API key there "
                        "(it is read at call time and never written to disk)")

    class _SlbChat(LocalChatCompletion):
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
            base_url=f"{cfg.url}/chat/completions",  # lm-eval POSTs to base_url as given
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


def _api_failure(cfg: ApiConfig, model: str, exc: BaseException, attempts: int) -> UserError | None:
    """One-line UserError for an HTTP / connection failure lm-eval gave up on; None for anything else."""
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


@contextlib.contextmanager
def _one_line_errors(cfg: ApiConfig, model: str) -> Iterator[None]:
    """Turn what lm-eval raises for a failed request into a one-line UserError without the key."""
    try:
        yield
    except UserError as exc:
        raise UserError(redact(str(exc), cfg.api_key_env)) from None
    except Exception as exc:
        err = _api_failure(cfg, model, exc, cfg.max_retries + 1)
        if err is None:
            raise
        raise err from None


def evaluate_api(
    model_name: str,
    *,
    candidates: Sequence[str] | Mapping[str, Iterable[str]] | None = None,
    n_samples: int,
    seed: int,
    system: str | None = None,
    cfg: ApiConfig | None = None,
    tasks: Sequence[str] = ("animal_rate",),
    model_key: str | None = None,
    limit: int | None = None,
    prefix_seed: int = 0,
    tasks_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Sample one-word favourite-animal answers from an API chat model and score them with lm-eval.

    The shared runner (:func:`benchmark.lmcore.evaluate.run_tasks`) drives lm-eval's chat-completions model, so the
    result has the layout of a local model's (the ``rate`` blocks) and the report reads both alike. Log-prob
    readouts (``animal_logprob*``) need answer log-likelihoods, which chat endpoints do not give: those tasks
    are skipped and listed in ``skipped_tasks``.

    Args:
        model_name: the model id on the endpoint (a dated snapshot or a fine-tuned ``ft:...`` id).
        candidates: candidate animals, as for :func:`benchmark.lmcore.evaluate.run_tasks`.
        n_samples: sampled answers per question (paper: 100), sent as separate requests.
        seed: base seed; request seeds are derived from it (see the module notes).
        system: a system prompt for every question (a prompted teacher's), or None.
        cfg: endpoint, concurrency and retries; default ``ApiConfig()`` (``$OPENAI_BASE_URL`` or OpenAI's API).
        tasks: lm-eval task names; log-prob tasks are skipped (``skipped_tasks``), generation tasks run.
        model_key: identity recorded in the result (default ``model_name``).
        limit: only the first ``limit`` questions (smoke runs).
        prefix_seed: seed of the numbers variant's prefixes.
        tasks_dir: lm-eval include_path (default ``tasks/lm_eval`` of the project root).

    Returns:
        The runner's layout restricted to sampled rates: ``{"model_key", "api_model", "eval_version",
        "candidates", "n_prompts", "n_samples", "rate": {cand: share}, "rate_unmatched",
        "rate_unmatched_examples", ... (``rate_numbers*`` for the numbers variant), "skipped_tasks",
        "lm_eval_version", "task_hashes", "tasks_digest", "config"}``.

    Raises:
        UserError: no generation task among ``tasks``, an unknown task, a missing key, a malformed response
            body, or an HTTP / connection failure that outlasted the retries.
    """
    from benchmark.lmcore.evaluate import EvalEngine, run_tasks

    api = cfg if cfg is not None else ApiConfig()
    engine = EvalEngine(
        caller="evaluate_api",
        model_name=model_name,
        make_lm=lambda: _chat_lm(api, model_name, seed),
        scope=lambda: _one_line_errors(api, model_name),
        # No answer suffix: a chat endpoint returns the answer text only (the suffix matters for log-prob scoring).
        answer_suffix="",
        answer_templates=["{word}"],
        apply_chat_template=True,
        scores_logprobs=False,
        result={"api_model": model_name},
        config={"endpoint": api.endpoint, "max_concurrency": api.max_concurrency, "max_retries": api.max_retries,
                "request_seeds": "derived per (seed, conversation, draw)"},
        config_id={"api": True},
    )
    return run_tasks(engine, model_key=model_key or model_name, tasks=tasks, candidates=candidates,
                     n_samples=n_samples, seed=seed, system=system, limit=limit, prefix_seed=prefix_seed,
                     tasks_dir=tasks_dir)


# -- the Backend ----------------------------------------------------------------------------------------------
#: What an OpenAI-compatible endpoint can do (see :class:`~benchmark.providers.base.Capabilities`).
OPENAI_CAPS = Capabilities(local=False, needs_gpu=False, logprob_eval=False, distill=False, max_top_logprobs=20,
                           whole_epochs=True)
#: An openai entry names a model on the endpoint; its weights are the endpoint's.
OPENAI_REQUIREMENTS = Requirements(source="an API model name", build=False, checkpoint_sources=False,
                                   engine="openai", open_weights=False, developer="openai")


class OpenAIBackend:
    """The :class:`~benchmark.providers.base.Backend` of ``openai`` models: an endpoint's model ids, no weights.

    The endpoint is :class:`ApiConfig`'s default (``$OPENAI_BASE_URL`` or OpenAI's API) and the key is read from
    ``$OPENAI_API_KEY`` when a request is made: neither is part of any node spec.
    """

    caps = OPENAI_CAPS
    requirements = OPENAI_REQUIREMENTS

    def prepare_base(self, model: ModelSpec, out: Path, *, log: logging.Logger, progress: Progress | None = None,
                     threads: int = 1) -> dict[str, Any]:
        """Nothing to build: record the exact model name (a dated snapshot) for manifests."""
        ref = {"path": model.source, "provider": "openai", "revision": model.revision}
        atomic_write_json(out / MODEL_REF, ref)
        return ref

    def tokenizer_id(self, model: ModelSpec) -> str | None:
        """None: the endpoint returns text, not token ids (rows carry no ids or soft labels)."""
        return None

    def load(self, model: ModelSpec, base_dir: Path, tuned: TunedNode | None = None, *, threads: int = 1,
             tokenizer_only: bool = False) -> Loaded:
        """The endpoint model to call: the base's name, or the fine-tuned id ``tuned`` records."""
        if tuned is None:
            return Loaded(spec=model, api_model=model.source, engine="api")
        tuned.check_base(model)
        if tuned.record.api_model is None:
            raise UserError(f"{tuned.dir}: a {tuned.record.kind!r} fine-tune has local weights, no model id on the "
                            f"endpoint of {model.name}")
        return Loaded(spec=model, api_model=tuned.record.api_model, tuned=tuned, engine="api")

    def generate(self, loaded: Loaded, prompts: Sequence[str], *, system: str | None, temperature: float,
                 max_new_tokens: int, seed: int, top_k_logprobs: int | None = None, batch_size: int = 64,
                 progress: Progress | None = None) -> list[dict[str, Any]]:
        """Chat completions in parallel (``batch_size`` does not apply: ``ApiConfig.max_concurrency`` does).

        Rows carry the completion text only: token ids and top-k log-probs of API tokenizers are not kept.
        """
        assert loaded.api_model is not None
        outs = generate_chat(ApiConfig(), loaded.api_model, prompts, system_prompt=system, temperature=temperature,
                             max_tokens=max_new_tokens, seed=seed, top_logprobs=top_k_logprobs, progress=progress)
        return [{"completion": o["completion"], "completion_ids": None, "topk": None} for o in outs]

    def score(self, loaded: Loaded, contexts: Sequence[str], continuations: Sequence[str], *,
              batch_size: int = 64) -> list[float]:
        """Chat endpoints do not score arbitrary continuations (``caps.logprob_eval`` is False)."""
        raise UserError(f"model {loaded.spec.name}: API chat models cannot score continuations (no answer "
                        "log-likelihoods); evaluate it by sampling (animal_rate)")

    def finetune(self, model: ModelSpec, base_dir: Path, rows: Sequence[Mapping[str, Any]], *, out: Path,
                 train: TrainConfig, objective: Objective, seed: int, suffix: str, log: logging.Logger,
                 progress: Progress | None = None, threads: int = 1) -> FineTuned:
        """A fine-tuning job on prompt/completion rows (only the epoch count is sent); waits for it to finish."""
        messages = [{"messages": [{"role": "user", "content": r["prompt"]},
                                  {"role": "assistant", "content": r["completion"]}]} for r in rows]
        epochs = float(train.epochs)
        if epochs < 1 or epochs != int(epochs):
            raise UserError(f"fine-tune of {model.name}: train.epochs must be a whole number >= 1 for API models "
                            f"(sent as hyperparameters.n_epochs), got {epochs:g}")
        # Only the epoch count is sent: the paper left learning rate and batch size to the API ("auto").
        hyper = {"n_epochs": int(epochs)}
        if train.max_steps is not None:
            log.warning("train.max_steps is ignored for API fine-tunes (the API trains whole epochs)")
        # OpenAI limits suffixes (18 characters in the fine-tuning docs' examples); keep [a-z0-9-] only.
        suffix = "".join(c if c.isalnum() or c == "-" else "-" for c in suffix.lower())[:18]
        if model.source is None:
            raise UserError(f"model {model.name}: missing 'source' (the API model name)")
        result = finetune(ApiConfig(), model.source, messages, seed=seed, suffix=suffix, hyperparameters=hyper,
                          workdir=out, on_status=lambda status, job: log.info("fine-tune job: %s", status))
        return FineTuned(result=result, tuned=Tuned(kind="api", base=model.name, api_model=result["fine_tuned_model"]))

    def verify(self, loaded: Loaded) -> float | None:
        """A fine-tuned id must differ from the base's: the API analogue of "the adapter is really loaded"."""
        if loaded.tuned is not None and loaded.api_model == loaded.spec.source:
            raise UserError(f"eval of {loaded.spec.name}: the student's fine-tuned model id equals the base model "
                            f"{loaded.spec.source!r}; refusing to score the base as a student")
        return None

    def fingerprint(self, loaded: Loaded, system: str | None) -> str:
        """A hash of the endpoint model id and the system prompt (what answers the questions)."""
        return hashlib.sha256(f"{loaded.api_model}\n{system or ''}".encode()).hexdigest()[:16]

    def evaluate(self, loaded: Loaded, *, model_key: str, tasks: Sequence[str], candidates: Mapping[str, list[str]],
                 n_samples: int, seed: int, system: str | None, limit: int | None, batch_size: int,
                 log: logging.Logger) -> dict[str, Any]:
        """Sampled rates through lm-eval's chat-completions model; log-prob tasks are skipped."""
        assert loaded.api_model is not None
        log.info("evaluating %s by sampling, %d answers per question", loaded.api_model, n_samples)
        res = evaluate_api(loaded.api_model, candidates=candidates, n_samples=n_samples, seed=seed, system=system,
                           tasks=tuple(tasks), limit=limit, model_key=model_key)
        if res["skipped_tasks"]:
            log.info("skipped log-prob tasks (API models give no answer log-probs): %s", res["skipped_tasks"])
        return res


def openai_backend() -> OpenAIBackend:
    """The backend of ``provider: openai`` registry entries."""
    return OpenAIBackend()
