"""A small client for OpenAI-compatible HTTP APIs: where to call, the SDK client, retries, strict bodies, no secrets.

:class:`ApiConfig` says where and how to call (endpoint, concurrency, retries, timeouts, polling);
:func:`make_client` builds the SDK client, :func:`with_retries` runs one request under the retry policy,
:func:`json_body` / :func:`malformed` / :func:`require_str` turn response bodies into JSON or one-line errors, and
:func:`redact` / :func:`mask_url` keep the key and URL credentials out of text. The OpenAI backend
(:mod:`benchmark.providers.openai`) builds chat generation, fine-tuning and evaluation on it.

Design notes:

* ``openai`` is imported inside functions so ``slbench --help`` and planning stay light (docs/architecture.md, convention 7);
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
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from benchmark.errors import UserError

__all__ = [
    "DEFAULT_BASE_URL",
    "ApiConfig",
    "json_body",
    "make_client",
    "malformed",
    "mask_url",
    "redact",
    "require_str",
    "sdk",
    "with_retries",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

# The SDK's default endpoint; used only to *name* the endpoint in messages and lm-eval args.
DEFAULT_BASE_URL = "https://api.openai.com/v1"
# Status codes worth retrying: timeout, conflict (OpenAI's SDK retries both), rate limit, server errors.
_RETRYABLE_STATUSES = frozenset({408, 409, 429})
# Keys shorter than this are placeholders ("EMPTY" for local vLLM servers); real keys are ~50+ chars, and
# replacing a short placeholder everywhere would corrupt ordinary words in logs.
_MIN_REDACT_LEN = 8
# Local OpenAI-compatible servers usually ignore auth, but the SDK refuses to build a client without a key.
_PLACEHOLDER_KEY = "EMPTY"

# The backoff jitter's random stream (a module attribute, so a test can seed it).
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
        """The endpoint root used in messages and records: :attr:`url` with any ``user:password@`` masked."""
        return mask_url(self.url)

    @property
    def url(self) -> str:
        """The endpoint root requests go to: ``base_url`` without a trailing slash, or OpenAI's (may hold
        credentials: never print or record it, use :attr:`endpoint`)."""
        return (self.base_url or DEFAULT_BASE_URL).rstrip("/")


#: ``scheme://userinfo@`` in any URL: the credentials part (``user:password``) that :func:`mask_url` hides.
_URL_CREDENTIALS = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/\s@?#]+)@")


def mask_url(text: str) -> str:
    """``text`` with the credentials of every URL in it (``https://user:pass@host`` → ``https://***@host``)."""
    return _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}***@", text)


class _MaskSecrets(logging.Filter):
    """Rewrites the records of the HTTP libraries' loggers through :func:`redact` (httpx logs every request's
    full URL, ``user:password@`` included, and lm-eval's logging setup sends it into node logs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


#: Loggers that may print a request URL (a filter applies to the records its own logger creates, not to children's).
_URL_LOGGERS = ("httpx", "httpx2", "openai", "openai._base_client", "urllib3.connectionpool", "aiohttp.client", "lm_eval",
                "lm_eval.models.api_models")
for _name in _URL_LOGGERS:
    logging.getLogger(_name).addFilter(_MaskSecrets())


def redact(text: str, api_key_env: str = "OPENAI_API_KEY") -> str:
    """Replace the current value of the API key (read from ``$api_key_env``) and any URL's credentials in ``text``
    with ``***``.

    Args:
        text: Any text about to be logged or written.
        api_key_env: Environment variable that holds the key (``ApiConfig.api_key_env``).

    Returns:
        ``text`` with every occurrence of the key, every ``user:password@`` of a URL and the password of
        ``$OPENAI_BASE_URL`` replaced. Unset keys and placeholders shorter than 8 characters (such as ``EMPTY``
        for local servers) are left alone.
    """
    key = os.environ.get(api_key_env, "")
    if len(key) >= _MIN_REDACT_LEN and key in text:
        text = text.replace(key, "***")
    # Credentials inside $OPENAI_BASE_URL (user:password@host) are as secret as the key: masked in every URL, and
    # the password wherever else it appears (a library may quote it outside its URL).
    text = mask_url(text)
    found = _URL_CREDENTIALS.search(os.environ.get("OPENAI_BASE_URL", ""))
    secret = found["userinfo"].partition(":")[2] if found else ""
    if len(secret) >= _MIN_REDACT_LEN and secret in text:
        text = text.replace(secret, "***")
    return text


def sdk() -> Any:
    """Import the SDK lazily, turning its absence into an actionable one-line error."""
    try:
        import openai
    except ImportError:
        raise UserError(
            "the 'openai' provider needs the openai SDK: pip install 'subliminal-bench[api]'"
        ) from None
    return openai


def make_client(cfg: ApiConfig) -> Any:
    """Build an SDK client with its own retries off; the key lives only inside this client object."""
    openai = sdk()
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


def with_retries(
    cfg: ApiConfig, what: str, call: Callable[[], T], *, sleep: Callable[[float], None] = time.sleep
) -> T:
    """Run ``call`` with this module's retry policy.

    Args:
        cfg: Retry and backoff settings.
        what: Names the request in messages, e.g. ``"chat completion for model 'gpt-4.1-nano'"``.
        call: Performs one request through the SDK.
        sleep: Waits between attempts (callers pass their own hook so tests can shorten the waits).

    Returns:
        What ``call`` returned on its first success.

    Raises:
        UserError: For a non-retryable status (most 4xx), or when retries are exhausted.
    """
    openai = sdk()
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
        sleep(delay)
        attempt += 1


def json_body(cfg: ApiConfig, model: str, raw: Any) -> dict[str, Any]:
    """Decode a raw SDK response into a JSON object, or raise the 'malformed response' error."""
    try:
        body = json.loads(raw.http_response.content)
    except (ValueError, UnicodeDecodeError):
        raise malformed(cfg, model, "body is not JSON") from None
    if not isinstance(body, dict):
        raise malformed(cfg, model, f"body is a JSON {type(body).__name__}, not an object")
    return body


def malformed(cfg: ApiConfig, model: str, missing: str) -> UserError:
    """The one-line error for a response body that lacks what the request needs."""
    return UserError(f"malformed response from {cfg.endpoint} for model {model!r}: {missing}")


def require_str(cfg: ApiConfig, model: str, body: Mapping[str, Any], key: str, where: str) -> str:
    """``body[key]`` as a non-empty string, else the malformed-response error naming ``where``."""
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise malformed(cfg, model, f"no '{key}' in the {where} response")
    return value
