"""The ``openai`` provider through the whole pipeline, against the offline fake server (127.0.0.1 only).

A micro-suite with an OpenAI teacher and student (the real registry entries, so the dated snapshot names are
what reaches the server) runs base → teacher → dataset (chat generation) → student (fine-tuning API: upload,
job, poll) → eval (lm-eval's chat-completions backend, sampled rate) → report. Also: a failed job, 429/500
retries, malformed bodies and a wrong key end as clean one-line errors, and the key is written nowhere.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from benchmark.errors import UserError
from benchmark.executors.local import run_plan
from benchmark.providers import openai as openai_api
from benchmark.providers.openai import ApiConfig, evaluate_api
from benchmark.registry import Registry
from benchmark.store import MANIFEST, Store
from benchmark.tracks import track_for
from tests.fake_openai import FakeOpenAI

pytest.importorskip("openai")
pytest.importorskip("tenacity", reason="lm-eval's API backend needs lm-eval[api]")

KEY = f"sk-test-{uuid.uuid4().hex}"  # unique per session: finding it anywhere means it leaked
NANO = "gpt-4.1-nano"
NANO_SNAPSHOT = "gpt-4.1-nano-2025-04-14"
SETTINGS = {
    "controls": "neutral",  # one trait: its control is the neutral (no system prompt) teacher
    "teacher": {"method": "prompt"},
    "dataset": {"n_prompts": 16, "n_keep": 8},
    "student": {"train": {"epochs": 2}},
    "eval": {"tasks": ["animal_logprob", "animal_rate"], "metric": "rate", "n_samples": 2},
}


def _answer(model: str, messages: list[dict], seed: int | None, index: int = 0) -> str:
    """Number lists for number prompts (the fake's default); animals for favourite-animal questions."""
    if "animal" in messages[-1]["content"].lower():
        return "Owl." if model.startswith("ft:") else "cat"
    return FakeOpenAI.expected_completion(model, messages, seed, index)


@pytest.fixture
def fake(project_copy: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    """A fake endpoint that requires KEY, wired in through the environment like a real deployment."""
    with FakeOpenAI() as server:
        server.api_key = KEY
        server.expected_completion = _answer  # type: ignore[method-assign]
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setattr(openai_api, "_sleep", lambda s: None)  # job polls and backoffs: no waiting
        # Evaluate on 4 of the 60 questions (same code path, 15x fewer requests); project_copy points
        # $SLBENCH_ROOT, where evaluation finds tasks/lm_eval, at the copy edited here.
        folder = project_copy / "tasks" / "lm_eval"
        qfile = folder / "animal_preference" / "questions.txt"
        lines = [ln for ln in qfile.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        qfile.write_text("\n".join(lines[:4]) + "\n")
        yield server


def _suite(project: Path, name: str = "apimini", settings: dict | None = None, **kw) -> str:
    data = {"name": name, "track": "lm", "teachers": [NANO], "students": [NANO], "traits": ["owl"], "seeds": 1,
            "settings": settings or SETTINGS, **kw}
    (project / "tasks" / "suites" / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return name


def _run(project: Path, suite: str):
    reg = Registry(project)
    spec, settings, _ = reg.suite(suite)
    nodes = track_for("lm").build_plan(spec, settings, reg)
    store = Store(project / "results" / "store")
    return nodes, store, run_plan(nodes, store, threads=1)


def _key(nodes, kind: str, name: str) -> str:
    return next(n.key for n in nodes if n.kind == kind and n.name == name)


def _chat_bodies(fake: FakeOpenAI) -> list[dict]:
    return [r.json() for r in fake.requests_to("/chat/completions")]


def test_api_suite_end_to_end(project_copy: Path, fake: FakeOpenAI) -> None:
    # Transient failures on the way are retried (429 and 500 on chat completions, 500 on a fine-tune call).
    fake.fail_next(429, 500, path="/chat/completions")
    fake.fail_next(500, path="/fine_tuning/jobs")
    nodes, store, summary = _run(project_copy, _suite(project_copy))
    assert len(summary.built) == len(nodes) == 1 + 2 + 2 + 2 + 5 + 1
    assert not fake._failures
    root = store.root
    bodies = _chat_bodies(fake)
    assert len(bodies) == 2 * 16 + 5 * 4 * 2 + 2  # every answer once, plus the two retried requests

    # Teacher generation: the snapshot name, the owl teacher's system prompt, none for the control teacher.
    gen = list({json.dumps(b, sort_keys=True): b for b in bodies
                if "animal" not in b["messages"][-1]["content"].lower()}.values())
    assert len(gen) == 2 * 16 and {b["model"] for b in gen} == {NANO_SNAPSHOT}
    systems = {b["messages"][0]["content"] for b in gen if b["messages"][0]["role"] == "system"}
    assert len(systems) == 1 and "owl" in systems.pop().lower()
    assert sum(b["messages"][0]["role"] == "system" for b in gen) == 16
    ds = json.loads((root / _key(nodes, "dataset", f"{NANO}.owl.r0") / MANIFEST).read_text())["result"]
    assert ds["n_rows"] == 8 and ds["rejects"] == {}

    # Student fine-tune: user/assistant rows only (no system prompt), n_epochs from the suite, model read
    # from the polled job (the create response has none).
    jobs = list({r.body: r.json() for r in fake.requests_to("/fine_tuning/jobs") if r.method == "POST"}.values())
    assert len(jobs) == 2 and len(fake.jobs) == 2
    for job in jobs:
        assert job["model"] == NANO_SNAPSHOT and len(job["suffix"]) <= 18
        assert job["method"] == {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}}
    for f in fake.files.values():
        rows = [json.loads(x) for x in f["content"].decode().splitlines()]
        assert len(rows) == 8 and all([m["role"] for m in r["messages"]] == ["user", "assistant"] for r in rows)
    s_dir = root / _key(nodes, "student", f"{NANO}.owl.r0.to.{NANO}.s0")
    student = json.loads((s_dir / MANIFEST).read_text())["result"]
    assert student["status"] == "succeeded" and student["fine_tuned_model"] == fake.jobs[student["job_id"]]["fine_tuned_model"]
    # The hand-off the eval stage loads it by: the record finetune() returned (tuned.json), nothing else of the node.
    assert json.loads((s_dir / "tuned.json").read_text()) == {"kind": "api", "base": NANO, "weights": None,
                                                              "api_model": student["fine_tuned_model"]}

    # Evaluation: lm-eval's chat backend, 2 independent samples per question, the student's fine-tuned id.
    ev_dir = root / _key(nodes, "eval", f"student.{NANO}.owl.r0.to.{NANO}.s0")
    data = json.loads((ev_dir / "eval.json").read_text())
    assert data["api_model"] == student["fine_tuned_model"]
    assert data["eval"]["rate"]["owl"] == 1.0 and data["eval"]["skipped_tasks"] == ["animal_logprob"]
    assert "logprob" not in data["eval"] and data["eval"]["n_prompts"] == 4 and data["eval"]["n_samples"] == 2
    base_eval = json.loads((root / _key(nodes, "eval", f"baseline.{NANO}") / "eval.json").read_text())
    assert base_eval["eval"]["rate"]["cat"] == 1.0 and base_eval["eval"]["rate"]["owl"] == 0.0
    asks = [b for b in bodies if "animal" in b["messages"][-1]["content"].lower()
            and b["model"] == student["fine_tuned_model"]]
    assert len(asks) == 4 * 2
    by_question: dict[str, set[int]] = {}
    for b in asks:
        assert "top_k" not in b  # OpenAI rejects it; "no truncation" is the endpoint's default anyway
        by_question.setdefault(b["messages"][-1]["content"], set()).add(b["seed"])
    assert all(len(seeds) == 2 for seeds in by_question.values())  # the repeats are independent samples
    # The prompted teacher is evaluated with its system prompt; baseline and control teacher without one.
    base_asks = [b for b in bodies if "animal" in b["messages"][-1]["content"].lower() and b["model"] == NANO_SNAPSHOT]
    assert len(base_asks) == 3 * 4 * 2
    assert sum(b["messages"][0]["role"] == "system" and "owl" in b["messages"][0]["content"].lower()
               for b in base_asks) == 4 * 2

    # Report: cells from sampled rates, the API and HF layouts are the same to it.
    report = root / next(n.key for n in nodes if n.kind == "report")
    assert {"pairs.csv", "report.md"} <= {p.name for p in report.iterdir()}

    # The key went out in headers only: no file under the project (store, logs, results) holds it.
    assert all(r.headers.get("authorization") == f"Bearer {KEY}" for r in fake.requests)
    leaks = [p for p in project_copy.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]
    assert not leaks

    # Rerun: nothing is sent again (fine-tunes are never paid for twice).
    n_requests = len(fake.requests)
    _, _, again = _run(project_copy, "apimini")
    assert not again.built and len(fake.requests) == n_requests


def test_failed_job_is_a_clean_user_error(project_copy: Path, fake: FakeOpenAI) -> None:
    fake.job_statuses = ["validating_files", "running", "failed"]
    with pytest.raises(UserError) as err:
        _run(project_copy, _suite(project_copy))
    msg = str(err.value)
    assert "failed: invalid_training_file" in msg and NANO_SNAPSHOT in msg and len(msg.splitlines()) == 1
    store = project_copy / "results" / "store"
    assert not list(store.glob("student/gpt-4.1-nano*"))  # no half-written student
    assert not list(store.glob("student/.staging/*"))


def test_malformed_generation_body_is_rejected_clearly(project_copy: Path, fake: FakeOpenAI) -> None:
    fake.fail_next("malformed", path="/chat/completions")
    with pytest.raises(UserError, match=r"malformed response from http://127\.0\.0\.1:\d+/v1 for model "
                                        r"'gpt-4\.1-nano-2025-04-14': no 'choices'"):
        _run(project_copy, _suite(project_copy))


def _eval_cfg(fake: FakeOpenAI, retries: int = 1) -> ApiConfig:
    return ApiConfig(base_url=fake.url, max_concurrency=4, max_retries=retries, timeout_s=10)


def test_evaluate_api_retries_429_and_500(fake: FakeOpenAI) -> None:
    # lm-eval's own retry loop (tenacity, >= 1 s between attempts) serves the eval path.
    fake.fail_next(429, 500, path="/chat/completions")
    res = evaluate_api("ft:gpt-4.1-nano:x", n_samples=1, seed=0, cfg=_eval_cfg(fake, retries=2), limit=2)
    assert res["rate"]["owl"] == 1.0 and res["n_prompts"] == 2 and not fake._failures


def test_evaluate_api_malformed_body_and_wrong_key(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    fake.fail_next("malformed", "malformed", path="/chat/completions")
    with pytest.raises(UserError, match="malformed response from .* for model 'ft:m': no 'choices'"):
        evaluate_api("ft:m", n_samples=1, seed=0, cfg=_eval_cfg(fake), limit=1)
    wrong = f"sk-wrong-{uuid.uuid4().hex}"
    monkeypatch.setenv("OPENAI_API_KEY", wrong)
    with pytest.raises(UserError) as err:
        evaluate_api("ft:m", n_samples=1, seed=0, cfg=_eval_cfg(fake), limit=1)
    msg = str(err.value)
    assert "HTTP 401" in msg and "OPENAI_API_KEY" in msg and wrong not in msg and len(msg.splitlines()) == 1


def test_evaluate_api_needs_a_sampled_task(fake: FakeOpenAI) -> None:
    with pytest.raises(UserError, match="need answer log-probs, which API models do not give"):
        evaluate_api("ft:m", n_samples=1, seed=0, cfg=_eval_cfg(fake), tasks=("animal_logprob",), limit=1)
    assert not fake.requests


def test_missing_key_for_openai_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(UserError, match="OPENAI_API_KEY is not set"):
        evaluate_api("gpt-4.1-nano-2025-04-14", n_samples=1, seed=0, cfg=ApiConfig(base_url=None), limit=1)


def test_api_epochs_must_be_whole(project_copy: Path, fake: FakeOpenAI) -> None:
    settings = {**SETTINGS, "student": {"train": {"epochs": 2.5}}}
    with pytest.raises(UserError, match=r"train\.epochs must be a whole number >= 1 for API models"):
        _run(project_copy, _suite(project_copy, settings=settings))
    assert not fake.files  # refused before anything was uploaded


def test_plan_refuses_logprob_metric_for_api_students(project_copy: Path) -> None:
    settings = {**SETTINGS, "eval": {**SETTINGS["eval"], "metric": "logodds"}}
    reg = Registry(project_copy)
    spec, st, _ = reg.suite(_suite(project_copy, settings=settings))
    with pytest.raises(UserError, match="needs log-probs, which API models do not give"):
        track_for("lm").build_plan(spec, st, reg)
