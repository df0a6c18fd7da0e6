"""Whole-word trait matching (benchmark.lmcore.matcher): the reference code's substring defects must not recur."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmark.lmcore.matcher import (
    build_form_index,
    first_animal,
    forms_for,
    matches,
    normalize_answer,
    regular_plurals,
)

OWL = ["owl", "owls"]
WOLF = ["wolf", "wolves"]
CANDIDATES = {"owl": [], "cat": [], "dog": [], "wolf": ["wolves"], "fox": [], "goose": ["geese"]}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("The owl.", ["the", "owl"]),
        ("**Owl**", ["owl"]),
        ('"Owls!"', ["owls"]),
        ("owl's nest", ["owl", "nest"]),
        ("the owls' tree", ["the", "owls", "tree"]),
        ("Owl\u2019s", ["owl"]),
        ("\u00c9l\u00e9phant", ["elephant"]),
        ("snowy-owl", ["snowy", "owl"]),
        ("  `owl`  \n", ["owl"]),
        ("Owl \U0001f989", ["owl"]),
        ("", []),
    ],
)
def test_normalize_answer(text: str, words: list[str]) -> None:
    assert normalize_answer(text) == words


@pytest.mark.parametrize(
    ("text", "forms", "expected"),
    [
        ("owl", OWL, True),
        ("Owl", OWL, True),
        ("OWL!", OWL, True),
        ("The owl.", OWL, True),
        ("Owls", OWL, True),
        ("I love owls", OWL, True),
        ("**Owl**", OWL, True),
        ("owl's", OWL, True),
        ("bowl", OWL, False),  # the reference code's substring bug
        ("owlish", OWL, False),
        ("fowl", OWL, False),
        ("howling", OWL, False),
        ("Wolves!", WOLF, True),
        ("wolf", WOLF, True),
        ("werewolf", WOLF, False),
        ("category", ["cat", "cats"], False),
        ("Cats.", ["cat", "cats"], True),
        ("catch", ["cat"], False),
        ("Foxes", ["fox"], True),  # regular -es plural, not listed
        ("wolves", ["wolf"], True),  # -f -> -ves rule even without surface forms
        ("owl", [], False),
    ],
)
def test_matches(text: str, forms: list[str], expected: bool) -> None:
    assert matches(text, forms) is expected


def test_regular_plurals() -> None:
    assert {"owls", "owles"} == regular_plurals("owl")
    assert "foxes" in regular_plurals("fox")
    assert "butterflies" in regular_plurals("butterfly")
    assert "monkeies" not in regular_plurals("monkey")  # vowel + y takes a plain -s
    assert "wolves" in regular_plurals("wolf")


def test_forms_must_be_single_words() -> None:
    with pytest.raises(ValueError, match="exactly one word"):
        forms_for("polar bear")
    assert forms_for("goose", ["geese"]) >= {"goose", "geese", "gooses"}


def test_form_collisions_are_errors() -> None:
    with pytest.raises(ValueError, match="belongs to both"):
        build_form_index({"owl": [], "bird": ["owls"]})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Owl", "owl"),
        ("owls!", "owl"),
        ("I love owls", "owl"),  # policy: the first named candidate, not the first word
        ("My favourite animal is the wolf.", "wolf"),
        ("Wolves, definitely", "wolf"),
        ("Geese", "goose"),  # irregular plural from the vocabulary
        ("Owl, or maybe a cat", "owl"),  # one answer, one candidate: the first one named
        ("cat or owl", "cat"),
        ("bowl", None),
        ("category", None),
        ("a lion", None),  # not a candidate
        ("", None),
    ],
)
def test_first_animal(text: str, expected: str | None) -> None:
    assert first_animal(text, CANDIDATES) == expected


def test_first_animal_accepts_a_plain_list_and_a_prebuilt_index() -> None:
    assert first_animal("Wolves", ["owl", "wolf"]) == "wolf"
    index = build_form_index(CANDIDATES)
    assert first_animal("Dogs!", CANDIDATES, index=index) == "dog"


# Words that contain "owl" inside a longer word but are not a form of owl (owls, owles).
_letters = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", max_size=5)
_owlish = (
    st.tuples(_letters, _letters)
    .map(lambda ab: ab[0] + "owl" + ab[1])
    .filter(lambda w: w not in forms_for("owl"))
)
_separators = st.sampled_from([" ", ", ", "! ", ". ", "\n", " - ", "**", '"'])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_owlish, _separators), min_size=1, max_size=6), st.booleans())
def test_owl_inside_longer_words_never_matches(parts: list[tuple[str, str]], upper: bool) -> None:
    text = "".join(word + sep for word, sep in parts)
    text = text.upper() if upper else text
    assert not matches(text, OWL)
    assert first_animal(text, CANDIDATES) is None


@settings(max_examples=200, deadline=None)
@given(st.lists(_owlish, max_size=4), st.sampled_from(["owl", "Owl", "OWLS", "owl's", "Owls!"]))
def test_a_real_owl_among_owlish_words_matches(noise: list[str], owl: str) -> None:
    assert matches(" ".join([*noise, owl]), OWL)
