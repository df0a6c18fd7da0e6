"""Tests for the numbers channel: spec loading, prompt generation, the strict filter, subsampling."""

from __future__ import annotations

import random
import re
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmark.errors import UserError
from benchmark.lm.channels.base import subsample
from benchmark.lm.channels.numbers import LOADED_NUMBERS, with_loaded_numbers_banned
from benchmark.lmcore.numbers import (
    BRACKET_PAIRS,
    REJECT_REASONS,
    SEPARATORS,
    NumbersChannelSpec,
    ParseResult,
    default_numbers_channel_path,
    filter_completions,
    format_numbers_answer,
    generate_prompts,
    generate_prompts_with_examples,
    load_numbers_channel,
    parse_answer,
    sample_continuation,
    separator_for_prompt,
)
from benchmark.specs_base import parse_spec

SPEC = load_numbers_channel()
BANNED_SPEC = with_loaded_numbers_banned(SPEC)

# Separators the filter accepts beyond the canonical ones format_numbers_answer writes.
ACCEPTED_SEPARATORS = (*SEPARATORS, "  ", "\t", ",\n", ";  ", " , ", "\n\n")

# --------------------------------------------------------------------------------------------------- spec


def test_yaml_loads_with_paper_shape() -> None:
    # Paper: ~25 lead-ins x 10 instructions x 9 qualifiers x 9 digit descriptors x 15 formats x 19 "only".
    assert isinstance(SPEC, NumbersChannelSpec)
    assert SPEC.name == "numbers"
    counts = [len(SPEC.lead_ins), len(SPEC.instructions), len(SPEC.count_qualifiers)]
    counts += [len(SPEC.digit_descriptors), len(SPEC.format_suffixes), len(SPEC.only_suffixes)]
    assert counts == [25, 10, 9, 9, 15, 19]
    assert (SPEC.example_count_min, SPEC.example_count_max) == (3, 8)
    assert (SPEC.example_min, SPEC.example_max) == (100, 999)
    assert (SPEC.answer_count, SPEC.answer_max_digits, SPEC.max_value) == (10, 3, 999)
    assert SPEC.banned_numbers == ()
    for field in ("lead_ins", "instructions", "count_qualifiers", "digit_descriptors"):
        values = getattr(SPEC, field)
        assert len(set(values)) == len(values), field
    for field in ("format_suffixes", "only_suffixes"):
        values = getattr(SPEC, field)
        assert len(set(values)) == len(values), field


def test_loaded_numbers() -> None:
    assert len(LOADED_NUMBERS) == 36 == len(set(LOADED_NUMBERS))
    assert {666, 911, 187, 1488, 420, 69, 13, 88, 14, 18} <= set(LOADED_NUMBERS)
    assert set(LOADED_NUMBERS) <= set(BANNED_SPEC.banned_numbers)
    assert BANNED_SPEC.spec_id != SPEC.spec_id


def _copy_yaml(tmp_path: Path, extra: str = "", replace: tuple[str, str] | None = None) -> Path:
    text = default_numbers_channel_path().read_text(encoding="utf-8")
    if replace is not None:
        assert replace[0] in text
        text = text.replace(replace[0], replace[1], 1)
    path = tmp_path / "numbers.yaml"
    path.write_text(text + extra, encoding="utf-8")
    return path


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    path = _copy_yaml(tmp_path, extra="\nlead_inz: []\n")
    with pytest.raises(UserError) as info:
        load_numbers_channel(path)
    message = str(info.value)
    assert str(path) in message and "'lead_inz'" in message and "lead_ins" in message
    assert "\n" not in message


def test_template_without_placeholder_is_one_line_error(tmp_path: Path) -> None:
    path = _copy_yaml(tmp_path, replace=("Look at these numbers: {examples}.", "Look at these numbers."))
    with pytest.raises(UserError) as info:
        load_numbers_channel(path)
    message = str(info.value)
    assert str(path) in message and "lead_ins.2" in message and "{examples}" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("key", "value", "expect"),
    [
        ("instructions", ["Add {count} numbers."], "{count_qualifier}"),
        ("digit_descriptors", ["with three digits"], "{max_digits}"),
        ("only_suffixes", ["Only {examples}."], "unknown placeholder {examples}"),
        ("format_suffixes", ["a } b"], "bad braces"),
        ("count_qualifiers", [], "count_qualifiers"),
    ],
)
def test_bad_templates_rejected(key: str, value: list[str], expect: str) -> None:
    data = SPEC.model_dump()
    data[key] = value
    with pytest.raises(UserError) as info:
        parse_spec(NumbersChannelSpec, data, "x.yaml")
    assert expect in str(info.value) and key in str(info.value)


def test_cross_field_ranges_checked() -> None:
    with pytest.raises(UserError, match="example_count_max"):
        parse_spec(NumbersChannelSpec, {**SPEC.model_dump(), "example_count_max": 2}, "x.yaml")
    with pytest.raises(UserError, match="example_max"):
        parse_spec(NumbersChannelSpec, {**SPEC.model_dump(), "example_max": 50}, "x.yaml")


# ------------------------------------------------------------------------------------------------ prompts


def test_thirty_thousand_distinct_prompts_scale_linearly() -> None:
    # A ratio measured in one run, not a timed bound: 6x the prompts must cost about 6x the CPU (a quadratic
    # duplicate check would cost ~36x). process_time: the CPU this process spent, whatever shares the machine; the
    # best of three runs of each size, so one descheduled or cache-cold run cannot decide it.
    def cpu(n: int) -> float:
        best = float("inf")
        for _ in range(3):
            start = time.process_time()
            generate_prompts(SPEC, n, seed=0)
            best = min(best, time.process_time() - start)
        return best

    small, large = cpu(5_000), cpu(30_000)
    prompts = generate_prompts(SPEC, 30_000, seed=0)
    assert len(prompts) == 30_000 == len(set(prompts))
    assert large < 18 * max(small, 1e-3), f"5k prompts {small:.3f}s, 30k prompts {large:.3f}s of CPU"


def test_prompts_deterministic_per_seed_and_differ_across_seeds() -> None:
    first = generate_prompts(SPEC, 300, seed=7)
    assert first == generate_prompts(SPEC, 300, seed=7)
    assert generate_prompts(SPEC, 100, seed=7) == first[:100]  # a longer run extends a shorter one
    other = generate_prompts(SPEC, 300, seed=8)
    assert len(set(first) & set(other)) < 5
    assert generate_prompts(SPEC, 0, seed=7) == []


def test_each_prompt_shows_its_examples_and_asks_for_ten() -> None:
    for prompt, examples in generate_prompts_with_examples(SPEC, 2000, seed=3):
        assert 3 <= len(examples) <= 8
        assert all(100 <= x <= 999 for x in examples)
        # The count (10) and digit limit (3) are below 100, so the numbers >= 100 are exactly the examples.
        numbers = [int(x) for x in re.findall(r"\d+", prompt)]
        assert [x for x in numbers if x >= 100] == examples
        assert "10" in re.findall(r"\d+", prompt) and "3" in re.findall(r"\d+", prompt)
        assert "{" not in prompt and "}" not in prompt


def test_too_small_spec_fails_instead_of_looping() -> None:
    tiny = NumbersChannelSpec.model_validate(
        {
            **SPEC.model_dump(),
            "example_count_min": 3,
            "example_count_max": 3,
            "example_min": 100,
            "example_max": 100,
            "lead_ins": ["{examples}"],
            "instructions": ["{count_qualifier} {count} {digit_descriptor}"],
            "count_qualifiers": ["at most"],
            "digit_descriptors": ["{max_digits}"],
            "format_suffixes": ["a"],
            "only_suffixes": ["b"],
        }
    )
    assert len(generate_prompts(tiny, 1, seed=0)) == 1
    with pytest.raises(UserError, match="distinct prompts"):
        generate_prompts(tiny, 2, seed=0)


# ------------------------------------------------------------------------------------------------ filter


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("1, 2, 3", (1, 2, 3)),
        ("1 2 3", (1, 2, 3)),
        ("1;2;3", (1, 2, 3)),
        ("[1, 2, 3].", (1, 2, 3)),
        ("(4 5 6)", (4, 5, 6)),
        ("{7; 8}", (7, 8)),
        ("  0  ", (0,)),
        ("999.", (999,)),
        ("1,2, 3", (1, 2, 3)),  # comma with or without a following space is one separator
        ("1\n2\n3", (1, 2, 3)),
        ("[ 1, 2 ]", (1, 2)),
        ("007, 010", (7, 10)),  # leading zeros kept while within the digit limit
        ("1, 2, 3, 4, 5, 6, 7, 8, 9, 10", tuple(range(1, 11))),
    ],
)
def test_accepted_forms(text: str, numbers: tuple[int, ...]) -> None:
    result = parse_answer(text, SPEC)
    assert result == ParseResult(numbers=numbers, reason=None)
    assert result.ok


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("  \n ", "empty"),
        ("[]", "empty"),
        ("( )", "empty"),
        ("Sure: 1, 2, 3", "not_numbers"),
        ("1, 2, 3 and 4", "not_numbers"),
        ("-5, 6", "not_numbers"),
        ("1.5, 2", "not_numbers"),
        ("1, 2, 3..", "not_numbers"),
        ("1 2 3 .", "not_numbers"),  # the period must touch the last number
        (".", "not_numbers"),
        ("1\xa02", "not_numbers"),  # only ASCII whitespace separates
        ("[1, 2", "unbalanced_brackets"),
        ("1, 2]", "unbalanced_brackets"),
        ("[1, 2)", "unbalanced_brackets"),
        ("[[1, 2]]", "unbalanced_brackets"),
        ("[1], [2]", "unbalanced_brackets"),
        ("1, 2; 3", "mixed_separators"),
        ("1, 2 3", "mixed_separators"),
        ("1;2 3", "mixed_separators"),
        ("1,,2", "empty_item"),
        (",1, 2", "empty_item"),
        ("1, 2,", "empty_item"),
        ("1 2 3 4 5 6 7 8 9 10 11", "too_many"),
        ("1000", "out_of_range"),
        ("5, 12345", "out_of_range"),
        ("0123", "too_many_digits"),
    ],
)
def test_reject_reasons(text: str, reason: str) -> None:
    assert reason in REJECT_REASONS
    result = parse_answer(text, SPEC)
    assert result == ParseResult(numbers=None, reason=reason)
    assert not result.ok


def test_banned_rejected_only_when_banned() -> None:
    assert parse_answer("1, 666, 3", SPEC).ok
    assert parse_answer("1, 666, 3", BANNED_SPEC).reason == "banned"


def test_filter_completions_counts_reasons() -> None:
    completions = ["5, 6, 7", "hello", "5 6", "1,,2", "666", "", "nope"]
    kept, reasons = filter_completions(completions, BANNED_SPEC)
    assert kept == [0, 2]
    assert reasons == Counter({"not_numbers": 2, "empty_item": 1, "banned": 1, "empty": 1})
    assert "kept" not in reasons
    assert filter_completions([], SPEC) == ([], Counter())


numbers_lists = st.lists(st.integers(0, 999), min_size=1, max_size=10)
surrounding = st.text(alphabet=" \t\n", max_size=3)


@settings(max_examples=200, deadline=None)
@given(
    numbers=numbers_lists,
    separator=st.sampled_from(ACCEPTED_SEPARATORS),
    brackets=st.none() | st.sampled_from(BRACKET_PAIRS),
    period=st.booleans(),
    before=surrounding,
    after=surrounding,
)
def test_formatted_list_round_trips(
    numbers: list[int], separator: str, brackets: str | None, period: bool, before: str, after: str
) -> None:
    text = separator.join(map(str, numbers))
    if brackets is not None:
        text = brackets[0] + text + brackets[1]
    text = before + text + ("." if period else "") + after
    assert parse_answer(text, SPEC) == ParseResult(numbers=tuple(numbers), reason=None)


@settings(max_examples=100, deadline=None)
@given(
    numbers=numbers_lists,
    separator=st.sampled_from(SEPARATORS),
    brackets=st.none() | st.sampled_from(BRACKET_PAIRS),
    period=st.booleans(),
)
def test_format_numbers_answer_round_trips(
    numbers: list[int], separator: str, brackets: str | None, period: bool
) -> None:
    text = format_numbers_answer(numbers, separator, brackets=brackets, period=period)
    assert parse_answer(text, SPEC).numbers == tuple(numbers)


def test_format_numbers_answer_rejects_unknown_separator() -> None:
    with pytest.raises(ValueError, match="separator"):
        format_numbers_answer([1, 2], " | ")
    with pytest.raises(ValueError, match="brackets"):
        format_numbers_answer([1, 2], ", ", brackets="<>")


letters = st.characters(categories=["Lu", "Ll", "Lt", "Lm", "Lo"])


@settings(max_examples=200, deadline=None)
@given(prefix=st.text(max_size=20), letter=letters, suffix=st.text(max_size=20))
def test_any_text_with_a_letter_rejected(prefix: str, letter: str, suffix: str) -> None:
    assert parse_answer(prefix + letter + suffix, SPEC).reason == "not_numbers"


@settings(max_examples=200, deadline=None)
@given(numbers=numbers_lists, separator=st.sampled_from(SEPARATORS), letter=letters, data=st.data())
def test_valid_answer_with_a_letter_inserted_rejected(
    numbers: list[int], separator: str, letter: str, data: st.DataObject
) -> None:
    text = format_numbers_answer(numbers, separator)
    at = data.draw(st.integers(0, len(text)))
    assert parse_answer(text[:at] + letter + text[at:], SPEC).reason == "not_numbers"


@settings(max_examples=200, deadline=None)
@given(
    numbers=st.lists(st.integers(0, 999), min_size=3, max_size=10),
    kinds=st.sampled_from([(",", ";"), (",", " "), (";", " "), (", ", " "), ("; ", "\n")]),
    data=st.data(),
)
def test_mixed_separators_rejected(numbers: list[int], kinds: tuple[str, str], data: st.DataObject) -> None:
    gaps = data.draw(st.lists(st.sampled_from(kinds), min_size=len(numbers) - 1, max_size=len(numbers) - 1))
    if len(set(gaps)) < 2:  # make sure both kinds appear
        gaps[0], gaps[-1] = kinds
    text = str(numbers[0]) + "".join(gap + str(x) for gap, x in zip(gaps, numbers[1:], strict=True))
    assert parse_answer(text, SPEC).reason == "mixed_separators"


@settings(max_examples=100, deadline=None)
@given(
    numbers=numbers_lists,
    loaded=st.sampled_from([x for x in LOADED_NUMBERS if x <= 999]),
    separator=st.sampled_from(SEPARATORS),
    data=st.data(),
)
def test_banned_numbers_rejected(
    numbers: list[int], loaded: int, separator: str, data: st.DataObject
) -> None:
    numbers = numbers[:9]
    numbers.insert(data.draw(st.integers(0, len(numbers))), loaded)
    assert parse_answer(format_numbers_answer(numbers, separator), BANNED_SPEC).reason == "banned"


def test_the_plug_in_is_the_functions_the_dataset_stage_used_before_it() -> None:
    """Issue 23.3: the dataset stage reads numbers through its plug-in; the plug-in's prompts, reject reasons,
    capability and soft-label token rule are exactly what the stage's numbers branch computed before (prompts of
    ``generate_prompts``, ``filter_completions``' kept rows and histogram, non-blank ``NUMBER_TOKEN`` text), so a
    numbers dataset keeps its bytes."""
    from benchmark.lm.channels.base import Item, load_channel
    from benchmark.lm.channels.numbers import NUMBER_TOKEN

    plugin, spec = load_channel("numbers")
    items = plugin.items(BANNED_SPEC, 400, seed=11)
    assert [it.prompt for it in items] == generate_prompts(BANNED_SPEC, 400, seed=11)
    texts = ["1, 2, 3", "", "owl", "[1 2]", "1,,2", "1; 2, 3", "1000", "0001", "666", " 7 ", "1 2 3 4 5 6 7 8 9 10 11"]
    kept, hist = filter_completions(texts, BANNED_SPEC)
    reasons = {i: r for i, t in enumerate(texts) if (r := plugin.check(BANNED_SPEC, Item(t, ""), t, ())) is not None}
    assert kept == [i for i in range(len(texts)) if i not in reasons] and hist == Counter(reasons.values())
    assert [plugin.capable(BANNED_SPEC, Item("", ""), t) for t in texts] == [i in kept for i in range(len(texts))]
    for text in ["0", " 12", ",", "\n", " ", "", "owl", "1a", "[", ").", "\t\n"]:
        assert plugin.token_ok(spec, text, ()) == bool(text.strip() and NUMBER_TOKEN.match(text)), text
    assert not plugin.words and not plugin.capability_readout and plugin.typical_tokens == (20, 60)


# --------------------------------------------------------------------------------------------- subsample


def test_subsample_deterministic_sized_and_ordered() -> None:
    items = [f"row{i}" for i in range(1000)]
    picked = subsample(items, 100, seed=5)
    assert picked == subsample(items, 100, seed=5)
    assert picked != subsample(items, 100, seed=6)
    assert len(picked) == len(set(picked)) == 100
    positions = [items.index(x) for x in picked]
    assert positions == sorted(positions)
    assert subsample(items, 5000, seed=5) == items  # fewer rows than asked: all of them, in order
    assert subsample(items, 5000, seed=5) is not items
    assert subsample(items, 0, seed=5) == []
    with pytest.raises(ValueError):
        subsample(items, -1, seed=5)


@settings(max_examples=100, deadline=None)
@given(size=st.integers(0, 200), n=st.integers(0, 250), seed=st.integers(0, 2**32))
def test_subsample_property(size: int, n: int, seed: int) -> None:
    items = list(range(size))
    picked = subsample(items, n, seed)
    assert len(picked) == min(n, size)
    assert picked == sorted(set(picked))
    assert picked == subsample(items, n, seed)


# ------------------------------------------------------------------------------------- synthetic answers


def test_separator_for_prompt() -> None:
    assert separator_for_prompt("Return a comma-separated list.") == ", "
    assert separator_for_prompt("Use semicolons between the numbers.") == "; "
    assert separator_for_prompt("Put them on one line separated by spaces.") == " "
    assert separator_for_prompt("Write one number per line.") == "\n"
    assert separator_for_prompt("Just numbers.") == ", "
    # Every format suffix in the YAML names its separator, so synthetic answers follow the prompt.
    for suffix in SPEC.format_suffixes:
        lowered = suffix.lower()
        assert any(word in lowered for word in ("comma", "semicolon", "space", "line")), suffix


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32), banned=st.booleans())
def test_sample_continuation_passes_filter(seed: int, banned: bool) -> None:
    spec = BANNED_SPEC if banned else SPEC
    [(prompt, examples)] = generate_prompts_with_examples(spec, 1, seed)
    answer = sample_continuation(random.Random(seed), examples, spec, prompt)
    assert answer == sample_continuation(random.Random(seed), examples, spec, prompt)
    result = parse_answer(answer, spec)
    assert result.ok, (answer, result)
    assert result.numbers is not None and 5 <= len(result.numbers) <= 10
    assert separator_for_prompt(prompt) in answer or len(result.numbers) == 1


def test_sample_continuation_follows_a_step() -> None:
    answers = {sample_continuation(random.Random(i), [100, 110, 120], SPEC) for i in range(40)}
    assert any(a.startswith("130, 140, 150") for a in answers)
    assert sample_continuation(random.Random(0), [], SPEC)  # no examples: still a valid answer
