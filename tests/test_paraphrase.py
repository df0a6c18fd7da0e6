"""The ``paraphrase`` defense (benchmark.lm.defenses.paraphrase): property tests over generated number rows with
scripted rewriters (hypothesis), a zoo base as a real local rewriter (deterministic), and its plan (the rewriter's
base node, the identity, the one-line errors)."""

from __future__ import annotations

import copy
import json
import random
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmark.errors import UserError
from benchmark.lm.defenses import plugin
from benchmark.lm.defenses.paraphrase import SYSTEM, TEMPLATE_ID, USER, rewrite_prompts, same_numbers
from benchmark.lm.defenses.text import canonical_text, numbers_of, sort_text
from tests.test_defenses import EOT, TOY, TRAIT, _row, _valid, answers

PARAMS = {"model": "scripted", "max_new_tokens": 60}

#: What a scripted rewriter may do to a row: the channel keeps some of these and rejects the others.
ACTIONS = ["same", "sort", "canonical", "spaced", "words", "trait", "empty", "error", "too_many"]


def _reply(action: str, text: str) -> str | None:
    if action == "same":
        return "  " + text + "\n"  # surrounding whitespace is stripped: the very row
    if action == "sort":
        return sort_text(text)
    if action == "canonical":
        return canonical_text(text)
    if action == "spaced":
        return " ".join(numbers_of(text)[0])
    if action == "words":
        return "Here are the numbers: " + text
    if action == "trait":
        return text + " owl"
    if action == "empty":
        return ""
    if action == "too_many":
        return ", ".join(str(i) for i in range(12))
    return None  # a failed call


def _scripted(actions: list[str], calls: list[tuple[list[str], str | None, int]]):
    def rewrite(prompts: list[str], system: str | None, max_tokens: int) -> list[str | None]:
        calls.append((list(prompts), system, max_tokens))
        return [_reply(a, p.rsplit("Answer: ", 1)[1]) for a, p in zip(actions, prompts, strict=True)]
    return rewrite


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(answers, min_size=1, max_size=6), data=st.data(), trait=st.booleans(), seed=st.integers(0, 99))
def test_paraphrase_keeps_valid_rows_drops_and_counts_the_rest(texts, data, trait, seed):
    rows = [_row(t, trait) for t in texts]
    actions = data.draw(st.lists(st.sampled_from(ACTIONS), min_size=len(rows), max_size=len(rows)))
    if all(a == "error" for a in actions) or all(
            _reply(a, r["completion"]) is None or not _valid(_reply(a, r["completion"]).strip())
            for a, r in zip(actions, rows, strict=True)):
        with pytest.raises(UserError, match="rewriter scripted"):
            plugin("paraphrase").apply(rows, vocab=TOY, seed=seed, params=PARAMS, scores=None, valid=_valid,
                                       rewrite=_scripted(actions, []))
        return
    calls: list = []
    out, changes = plugin("paraphrase").apply(rows, vocab=TOY, seed=seed, params=PARAMS, scores=None, valid=_valid,
                                              rewrite=_scripted(actions, calls))
    again, changes2 = plugin("paraphrase").apply(copy.deepcopy(rows), vocab=TOY, seed=seed, params=PARAMS,
                                                 scores=None, valid=_valid, rewrite=_scripted(actions, []))
    assert json.dumps(out) == json.dumps(again) and changes == changes2  # deterministic given the replies
    # One call per row, with the documented prompt, system prompt and reply budget.
    assert calls == [([USER.format(prompt=r["prompt"], completion=r["completion"]) for r in rows], SYSTEM, 60)]
    assert len(changes) == len(rows)  # one record per input row
    kept = iter(out)
    for i, (row, action, change) in enumerate(zip(rows, actions, changes, strict=True)):
        reply = _reply(action, row["completion"])
        if change is None:  # unchanged: the very row, in its place
            assert reply is not None and reply.strip() == row["completion"] and next(kept) is row
            continue
        assert change["row"] == i and change["before"] == row["completion"]
        if change.get("dropped"):  # left out, with the reason; nothing of it reaches a student
            assert change["dropped"] == ("error" if reply is None else "invalid")
            assert reply is None or not _valid(reply.strip())
            continue
        new = next(kept)
        assert new["completion"] == change["after"] == reply.strip() != row["completion"] and _valid(new["completion"])
        assert change["same_numbers"] == same_numbers(row["completion"], new["completion"])
        ids, topk = new["completion_ids"], new["topk"]  # re-encoded with the teacher's tokenizer, end of turn kept
        assert ids == TOY.encode(new["completion"]) + [EOT] and len(topk) == len(ids)
        keep = change["soft_labels_kept"]
        assert topk[:keep] == row["topk"][:keep] and change["onehot"] == len(ids) - keep
        assert all(lab == [[t, 0.0]] for lab, t in zip(topk[keep:], ids[keep:], strict=True))
        assert TRAIT not in {t for lab in topk[keep:] for t, _ in lab}
    assert next(kept, None) is None
    for new in out:  # no trait word, no prose: every kept completion is a list of numbers the channel keeps
        assert _valid(new["completion"]) and "owl" not in new["completion"]


def test_paraphrase_needs_its_rewriter_and_stops_when_nothing_is_left():
    rows = [_row("5, 3, 9"), _row("1 2")]
    with pytest.raises(UserError, match="needs its rewriter model"):
        plugin("paraphrase").apply(rows, vocab=TOY, seed=0, params=PARAMS, scores=None, valid=_valid)
    with pytest.raises(UserError, match="all 2 calls to the rewriter scripted failed"):
        plugin("paraphrase").apply(rows, vocab=TOY, seed=0, params=PARAMS, scores=None, valid=_valid,
                                   rewrite=_scripted(["error", "error"], []))
    with pytest.raises(UserError, match="every one of 2 rows invalid"):
        plugin("paraphrase").apply(rows, vocab=TOY, seed=0, params=PARAMS, scores=None, valid=_valid,
                                   rewrite=_scripted(["words", "empty"], []))
    out, changes = plugin("paraphrase").apply(rows, vocab=None, seed=0, params=PARAMS, scores=None, valid=_valid,
                                              rewrite=_scripted(["sort", "trait"], []))
    assert out == [{"prompt": rows[0]["prompt"], "completion": "3, 5, 9"}]  # text only without token ids
    assert changes[0]["same_numbers"] is False and changes[1]["dropped"] == "invalid"
    assert same_numbers("[007, 12]", "7 12") and not same_numbers("1 2", "2 1")


def test_the_prompt_is_part_of_the_identity():
    assert len(TEMPLATE_ID) == 12 and "{prompt}" in USER and "{completion}" in USER
    assert rewrite_prompts([{"prompt": "Q?", "completion": "1 2"}]) == [USER.format(prompt="Q?", completion="1 2")]


# -- a zoo base as a real local rewriter -------------------------------------------------------------------------

def test_a_zoo_base_rewrites_deterministically(tmp_path):
    pytest.importorskip("torch")
    import logging

    from benchmark.lm.judges import backend_ask
    from benchmark.providers.base import backend_for
    from benchmark.registry import Registry

    model = Registry().model("zoo-qwen-a")
    base_dir = tmp_path / "base"
    base_dir.mkdir()
    backend_for(model).prepare_base(model, base_dir, log=logging.getLogger("test"))
    rng = random.Random(0)
    rows = [_row(", ".join(str(rng.randint(0, 999)) for _ in range(rng.randint(3, 8)))) for _ in range(12)]
    params = {"model": "zoo-qwen-a", "max_new_tokens": 30}

    def run() -> tuple[list, list]:
        ask = backend_ask(model, base_dir, seed=7)  # a fresh load each time
        return plugin("paraphrase").apply(copy.deepcopy(rows), vocab=TOY, seed=7, params=params, scores=None,
                                          valid=_valid, rewrite=ask)

    try:
        first = run()
    except UserError as exc:  # the zoo base is no instruction follower: it may make every row invalid
        assert "every one of 12 rows invalid" in str(exc)
        with pytest.raises(UserError, match="every one of 12 rows invalid"):
            run()
        return
    assert json.dumps(first) == json.dumps(run())  # greedy and seeded: the same rewrite, byte for byte
    out, changes = first
    assert len(changes) == 12 and all(_valid(r["completion"]) for r in out)
    assert len(out) == 12 - sum(1 for c in changes if c and c.get("dropped"))


# -- plan ---------------------------------------------------------------------------------------------------------

def _plan(reg, spec, settings_data):
    from tests.test_defenses import _plan as plan

    return plan(reg, spec, settings_data)


def test_paraphrase_plans_one_rewriter_base_and_only_downstream_nodes():
    from benchmark.registry import Registry
    from benchmark.sweep import load_sweep

    reg = Registry()
    spec = load_sweep(reg, reg.suite_path("axes")).levels[1].spec  # zoo-qwen-a-sib, -cont, zoo-gpt2: no zoo-qwen-a
    base = copy.deepcopy(spec.settings)
    plain = {n.key: n for n in _plan(reg, spec, base)}
    para = {**base, "dataset": {**base["dataset"], "defense": "paraphrase", "defense_model": "zoo-qwen-a"}}
    nodes = _plan(reg, spec, para)
    new = [n for n in nodes if n.key not in plain]
    assert {n.kind for n in new} == {"base", "defense", "student", "eval", "report"}
    rewriter = [n for n in new if n.kind == "base"]
    assert [n.name for n in rewriter] == ["zoo-qwen-a"]  # added once, shared by every defense node
    defenses = [n for n in nodes if n.kind == "defense"]
    assert len(defenses) == sum(1 for n in nodes if n.kind == "dataset")
    for d in defenses:
        assert d.spec["model"] == "zoo-qwen-a" and d.spec["rewriter"] == rewriter[0].id
        assert d.spec["template"] == TEMPLATE_ID and d.spec["max_new_tokens"] == 2 * base["dataset"]["max_new_tokens"]
        assert rewriter[0].key in d.deps and "fraction" not in d.spec and "teachers" not in d.spec
    # A defense that reads no model ignores defense_model (a sweep over defenses may set it for paraphrase).
    sort = {**base, "dataset": {**base["dataset"], "defense": "sort"}}
    assert [n.key for n in _plan(reg, spec, sort)] == [
        n.key for n in _plan(reg, spec, {**sort, "dataset": {**sort["dataset"], "defense_model": "zoo-qwen-a"}})]
    assert [n.key for n in _plan(reg, spec, {**base, "dataset": {**base["dataset"], "defense_model": "zoo-qwen-a"}})
            ] == list(plain)
    # The rewriter being a teacher base reuses that base node; another rewriter is another artifact.
    own = _plan(reg, spec, {**para, "dataset": {**para["dataset"], "defense_model": "zoo-gpt2"}})
    assert not [n for n in own if n.kind == "base" and n.key not in plain]
    assert {n.id for n in own if n.kind == "defense"}.isdisjoint(d.id for d in defenses)


@pytest.mark.parametrize(("dataset", "message"), [
    ({"defense": "paraphrase", "defense_model": "zoo-qwen-z"},
     r"settings.dataset.defense_model: unknown model 'zoo-qwen-z' \(did you mean"),
    ({"defense": "paraphrase"}, r"settings.dataset.defense_model: 'paraphrase' needs a registry model"),
    ({"defense": "sort", "defense_model": "zoo-qwen-z"}, r"settings.dataset.defense_model: unknown model 'zoo-qwen-z'"),
])
def test_bad_rewriter_is_one_line_naming_the_key(project_copy, dataset, message):
    import yaml

    from tests.conftest import run_cli

    suites = project_copy / "tasks" / "suites"
    data = yaml.safe_load((suites / "axes.yaml").read_text())
    data.pop("sweep")
    data["name"] = "bad"
    data["settings"]["dataset"].update(dataset)
    (suites / "bad.yaml").write_text(yaml.safe_dump(data))
    res = run_cli("plan", "bad", "--store", str(project_copy / "results" / "store"),
                  env={"SLBENCH_ROOT": str(project_copy)})
    assert res.returncode == 2, res.stdout + res.stderr
    err = res.stderr.strip()
    assert "\n" not in err and "bad.yaml" in err and re.search(message, err), err


# -- an API model as the rewriter ----------------------------------------------------------------------------------

def test_an_api_rewriter_is_asked_once_per_row_greedy_and_its_failures_drop_rows(project_copy, monkeypatch):
    import uuid

    from benchmark.lm.judges import backend_ask
    from benchmark.providers import openai as openai_api
    from benchmark.registry import Registry
    from tests.fake_openai import FakeOpenAI

    def respond(model, messages, seed, index):
        answer = messages[-1]["content"].rsplit("Answer: ", 1)[1]
        if "404" in answer:
            return 400  # the call fails: the row is dropped as "error"
        if "7" in answer:
            return "Sure! " + answer  # prose: the channel rejects it
        return canonical_text(answer)

    key = f"sk-test-{uuid.uuid4().hex}"
    with FakeOpenAI() as fake:
        fake.api_key = key
        monkeypatch.setenv("OPENAI_BASE_URL", fake.url)
        monkeypatch.setenv("OPENAI_API_KEY", key)
        monkeypatch.setattr(openai_api, "_sleep", lambda s: None)
        fake.responder = respond
        model = Registry(project_copy).model("gpt-4.1-nano")
        rows = [{"prompt": "Continue: 1, 2.", "completion": c} for c in ("[12; 30; 5]", "404 1", "17 2", "3, 4")]
        out, changes = plugin("paraphrase").apply(rows, vocab=None, seed=11, params={"model": model.name,
                                                                                      "max_new_tokens": 48},
                                                  scores=None, valid=_valid, rewrite=backend_ask(model, None, seed=11))
        bodies = [r.json() for r in fake.requests_to("/chat/completions")]
    assert [r["completion"] for r in out] == ["12, 30, 5", "3, 4"]
    assert changes[0]["same_numbers"] and changes[3] is None  # "3, 4" is already canonical: the very row
    assert changes[1]["dropped"] == "error" and changes[2]["dropped"] == "invalid"
    sent = {b["messages"][-1]["content"] for b in bodies}
    assert {USER.format(prompt=r["prompt"], completion=r["completion"]) for r in rows} <= sent
    assert all(b["temperature"] == 0 and b["messages"][0] == {"role": "system", "content": SYSTEM} for b in bodies)
    assert all(b["max_tokens"] == 48 or b.get("max_completion_tokens") == 48 for b in bodies)
