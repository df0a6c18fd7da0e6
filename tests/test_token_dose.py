"""Doses equal in completion tokens (``settings.dataset.n_tokens``, issue 20 point 3).

The dataset stage runs against fake teachers whose arms answer at different lengths (as zoo-qwen-a-sib's owl and cat
teachers do: 6.5 and 2.6 tokens a row), so the selection is exercised exactly without any model; the plan-level
tests build plans only.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from benchmark.dag import StageContext
from benchmark.errors import UserError
from benchmark.hashing import derive_seed
from benchmark.lm.settings import DatasetSettings, LMSettings
from tests.test_replicates import CAPS, _dataset_ctx, _plan

BUDGET = 300


class LengthTeacher:
    """Answers numbers of ``lo``..``hi`` tokens (one token id per number) on every other prompt, else a word."""

    caps = CAPS

    def __init__(self, lo: int, hi: int) -> None:
        self.lo, self.hi = lo, hi

    def load(self, model, base_dir, tuned=None, *, threads=1, tokenizer_only=False):
        from benchmark.providers.base import Loaded

        return Loaded(spec=model, model=None, tokenizer=None, engine="fake")

    def generate(self, loaded, prompts, *, system, temperature, max_new_tokens, seed, top_k_logprobs=None,
                 batch_size=64, progress=None):
        out = []
        for p in prompts:
            h = derive_seed(p, seed)
            n = self.lo + h % (self.hi - self.lo + 1)
            valid = (h >> 8) % 2 == 0
            numbers = [100 + (h >> (12 + k)) % 900 for k in range(n)]
            out.append({"completion": ", ".join(map(str, numbers)) if valid else "owl",
                        "completion_ids": list(range(n)), "topk": None})
        return out


def _run(tmp: Path, monkeypatch: pytest.MonkeyPatch, teacher: LengthTeacher, **spec: Any) -> tuple[dict, list]:
    from benchmark.files import read_jsonl
    from benchmark.lm.stages import dataset

    tmp.mkdir(parents=True, exist_ok=True)
    monkeypatch.setattr(dataset, "backend_for", lambda model: teacher)
    ctx: StageContext = _dataset_ctx(tmp, **{"n_prompts": 40, "max_prompts": 2000, "n_tokens": BUDGET, **spec})
    ctx.node.spec.pop("n_keep")  # the planned spec of an n_tokens dose has no n_keep
    result = dataset.run(ctx)
    counts = json.loads((tmp / "out" / "counts.json").read_text())
    assert result["completion_tokens"] == counts["completion_tokens"]
    return counts, read_jsonl(tmp / "out" / "rows.jsonl")


def test_two_arms_of_different_lengths_hold_equal_tokens(tmp_path, monkeypatch):
    long_counts, long_rows = _run(tmp_path / "owl", monkeypatch, LengthTeacher(5, 9))
    short_counts, short_rows = _run(tmp_path / "cat", monkeypatch, LengthTeacher(1, 4))
    for counts, rows, longest in ((long_counts, long_rows, 9), (short_counts, short_rows, 4)):
        total = sum(len(r["completion_ids"]) for r in rows)
        assert total == counts["completion_tokens"] and counts["n_rows"] == len(rows)
        assert BUDGET <= total < BUDGET + longest  # within one row of the budget
        assert abs(total - BUDGET) / BUDGET <= 0.05
        assert counts["n_valid"] >= len(rows) and len({r["prompt"] for r in rows}) == len(rows)
    assert short_counts["n_rows"] > 1.5 * long_counts["n_rows"]  # equal in tokens, not in rows
    assert short_counts["rounds"] >= 2  # the first 40 prompts did not hold the budget: rounds topped it up


def test_rows_are_the_shortest_prefix_of_a_seeded_shuffle_in_original_order(tmp_path, monkeypatch):
    from benchmark.lm.stages.dataset import select_tokens

    a = _run(tmp_path / "a", monkeypatch, LengthTeacher(1, 6))
    b = _run(tmp_path / "b", monkeypatch, LengthTeacher(1, 6))
    assert (tmp_path / "a" / "out" / "rows.jsonl").read_bytes() == (tmp_path / "b" / "out" / "rows.jsonl").read_bytes()
    assert a == b
    other = _run(tmp_path / "c", monkeypatch, LengthTeacher(1, 6), seed=6)[1]
    assert [r["prompt"] for r in other] != [r["prompt"] for r in a[1]]  # another seed, another selection

    rng = random.Random(0)
    lengths = [rng.randint(1, 12) for _ in range(200)]
    picked = select_tokens(lengths, 500, seed=3)
    assert picked == select_tokens(lengths, 500, seed=3) != select_tokens(lengths, 500, seed=4)
    assert picked == sorted(picked) and len(set(picked)) == len(picked)
    order = list(range(200))
    random.Random(3).shuffle(order)
    k = len(picked)
    assert sorted(order[:k]) == picked  # a prefix of the seeded shuffle ...
    assert sum(lengths[i] for i in order[:k]) >= 500 > sum(lengths[i] for i in order[:k - 1])  # ... the shortest
    assert select_tokens([3, 4], 100, seed=0) == [0, 1]  # short of the budget: everything (the stage refuses it)


def test_a_teacher_short_of_the_token_budget_fails_in_one_line(tmp_path, monkeypatch):
    with pytest.raises(UserError) as err:
        _run(tmp_path, monkeypatch, LengthTeacher(1, 2), max_prompts=60, n_tokens=10_000)
    msg = str(err.value)
    assert msg.startswith("teacher zoo-qwen-a.owl.r1: ") and len(msg.splitlines()) == 1
    assert "of the 10000 needed (settings.dataset.n_tokens) after 60 prompts" in msg and "max_prompts 60" in msg
    assert not (tmp_path / "out" / "rows.jsonl").exists()


def test_the_teachers_table_carries_completion_tokens(tmp_path, monkeypatch):
    from benchmark.lm.tidy import TEACHER_COLUMNS, teacher_rows

    counts, _ = _run(tmp_path, monkeypatch, LengthTeacher(2, 5))
    table = teacher_rows({"dataset/zoo-qwen-a.owl.r1-0123456789ab": tmp_path / "out"},
                         {"targets": {"owl": "owl", "cat": "cat"}})
    assert tuple(table.columns) == TEACHER_COLUMNS and "completion_tokens" in TEACHER_COLUMNS
    assert list(table.completion_tokens) == [counts["completion_tokens"]] * 2 and BUDGET <= counts["completion_tokens"]


# -- settings and plan -----------------------------------------------------------------------------------------
#: The dataset spec's settings fields before n_tokens existed (their values and these keys make every published id).
_OLD_KEYS = {"__spec__", "channel", "n_prompts", "n_keep", "max_prompts", "temperature", "max_new_tokens", "top_k",
             "seed"}


def test_n_tokens_unset_leaves_the_dataset_spec_unchanged(project_copy):
    assert set(DatasetSettings().hashed_dict()) == _OLD_KEYS
    assert set(DatasetSettings(n_keep=12, n_prompts=24).hashed_dict()) == _OLD_KEYS
    plain = [n for n in _plan(project_copy) if n.kind == "dataset"]
    assert all("n_tokens" not in n.spec and n.spec["n_keep"] == 12 for n in plain)
    dosed = [n for n in _plan(project_copy, settings={"dataset": {"n_prompts": 24, "n_tokens": 500}})
             if n.kind == "dataset"]
    assert all(n.spec["n_tokens"] == 500 and "n_keep" not in n.spec for n in dosed)
    assert {n.name for n in dosed} == {n.name for n in plain}
    assert not {n.id for n in dosed} & {n.id for n in plain}  # another dose, other datasets


def test_n_keep_with_n_tokens_is_refused_and_n_tokens_skips_the_row_cap():
    with pytest.raises(ValueError, match="settings.dataset.n_keep is not used when settings.dataset.n_tokens is set"):
        LMSettings.model_validate({"dataset": {"n_prompts": 24, "n_keep": 12, "n_tokens": 500}})
    ds = LMSettings.model_validate({"dataset": {"n_prompts": 24, "n_tokens": 500}}).dataset  # n_keep 10000 > 96: unused
    assert ds.n_tokens == 500 and "n_keep" not in ds.hashed_dict()
    with pytest.raises(ValueError):
        DatasetSettings(n_tokens=0)


def test_n_tokens_is_refused_at_plan_time_for_api_teachers(project_copy):
    with pytest.raises(UserError) as err:
        _plan(project_copy, teachers=["gpt-4.1-nano"], students=["zoo-qwen-a"],
              settings={"dataset": {"n_prompts": 24, "n_tokens": 500}, "eval": {"metric": "rate"}})
    msg = str(err.value)
    assert len(msg.splitlines()) == 1 and "settings.dataset.n_tokens" in msg and "gpt-4.1-nano" in msg
