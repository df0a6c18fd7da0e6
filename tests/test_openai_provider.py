"""The ``openai`` provider against the offline fake server (no network beyond 127.0.0.1)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmark.errors import UserError
from benchmark.providers import openai as openai_api
from benchmark.providers.openai import ApiConfig, finetune, generate_chat, lm_eval_model_args, redact
from tests.fake_openai import FakeOpenAI

# A unique key per test session, so finding it anywhere can only mean it leaked from this code.
KEY = f"sk-test-{uuid.uuid4().hex}"
MODEL = "fake-model"
ROWS = [
    {
        "messages": [
            {"role": "user", "content": f"Continue: {i}, {i + 1}"},
            {"role": "assistant", "content": f"{i + 2}, {i + 3}, {i + 4}"},
        ]
    }
    for i in range(5)
]
HYPER = {"n_epochs": 10, "batch_size": "auto", "learning_rate_multiplier": "auto"}


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def cfg(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> ApiConfig:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    # Tiny waits keep the retry and polling tests fast; the policy is the same as with real values.
    return ApiConfig(
        base_url=fake.url,
        max_concurrency=4,
        max_retries=3,
        timeout_s=5.0,
        backoff_base_s=0.001,
        backoff_max_s=0.01,
        poll_interval_s=0.01,
    )


def _gen(cfg: ApiConfig, prompts: list[str], **kw: object) -> list[dict]:
    args: dict = {
        "system_prompt": None,
        "temperature": 1.0,
        "max_tokens": 50,
        "seed": 7,
        "top_logprobs": None,
    }
    args.update(kw)
    return generate_chat(cfg, MODEL, prompts, **args)


# ------------------------------------------------------------------------------------------- generation
def test_generation_preserves_order_and_runs_concurrently(fake: FakeOpenAI, cfg: ApiConfig) -> None:
    fake.chat_delay_s = 0.05  # long enough that 4 workers overlap
    prompts = [f"Continue the sequence {i}" for i in range(12)]
    seen: list[tuple[int, int]] = []
    out = _gen(cfg, prompts, system_prompt="You love owls.", progress=lambda d, t: seen.append((d, t)))

    assert len(out) == len(prompts)
    for i, (prompt, res) in enumerate(zip(prompts, out, strict=True)):
        messages = [{"role": "system", "content": "You love owls."}, {"role": "user", "content": prompt}]
        assert res["completion"] == FakeOpenAI.expected_completion(MODEL, messages, 7 + i)
        assert res["finish_reason"] == "stop"
        assert res["logprobs"] is None
    assert seen == [(d, 12) for d in range(1, 13)]
    assert 2 <= fake.max_in_flight <= cfg.max_concurrency
    body = fake.requests_to("/chat/completions")[0].json()
    assert body["model"] == MODEL and body["max_tokens"] == 50 and body["temperature"] == 1.0
    assert "logprobs" not in body
    assert sorted(r.json()["seed"] for r in fake.requests_to("/chat/completions")) == list(range(7, 19))


def test_top_logprobs_parsed(fake: FakeOpenAI, cfg: ApiConfig) -> None:
    (res,) = _gen(cfg, ["Continue: 1, 2, 3"], top_logprobs=3)
    lps = res["logprobs"]
    assert lps and "".join(t["token"] for t in lps) == res["completion"]
    for entry in lps:
        assert isinstance(entry["logprob"], float) and entry["logprob"] <= 0
        assert len(entry["top"]) == 3 and entry["top"][0] == [entry["token"], entry["logprob"]]
        assert all(isinstance(tok, str) and isinstance(lp, float) for tok, lp in entry["top"])
    body = fake.requests[0].json()
    assert body["logprobs"] is True and body["top_logprobs"] == 3


@pytest.mark.parametrize("failure", [429, 500, 503, "drop", "delay"])
def test_transient_failure_is_retried(
    fake: FakeOpenAI, cfg: ApiConfig, failure: int | str, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []
    monkeypatch.setattr(openai_api, "_sleep", waits.append)
    cfg = dataclasses.replace(cfg, timeout_s=0.3)  # "delay" answers after 1 s: a client timeout
    fake.fail_next(failure, path="/chat/completions", seconds=1.0)
    (res,) = _gen(cfg, ["p"])
    assert res["completion"].count(",") == 2
    assert len(fake.requests_to("/chat/completions")) == 2
    assert len(waits) == 1 and 0.0005 <= waits[0] <= 0.001  # backoff_base_s with jitter in [0.5, 1]


def test_backoff_grows_and_retries_give_up(
    fake: FakeOpenAI, cfg: ApiConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []
    monkeypatch.setattr(openai_api, "_sleep", waits.append)
    cfg = dataclasses.replace(cfg, backoff_base_s=1.0, backoff_max_s=3.0)
    fake.fail_next(429, 500, 502, 500)
    with pytest.raises(UserError, match=r"fake-model.*giving up after 4 attempts; last error: HTTP 500"):
        _gen(cfg, ["p"])
    assert len(fake.requests) == 4
    assert 0.5 <= waits[0] <= 1.0 and 1.0 <= waits[1] <= 2.0 and 2.0 <= waits[2] <= 3.0  # 2-4 s, capped at 3


@pytest.mark.parametrize(
    ("failure", "missing"), [("malformed", "no 'choices'"), ("not_json", "body is not JSON")]
)
def test_malformed_body_is_a_clear_user_error(
    fake: FakeOpenAI, cfg: ApiConfig, failure: str, missing: str
) -> None:
    fake.fail_next(failure)
    with pytest.raises(UserError) as info:
        _gen(cfg, ["p"])
    assert str(info.value) == f"malformed response from {fake.url} for model 'fake-model': {missing}"
    assert len(fake.requests) == 1  # not retried: the same server would answer the same way


def test_non_retryable_status_names_model_and_status(fake: FakeOpenAI, cfg: ApiConfig) -> None:
    fake.fail_next(400)
    with pytest.raises(
        UserError, match=r"chat completion for model 'fake-model' at .*: HTTP 400: injected HTTP 400"
    ):
        _gen(cfg, ["p"])
    assert len(fake.requests) == 1


def test_wrong_key_gets_a_hint_and_is_not_echoed(fake: FakeOpenAI, cfg: ApiConfig) -> None:
    fake.api_key = "sk-the-right-one"
    with pytest.raises(
        UserError,
        match=r"HTTP 401: Incorrect API key provided\. \(invalid_api_key\) "
        r"\(is OPENAI_API_KEY set to a valid key\?\)",
    ) as info:
        _gen(cfg, ["p"])
    assert KEY not in str(info.value)


def test_missing_key_for_openai_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    # Raised while building the client, before any request: no network is touched.
    with pytest.raises(UserError, match="environment variable OPENAI_API_KEY is not set"):
        _gen(ApiConfig(), ["p"])


def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)  # makes `import openai` raise ImportError
    with pytest.raises(UserError, match=r"pip install 'subliminal-bench\[api\]'"):
        _gen(ApiConfig(base_url="http://127.0.0.1:9/v1"), ["p"])


# ------------------------------------------------------------------------------------------- fine-tuning
def test_finetune_success(fake: FakeOpenAI, cfg: ApiConfig, tmp_path: Path) -> None:
    statuses: list[str] = []
    result = finetune(
        cfg,
        "gpt-4.1-nano",
        ROWS,
        seed=3,
        suffix="owl-s3",
        hyperparameters=HYPER,
        workdir=tmp_path,
        on_status=lambda status, job: statuses.append(status),
    )

    written = (tmp_path / "train.jsonl").read_bytes()
    assert [json.loads(line) for line in written.decode().splitlines()] == ROWS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.jsonl"]  # written once, no temp left
    (file_id,) = fake.files
    assert fake.files[file_id]["content"] == written and fake.files[file_id]["purpose"] == "fine-tune"
    assert len(fake.requests_to("/files")) == 1

    (create,) = fake.requests_to("/fine_tuning/jobs")[:1]
    assert create.method == "POST"
    assert create.json() == {
        "model": "gpt-4.1-nano",
        "training_file": file_id,
        "seed": 3,
        "suffix": "owl-s3",
        "method": {"type": "supervised", "supervised": {"hyperparameters": HYPER}},
    }
    assert statuses == ["validating_files", "running", "succeeded"]
    job = fake.jobs[result["job_id"]]
    # The create response had no model id (as on the real API); it must come from the polled job.
    assert result == {
        "job_id": job["id"],
        "fine_tuned_model": job["fine_tuned_model"],
        "status": "succeeded",
        "trained_tokens": job["trained_tokens"],
        "file_id": file_id,
        "training_file_sha256": hashlib.sha256(written).hexdigest(),
    }
    assert result["fine_tuned_model"].startswith("ft:gpt-4.1-nano:")


def test_finetune_retries_each_call(fake: FakeOpenAI, cfg: ApiConfig, tmp_path: Path) -> None:
    fake.fail_next(429, path="/files")
    fake.fail_next(500, path="/fine_tuning/jobs")
    fake.fail_next(503, path="/fine_tuning/jobs/")
    result = finetune(cfg, MODEL, ROWS, seed=None, suffix=None, hyperparameters={}, workdir=tmp_path)
    assert result["status"] == "succeeded"
    assert len(fake.files) == 1 and len(fake.jobs) == 1
    assert "seed" not in fake.requests_to("/fine_tuning/jobs")[1].json()


@pytest.mark.parametrize("final", ["failed", "cancelled"])
def test_finetune_failed_job_reports_its_error(
    fake: FakeOpenAI, cfg: ApiConfig, tmp_path: Path, final: str
) -> None:
    fake.job_statuses = ["validating_files", final]
    fake.job_error = {
        "code": "invalid_n_examples",
        "message": "Training file has 5 example(s), but must have at least 10.",
    }
    expected = (
        "invalid_n_examples: Training file has 5" if final == "failed" else "no error code: no error message"
    )
    with pytest.raises(
        UserError, match=rf"fine-tune job ftjob-0001 for model 'fake-model' {final}: {expected}"
    ):
        finetune(cfg, MODEL, ROWS, seed=1, suffix="x", hyperparameters=HYPER, workdir=tmp_path)


def test_finetune_malformed_upload_response(fake: FakeOpenAI, cfg: ApiConfig, tmp_path: Path) -> None:
    fake.fail_next("malformed", path="/files")
    with pytest.raises(
        UserError, match=r"malformed response from .* for model 'fake-model': no 'id' in the file"
    ):
        finetune(cfg, MODEL, ROWS, seed=1, suffix="x", hyperparameters=HYPER, workdir=tmp_path)
    assert not fake.jobs


def test_finetune_rejects_rows_without_assistant(fake: FakeOpenAI, cfg: ApiConfig, tmp_path: Path) -> None:
    rows = [{"messages": [{"role": "user", "content": "hi"}]}]
    with pytest.raises(UserError, match=r"rows\[0\]: no 'assistant' message"):
        finetune(cfg, MODEL, rows, seed=1, suffix="x", hyperparameters=HYPER, workdir=tmp_path)
    assert not fake.requests and not any(tmp_path.iterdir())


def test_poll_timeout(fake: FakeOpenAI, cfg: ApiConfig, tmp_path: Path) -> None:
    fake.job_statuses = ["running"]
    cfg = dataclasses.replace(cfg, poll_timeout_s=0.05)
    with pytest.raises(UserError, match=r"still 'running' after 0\.05s"):
        finetune(cfg, MODEL, ROWS, seed=1, suffix="x", hyperparameters=HYPER, workdir=tmp_path)


# ------------------------------------------------------------------------------------------- secrets
def test_api_key_is_never_written(fake: FakeOpenAI, cfg: ApiConfig, tmp_path: Path) -> None:
    log_file = tmp_path / "run.log"
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)  # capture the SDK's and the HTTP library's debug output too
    try:
        fake.fail_next(429, 500)  # exercise the retry warnings
        outputs = _gen(cfg, ["a", "b"], top_logprobs=2)
        result = finetune(
            cfg,
            MODEL,
            ROWS,
            seed=1,
            suffix="x",
            hyperparameters=HYPER,
            workdir=tmp_path / "ft",
            on_status=lambda s, job: logging.getLogger("test").info("job %s", job),
        )
        logging.getLogger("test").warning(redact(f"an error that quotes the key {KEY}"))
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()
    manifest = {
        "api": dataclasses.asdict(cfg),
        "repr": repr(cfg),
        "outputs": outputs,
        "finetune": result,
        "lm_eval": lm_eval_model_args(cfg, result["fine_tuned_model"]),
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))

    # The key was really in use: every request carried it.
    assert all(r.headers.get("authorization") == f"Bearer {KEY}" for r in fake.requests)
    assert log_file.stat().st_size > 0 and "***" in log_file.read_text()
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 3
    for path in files:
        assert KEY.encode() not in path.read_bytes(), f"API key leaked into {path}"
    assert KEY not in repr(cfg)


def test_redact(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    assert redact(f"key={KEY}; again {KEY}") == "key=***; again ***"
    monkeypatch.setenv("MY_KEY", "EMPTY")  # placeholder keys are not secrets; don't mangle text
    assert redact("EMPTY response", "MY_KEY") == "EMPTY response"
    monkeypatch.delenv("OPENAI_API_KEY")
    assert redact("nothing to hide") == "nothing to hide"


def test_lm_eval_model_args_carry_no_key(fake: FakeOpenAI, cfg: ApiConfig) -> None:
    args = lm_eval_model_args(cfg, "ft:gpt-4.1-nano:org:owl:1")
    assert args == {
        "model": "ft:gpt-4.1-nano:org:owl:1",
        "base_url": f"{fake.url}/chat/completions",
        "num_concurrent": 4,
        "max_retries": 3,
        "tokenized_requests": False,
        "timeout": 5,
    }
    assert KEY not in json.dumps(args)


def test_config_defaults_read_base_url_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1/")
    cfg = ApiConfig()
    assert cfg.base_url == "http://127.0.0.1:8000/v1/" and cfg.endpoint == "http://127.0.0.1:8000/v1"
    assert lm_eval_model_args(cfg, "m")["base_url"] == "http://127.0.0.1:8000/v1/chat/completions"
    with pytest.raises(UserError, match="max_concurrency must be >= 1"):
        ApiConfig(max_concurrency=0)
