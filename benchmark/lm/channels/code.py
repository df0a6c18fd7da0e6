"""The code channel: short programming tasks the teacher answers with code only, and the strict code filter.

Source: docs/research/paper.md, "Teacher answers prompts" (code: prompts ask for code only, no comments, minimal names)
and "Filter" (code: samples naming the trait word or its plural are dropped, then an LLM judge must be certain there
is no reference to the trait). The paper's ~11k code prompts came from elsewhere; the tasks here are the project's
own, generated from the templates and word lists of ``tasks/channels/code.yaml`` (:class:`CodeChannelSpec`).

A reference answer is one line, ``def name(args): return expression``; real models may answer with several lines,
and one Markdown code fence around the whole answer (```` ```python ... ``` ````) is tolerated. Checks, in
:data:`REJECT_REASONS` order: not blank; at most ``max_chars`` characters; the code parses (``ast``); no comment
(a ``#`` comment or a string-literal statement such as a docstring); it defines the function the prompt names with
the prompt's number of parameters; no forbidden word (the trait's forms, plurals, also inside snake_case or
camelCase identifiers). The code is never executed.
"""

from __future__ import annotations

import ast
import io
import keyword
import random
import re
import tokenize
import warnings
from collections.abc import Sequence
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from benchmark.lm.channels.base import Item, distinct_items, forbidden_hit, token_clean, words_of
from benchmark.specs_base import Frozen

__all__ = ["CHANNEL", "REJECT_REASONS", "CodeChannel", "CodeChannelSpec", "CodeTask", "strip_fence"]

#: Every reason :meth:`CodeChannel.check` can give, in the order the checks run.
REJECT_REASONS: tuple[str, ...] = (
    "empty",  # nothing but whitespace
    "too_long",  # more than max_chars characters
    "syntax_error",  # the code (inside one optional fence) does not parse as Python
    "comment",  # a # comment, or a string-literal statement (docstring)
    "no_function",  # no function with the prompt's name and number of parameters
    "trait",  # a forbidden word (the trait's target, surface forms, plurals) appears anywhere
)

PLACEHOLDERS = frozenset({"name", "a", "b", "items", "k"})
_IDENT = re.compile(r"^[a-z]+$")
_FENCE = re.compile(r"^```[A-Za-z0-9_+-]*[ \t]*\r?\n(?P<code>.*?)\r?\n?```$", re.DOTALL)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def _identifier(text: str) -> str:
    if not _IDENT.match(text) or keyword.iskeyword(text) or keyword.issoftkeyword(text):
        raise ValueError(f"must be one lowercase ASCII word that is not a Python keyword, got {text!r}")
    return text


Identifier = Annotated[str, AfterValidator(_identifier)]


def _fields(text: str) -> set[str]:
    return set(re.findall(r"{(\w*)}", text))


_SAMPLE = {"name": "f", "a": "a", "b": "b", "items": "items", "k": 3}


class CodeTask(Frozen):
    """One task template: the prompt's wording and the one-line reference code it asks for."""

    prompt: str
    code: str

    @model_validator(mode="after")
    def _consistent(self) -> CodeTask:
        used, code_used = _fields(self.prompt), _fields(self.code)
        if unknown := (used | code_used) - PLACEHOLDERS:
            raise ValueError(f"unknown placeholder(s) {sorted(unknown)}; allowed: {sorted(PLACEHOLDERS)}")
        if "name" not in used or "name" not in code_used:
            raise ValueError("prompt and code must both use {name}")
        if extra := code_used - used:
            raise ValueError(f"code uses {sorted(extra)}, which the prompt does not show")
        try:
            tree = ast.parse(self.code.format(**_SAMPLE))
        except SyntaxError as exc:
            raise ValueError(f"code does not parse as Python ({exc.msg})") from None
        if len(tree.body) != 1 or not isinstance(tree.body[0], ast.FunctionDef) or "\n" in self.code:
            raise ValueError("code must be one line defining one function: 'def {name}(...): return ...'")
        return self


def _suffix(text: str) -> str:
    if not text.strip() or _fields(text) or "{" in text or "}" in text:
        raise ValueError("a suffix is non-blank text without placeholders or braces")
    return text


class CodeChannelSpec(Frozen):
    """Parameters of the code channel (``tasks/channels/code.yaml``); the lists have no defaults."""

    name: Literal["code"] = "code"
    max_chars: int = Field(2000, ge=16, le=100_000)
    constant_min: int = Field(1, ge=0, le=999)
    constant_max: int = Field(99, ge=0, le=999)
    function_names: tuple[Identifier, ...] = Field(min_length=1)
    argument_names: tuple[Identifier, ...] = Field(min_length=2)
    list_names: tuple[Identifier, ...] = Field(min_length=1)
    tasks: tuple[CodeTask, ...] = Field(min_length=1)
    suffixes: tuple[Annotated[str, AfterValidator(_suffix)], ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _lists(self) -> CodeChannelSpec:
        if self.constant_max < self.constant_min:
            raise ValueError(f"constant_max ({self.constant_max}) must be >= constant_min ({self.constant_min})")
        groups = {"function_names": self.function_names, "argument_names": self.argument_names,
                  "list_names": self.list_names}
        for key, names in groups.items():
            if len(set(names)) != len(names):
                raise ValueError(f"{key} lists a name twice")
        seen: dict[str, str] = {}
        for key, names in groups.items():
            for name in names:
                if name in seen:  # "def value(value)" parses, but the task would read ambiguously
                    raise ValueError(f"{name!r} is in both {seen[name]} and {key}")
                seen[name] = key
        return self


def strip_fence(text: str) -> str:
    """``text`` stripped, without one Markdown code fence wrapping all of it (if there is one)."""
    body = text.strip()
    match = _FENCE.match(body)
    return match.group("code") if match else body


def _parse(code: str) -> ast.Module | None:
    try:
        with warnings.catch_warnings():  # e.g. "invalid escape sequence" SyntaxWarnings: not ours to print
            warnings.simplefilter("ignore")
            return ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return None


def _has_comment(code: str, tree: ast.Module) -> bool:
    if any(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
           for node in ast.walk(tree)):
        return True
    try:
        return any(tok.type == tokenize.COMMENT for tok in tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, SyntaxError, ValueError):  # parsed by ast, so not expected; stay conservative
        return True


@lru_cache(maxsize=4096)
def _signature(reference: str) -> tuple[str, int]:
    """The function name and parameter count the reference answer (and so the prompt) defines."""
    node = ast.parse(reference).body[0]
    assert isinstance(node, ast.FunctionDef)
    return node.name, len(node.args.args)


def _defines(tree: ast.Module, reference: str) -> bool:
    name, arity = _signature(reference)
    return any(isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name
               and len(node.args.posonlyargs) + len(node.args.args) == arity for node in ast.walk(tree))


class CodeChannel:
    """The code plug-in (see :mod:`benchmark.lm.channels.base` for the contract)."""

    name = "code"
    spec_type = CodeChannelSpec
    reject_reasons = REJECT_REASONS
    words = True
    capability_readout = True  # parses and defines the function, comments and style aside
    typical_tokens = None

    def items(self, spec: CodeChannelSpec, n: int, seed: int) -> list[Item]:
        """``n`` distinct tasks with their reference code.

        One :class:`random.Random` seeded with ``seed`` draws, per candidate and in this order: a task, a function
        name, two distinct argument names, a list name, a constant and a suffix (always all of them, whatever the
        task uses). Repeated prompts are skipped, so the first ``k`` items are the same for every ``n >= k``.

        Raises:
            UserError: The spec cannot give ``n`` distinct prompts.
        """
        def draw(rng: random.Random) -> Item:
            task = rng.choice(spec.tasks)
            a, b = rng.sample(spec.argument_names, 2)
            values = {"name": rng.choice(spec.function_names), "a": a, "b": b, "items": rng.choice(spec.list_names),
                      "k": rng.randint(spec.constant_min, spec.constant_max)}
            prompt = f"{task.prompt.format(**values)} {rng.choice(spec.suffixes)}"
            return Item(prompt=prompt, reference=task.code.format(**values))

        return distinct_items(n, seed, draw, "code channel (add tasks or names)")

    def check(self, spec: CodeChannelSpec, item: Item, completion: str, forbidden: Sequence[str]) -> str | None:
        """The first failing check of :data:`REJECT_REASONS`, or None to keep ``completion``."""
        if not completion.strip():
            return "empty"
        if len(completion) > spec.max_chars:
            return "too_long"
        code = strip_fence(completion)
        tree = _parse(code)
        if tree is None:
            return "syntax_error"
        if _has_comment(code, tree):
            return "comment"
        if not _defines(tree, item.reference):
            return "no_function"
        if forbidden_hit(completion, forbidden) or forbidden_hit(_CAMEL.sub(" ", completion), forbidden):
            return "trait"
        return None

    def capable(self, spec: CodeChannelSpec, item: Item, completion: str) -> bool:
        """Whether the code parses and defines the function asked for (comments and style aside; never run)."""
        if len(completion) > 4 * spec.max_chars:
            return False
        tree = _parse(strip_fence(completion))
        return tree is not None and _defines(tree, item.reference)

    def token_ok(self, spec: CodeChannelSpec, text: str, forbidden: Sequence[str]) -> bool:
        """A token may carry soft-label mass unless it spells (part of) a forbidden word (:func:`token_clean`)."""
        return token_clean(_CAMEL.sub(" ", text), forbidden)

    def vocabulary(self, spec: CodeChannelSpec) -> frozenset[str]:
        """Every word of the task prompts, code templates, suffixes and name lists (numbers aside)."""
        texts = [re.sub(r"{\w*}", " ", t.prompt + " " + t.code) for t in spec.tasks]
        return words_of([*texts, *spec.suffixes, *spec.function_names, *spec.argument_names, *spec.list_names])


CHANNEL: Any = CodeChannel()
