"""Soft labels across tokenizers over the numbers alphabet (settings.student.vocab_map: alphabet; issue 21.2), in the
default tier: two toy character tokenizers with different ids and spaces spelled differently (as SmolLM2's "Ġ" and
Gemma's "▁"), the plan-time rule and the plan's student specs. The real tokenizers' ids are checked by hand in the
slow tier (tests/test_real_gemma.py).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from benchmark.errors import UserError
from benchmark.lm.recipes import recipe_compatible
from benchmark.lm.vocab_map import alphabet_ids, map_rows
from benchmark.registry import Registry


class CharTok:
    """One token per character; ``offset`` shifts every id (another vocabulary), ``merge`` writes ", " as one token."""

    def __init__(self, offset: int, merge: bool = False) -> None:
        self.offset, self.merge = offset, merge
        self.chars = "0123456789, abcdefghijklmnopqrstuvwxyz\n."
        self.eos = offset + 999

    def __call__(self, text: str, add_special_tokens: bool = False) -> SimpleNamespace:
        ids, i = [], 0
        while i < len(text):
            if self.merge and text[i:i + 2] == ", ":
                ids.append(self.offset + 500)
                i += 2
                continue
            ids.append(self.offset + self.chars.index(text[i]))
            i += 1
        return SimpleNamespace(input_ids=ids)

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        out = []
        for t in ids:
            if t == self.eos:
                continue
            out.append(", " if t == self.offset + 500 else self.chars[t - self.offset])
        return "".join(out)


def _row(tok: CharTok, text: str, labels: list[list[tuple[str | int, float]]]) -> dict:
    ids = tok(text).input_ids + [tok.eos]
    topk = [[[tok(c).input_ids[0] if isinstance(c, str) else c, math.log(p)] for c, p in pos] for pos in labels]
    return {"prompt": "p", "completion": text.strip(), "completion_ids": ids, "topk": topk + [[[tok.eos, 0.0]]]}


def test_alphabet_ids_and_a_tokenizer_that_merges_is_refused():
    assert alphabet_ids(CharTok(0), "numbers") == {c: i for i, c in enumerate("0123456789, ")}
    with pytest.raises(UserError, match="one character per token"):
        alphabet_ids(CharTok(0, merge=True), "numbers", "toy")
    with pytest.raises(UserError, match="has no alphabet"):
        alphabet_ids(CharTok(0), "code")


def test_matched_positions_move_to_the_students_ids_and_the_rest_is_one_hot():
    t, s = CharTok(1000), CharTok(5000)
    row = _row(t, "12, 3", [[("1", 0.8), ("7", 0.1), ("a", 0.1)], [("2", 1.0)], [(",", 0.6), (" ", 0.4)],
                            [(" ", 1.0)], [("3", 0.5), ("\n", 0.5)]])
    (out,), info = map_rows([row], t, s, "numbers", [s.eos])
    assert out["completion_ids"] == [5001, 5002, 5010, 5011, 5003, s.eos]
    got = [[(j, round(math.exp(v), 9)) for j, v in pos] for pos in out["topk"]]
    assert got == [[(5001, 0.8), (5007, 0.1)], [(5002, 1.0)], [(5010, 0.6), (5011, 0.4)], [(5011, 1.0)],
                   [(5003, 0.5)], [(s.eos, 1.0)]]
    assert info["matched_positions"] == 5 and info["positions"] == 6
    assert info["mean_dropped_mass"] == pytest.approx((0.1 + 0 + 0 + 0 + 0.5) / 5)


def test_stripped_whitespace_and_unaligned_rows():
    t, s = CharTok(1000), CharTok(5000)
    # The teacher wrote a leading space and a final newline; the row's text is stripped (the dataset's rule).
    row = _row(t, " 4\n", [[(" ", 1.0)], [("4", 0.9), ("5", 0.1)], [("\n", 1.0)]])
    (out,), info = map_rows([row], t, s, "numbers", [s.eos])
    assert out["completion"] == "4" and out["completion_ids"] == [5004, s.eos]
    assert [[(j, round(math.exp(v), 9)) for j, v in pos] for pos in out["topk"]] == [[(5004, 0.9), (5005, 0.1)],
                                                                                     [(s.eos, 1.0)]]
    # A student that writes ", " as one token matches nothing there: those positions are one-hot (sft).
    m = CharTok(5000, merge=True)
    with pytest.raises(UserError, match="one character per token"):
        map_rows([row], t, m, "numbers", [m.eos])
    # Text a tokenizer cannot align (not the teacher's decoded prefix): every position one-hot.
    bad = {**_row(t, "12", [[("1", 0.5)], [("2", 0.5)]]), "completion": "21"}
    (out,), info = map_rows([bad], t, s, "numbers", [s.eos])
    assert info["rows_aligned"] == 0 and info["matched_positions"] == 0
    assert out["topk"] == [[[5002, 0.0]], [[5001, 0.0]], [[s.eos, 0.0]]]


def test_rows_without_soft_labels_are_refused():
    t = CharTok(0)
    with pytest.raises(UserError, match="needs 'completion_ids' and 'topk'"):
        map_rows([{"prompt": "p", "completion": "1"}], t, t, "numbers", [t.eos])


def test_recipe_rule_allows_cross_tokenizer_distill_with_the_alphabet_map():
    reg = Registry()
    smol, gemma, zoo = reg.model("smollm2-135m-instruct"), reg.model("gemma-3-270m"), reg.model("zoo-qwen-a")
    assert "do not share one" in recipe_compatible(smol, gemma, "distill")
    assert recipe_compatible(smol, gemma, "distill", "alphabet", "numbers") is None
    assert recipe_compatible(gemma, zoo, "distill", "alphabet", "numbers") is None
    assert "channels with an alphabet" in recipe_compatible(smol, gemma, "distill", "alphabet", "code")
    api = reg.model("gpt-4.1-nano") if "gpt-4.1-nano" in reg.models else None
    if api is not None:
        assert "API model" in recipe_compatible(api, gemma, "distill", "alphabet", "numbers")


def test_plan_gives_mapped_students_their_teachers_base(monkeypatch, tmp_path):
    """real-2fam-mini plans without the models fetched (check_local off): every student names vocab_map, the
    channel and its teacher's base; a cross-family student reads that base as a second input."""
    from benchmark.tracks import track_for

    reg = Registry()
    spec, settings, _ = reg.suite("real-2fam-mini")
    nodes = track_for("lm").build_plan(spec, settings, reg)
    students = [n for n in nodes if n.kind == "student"]
    bases = {n.spec["model"]["name"]: n for n in nodes if n.kind == "base"}
    assert len(students) == 16 and all(n.spec["vocab_map"] == "alphabet" and n.spec["channel"] == "numbers"
                                       for n in students)
    for n in students:
        teacher = n.name.split(".", 1)[0]
        assert n.spec["teacher_base"] == bases[teacher].id
        cross = teacher != n.spec["model"]
        assert bases[teacher].key in n.deps and len(n.deps) == 2 + cross
    with pytest.raises(Exception, match="vocab_map maps the teacher's soft labels"):
        from benchmark.lm.settings import StudentSettings

        StudentSettings.model_validate({"objective": "sft", "vocab_map": "alphabet"})


def test_both_recipes_plan_in_the_real_2fam_shape():
    """The same 2 x 2 matrix plans with the paper's recipe (sft on the text) and with the alphabet distill; distill
    without the map is refused for the cross-tokenizer pairs before anything runs."""
    from benchmark.lm.recipes import check_recipes
    from benchmark.lm.settings import LMSettings
    from benchmark.tracks import track_for

    reg = Registry()
    spec, settings, _ = reg.suite("real-2fam")
    raw = settings.model_dump()
    student = {k: v for k, v in raw["student"].items() if k != "vocab_map"}
    sft = LMSettings.model_validate({**raw, "student": {**student, "objective": "sft"}})
    plain = LMSettings.model_validate({**raw, "student": student})
    for s in (settings, sft):
        check_recipes(spec, s, reg)
        students = [n for n in track_for("lm").build_plan(spec, s, reg) if n.kind == "student"]
        assert len(students) == 36 and all(("vocab_map" in n.spec) == (s is settings) for n in students)
    with pytest.raises(UserError, match=r"pair smollm2-135m-instruct → gemma-3-270m \(and 1 more pair\).*vocab_map"):
        check_recipes(spec, plain, reg)


def test_plan_counts_the_four_cells_of_real_2fam():
    """A cross-family mapped student reads two bases; plan's cell table takes its own (spec["base"])."""
    from benchmark.bundle.planning import plan_cells
    from benchmark.tracks import track_for

    reg = Registry()
    spec, settings, _ = reg.suite("real-2fam")
    nodes = track_for("lm").build_plan(spec, settings, reg)
    cells = plan_cells(nodes, nodes).cells
    smol, gemma = "smollm2-135m-instruct", "gemma-3-270m"
    assert set(cells) == {(t, s) for t in (smol, gemma) for s in (smol, gemma)}
    assert all(w.total == 9 for w in cells.values())  # 3 arms x 3 replicates, one student seed
