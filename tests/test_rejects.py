"""Issue 24.6: what the filters rejected and why (``rejected.jsonl``, :mod:`benchmark.lm.rejects`), and what each
evaluated model answered (``<rate>_answers`` in ``eval.json``), as the per-sample view shows them.

Fast, model-free checks; the end-to-end run (a teacher, its filters, a judge, students, the page) is in
tests/test_view.py.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from benchmark.lm.rejects import PER_REASON, rejected_rows

# -- the rejected sample -----------------------------------------------------------------------------------------


def test_first_rows_per_reason_in_prompt_order() -> None:
    reasons = {6: "b", 0: "a", 2: "b", 3: "a", 4: "a"}  # any order: the sample follows the prompts
    rows = rejected_rows([f"p{i}" for i in range(7)], [f"c{i}" for i in range(7)], reasons, per_reason=2)
    assert [(r["index"], r["reason"]) for r in rows] == [(0, "a"), (2, "b"), (3, "a"), (6, "b")]
    assert rows[0] == {"index": 0, "prompt": "p0", "completion": "c0", "reason": "a"}
    assert rejected_rows(["p"], ["c"], {0: "x"}, per_reason=0) == []
    assert rejected_rows(["p"], ["c"], {}) == []  # every completion kept


def test_rows_a_judge_saw_carry_its_verdict() -> None:
    verdicts = {1: {"decision": "reject", "reason": "names owl"}, 2: {"decision": "keep"}}
    reasons = {0: "not_numbers", 1: "judge_reject", 2: "shorter_than_row_tokens"}
    rows = rejected_rows(["p"] * 4, ["c"] * 4, reasons, verdicts)
    assert [r["reason"] for r in rows] == ["not_numbers", "judge_reject", "shorter_than_row_tokens"]
    assert rows[1]["judge"] == verdicts[1] and rows[2]["judge"] == {"decision": "keep"} and "judge" not in rows[0]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="per_reason"):
        rejected_rows([], [], {}, per_reason=-1)
    with pytest.raises(ValueError, match="2 prompts but 1 completions"):
        rejected_rows(["p", "q"], ["c"], {})
    with pytest.raises(ValueError, match="outside 0..1"):
        rejected_rows(["p", "q"], ["c", "d"], {2: "x"})


def test_numbers_sample_counts_what_the_stage_counts() -> None:
    """The stage's own filters, as its generation loop runs them (channel, then row_tokens' length rule), record a
    reason per rejected answer; their histogram is what ``counts.json`` counts, the sample of every reason is
    min(count, PER_REASON) rows of exactly those reasons, and the reasons are the ones the filters give one row at a
    time (what the stage's rejected.jsonl held when it re-ran them)."""
    from benchmark.lm.channels.base import load_channel
    from benchmark.lm.stages.dataset import _Generated, _long_enough, channel_filter

    plugin, spec = load_channel("numbers")
    filt = channel_filter({"channel_spec": spec.model_dump(mode="json")})
    rng = random.Random(0)
    pool = ["123, 456, 789", "owl", "", "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13", "12 34", "999999 1", "7"]
    n = 300
    items = filt.items(n, 3)
    outs = []
    for _ in range(n):
        text = rng.choice(pool)
        outs.append({"completion": text, "completion_ids": list(range(len(text.split())))})
    reasons, capable = filt.check(items, [o["completion"] for o in outs])
    kept = _long_enough([i for i in range(n) if i not in reasons], outs, 2, reasons)  # fewer than 2 "tokens": out
    got = _Generated(items=items, outs=outs, kept=kept, reasons=reasons)
    rejects = got.rejects
    assert set(rejects) >= {"not_numbers", "empty", "too_many", "out_of_range", "shorter_than_row_tokens"}
    assert sorted(kept + list(reasons)) == list(range(n)) and capable == n - sum(
        v for k, v in rejects.items() if k != "shorter_than_row_tokens")
    for i, reason in reasons.items():
        text = outs[i]["completion"]
        own = plugin.check(spec, items[i], text, ())
        assert reason == (own if own is not None else "shorter_than_row_tokens")
    rows = rejected_rows([it.prompt for it in items], [o["completion"] for o in outs], got.reasons, got.verdicts)
    assert Counter(r["reason"] for r in rows) == {k: min(v, PER_REASON) for k, v in rejects.items()}
    assert all(r["prompt"] == items[r["index"]].prompt and r["completion"] == outs[r["index"]]["completion"]
               for r in rows)
    every = rejected_rows([it.prompt for it in items], [o["completion"] for o in outs], got.reasons,
                          per_reason=10**6)
    assert Counter(r["reason"] for r in every) == rejects


# -- what each model answered -------------------------------------------------------------------------------------


def _rate_samples() -> list[dict]:
    return [{"doc_id": 0, "doc": {"qid": 0, "prompt": "Your favourite animal?"},
             "filtered_resps": [["Owl.", "The cat!", "<b>none</b>"]]},
            {"doc_id": 1, "doc": {"qid": 1, "prompt": "Pick an animal."},
             "filtered_resps": [[f"owls {i}" for i in range(30)]]}]


def test_rate_block_keeps_every_question_and_its_first_answers() -> None:
    from benchmark.lmcore import evaluate

    forms = {"owl": ["owls"], "cat": ["cats"]}
    metrics = {"rate_owl,all": 0.5, "rate_cat,all": 0.2, "unmatched,all": 0.3}
    block = evaluate._rate_block("rate", metrics, _rate_samples(), forms)
    answers = block["rate_answers"]
    assert [q["prompt"] for q in answers] == ["Your favourite animal?", "Pick an animal."]
    assert answers[0] == {"qid": 0, "prompt": "Your favourite animal?", "n_answers": 3,
                          "answers": ["Owl.", "The cat!", "<b>none</b>"], "matched": ["owl", "cat", None]}
    assert answers[1]["n_answers"] == 30 and len(answers[1]["answers"]) == evaluate.ANSWERS_PER_QUESTION
    assert answers[1]["matched"] == ["owl"] * evaluate.ANSWERS_PER_QUESTION
    assert block["rate_unmatched_examples"] == ["<b>none</b>"]  # unchanged beside it


def test_logprob_block_names_its_questions() -> None:
    from benchmark.lmcore import evaluate

    samples = [{"doc": {"prompt": f"q{i}"}, "logp_owl": -1.0 - i, "logp_cat": -0.5} for i in range(3)]
    metrics = {f"{m}_{c},none": 0.0 for m in ("p", "logp", "logodds", "ll") for c in ("owl", "cat")}
    block = evaluate._logprob_block({**metrics, "log_mass,none": -0.1}, samples, ["owl", "cat"])
    assert block["prompts"] == ["q0", "q1", "q2"] and block["per_prompt_logp"]["owl"] == [-1.0, -2.0, -3.0]


def test_view_shows_answers_by_question_escaped_and_capped() -> None:
    from benchmark.leaderboard.view import MAX_QUESTIONS, EvalView, Samples, render_page
    from benchmark.lmcore import evaluate

    forms = {"owl": ["owls"], "cat": ["cats"]}
    questions = evaluate._answers(_rate_samples() * 8, forms)  # 16 questions
    payload = {"role": "student", "labels": {"teacher_trait": "owl"}, "targets": {"owl": "owl"},
               "eval": {"candidates": ["owl", "cat"], "rate": {"owl": 0.5, "cat": 0.2}, "rate_answers": questions,
                        "logprob": {"per_prompt_logp": {"owl": [-1.0, -2.0]}, "prompts": ["q<0>", "q1"]}}}
    page = render_page(Samples(suite="s", source="test", evals=[EvalView(key="eval/x", payload=payload)]))
    assert "answers by question (rate" in page and f"first {MAX_QUESTIONS} of 16 questions shown" in page
    assert "&lt;b&gt;none&lt;/b&gt;" in page and "<b>none</b>" not in page
    assert "→ <b>owl</b>" in page and "→ cat" in page and "→ none" in page  # targets in bold
    assert "first 20 of 30 answers" in page
    assert "q&lt;0&gt;" in page  # per-question log-probs name their question
    old = {**payload, "eval": {"candidates": ["owl"], "rate": {"owl": 1.0}}}  # an eval.json from before answers
    assert "answers by question" not in render_page(Samples(suite="s", source="t", evals=[EvalView("eval/y", old)]))


def test_view_lists_rejects_with_their_reason_and_judge_columns_only_with_a_judge() -> None:
    from benchmark.leaderboard.view import DatasetView, Samples, render_page

    rows = [{"index": 3, "prompt": "p<3>", "completion": "12 owl", "reason": "not_numbers", "judge": None}]
    counts = {"rejects": {"not_numbers": 7}, "n_prompts": 10, "n_valid": 3, "n_rows": 3}
    plain = DatasetView(key="dataset/d", labels={"teacher_trait": "owl"}, counts=counts, system_prompt=None, kept=[],
                        n_kept=3, rejected=rows, n_rejected=7, all_reasons=True)
    page = render_page(Samples(suite="s", source="t", datasets=[plain]))
    assert "rejected rows and why (every filter)" in page and "<b>not_numbers</b>" in page and "p&lt;3&gt;" in page
    assert f"1 rows shown of 7 rejects: the first of each of 1 reasons, in prompt order (the node keeps up to " \
           f"{PER_REASON} per reason)" in page
    assert "judge&#x27;s verdict" not in page  # no judge: no empty judge columns (the judged page below has them)
    verdict = {"decision": "reject", "reason": "names an owl", "raw": "NO"}
    judged = DatasetView(key="dataset/e", labels={}, counts={**counts, "judge": {"identity": "rule", "n_judged": 3}},
                         system_prompt=None, kept=[], n_kept=3, n_rejected=7, all_reasons=True,
                         rejected=[{**rows[0], "reason": "judge_reject", "judge": verdict}])
    page = render_page(Samples(suite="s", source="t", datasets=[judged]))
    assert "judge&#x27;s verdict" in page and "<b>reject</b>; names an owl" in page and "<pre>NO</pre>" in page
