"""Rows of one fixed length (``settings.dataset.row_tokens``, issue 20: arms equal in rows, tokens and length).

Fake teachers whose arms answer at different lengths (as the zoo's trait teachers do: an owl teacher writing longer
answers than its cat twin) run the dataset stage without a model; settings and plan checks build plans only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmark.dag import StageContext
from benchmark.errors import UserError
from benchmark.lm.settings import DatasetSettings, LMSettings
from tests.test_replicates import _dataset_ctx, _plan
from tests.test_token_dose import LengthTeacher


class Tok:
    """A tokenizer whose token id ``k`` decodes to the word ``t<k>``."""

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return " ".join(f"t{i}" for i in ids)


class TokTeacher(LengthTeacher):
    """LengthTeacher with soft labels (one per token) and a tokenizer that decodes them."""

    def load(self, model, base_dir, tuned=None, *, threads=1, tokenizer_only=False):
        from benchmark.providers.base import Loaded

        return Loaded(spec=model, model=None, tokenizer=Tok(), engine="fake")

    def generate(self, loaded, prompts, **kw):
        out = super().generate(loaded, prompts, **kw)
        for o in out:
            o["topk"] = [[[t, -0.5]] for t in o["completion_ids"]]
        return out


def _run(tmp: Path, monkeypatch: pytest.MonkeyPatch, teacher: LengthTeacher, **spec: Any) -> tuple[dict, list]:
    from benchmark.files import read_jsonl
    from benchmark.lm.stages import dataset

    tmp.mkdir(parents=True, exist_ok=True)
    monkeypatch.setattr(dataset, "backend_for", lambda model: teacher)
    monkeypatch.setattr(dataset, "tokenizer_sha", lambda tok: "fake")
    monkeypatch.setattr(dataset, "template_hash", lambda tok: "fake")
    monkeypatch.setattr(dataset, "_allowed", lambda filt, tok: None)
    ctx: StageContext = _dataset_ctx(tmp, **{"n_prompts": 40, "max_prompts": 2000, "n_keep": 30, "row_tokens": 3,
                                             "top_k": 4, **spec})
    dataset.run(ctx)
    return json.loads((tmp / "out" / "counts.json").read_text()), read_jsonl(tmp / "out" / "rows.jsonl")


def test_arms_of_different_lengths_hold_equal_rows_and_tokens(tmp_path, monkeypatch):
    long_counts, long_rows = _run(tmp_path / "owl", monkeypatch, TokTeacher(5, 9))
    short_counts, short_rows = _run(tmp_path / "cat", monkeypatch, TokTeacher(1, 4))
    for counts, rows in ((long_counts, long_rows), (short_counts, short_rows)):
        assert counts["n_rows"] == len(rows) == 30 and counts["completion_tokens"] == 90
        assert all(len(r["completion_ids"]) == 3 == len(r["topk"]) for r in rows)
        assert all(r["completion"] == " ".join(f"t{i}" for i in r["completion_ids"]) for r in rows)
        assert all(r["completion_full"].count(",") + 1 >= 3 for r in rows)  # the whole answer is kept beside
    assert "shorter_than_row_tokens" not in long_counts["rejects"]  # every long answer qualifies
    assert short_counts["rejects"]["shorter_than_row_tokens"] > 0  # answers of 1-2 tokens are not kept
    assert short_counts["rounds"] > long_counts["rounds"]


def test_row_tokens_is_deterministic(tmp_path, monkeypatch):
    a = _run(tmp_path / "a", monkeypatch, TokTeacher(1, 6))
    b = _run(tmp_path / "b", monkeypatch, TokTeacher(1, 6))
    assert (tmp_path / "a" / "out" / "rows.jsonl").read_bytes() == (tmp_path / "b" / "out" / "rows.jsonl").read_bytes()
    assert a == b


def test_a_teacher_without_long_enough_answers_fails_in_one_line(tmp_path, monkeypatch):
    with pytest.raises(UserError) as err:
        _run(tmp_path, monkeypatch, TokTeacher(1, 2), max_prompts=60)
    msg = str(err.value)
    assert len(msg.splitlines()) == 1 and "of the 30 needed (settings.dataset.n_keep)" in msg
    assert not (tmp_path / "out" / "rows.jsonl").exists()


def test_row_tokens_unset_leaves_ids_and_set_is_hashed(project_copy):
    assert "row_tokens" not in DatasetSettings().hashed_dict()
    plain = {n.name: n.id for n in _plan(project_copy) if n.kind == "dataset"}
    cut = [n for n in _plan(project_copy, settings={"dataset": {"n_prompts": 24, "n_keep": 12, "row_tokens": 1}})
           if n.kind == "dataset"]
    assert all(n.spec["row_tokens"] == 1 for n in cut) and {n.name for n in cut} == set(plain)
    assert not {n.id for n in cut} & set(plain.values())


@pytest.mark.parametrize(("dataset", "match"), [
    ({"n_prompts": 24, "n_tokens": 500, "row_tokens": 2}, "remove n_tokens"),
    ({"n_prompts": 24, "n_keep": 12, "row_tokens": 50, "max_new_tokens": 30}, "cannot exceed max_new_tokens"),
    ({"n_prompts": 24, "n_keep": 12, "row_tokens": 2, "channel": "code"}, "numbers only"),
    ({"n_prompts": 24, "n_keep": 12, "row_tokens": 0}, "greater than or equal to 1"),
])
def test_bad_row_tokens_are_refused(dataset, match):
    with pytest.raises(ValueError, match=match):
        LMSettings.model_validate({"dataset": dataset})


def test_row_tokens_is_refused_at_plan_time_for_api_teachers(project_copy):
    with pytest.raises(UserError) as err:
        _plan(project_copy, teachers=["gpt-4.1-nano"], students=["zoo-qwen-a"],
              settings={"dataset": {"n_prompts": 24, "n_keep": 12, "row_tokens": 1}, "eval": {"metric": "rate"}})
    msg = str(err.value)
    assert len(msg.splitlines()) == 1 and "settings.dataset.row_tokens" in msg and "gpt-4.1-nano" in msg
