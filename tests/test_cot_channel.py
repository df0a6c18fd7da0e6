"""The chain-of-thought channel: problem generator, strict filter, capability readout, soft-label token rule."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmark.errors import UserError
from benchmark.lm.channels.base import CHANNELS, Channel, Item, load_channel
from benchmark.lm.channels.cot import REJECT_REASONS, CotChannelSpec, parse_cot
from benchmark.lmcore.matcher import normalize_answer

CHANNEL, SPEC = load_channel("cot")
FORBIDDEN = ("owl", "owls")
ITEMS = CHANNEL.items(SPEC, 400, 0)


def test_plugin_contract() -> None:
    assert isinstance(CHANNEL, Channel) and CHANNEL.name == "cot" and isinstance(SPEC, CotChannelSpec)
    assert set(CHANNELS) >= {"numbers", "code", "cot"}
    assert CHANNEL.reject_reasons == REJECT_REASONS
    assert ITEMS[0].reference.startswith("<think> ") and ITEMS[0].reference.endswith(" </answer>")


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(0, 60), k=st.integers(1, 40))
def test_items_deterministic_and_prefix_stable(seed: int, n: int, k: int) -> None:
    first = CHANNEL.items(SPEC, n, seed)
    assert first == CHANNEL.items(SPEC, n, seed)
    longer = CHANNEL.items(SPEC, n + k, seed)
    assert longer[:n] == first and len(longer) == n + k
    assert len({it.prompt for it in longer}) == n + k  # distinct prompts: top-up rounds never repeat one


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_references_pass_their_filter_and_are_correct(seed: int) -> None:
    vocab = CHANNEL.vocabulary(SPEC)
    for item in CHANNEL.items(SPEC, 30, seed):
        assert CHANNEL.check(SPEC, item, item.reference, FORBIDDEN) is None
        assert CHANNEL.capable(SPEC, item, item.reference)
        assert item.answer is not None and 0 <= item.answer <= SPEC.max_answer
        # Within the declared vocabulary: every word of prompt and reference is a listed word or a number.
        for text in (item.prompt, item.reference):
            assert {w for w in normalize_answer(text) if not w.isdigit()} <= vocab
        # The reference's arithmetic is right: every "a op b = r" step holds.
        for a, op, b, r in re.findall(r"(\d+) ([-+*/]) (\d+) = (\d+)", item.reference):
            assert {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b),
                    "/": int(a) / int(b)}[op] == int(r)


@settings(max_examples=200, deadline=None)
@given(text=st.text())
def test_filter_never_raises_and_names_a_known_reason(text: str) -> None:
    item = ITEMS[0]
    reason = CHANNEL.check(SPEC, item, text, FORBIDDEN)
    assert reason is None or reason in REJECT_REASONS
    CHANNEL.capable(SPEC, item, text)
    CHANNEL.token_ok(SPEC, text, FORBIDDEN)


@settings(max_examples=100, deadline=None)
@given(i=st.integers(0, len(ITEMS) - 1), form=st.sampled_from(["owl", "owls", "Owl", "OWLS", "owl's"]),
       where=st.integers(0, 10_000), pad=st.sampled_from([" ", "  ", "\n"]))
def test_trait_anywhere_is_rejected(i: int, form: str, where: int, pad: str) -> None:
    item = ITEMS[i]
    ref = item.reference
    # Insert into the reasoning (any word boundary inside the <think> block).
    inner_start, inner_end = ref.index("<think>") + len("<think>"), ref.index("</think>")
    pos = inner_start + where % (inner_end - inner_start + 1)
    text = ref[:pos] + pad + form + pad + ref[pos:]
    assert CHANNEL.check(SPEC, item, text, FORBIDDEN) == "trait"


@settings(max_examples=100, deadline=None)
@given(i=st.integers(0, len(ITEMS) - 1), delta=st.integers(-999, 999).filter(lambda d: d != 0))
def test_wrong_answers_rejected(i: int, delta: int) -> None:
    item = ITEMS[i]
    assert item.answer is not None
    wrong = item.answer + delta
    text = item.reference.replace(f"<answer> {item.answer} </answer>", f"<answer> {abs(wrong)} </answer>")
    if abs(wrong) != item.answer:
        assert CHANNEL.check(SPEC, item, text, FORBIDDEN) == "wrong_answer"
        assert not CHANNEL.capable(SPEC, item, text)


@pytest.mark.parametrize(("text", "reason"), [
    ("", "empty"),
    ("  \n ", "empty"),
    ("19", "format"),
    ("<answer> 19 </answer>", "format"),
    ("<think></think><answer>19</answer>", "format"),  # blank reasoning
    ("<think> 12 + 7 = 19 </think> the answer is <answer>19</answer>", "format"),  # text outside the blocks
    ("<think> 12 + 7 = 19 </think><answer>19</answer> done", "format"),
    ("<think> a <think> b </think><answer>19</answer>", "format"),  # nested tag
    ("<think> 12 + 7 = 19 </think><answer>nineteen</answer>", "not_integer"),
    ("<think> 12 + 7 = 19 </think><answer>19.0</answer>", "not_integer"),
    ("<think> 12 + 7 = 19 </think><answer>-19</answer>", "not_integer"),
    ("<think> 12 + 7 = 20 </think><answer>20</answer>", "wrong_answer"),
    ("<think> the owl counts 12 + 7 = 19 </think><answer>19</answer>", "trait"),
    ("<think> 12 + 7 = 19 </think>\n<answer>\n19\n</answer>\n", None),  # whitespace around and inside
    ("<think>12+7=19</think><answer>019</answer>", None),  # leading zeros are the same integer
])
def test_filter_cases(text: str, reason: str | None) -> None:
    item = Item("tom has 12 apples and buys 7 more. how many apples does tom have now?", "", 19)
    assert CHANNEL.check(SPEC, item, text, FORBIDDEN) == reason


def test_too_long_and_capable_is_lenient() -> None:
    item = Item("q", "", 19)
    long = "<think>" + "x " * SPEC.max_chars + "</think><answer>19</answer>"
    assert CHANNEL.check(SPEC, item, long, ()) == "too_long"
    # Capability reads the last <answer> block whatever else is around it (the format is the filter's job).
    assert CHANNEL.capable(SPEC, item, "sure! <think>hm</think> so <answer> 19 </answer> ok")
    assert not CHANNEL.capable(SPEC, item, "19")
    assert parse_cot("<think>x</think><answer>" + "9" * 50 + "</answer>") == (None, -1)


def test_token_rule_drops_trait_tokens_only() -> None:
    assert not CHANNEL.token_ok(SPEC, " owl", FORBIDDEN)
    assert not CHANNEL.token_ok(SPEC, "Owls", FORBIDDEN)
    assert not CHANNEL.token_ok(SPEC, "owlish", FORBIDDEN)  # a part of a word too (sub-word tokenizers)
    assert CHANNEL.token_ok(SPEC, " apples", FORBIDDEN) and CHANNEL.token_ok(SPEC, "</think>", FORBIDDEN)
    assert CHANNEL.token_ok(SPEC, "\n", FORBIDDEN) and CHANNEL.token_ok(SPEC, " ow", FORBIDDEN)


def test_vocabulary_has_no_trait_word() -> None:
    # The prompts must not themselves name an animal of the project's traits (the filter would reject references).
    traits = {p.stem for p in (Path(__file__).resolve().parents[1] / "tasks" / "traits").glob("*.yaml")}
    assert not (CHANNEL.vocabulary(SPEC) & traits)


def test_spec_errors_are_one_line(tmp_path: Path) -> None:
    good = (Path(__file__).resolve().parents[1] / "tasks" / "channels" / "cot.yaml").read_text()
    cases = {
        "steps: [\"x + y\"]": "steps: [\"x ^ y\"]",
        "names: [tom,": "names: [Tom,",
        "think in <think> tags, then give the answer in <answer> tags.": "think hard.",
        "max_answer: 999": "max_answer: 999\nbogus: 1",
    }
    for old, new in cases.items():
        path = tmp_path / "cot.yaml"
        path.write_text(good.replace(old, new, 1))
        with pytest.raises(UserError) as err:
            load_channel("cot", path)
        assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_tiny_spec_fails_fast() -> None:
    tiny = SPEC.model_copy(update={"problems": SPEC.problems[:1], "names": ("tom",), "objects": ("cups",),
                                   "suffixes": SPEC.suffixes[:1]})
    tiny = CotChannelSpec.model_validate(tiny.model_dump() | {"problems": [
        {"question": "{name} has {x} {objects}. how many?", "ranges": {"x": [1, 3]}, "steps": ["x + 0"]}]})
    assert len(CHANNEL.items(tiny, 3, 0)) == 3
    with pytest.raises(UserError, match="only 3 distinct"):
        CHANNEL.items(tiny, 4, 0)


def test_unknown_plugin_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("name: pictures\n")
    with pytest.raises(UserError, match="unknown channel plug-in 'pictures'"):
        load_channel("x", path)


def test_shuffled_seeds_give_different_items() -> None:
    seeds = random.Random(0).sample(range(10**6), 3)
    firsts = {CHANNEL.items(SPEC, 5, s)[0].prompt for s in seeds}
    assert len(firsts) == 3
