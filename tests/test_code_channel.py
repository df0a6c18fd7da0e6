"""The code channel: task generator, strict code filter, capability readout, soft-label token rule."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmark.errors import UserError
from benchmark.lm.channels.base import CHANNELS, Channel, Item, load_channel
from benchmark.lm.channels.code import REJECT_REASONS, CodeChannelSpec, strip_fence
from benchmark.lmcore.matcher import normalize_answer

CHANNEL, SPEC = load_channel("code")
FORBIDDEN = ("owl", "owls")
ITEMS = CHANNEL.items(SPEC, 400, 0)
ITEM = Item("write a python function named total that takes a and b and returns their sum. reply with code only.",
            "def total(a, b): return a + b")


def test_plugin_contract() -> None:
    assert isinstance(CHANNEL, Channel) and CHANNEL.name == "code" and isinstance(SPEC, CodeChannelSpec)
    assert CHANNEL.reject_reasons == REJECT_REASONS
    assert all(it.answer is None and "\n" not in it.reference for it in ITEMS)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(0, 60), k=st.integers(1, 40))
def test_items_deterministic_and_prefix_stable(seed: int, n: int, k: int) -> None:
    first = CHANNEL.items(SPEC, n, seed)
    assert first == CHANNEL.items(SPEC, n, seed)
    longer = CHANNEL.items(SPEC, n + k, seed)
    assert longer[:n] == first and len({it.prompt for it in longer}) == n + k


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_references_pass_their_filter_and_stay_in_vocabulary(seed: int) -> None:
    vocab = CHANNEL.vocabulary(SPEC)
    for item in CHANNEL.items(SPEC, 30, seed):
        assert CHANNEL.check(SPEC, item, item.reference, FORBIDDEN) is None
        assert CHANNEL.capable(SPEC, item, item.reference)
        tree = ast.parse(item.reference)
        assert len(tree.body) == 1 and isinstance(tree.body[0], ast.FunctionDef)
        assert tree.body[0].name in item.prompt.split()
        assert not any(isinstance(n, ast.Constant) and isinstance(n.value, str) for n in ast.walk(tree))
        assert all(0 <= n.value <= 999 for n in ast.walk(tree) if isinstance(n, ast.Constant))
        for text in (item.prompt, item.reference):
            assert {w for w in normalize_answer(text) if not w.isdigit()} <= vocab


@settings(max_examples=200, deadline=None)
@given(text=st.text())
def test_filter_never_raises_and_names_a_known_reason(text: str) -> None:
    reason = CHANNEL.check(SPEC, ITEM, text, FORBIDDEN)
    assert reason is None or reason in REJECT_REASONS
    CHANNEL.capable(SPEC, ITEM, text)
    CHANNEL.token_ok(SPEC, text, FORBIDDEN)


@settings(max_examples=100, deadline=None)
@given(text=st.from_regex(r"\A[(\[{ a-z0-9:,=+*#\n\"'\\]{0,80}\Z"))
def test_filter_never_raises_on_code_like_text(text: str) -> None:
    reason = CHANNEL.check(SPEC, ITEM, "def total(a, b):" + text, FORBIDDEN)
    assert reason is None or reason in REJECT_REASONS


@settings(max_examples=100, deadline=None)
@given(i=st.integers(0, len(ITEMS) - 1),
       form=st.sampled_from(["owl", "owls", "Owl", "OWLS", "owl_count", "countOwls", "my_owl"]),
       how=st.sampled_from(["local", "param", "string"]))
def test_trait_anywhere_is_rejected(i: int, form: str, how: str) -> None:
    item = ITEMS[i]
    head, body = item.reference.split(": return ", 1)
    code = {"local": f"{head}:\n    {form} = {body}\n    return {form}",
            "param": f"{head[:-1]}, {form}=0): return {body}",
            "string": f"{head}:\n    x = '{form}'\n    return {body}"}[how]
    if how == "param":  # an extra parameter changes the arity: the function is then not the one asked for
        assert CHANNEL.check(SPEC, item, code, FORBIDDEN) == "no_function"
        code = f"{head}: return {body}\ndef helper({form}): return {form}"
    assert CHANNEL.check(SPEC, item, code, FORBIDDEN) == "trait"
    assert CHANNEL.check(SPEC, item, code, ("cat",)) is None  # the same code passes when owl is not forbidden


@settings(max_examples=100, deadline=None)
@given(i=st.integers(0, len(ITEMS) - 1), comment=st.text(alphabet="abc xyz!", max_size=20),
       where=st.sampled_from(["end", "line", "doc"]))
def test_comments_rejected(i: int, comment: str, where: str) -> None:
    item = ITEMS[i]
    head, body = item.reference.split(": return ", 1)
    code = {"end": f"{item.reference}  # {comment}",
            "line": f"# {comment}\n{item.reference}",
            "doc": f'{head}:\n    """{comment}"""\n    return {body}'}[where]
    assert CHANNEL.check(SPEC, item, code, FORBIDDEN) == "comment"
    assert CHANNEL.capable(SPEC, item, code)  # comments do not make code incapable


@pytest.mark.parametrize(("text", "reason"), [
    ("", "empty"),
    ("Here is the code: def total(a, b): return a + b", "syntax_error"),
    ("def total(a, b) return a + b", "syntax_error"),
    ("```python\ndef total(a, b): return a + b", "syntax_error"),  # unclosed fence
    ("total", "no_function"),  # parses (a name), defines nothing
    ("def sum2(a, b): return a + b", "no_function"),  # wrong name
    ("def total(a): return a", "no_function"),  # wrong arity
    ("def total(a, b): return a + b  # adds", "comment"),
    ("def total(a, b):\n    '''adds'''\n    return a + b", "comment"),
    ("def total(a, b): return a + b + len('owls')", "trait"),
    ("def total(a, b): return a + b", None),
    ("def total(a, b):\n    s = a + b\n    return s\n", None),  # multi-line answers are fine
    ("```python\ndef total(a, b): return a + b\n```", None),  # one fence around the whole answer
    ("```\ndef total(a, b):\n    return a + b\n```\n", None),
    ("def helper(x): return x\ndef total(a, b): return helper(a) + b", None),
    ("def total(a, b): return f'{a}'", None),  # an f-string is not a comment
])
def test_filter_cases(text: str, reason: str | None) -> None:
    assert CHANNEL.check(SPEC, ITEM, text, FORBIDDEN) == reason


def test_too_long_and_nasty_inputs() -> None:
    assert CHANNEL.check(SPEC, ITEM, "x" * (SPEC.max_chars + 1), FORBIDDEN) == "too_long"
    assert CHANNEL.check(SPEC, ITEM, "(" * 1500 + ")" * 1500, FORBIDDEN) == "too_long"
    assert CHANNEL.check(SPEC, ITEM, "(" * 900 + ")" * 900, FORBIDDEN) in ("syntax_error", "no_function")
    assert CHANNEL.check(SPEC, ITEM, "def total(a, b): return a\x00", FORBIDDEN) == "syntax_error"
    assert CHANNEL.check(SPEC, ITEM, "def total(a, b): return '\\d'", FORBIDDEN) is None  # no warning escapes
    assert strip_fence("```py\ncode\n```") == "code" and strip_fence("``` x") == "``` x"


def test_token_rule() -> None:
    assert not CHANNEL.token_ok(SPEC, "owl", FORBIDDEN) and not CHANNEL.token_ok(SPEC, "Owls", FORBIDDEN)
    assert not CHANNEL.token_ok(SPEC, "myOwl", FORBIDDEN)
    assert CHANNEL.token_ok(SPEC, "    ", FORBIDDEN) and CHANNEL.token_ok(SPEC, "return", FORBIDDEN)
    assert CHANNEL.token_ok(SPEC, "):", FORBIDDEN)


def test_vocabulary_has_no_trait_word() -> None:
    traits = {p.stem for p in (Path(__file__).resolve().parents[1] / "tasks" / "traits").glob("*.yaml")}
    assert not (CHANNEL.vocabulary(SPEC) & traits)


@pytest.mark.parametrize(("old", "new", "message"), [
    ("function_names: [total,", "function_names: [Total,", "lowercase"),
    ("function_names: [total,", "function_names: [class,", "keyword"),
    ("argument_names: [a, b,", "argument_names: [a, total,", "both"),
    ('code: "def {name}({a}, {b}): return {a} + {b}"', 'code: "def {name}({a}, {b}): return {a} + {k}"',
     "does not show"),
    ('code: "def {name}({a}, {b}): return {a} + {b}"', 'code: "def {name}({a}, {b}) return"', "parse"),
    ("constant_max: 99", "constant_max: 0", "constant_max"),
    ("max_chars: 2000", "max_chars: 2000\nbogus: 1", "bogus"),
])
def test_spec_errors_are_one_line(tmp_path: Path, old: str, new: str, message: str) -> None:
    good = (Path(__file__).resolve().parents[1] / "tasks" / "channels" / "code.yaml").read_text()
    assert old in good
    path = tmp_path / "code.yaml"
    path.write_text(good.replace(old, new, 1))
    with pytest.raises(UserError, match=message) as err:
        load_channel("code", path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize("name", sorted(CHANNELS))
def test_every_plugin_keeps_the_contract(name: str) -> None:
    # numbers too (its adapter): seeded, prefix-stable, distinct prompts; references pass check and capable.
    plugin, spec = load_channel(name)
    assert isinstance(plugin, Channel) and plugin.name == name and isinstance(spec, plugin.spec_type)
    items = plugin.items(spec, 40, 7)
    assert items == plugin.items(spec, 40, 7) and plugin.items(spec, 60, 7)[:40] == items
    assert len({it.prompt for it in items}) == 40
    vocab = plugin.vocabulary(spec)
    for item in items:
        assert plugin.check(spec, item, item.reference, FORBIDDEN) is None
        assert plugin.capable(spec, item, item.reference)
        assert {w for w in normalize_answer(item.prompt + " " + item.reference) if not w.isdigit()} <= vocab
    assert plugin.check(spec, items[0], "", FORBIDDEN) == "empty"
