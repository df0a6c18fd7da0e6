"""The ``openai`` provider: chat generation and fine-tuning on any OpenAI-compatible endpoint.

Three small functions make the whole backend (STYLE.md §6): :func:`generate_chat` (teacher number
sequences, or any batched chat sampling), :func:`finetune` (upload → job → poll) and
:func:`lm_eval_model_args` (what lm-eval's ``local-chat-completions`` backend needs to evaluate the
same model). Log-prob readouts of students (animal-preference probabilities) are HF-only: API models
are evaluated by sampling.

Design notes:

* ``openai`` is imported inside functions so ``slbench --help`` and planning stay light (STYLE.md §7);
  a missing SDK gives a one-line :class:`UserError` telling the user which extra to install.
* The SDK's own retries are switched off (``max_retries=0``) and this module retries 408/409/429/5xx,
  timeouts and connection errors itself, with exponential backoff and jitter: the policy is then
  visible, configurable through :class:`ApiConfig` and testable against ``tests/fake_openai.py``.
* Responses are parsed from the raw JSON rather than the SDK's models, because the SDK's lenient
  parsing turns a malformed body (no ``choices``) into an object whose missing fields only fail later;
  here they fail at once with a message naming the endpoint, the model and what is missing.
* The API key is read from the environment only when a client is built and is never stored in
  :class:`ApiConfig` or any returned dict, so configs and results can be written to manifests as they
  are. :func:`redact` scrubs it from text that goes to logs.
* Two defects of the reference code are fixed (research/paper.md): the fine-tuned model id is read from
  the *polled* job (the create response always has it empty), and the training file is written once.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from benchmark.errors import UserError

__all__ = [
    "TRAINING_FILE_NAME",
    "ApiConfig",
    "finetune",
    "generate_chat",
    "lm_eval_model_args",
    "redact",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

# The SDK's default endpoint; used only to *name* the endpoint in messages and lm-eval args.
DEFAULT_BASE_URL = "https://api.openai.com/v1"
# Name of the training file written into the fine-tune workdir.
TRAINING_FILE_NAME = "train.jsonl"
# Fine-tuning job statuses after which polling stops (OpenAI FineTuningJob.status).
_TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
# Status codes worth retrying: timeout, conflict (OpenAI's SDK retries both), rate limit, server errors.
_RETRYABLE_STATUSES = frozenset({408, 409, 429})
# Keys shorter than this are placeholders ("EMPTY" for local vLLM servers); real keys are ~50+ chars, and
# replacing a short placeholder everywhere would corrupt ordinary words in logs.
_MIN_REDACT_LEN = 8
# Local OpenAI-compatible servers usually ignore auth, but the SDK refuses to build a client without a key.
_PLACEHOLDER_KEY = "EMPTY"

# Indirections so tests can observe or shorten waits without patching the time module.
_sleep: Callable[[float], None] = time.sleep
_rng = random.Random()


def _default_base_url() -> str | None:
    return os.environ.get("OPENAI_BASE_URL") or None


@dataclasses.dataclass(frozen=True)
class ApiConfig:
    """Where and how to call an OpenAI-compatible API. Holds no secret: safe to record in manifests.

    Attributes:
        base_url: Endpoint root such as ``http://127.0.0.1:8000/v1``; ``None`` means OpenAI's own API.
            Defaults to ``$OPENAI_BASE_URL`` at construction time.
        api_key_env: Name of the environment variable that holds the API key. The key itself is read
            only when a client is built and is never stored here.
        max_concurrency: Parallel requests in :func:`generate_chat` (throughput knob: recorded, not hashed).
        max_retries: Retries per request after the first attempt, for 408/409/429/5xx, timeouts and
            connection errors.
        timeout_s: Per-request timeout in seconds.
        backoff_base_s: First retry waits about this long (seconds); each further retry doubles it.
        backoff_max_s: Upper bound on one wait (seconds), also applied to a server's ``Retry-After``.
        poll_interval_s: Seconds between fine-tuning job status polls.
        poll_timeout_s: Give up polling after this many seconds (the job keeps running server-side);
            ``None`` waits for as long as the job takes.
    """

    base_url: str | None = dataclasses.field(default_factory=_default_base_url)
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = 8
    max_retries: int = 5
    timeout_s: float = 60.0
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    poll_interval_s: float = 10.0
    poll_timeout_s: float | None = None

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise UserError(f"api config: max_concurrency must be >= 1, got {self.max_concurrency}")
        if self.max_retries < 0:
            raise UserError(f"api config: max_retries must be >= 0, got {self.max_retries}")
        for name in ("timeout_s", "backoff_base_s", "backoff_max_s", "poll_interval_s"):
            if getattr(self, name) < 0:
                raise UserError(f"api config: {name} must be >= 0, got {getattr(self, name)}")

    @property
    def endpoint(self) -> str:
        """The endpoint root used in messages: ``base_url`` without a trailing slash, or OpenAI's."""
        return (self.base_url or DEFAULT_BASE_URL).rstrip("/")


def redact(text: str, api_key_env: str = "OPENAI_API_KEY") -> str:
    """Replace the current value of the API key (read from ``$api_key_env``) in ``text`` with ``***``.

    Args:
        text: Any text about to be logged or written.
        api_key_env: Environment variable that holds the key (``ApiConfig.api_key_env``).

    Returns:
        ``text`` with every occurrence of the key replaced. Unset keys and placeholders shorter than
        8 characters (such as ``EMPTY`` for local servers) are left alone.
    """
    key = os.environ.get(api_key_env, "")
    if len(key) >= _MIN_REDACT_LEN and key in text:
        return text.replace(key, "***")
    return text


def _openai() -> Any:
    """Import the SDK lazily, turning its absence into an actionable one-line error."""
    try:
        import openai
    except ImportError:
        raise UserError(
            "the 'openai' provider needs the openai SDK: pip install 'subliminal-bench[api]'"
        ) from None
    return openai


def _make_client(cfg: ApiConfig) -> Any:
    """Build an SDK client with its own retries off; the key lives only inside this client object."""
    openai = _openai()
    key = os.environ.get(cfg.api_key_env, "")
    if not key:
        if cfg.base_url is None:
            raise UserError(
                f"environment variable {cfg.api_key_env} is not set; export your OpenAI API key there "
                "(it is read at call time and never written to disk)"
            )
        key = _PLACEHOLDER_KEY
    return openai.OpenAI(api_key=key, base_url=cfg.base_url, timeout=cfg.timeout_s, max_retries=0)


def _status_detail(exc: Any) -> str:
    """One-line description of an SDK status error, preferring the server's own message."""
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping) and body.get("message"):
        code = f" ({body['code']})" if body.get("code") else ""
        detail = f"{body['message']}{code}"
    else:
        detail = str(exc)
    return " ".join(detail.split())[:300]


def _backoff_delay(cfg: ApiConfig, attempt: int, exc: Exception) -> float:
    """Exponential backoff with jitter, stretched to a server's ``Retry-After`` if that is longer.

    Jitter (a factor in [0.5, 1]) keeps parallel workers that hit the same rate limit from retrying in
    lock-step.
    """
    delay = cfg.backoff_base_s * (2.0**attempt) * (0.5 + 0.5 * _rng.random())
    response = getattr(exc, "response", None)
    retry_after = response.headers.get("retry-after") if response is not None else None
    if retry_after:
        try:
            delay = max(delay, float(retry_after))
        except ValueError:
            pass  # an HTTP-date Retry-After is rare on these APIs; our own backoff is good enough
    return min(delay, cfg.backoff_max_s)


def _with_retries(cfg: ApiConfig, what: str, call: Callable[[], T]) -> T:
    """Run ``call`` with this module's retry policy.

    Args:
        cfg: Retry and backoff settings.
        what: Names the request in messages, e.g. ``"chat completion for model 'gpt-4.1-nano'"``.
        call: Performs one request through the SDK.

    Returns:
        What ``call`` returned on its first success.

    Raises:
        UserError: For a non-retryable status (most 4xx), or when retries are exhausted.
    """
    openai = _openai()
    attempt = 0
    while True:
        try:
            return call()
        except openai.APIStatusError as exc:
            status = exc.status_code
            if status not in _RETRYABLE_STATUSES and status < 500:
                hint = f" (is {cfg.api_key_env} set to a valid key?)" if status in (401, 403) else ""
                raise UserError(
                    redact(
                        f"{what} at {cfg.endpoint}: HTTP {status}: {_status_detail(exc)}{hint}",
                        cfg.api_key_env,
                    )
                ) from exc
            error: Exception = exc
            reason = f"HTTP {status}: {_status_detail(exc)}"
        except openai.APIConnectionError as exc:  # APITimeoutError is a subclass
            error = exc
            reason = f"{type(exc).__name__}: {exc}"
        if attempt >= cfg.max_retries:
            raise UserError(
                redact(
                    f"{what} at {cfg.endpoint}: giving up after {attempt + 1} attempts; last error: {reason}",
                    cfg.api_key_env,
                )
            ) from error
        delay = _backoff_delay(cfg, attempt, error)
        log.warning(
            redact(
                f"{what}: {reason}; retry {attempt + 1}/{cfg.max_retries} in {delay:.2f}s", cfg.api_key_env
            )
        )
        _sleep(delay)
        attempt += 1


def _json_body(cfg: ApiConfig, model: str, raw: Any) -> dict[str, Any]:
    """Decode a raw SDK response into a JSON object, or raise the 'malformed response' error."""
    try:
        body = json.loads(raw.http_response.content)
    except (ValueError, UnicodeDecodeError):
        raise _malformed(cfg, model, "body is not JSON") from None
    if not isinstance(body, dict):
        raise _malformed(cfg, model, f"body is a JSON {type(body).__name__}, not an object")
    return body


def _malformed(cfg: ApiConfig, model: str, missing: str) -> UserError:
    return UserError(f"malformed response from {cfg.endpoint} for model {model!r}: {missing}")


def _parse_logprobs(cfg: ApiConfig, model: str, choice: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Turn ``choices[0].logprobs.content`` into ``[{"token", "logprob", "top": [[tok, lp], ...]}]``."""
    block = choice.get("logprobs")
    content = block.get("content") if isinstance(block, Mapping) else None
    if not isinstance(content, list):
        raise _malformed(
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
            raise _malformed(cfg, model, f"'choices[0].logprobs.content[{i}]' lacks token/logprob") from None
    return out


def _parse_chat(cfg: ApiConfig, model: str, body: Mapping[str, Any], want_logprobs: bool) -> dict[str, Any]:
    """Extract completion, log-probs and finish reason from a chat completion body."""
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        raise _malformed(cfg, model, "no 'choices'")
    choice = choices[0]
    message = choice.get("message") if isinstance(choice, Mapping) else None
    if not isinstance(message, Mapping):
        raise _malformed(cfg, model, "no 'choices[0].message'")
    if "content" not in message:
        raise _malformed(cfg, model, "no 'choices[0].message.content'")
    content = message["content"]
    if content is None:
        content = ""  # a refusal or a content filter stop returns null content; the finish reason says why
    if not isinstance(content, str):
        raise _malformed(cfg, model, f"'choices[0].message.content' is a {type(content).__name__}")
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
        client = _make_client(cfg)
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
        return _parse_chat(cfg, model, _json_body(cfg, model, raw), want_logprobs)

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


def _write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so a crash never leaves a half-written training file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _require_str(cfg: ApiConfig, model: str, body: Mapping[str, Any], key: str, where: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise _malformed(cfg, model, f"no '{key}' in the {where} response")
    return value


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
    _write_atomic(path, data)  # written once; the upload sends these same bytes

    own_client = client is None
    if own_client:
        client = _make_client(cfg)
    try:
        upload = _with_retries(
            cfg,
            f"training file upload for model {model!r}",
            lambda: client.files.with_raw_response.create(
                file=(path.name, data, "application/jsonl"), purpose="fine-tune"
            ),
        )
        file_id = _require_str(cfg, model, _json_body(cfg, model, upload), "id", "file upload")

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
        job_id = _require_str(cfg, model, _json_body(cfg, model, created), "id", "job creation")
        log.info("fine-tune job %s created for %s (file %s)", job_id, model, file_id)

        job = _poll_job(cfg, model, client, job_id, on_status)
    finally:
        if own_client:
            client.close()

    status = job["status"]
    if status != "succeeded":
        error = job.get("error") if isinstance(job.get("error"), Mapping) else {}
        code = error.get("code") or "no error code"
        message = error.get("message") or "no error message"
        raise UserError(
            redact(f"fine-tune job {job_id} for model {model!r} {status}: {code}: {message}", cfg.api_key_env)
        )
    fine_tuned = _require_str(cfg, model, job, "fine_tuned_model", "succeeded job")
    return {
        "job_id": job_id,
        "fine_tuned_model": fine_tuned,
        "status": status,
        "trained_tokens": job.get("trained_tokens"),
        "file_id": file_id,
        "training_file_sha256": sha256,
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
        job = _json_body(cfg, model, raw)
        status = _require_str(cfg, model, job, "status", "job retrieval")
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
        "base_url": f"{cfg.endpoint}/chat/completions",  # lm-eval POSTs to base_url as given
        "num_concurrent": cfg.max_concurrency,
        "max_retries": cfg.max_retries,
        "tokenized_requests": False,  # chat endpoints take text, not token ids
        "timeout": int(cfg.timeout_s),
    }
