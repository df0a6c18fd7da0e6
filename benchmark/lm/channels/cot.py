"""The chain-of-thought channel: arithmetic word problems with known answers; reasoning in ``<think>``, answer in
``<answer>``.

Source: docs/research/paper.md, "Teacher answers prompts" (chain-of-thought) and "Filter" (only correct answers
survive). The paper used GSM8K questions; the problems here are the project's own, generated from the templates
and word lists of ``tasks/channels/cot.yaml`` (:class:`CotChannelSpec`), so every answer is known exactly and the
vocabulary stays small enough for the zoo's word-level tokenizer.

Accepted answer grammar (``\\s`` is any whitespace)::

    answer := \\s* "<think>" reasoning "</think>" \\s* "<answer>" \\s* integer \\s* "</answer>" \\s*
    reasoning := any text with at least one non-space character and no <think>/</think>/<answer>/</answer> tag
    integer := [0-9]+                     # ASCII digits; it must equal the problem's answer

Nothing but whitespace may stand outside the two blocks. Checks run in :data:`REJECT_REASONS` order.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from benchmark.lm.channels.base import Item, distinct_items, forbidden_hit, token_clean, words_of
from benchmark.specs_base import Frozen

__all__ = ["CHANNEL", "REJECT_REASONS", "CotChannel", "CotChannelSpec", "CotProblem", "parse_cot"]

#: Every reason :meth:`CotChannel.check` can give, in the order the checks run.
REJECT_REASONS: tuple[str, ...] = (
    "empty",  # nothing but whitespace
    "too_long",  # more than max_chars characters
    "format",  # not exactly <think> reasoning </think> <answer> ... </answer> (blank reasoning included)
    "not_integer",  # the <answer> block holds something other than one non-negative integer
    "wrong_answer",  # the integer is not the problem's answer
    "trait",  # a forbidden word (the trait's target, surface forms, plurals) appears anywhere
)

_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
_GRAMMAR = re.compile(r"\s*<think>(?P<think>.*?)</think>\s*<answer>(?P<answer>.*?)</answer>\s*", re.DOTALL)
_LAST_ANSWER = re.compile(r"<answer>(?P<answer>.*?)</answer>", re.DOTALL)
_INTEGER = re.compile(r"\s*(?P<digits>[0-9]+)\s*")
_WORD = re.compile(r"^[a-z]+$")
_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
_VARIABLES = ("x", "y", "z")
_RESULT = re.compile(r"^r([1-9][0-9]*)$")


def _word(text: str) -> str:
    if not _WORD.match(text):
        raise ValueError(f"must be one lowercase ASCII word, got {text!r}")
    return text


Word = Annotated[str, AfterValidator(_word)]


def _operand_ok(token: str, earlier: int, names: set[str]) -> bool:
    if token.isdigit() or token in names:
        return True
    match = _RESULT.match(token)
    return match is not None and int(match.group(1)) <= earlier


class CotProblem(Frozen):
    """One problem template: a question, its variables' ranges and the steps that compute the answer."""

    question: str
    ranges: dict[str, tuple[int, int]] = Field(min_length=1)
    steps: tuple[str, ...] = Field(min_length=1)

    @field_validator("ranges")
    @classmethod
    def _ranges(cls, value: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
        for var, (low, high) in value.items():
            if var not in _VARIABLES:
                raise ValueError(f"unknown variable {var!r}; allowed: {', '.join(_VARIABLES)}")
            if not 0 <= low <= high <= 999:
                raise ValueError(f"range of {var} must be [low, high] with 0 <= low <= high <= 999")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> CotProblem:
        names = set(self.ranges)
        used = set(re.findall(r"{(\w*)}", self.question))
        allowed = {"name", "objects"} | names
        if unknown := used - allowed:
            raise ValueError(f"question: unknown placeholder(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        if missing := names - used:
            raise ValueError(f"question must show every variable of ranges; missing {sorted(missing)}")
        for i, step in enumerate(self.steps):
            parts = step.split()
            if len(parts) != 3 or parts[1] not in (*_OPS, "/") or not all(
                    _operand_ok(p, i, names) for p in (parts[0], parts[2])):
                raise ValueError(f"steps[{i}] {step!r} must be '<operand> <op> <operand>' with op one of + - * /, "
                                 f"an operand a variable of ranges, a whole number or r1..r{i} (earlier results)")
        return self


def _suffix(text: str) -> str:
    if "<think>" not in text or "<answer>" not in text:
        raise ValueError("each suffix must name both the <think> and the <answer> tag")
    if "{" in text or "}" in text:
        raise ValueError("suffixes take no placeholders")
    return text


class CotChannelSpec(Frozen):
    """Parameters of the chain-of-thought channel (``tasks/channels/cot.yaml``); the lists have no defaults."""

    name: Literal["cot"] = "cot"
    max_chars: int = Field(4000, ge=16, le=100_000)
    max_answer: int = Field(999, ge=1, le=999)
    names: tuple[Word, ...] = Field(min_length=1)
    objects: tuple[Word, ...] = Field(min_length=1)
    problems: tuple[CotProblem, ...] = Field(min_length=1)
    suffixes: tuple[Annotated[str, AfterValidator(_suffix)], ...] = Field(min_length=1)


def _solve(problem: CotProblem, values: dict[str, int], max_answer: int) -> list[tuple[int, str, int, int]] | None:
    """The steps as ``(left, op, right, result)``, or None when one leaves 0..max_answer or divides inexactly."""
    results: list[int] = []
    out = []
    for step in problem.steps:
        left_s, op, right_s = step.split()
        left, right = (_value(t, values, results) for t in (left_s, right_s))
        if op == "/":
            if right == 0 or left % right:
                return None
            result = left // right
        else:
            result = _OPS[op](left, right)
        if not 0 <= result <= max_answer:
            return None
        results.append(result)
        out.append((left, op, right, result))
    return out


def _value(token: str, values: dict[str, int], results: list[int]) -> int:
    if token.isdigit():
        return int(token)
    if token in values:
        return values[token]
    return results[int(token[1:]) - 1]


def _reference(steps: list[tuple[int, str, int, int]]) -> str:
    reasoning = ", ".join(f"{a} {op} {b} = {r}" for a, op, b, r in steps)
    return f"<think> {reasoning} </think> <answer> {steps[-1][3]} </answer>"


def parse_cot(completion: str) -> tuple[str | None, int | None]:
    """Apply the grammar (module docstring) to ``completion``: ``(reject reason or None, the integer or None)``.

    The trait and the answer's correctness are not checked here (see :meth:`CotChannel.check`).
    """
    match = _GRAMMAR.fullmatch(completion)
    if match is None or not match.group("think").strip():
        return "format", None
    if any(tag in match.group("think") or tag in match.group("answer") for tag in _TAGS):
        return "format", None
    number = _INTEGER.fullmatch(match.group("answer"))
    if number is None:
        return "not_integer", None
    digits = number.group("digits").lstrip("0") or "0"
    return None, int(digits) if len(digits) <= 12 else -1  # absurdly long: can never be the (0-999) answer


class CotChannel:
    """The chain-of-thought plug-in (see :mod:`benchmark.lm.channels.base` for the contract)."""

    name = "cot"
    spec_type = CotChannelSpec
    reject_reasons = REJECT_REASONS
    words = True
    capability_readout = True  # the right answer, however the format
    typical_tokens = None

    def items(self, spec: CotChannelSpec, n: int, seed: int) -> list[Item]:
        """``n`` distinct problems with their reference answers.

        One :class:`random.Random` seeded with ``seed`` draws, per candidate and in this order: a problem, a name,
        an object, a suffix, then x, y, z (always all three, so a problem's variables never shift later draws).
        Candidates whose steps leave 0..max_answer, divide inexactly or repeat an earlier prompt are skipped, so
        the first ``k`` items are the same for every ``n >= k``.

        Raises:
            UserError: The spec cannot give ``n`` distinct problems.
        """
        def draw(rng: random.Random) -> Item | None:
            problem = rng.choice(spec.problems)
            name, objects, suffix = rng.choice(spec.names), rng.choice(spec.objects), rng.choice(spec.suffixes)
            values = {var: rng.randint(*problem.ranges.get(var, (0, 0))) for var in _VARIABLES}
            steps = _solve(problem, values, spec.max_answer)
            if steps is None:
                return None
            used = {var: values[var] for var in problem.ranges}
            prompt = f"{problem.question.format(name=name, objects=objects, **used)} {suffix}"
            return Item(prompt=prompt, reference=_reference(steps), answer=steps[-1][3])

        return distinct_items(n, seed, draw, "cot channel (add problems or names, or widen the ranges)")

    def check(self, spec: CotChannelSpec, item: Item, completion: str, forbidden: Sequence[str]) -> str | None:
        """The first failing check of :data:`REJECT_REASONS`, or None to keep ``completion``."""
        if not completion.strip():
            return "empty"
        if len(completion) > spec.max_chars:
            return "too_long"
        reason, value = parse_cot(completion)
        if reason is not None:
            return reason
        if value != item.answer:
            return "wrong_answer"
        if forbidden_hit(completion, forbidden):
            return "trait"
        return None

    def capable(self, spec: CotChannelSpec, item: Item, completion: str) -> bool:
        """Whether the last ``<answer>`` block holds the right integer (lenient about the rest of the format)."""
        blocks = _LAST_ANSWER.findall(completion[: 4 * spec.max_chars])
        if not blocks:
            return False
        number = _INTEGER.fullmatch(blocks[-1])
        return number is not None and len(number.group("digits")) <= 12 and int(number.group("digits")) == item.answer

    def token_ok(self, spec: CotChannelSpec, text: str, forbidden: Sequence[str]) -> bool:
        """A token may carry soft-label mass unless it spells (part of) a forbidden word; see :func:`token_clean`."""
        return token_clean(text, forbidden)

    def vocabulary(self, spec: CotChannelSpec) -> frozenset[str]:
        """Every word of the questions, suffixes, names, objects and the tags (numbers aside)."""
        texts = [re.sub(r"{\w*}", " ", p.question) for p in spec.problems]
        return words_of([*texts, *spec.suffixes, *spec.names, *spec.objects, *_TAGS])


CHANNEL: Any = CotChannel()
