"""An offline, programmable OpenAI-compatible server for tests (stdlib only, 127.0.0.1, ephemeral port).

Serves what the ``openai`` provider and lm-eval's ``local-chat-completions`` backend call:

* ``POST /v1/chat/completions``: deterministic number text (``"123, 456, 789"``) derived from the
  request, ``n`` choices, and ``logprobs``/``top_logprobs`` with plausible values. A :attr:`FakeOpenAI.responder`
  replaces the text (code, chain-of-thought, judge replies), and may answer a whole message instead, e.g.
  ``{"content": None, "refusal": "I'm sorry, I can't help with that."}`` (how the API returns a refusal).
* ``POST /v1/files`` (multipart): stores the uploaded bytes in :attr:`FakeOpenAI.files`.
* ``POST /v1/fine_tuning/jobs`` and ``GET /v1/fine_tuning/jobs/{id}``: each retrieve advances the job
  through :attr:`FakeOpenAI.job_statuses`; ``fine_tuned_model`` is empty until ``succeeded`` (as on the
  real API), and a ``failed`` job carries :attr:`FakeOpenAI.job_error`.

Failures are injected with :meth:`FakeOpenAI.fail_next` (HTTP statuses, malformed bodies, dropped
connections, slow responses). Every request is recorded in :attr:`FakeOpenAI.requests`.

Example:
    >>> with FakeOpenAI() as fake:  # doctest: +SKIP
    ...     fake.fail_next(429, 500)
    ...     generate_chat(ApiConfig(base_url=fake.url), ...)
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

import pytest

__all__ = ["FakeOpenAI", "RecordedRequest", "fake_openai"]


@dataclass
class RecordedRequest:
    """One request as the server saw it (headers lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.body)


@dataclass
class _Failure:
    kind: int | str  # an HTTP status, "malformed", "not_json", "drop" or "delay"
    path: str | None  # only requests whose path contains this are affected; None: any request
    seconds: float = 0.0  # for "delay": wait this long, then answer normally


@dataclass
class _Job:
    body: dict[str, Any]
    polls: int = 0
    trained_tokens: int = 0


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # keep-alive handler threads must not block stop()
    fake: FakeOpenAI

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out or whose connection we drop on purpose close sockets mid-reply; that is
        # expected here and would only clutter test output.
        pass


def _numbers(seed_text: str, count: int = 3) -> list[int]:
    """Deterministic 3-digit numbers derived from a string."""
    digest = hashlib.sha256(seed_text.encode("utf-8")).digest()
    return [100 + int.from_bytes(digest[2 * i : 2 * i + 2], "big") % 900 for i in range(count)]


def _tokens(text: str) -> list[str]:
    """Split number text into plausible tokens: digit runs, ',' and ' '."""
    out: list[str] = []
    for ch in text:
        if out and ch.isdigit() and out[-1].isdigit():
            out[-1] += ch
        else:
            out.append(ch)
    return out


def _token_logprobs(text: str, top_k: int) -> list[dict[str, Any]]:
    """Per-token logprobs in OpenAI's chat format; the sampled token is always the most likely."""
    content = []
    for i, tok in enumerate(_tokens(text)):
        base = -0.05 - (int(hashlib.sha256(f"{i}:{tok}".encode()).hexdigest()[:4], 16) % 100) / 200.0
        alternatives = [tok] + [alt for alt in ("1", "2", "3", ",", " ", "9", "5") if alt != tok]
        top = [
            {"token": alt, "logprob": round(base - 1.5 * rank, 4), "bytes": list(alt.encode())}
            for rank, alt in enumerate(alternatives[:top_k])
        ]
        content.append(
            {"token": tok, "logprob": round(base, 4), "bytes": list(tok.encode()), "top_logprobs": top}
        )
    return content


class FakeOpenAI:
    """A background OpenAI-compatible HTTP server with programmable behaviour.

    Attributes:
        requests: Every request received, in arrival order.
        files: Uploaded files: id → ``{"filename", "purpose", "content": bytes}``.
        jobs: Fine-tuning jobs by id (latest state as JSON).
        job_statuses: Statuses returned by successive retrieves of a job; the last one repeats.
        job_error: The ``error`` object of a job that ends ``failed``.
        chat_delay_s: Seconds each chat completion takes (to observe concurrency).
        api_key: If set, requests without ``Authorization: Bearer <api_key>`` get 401.
        max_in_flight: Highest number of chat completions served at the same time.
        responder: If set, ``responder(model, messages, seed, index)`` gives each chat completion instead of
            :meth:`expected_completion`: a string (the content), a message dict with ``content`` (may be None)
            and ``refusal``, or an int: the request fails with that HTTP status.
    """

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.files: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.job_statuses: list[str] = ["validating_files", "running", "succeeded"]
        self.job_error: dict[str, Any] = {
            "code": "invalid_training_file",
            "message": "The job failed due to an invalid training file.",
            "param": "training_file",
        }
        self.chat_delay_s = 0.0
        self.api_key: str | None = None
        self.max_in_flight = 0
        self.responder: Callable[[str, list[dict[str, str]], int | None, int], str | dict[str, Any] | int] | None = None
        self._in_flight = 0
        self._failures: list[_Failure] = []
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        """Base URL to give the client, e.g. ``http://127.0.0.1:54321/v1``."""
        if self._server is None:
            raise RuntimeError("FakeOpenAI is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> FakeOpenAI:
        """Bind an ephemeral port on 127.0.0.1 and serve from a daemon thread."""
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- programming
    def fail_next(self, *kinds: int | str, path: str | None = None, seconds: float = 1.0) -> None:
        """Queue failures for the next matching requests, one per request, in order.

        Args:
            *kinds: Each an HTTP status (``429``, ``500``, ``400``...; answered with an OpenAI-style error
                body), ``"malformed"`` (200 with a JSON body lacking ``choices``/``id``), ``"not_json"``
                (200 with a non-JSON body), ``"drop"`` (close the connection without answering) or
                ``"delay"`` (wait ``seconds``, then answer normally: a client timeout).
            path: Only requests whose path contains this string consume these failures.
            seconds: Wait for ``"delay"``.
        """
        with self._lock:
            self._failures.extend(_Failure(kind, path, seconds) for kind in kinds)

    @staticmethod
    def expected_completion(
        model: str, messages: list[dict[str, str]], seed: int | None, index: int = 0
    ) -> str:
        """The text the fake answers for this request (choice ``index``), for asserting order."""
        key = json.dumps([model, messages, seed], sort_keys=True)
        return ", ".join(str(n) for n in _numbers(f"{key}#{index}"))

    def requests_to(self, path_part: str) -> list[RecordedRequest]:
        """Recorded requests whose path contains ``path_part``."""
        return [r for r in self.requests if path_part in r.path]

    def _take_failure(self, path: str) -> _Failure | None:
        with self._lock:
            for i, failure in enumerate(self._failures):
                if failure.path is None or failure.path in path:
                    return self._failures.pop(i)
        return None

    # ----------------------------------------------------------------- endpoints
    def _chat(self, body: dict[str, Any]) -> tuple[int, Any]:
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            if self.chat_delay_s:
                time.sleep(self.chat_delay_s)
            messages = body.get("messages")
            if not isinstance(messages, list) or "model" not in body:
                return 400, _error("'model' and 'messages' are required", "invalid_request_error")
            key = json.dumps([body["model"], messages, body.get("seed")], sort_keys=True)
            choices = []
            for index in range(int(body.get("n") or 1)):
                answer = (self.responder or self.expected_completion)(
                    body["model"], messages, body.get("seed"), index
                )
                if isinstance(answer, int):  # the responder fails this request with an HTTP status
                    return answer, _error(f"responder answered HTTP {answer}", "invalid_request_error")
                message = {"role": "assistant", "content": answer, "refusal": None}
                if isinstance(answer, dict):  # a whole message, e.g. a refusal with null content
                    message = {"role": "assistant", "content": answer.get("content"),
                               "refusal": answer.get("refusal")}
                text = message["content"] or ""
                logprobs = None
                if body.get("logprobs"):
                    logprobs = {"content": _token_logprobs(text, int(body.get("top_logprobs") or 0))}
                choices.append(
                    {
                        "index": index,
                        "message": message,
                        "logprobs": logprobs,
                        "finish_reason": "stop",
                    }
                )
            return 200, {
                "id": "chatcmpl-" + hashlib.sha256(key.encode()).hexdigest()[:12],
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": choices,
                "usage": {
                    "prompt_tokens": 10,
                    "completion_tokens": 5 * len(choices),
                    "total_tokens": 10 + 5 * len(choices),
                },
            }
        finally:
            with self._lock:
                self._in_flight -= 1

    def _upload(self, content_type: str, raw: bytes) -> tuple[int, Any]:
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + raw
        )
        fields: dict[str, tuple[str | None, bytes]] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            fields[str(name)] = (part.get_filename(), part.get_payload(decode=True) or b"")
        if "file" not in fields or "purpose" not in fields:
            return 400, _error("multipart fields 'file' and 'purpose' are required", "invalid_request_error")
        filename, content = fields["file"]
        purpose = fields["purpose"][1].decode()
        with self._lock:
            file_id = f"file-{len(self.files) + 1:04d}"
            self.files[file_id] = {"filename": filename, "purpose": purpose, "content": content}
        return 200, {
            "id": file_id,
            "object": "file",
            "bytes": len(content),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
        }

    def _create_job(self, body: dict[str, Any]) -> tuple[int, Any]:
        training_file = body.get("training_file")
        if training_file not in self.files:
            return 400, _error(
                f"invalid training_file: {training_file}", "invalid_request_error", "training_file"
            )
        with self._lock:
            job_id = f"ftjob-{len(self._jobs) + 1:04d}"
            job = {
                "id": job_id,
                "object": "fine_tuning.job",
                "model": body.get("model"),
                "created_at": int(time.time()),
                "finished_at": None,
                "fine_tuned_model": None,  # the real API fills this only once the job succeeded
                "organization_id": "org-fake",
                "result_files": [],
                "status": "validating_files",
                "trained_tokens": None,
                "training_file": training_file,
                "validation_file": None,
                "seed": body.get("seed"),
                "error": None,
                "method": body.get("method"),
                "hyperparameters": (body.get("method") or {}).get("supervised", {}).get("hyperparameters"),
                "suffix": body.get("suffix"),
            }
            content = self.files[training_file]["content"]
            self._jobs[job_id] = _Job(body=job, trained_tokens=len(content.split()))
            self.jobs[job_id] = dict(job)
        return 200, job

    def _retrieve_job(self, job_id: str) -> tuple[int, Any]:
        with self._lock:
            state = self._jobs.get(job_id)
            if state is None:
                return 404, _error(f"no fine-tuning job {job_id}", "invalid_request_error")
            status = self.job_statuses[min(state.polls, len(self.job_statuses) - 1)]
            state.polls += 1
            job = dict(state.body, status=status)
            if status == "succeeded":
                suffix = job.get("suffix") or "fake"
                job.update(
                    fine_tuned_model=f"ft:{job['model']}:fake-org:{suffix}:{job_id[-4:]}",
                    trained_tokens=state.trained_tokens,
                    finished_at=int(time.time()),
                )
            elif status == "failed":
                job.update(error=dict(self.job_error), finished_at=int(time.time()))
            self.jobs[job_id] = job
        return 200, job

    def _route(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any]:
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            return 401, _error("Incorrect API key provided.", "invalid_request_error", code="invalid_api_key")
        route = path.split("?", 1)[0].rstrip("/")
        if method == "POST" and route.endswith("/chat/completions"):
            return self._chat(json.loads(raw or b"{}"))
        if method == "POST" and route.endswith("/files"):
            return self._upload(headers.get("content-type", ""), raw)
        if method == "POST" and route.endswith("/fine_tuning/jobs"):
            return self._create_job(json.loads(raw or b"{}"))
        if method == "GET" and "/fine_tuning/jobs/" in route:
            return self._retrieve_job(route.rsplit("/", 1)[1])
        return 404, _error(f"unknown route {method} {route}", "invalid_request_error")


def _error(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests assert on FakeOpenAI.requests instead of stderr

    def _handle(self, method: str) -> None:
        fake = self.server.fake
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        path = self.path
        with fake._lock:
            fake.requests.append(RecordedRequest(method, path, headers, raw))
        failure = fake._take_failure(path)
        if failure is not None and failure.kind == "drop":
            self.close_connection = True
            self.connection.close()
            return
        if failure is not None and failure.kind == "delay":
            time.sleep(failure.seconds)
            failure = None
        if failure is None:
            status, payload = fake._route(method, path, headers, raw)
            data = json.dumps(payload).encode()
        elif failure.kind == "malformed":
            status, data = 200, json.dumps({"object": "chat.completion", "model": "fake"}).encode()
        elif failure.kind == "not_json":
            status, data = 200, b"<html>502 Bad Gateway</html>"
        else:
            status = int(failure.kind)
            kind = (
                "rate_limit_exceeded"
                if status == 429
                else "server_error"
                if status >= 500
                else "invalid_request"
            )
            data = json.dumps(_error(f"injected HTTP {status}", kind, code=kind)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A started :class:`FakeOpenAI`, stopped after the test."""
    with FakeOpenAI() as server:
        yield server
