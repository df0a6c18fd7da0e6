"""Defense plug-ins (benchmark.lm.defenses): property tests over generated number rows (hypothesis), the soft-label
rule, the divergence selection, and the plan (no defense: every id unchanged; a defense: only downstream nodes new)."""

from __future__ import annotations

import copy
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmark.errors import UserError
from benchmark.lm.defenses import Scores, Vocab, plugin
from benchmark.lm.defenses.base import DEFENSES, shape_of
from benchmark.lm.defenses.divergence import candidates, select
from benchmark.lm.defenses.text import canonical_text, numbers_of
from benchmark.lmcore.numbers import SEPARATORS, format_numbers_answer, load_numbers_channel, parse_answer

SPEC = load_numbers_channel()
EOT = 1000  # the toy tokenizer's end of turn
TRAIT = 2000  # a token that is no channel token (a trait word, "owl")


def _valid(text: str) -> bool:
    return parse_answer(text, SPEC).ok


# A digit-by-digit toy tokenizer (as SmolLM2's): one token per character, its code point; 1000 is end of turn.
TOY = Vocab(encode=lambda text: [ord(c) for c in text], decode=lambda ids: "".join(chr(i) for i in ids if i < EOT),
            special=frozenset({EOT}), shapes={ord(d): "d" for d in "0123456789"})

answers = st.builds(
    lambda nums, sep, brackets, period, zeros: _answer(nums, sep, brackets, period, zeros),
    st.lists(st.integers(0, 999), min_size=1, max_size=10), st.sampled_from(SEPARATORS),
    st.sampled_from([None, "[]", "()", "{}"]), st.booleans(), st.booleans())


def _answer(nums: list[int], sep: str, brackets: str | None, period: bool, zeros: bool) -> str:
    text = format_numbers_answer(nums, sep, brackets=brackets, period=period)
    if zeros:  # a leading zero on the first one- or two-digit number (still at most 3 digits)
        first = numbers_of(text)[0][0]
        if len(first) < 3:
            text = text.replace(first, "0" + first, 1)
    return text


def _row(text: str, trait_in_topk: bool = False) -> dict:
    """A dataset row of the toy tokenizer: ids with end of turn, teacher soft labels (channel tokens only, plus an
    optional trait token to show transforms never copy one to a new position)."""
    ids = TOY.encode(text) + [EOT]
    topk = [[[t, -0.1], [ord("5"), -2.5], *([[TRAIT, -6.0]] if trait_in_topk else [])] for t in ids]
    return {"prompt": "Continue: 1, 2, 3.", "completion": text, "completion_ids": ids, "topk": topk}


TEXT = ["sort", "shuffle", "canonical"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=answers, name=st.sampled_from(TEXT), seed=st.integers(0, 2**30), trait=st.booleans())
def test_text_defenses_keep_rows_valid_deterministic_and_trait_free(text, name, seed, trait):
    defense = plugin(name)
    row = _row(text, trait)
    out, changes = defense.apply([row], vocab=TOY, seed=seed, params={}, scores=None, valid=_valid)
    again, changes2 = defense.apply([copy.deepcopy(row)], vocab=TOY, seed=seed, params={}, scores=None, valid=_valid)
    assert json.dumps(out) == json.dumps(again) and changes == changes2  # deterministic given the seed
    new, change = out[0], changes[0]
    assert _valid(new["completion"])  # still a row the channel's filter keeps
    before = [int(n) for n in numbers_of(text)[0]]
    after = [int(n) for n in numbers_of(new["completion"])[0]]
    assert sorted(before) == sorted(after)  # the same numbers: nothing added, nothing dropped
    if name == "sort":
        assert after == sorted(before)
    if name == "canonical":
        assert new["completion"] == ", ".join(map(str, before))
    if change is None:  # unchanged rows are the very rows
        assert new is row
        return
    assert change["before"] == text and change["after"] == new["completion"] != text  # records what it changed
    ids, topk = new["completion_ids"], new["topk"]
    assert len(ids) == len(topk) and ids[-1] == EOT and TOY.decode(ids) == new["completion"]
    keep = change["soft_labels_kept"]
    assert topk[:keep] == row["topk"][:keep] and ids[:keep] == row["completion_ids"][:keep]
    assert all(lab == [[t, 0.0]] for lab, t in zip(topk[keep:], ids[keep:], strict=True))  # one-hot on new tokens
    assert TRAIT not in {t for lab in topk[keep:] for t, _ in lab}  # no label moved to a changed position
    assert change["onehot"] == len(ids) - keep


def test_none_is_the_identity_byte_for_byte():
    rows = [_row("5, 3, 9"), _row("[1 2]")]
    out, changes = plugin("none").apply(rows, vocab=TOY, seed=0, params={}, scores=None, valid=_valid)
    assert json.dumps(out) == json.dumps(rows) and changes == [None, None]


def test_shuffle_permutes_within_rows_only():
    rows = [_row(format_numbers_answer(list(range(100, 110)))), _row("7")]
    out, _ = plugin("shuffle").apply(rows, vocab=TOY, seed=3, params={}, scores=None, valid=_valid)
    assert sorted(numbers_of(out[0]["completion"])[0]) == [str(n) for n in range(100, 110)]
    assert out[0]["completion"] != rows[0]["completion"] and out[1] is rows[1]
    other, _ = plugin("shuffle").apply(rows, vocab=TOY, seed=4, params={}, scores=None, valid=_valid)
    assert other[0]["completion"] != out[0]["completion"]  # the seed draws the permutation


def test_canonical_and_shapes():
    assert canonical_text("[007; 12; 5].") == "7, 12, 5"
    assert shape_of(" 123") == " ddd" and shape_of("12") == "dd" and shape_of(",") is None and shape_of("owl") is None


def test_text_rows_without_ids_are_text_only():
    out, changes = plugin("sort").apply([{"prompt": "p", "completion": "3 1 2"}], vocab=None, seed=0, params={},
                                        scores=None, valid=_valid)
    assert out[0] == {"prompt": "p", "completion": "1 2 3"} and changes[0]["after"] == "1 2 3"


# -- divergence defenses ---------------------------------------------------------------------------------------

def _scores(rows: list[dict], diverge: list[set[int]], n_other: int = 2) -> Scores:
    """Synthetic teacher-forced readouts: the own teacher's argmax is the written token; the other teachers agree
    except at the positions ``diverge[i]`` of row i, where they predict "0"; margins grow with the position."""
    argmax, lp, best = [], [], []
    for row, div in zip(rows, diverge, strict=True):
        ids = row["completion_ids"]
        own = list(ids)
        others = [[ord("0") if t in div else x for t, x in enumerate(ids)] for _ in range(n_other)]
        argmax.append([own, *others])
        lp.append([[-0.5] * len(ids), *[[-0.5 - (0.1 * t if t in div else 0.0) for t in range(len(ids))]
                                        for _ in range(n_other)]])
        best.append([ord("4") if x in TOY.shapes else None for x in ids])
    return Scores(argmax, lp, best)


@st.composite
def divergent_rows(draw):
    texts = draw(st.lists(answers, min_size=1, max_size=4))
    rows = [_row(t) for t in texts]
    diverge = [set(draw(st.lists(st.integers(0, len(r["completion_ids"]) - 1), max_size=6))) for r in rows]
    return rows, diverge


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=divergent_rows(), seed=st.integers(0, 2**30), digits=st.randoms(use_true_random=False))
def test_random_divergence_at_full_fraction_leaves_no_teacher_specific_digit(data, seed, digits):
    rows, diverge = data
    scores = _scores(rows, diverge)
    defense = plugin("random_divergence")
    out, changes = defense.apply(rows, vocab=TOY, seed=seed, params={"fraction": 1.0}, scores=scores, valid=_valid)
    cands = {(i, t) for _, i, t in candidates(rows, scores, TOY)}
    replaced = {(c["row"], t) for c in changes if c for t in c["positions"]}
    assert replaced == cands  # every divergent digit replaced, nothing else
    # A teacher that had written other digits at those positions (same shapes) gives the very same rows.
    other_rows = copy.deepcopy(rows)
    for i, t in cands:
        other_rows[i]["completion_ids"][t] = ord(str(digits.randint(0, 9)))
        other_rows[i]["completion"] = TOY.decode(other_rows[i]["completion_ids"]).strip()
    if not all(_valid(r["completion"]) for r in other_rows):
        return  # a leading zero made the hypothetical row invalid: not a row a teacher could have written
    other_scores = Scores(scores.argmax, scores.written_lp, scores.base_best)
    other_out, _ = defense.apply(other_rows, vocab=TOY, seed=seed, params={"fraction": 1.0}, scores=other_scores,
                                 valid=_valid)
    assert [r["completion_ids"] for r in other_out] == [r["completion_ids"] for r in out]
    for new in out:
        assert _valid(new["completion"]) and len(new["topk"]) == len(new["completion_ids"])
        assert TOY.decode(new["completion_ids"]).strip() == new["completion"]
    for c in changes:
        if c:
            assert all(out[c["row"]]["topk"][t] == [[n, 0.0]] for t, n in zip(c["positions"], c["new"], strict=True))
            assert all(TRAIT != n for n in c["new"])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=divergent_rows(), fraction=st.floats(0.05, 1.0), seed=st.integers(0, 1000))
def test_divergence_fraction_selects_the_top_candidates(data, fraction, seed):
    rows, diverge = data
    scores = _scores(rows, diverge)
    cands = candidates(rows, scores, TOY)
    chosen = select(cands, fraction)
    assert sum(map(len, chosen.values())) == math.ceil(fraction * len(cands) - 1e-9)
    out, changes = plugin("mask_divergence").apply(rows, vocab=TOY, seed=seed, params={"fraction": fraction},
                                                    scores=scores, valid=_valid)
    again, _ = plugin("mask_divergence").apply(rows, vocab=TOY, seed=seed + 1, params={"fraction": fraction},
                                               scores=scores, valid=_valid)
    assert out == again  # the base's best token: no randomness
    for c in changes:
        if c:
            assert set(c["new"]) <= {ord("4")} and _valid(out[c["row"]]["completion"])
            assert c["kept_invalid"] + len(c["positions"]) == len(chosen[c["row"]])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(answers, min_size=1, max_size=4), fraction=st.floats(0.05, 1.0), data=st.data())
def test_student_divergence_replaces_what_the_student_learned_most(texts, fraction, data):
    from benchmark.lm.defenses.divergence import student_candidates

    rows = [_row(t) for t in texts]
    lp = [[[data.draw(st.floats(-9, 0)) for _ in r["completion_ids"]] for _ in range(2)] for r in rows]
    best = [[ord("4") if x in TOY.shapes else None for x in r["completion_ids"]] for r in rows]
    scores = Scores([[] for _ in rows], lp, best)
    out, changes = plugin("student_divergence").apply(rows, vocab=TOY, seed=0, params={"fraction": fraction},
                                                      scores=scores, valid=_valid)
    digits = [(i, t) for i, r in enumerate(rows) for t, x in enumerate(r["completion_ids"]) if x in TOY.shapes]
    cands = student_candidates(rows, scores, TOY)
    assert sorted((i, t) for _, i, t in cands) == digits  # every digit position is a candidate, nothing else
    chosen = select(cands, fraction)
    n = math.ceil(fraction * len(digits) - 1e-9)
    ranked = sorted(cands, key=lambda c: (-c[0], c[1], c[2]))
    assert {(i, t) for i, ts in chosen.items() for t in ts} == {(i, t) for _, i, t in ranked[:n]}
    done = {(c["row"], t) for c in changes if c for t in c["positions"]}
    kept = sum(c["kept_invalid"] for c in changes if c)
    assert done <= {(i, t) for _, i, t in ranked[:n]} and len(done) + kept == n
    assert all(out[i]["completion_ids"][t] == ord("4") for i, t in done) and all(_valid(r["completion"]) for r in out)


def test_divergence_needs_token_ids():
    with pytest.raises(UserError, match="token ids"):
        plugin("random_divergence").apply([{"prompt": "p", "completion": "1"}], vocab=None, seed=0,
                                          params={"fraction": 1.0}, scores=None, valid=_valid)


def test_every_registered_defense_states_its_rule():
    for name in DEFENSES:
        d = plugin(name)
        assert d.name == name and len(d.rule) > 20 and set(d.scorers) <= {"teachers", "student", "base", "rewriter"}


# -- plan ------------------------------------------------------------------------------------------------------

def _plan(reg, spec, settings_data):
    from benchmark.tracks import settings_cls, track_for

    settings_obj = settings_cls(spec.track, settings_data, "test")
    return track_for(spec.track).build_plan(spec.model_copy(update={"settings": settings_data}), settings_obj, reg)


def spec_train(settings_data: dict) -> dict:
    from benchmark.lm.settings import LMSettings

    return LMSettings.model_validate(settings_data).student.train.hashed_dict()


def test_no_defense_keeps_every_id_and_a_defense_only_adds_downstream_nodes():
    from benchmark.registry import Registry

    reg = Registry()
    spec, _, _ = reg.suite("default")
    base = copy.deepcopy(spec.settings)
    plain = {n.key for n in _plan(reg, spec, base)}
    for unset in ({**base, "dataset": {**base["dataset"], "defense": "none"}},
                  {**base, "dataset": {**base["dataset"], "defense_fraction": 0.5}}):
        assert {n.key for n in _plan(reg, spec, unset)} == plain
    defended = _plan(reg, spec, {**base, "dataset": {**base["dataset"], "defense": "mask_divergence"}})
    kinds = {n.kind for n in defended if n.key not in plain}
    assert kinds == {"defense", "student", "eval", "report"}
    shared = {n.key for n in defended if n.kind in ("base", "teacher", "dataset")}
    assert shared <= plain
    node = next(n for n in defended if n.kind == "defense" and n.name == "zoo-gpt2.owl.r2")
    others = [n for n in defended if n.kind == "teacher" and n.name in ("zoo-gpt2.cat.r2", "zoo-gpt2.aa-cat.r2")]
    assert sorted(node.spec["teachers"]) == sorted(o.id for o in others) and node.spec["fraction"] == 0.1
    student = next(n for n in defended if n.kind == "student" and n.name == "zoo-gpt2.owl.r2.to.zoo-gpt2.s0")
    assert student.spec["defense"] == node.id and node.key in student.deps
    pilot = _plan(reg, spec, {**base, "dataset": {**base["dataset"], "defense": "student_divergence"}})
    pnode = next(n for n in pilot if n.kind == "defense")
    assert "teachers" not in pnode.spec and pnode.spec["student"]["train"] == spec_train(base)
    assert not any(d.startswith("teacher/") for d in pnode.deps)
    sort = _plan(reg, spec, {**base, "dataset": {**base["dataset"], "defense": "sort", "defense_fraction": 0.5}})
    sort_node = next(n for n in sort if n.kind == "defense")
    assert "fraction" not in sort_node.spec and "teachers" not in sort_node.spec  # only what the plug-in reads


def test_bad_defense_is_one_line_naming_the_key(project_copy):
    import yaml

    from benchmark.registry import Registry

    suites = project_copy / "tasks" / "suites"
    data = yaml.safe_load((suites / "default.yaml").read_text())
    data["settings"]["dataset"]["defense"] = "sorted"
    (suites / "bad.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(UserError, match=r"bad.yaml: settings: bad value for 'dataset.defense'.*unknown defense "
                                        r"'sorted'") as err:
        Registry(project_copy).suite("bad")
    assert "\n" not in str(err.value)
    code = yaml.safe_load((suites / "channels-code.yaml").read_text())
    code["settings"]["dataset"]["defense"] = "sort"
    (suites / "bad-code.yaml").write_text(yaml.safe_dump(code))
    reg = Registry(project_copy)
    spec, settings_obj, _ = reg.suite("bad-code")
    from benchmark.tracks import track_for

    with pytest.raises(UserError, match=r"settings.dataset.defense: 'sort' transforms the numbers channel only"):
        track_for("lm").build_plan(spec, settings_obj, reg)


# -- threshold sampling (a generation-time defense: settings.dataset.threshold) ---------------------------------

def test_threshold_sampling_never_writes_a_token_below_the_threshold(tmp_path):
    torch = pytest.importorskip("torch")
    from benchmark.providers import hf_model as M
    from tests.lm_fixtures import save_tiny_model

    torch.set_num_threads(1)
    model, tok = M.load_model(save_tiny_model(tmp_path / "qwen2", "qwen2", seed=0))
    prompts = ["continue this sequence : 1 , 2 , 3", "hello"] * 4
    kw = {"temperature": 1.0, "max_new_tokens": 8, "seed": 5, "top_k_logprobs": 40}
    plain = M.generate(model, tok, prompts, **kw)
    cut = M.generate(model, tok, prompts, threshold=0.05, **kw)
    assert cut == M.generate(model, tok, prompts, threshold=0.05, **kw)  # deterministic
    assert M.generate(model, tok, prompts, threshold=None, **kw) == plain  # unset: plain sampling, unchanged
    for row in cut:
        for tid, pos in zip(row["completion_ids"], row["topk"], strict=True):
            # At most 1/0.05 = 20 tokens pass, all within the top 40: the stored labels are exactly the kept tokens,
            # renormalised, and the written token is one of them.
            assert 1 <= len(pos) <= 20 and abs(sum(math.exp(v) for _, v in pos) - 1) < 1e-5
            assert tid in {j for j, _ in pos}
    logits = torch.tensor([[2.0, 1.0, -3.0, 0.5], [0.0, 0.0, 0.0, 0.0]])
    keep = M.threshold_mask(logits, 1.0, 0.2)
    assert keep.tolist() == [[True, True, False, False], [True, True, True, True]]
    assert M.threshold_mask(logits, 1.0, 0.99).tolist()[0] == [True, False, False, False]  # the argmax always


def test_threshold_enters_only_the_datasets_it_changes():
    from benchmark.registry import Registry

    reg = Registry()
    spec, _, _ = reg.suite("default")
    base = copy.deepcopy(spec.settings)
    plain = {n.key: n for n in _plan(reg, spec, base)}
    cut = _plan(reg, spec, {**base, "dataset": {**base["dataset"], "threshold": 0.05}})
    assert {n.kind for n in cut if n.key not in plain} == {"dataset", "student", "eval", "report"}
    assert all(n.spec["threshold"] == 0.05 for n in cut if n.kind == "dataset")
    with pytest.raises(UserError, match=r"settings.dataset.threshold: greedy data"):
        _plan(reg, spec, {**base, "dataset": {**base["dataset"], "threshold": 0.05, "temperature": 0.0}})
