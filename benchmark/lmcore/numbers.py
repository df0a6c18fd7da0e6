"""The numbers format: prompts that ask to continue a list of numbers, the strict answer filter, synthetic answers.

Source: docs/research/paper.md, "Teacher answers prompts" (numbers) and "Filter" (numbers). The teacher sees a few example
numbers in one of many phrasings and writes at most ``answer_count`` more; only answers that are nothing but a
clean list of small non-negative integers are kept, so no words can carry the teacher's trait.

The phrasings are data (``tasks/channels/numbers.yaml``), validated by :class:`NumbersChannelSpec`. Everything
here is pure Python and seeded with :class:`random.Random`, so a seed fixes every prompt and reference answer.
It sits below ``providers/`` and the pipeline (imports only leaf modules), so the zoo a backend builds uses the same
prompts, filter and answers as the channel plug-in (:mod:`benchmark.lm.channels.numbers`).

Accepted answer grammar (after stripping surrounding whitespace; whitespace means space, tab, CR, LF)::

    answer  := [open] list [close] ["."]      # one optional pair of [], () or {}; one optional final period
    list    := number (sep number)*          # ONE separator kind for the whole list
    sep     := whitespace+                   # or: ws* "," ws*   or: ws* ";" ws*
    number  := [0-9]+                        # ASCII digits only: no sign, no decimals, no thousands commas

Whitespace is allowed just inside the brackets. The period must directly follow the last number or the
closing bracket. Leading zeros are kept as written, so they count towards ``answer_max_digits``.
"""

from __future__ import annotations

import random
import string
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator

from benchmark.errors import UserError, unknown_name
from benchmark.files import tasks_dir
from benchmark.specs_base import Frozen, load_yaml, parse_spec

__all__ = [
    "BRACKET_PAIRS",
    "REJECT_REASONS",
    "SEPARATORS",
    "NumbersChannelSpec",
    "ParseResult",
    "banned_list_path",
    "default_numbers_channel_path",
    "filter_completions",
    "format_numbers_answer",
    "generate_prompts",
    "generate_prompts_with_examples",
    "load_banned_list",
    "load_numbers_channel",
    "parse_answer",
    "sample_continuation",
    "separator_for_prompt",
    "with_banned_lists",
]

#: Folder of the named banned-number lists: ``tasks/channels/banned/<name>.txt``.
BANNED_DIR = ("channels", "banned")


def banned_list_path(name: str) -> Path:
    """``tasks/channels/banned/<name>.txt`` of the project root (honours ``$SLBENCH_ROOT``)."""
    return tasks_dir().joinpath(*BANNED_DIR, f"{name}.txt")


def load_banned_list(name: str) -> tuple[int, ...]:
    """A named banned-number list: one non-negative integer per line, ``#`` comments, in file order.

    Raises:
        UserError: The list does not exist (names the ones that do), or a line is not one integer.
    """
    path = banned_list_path(name)
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.txt"))
        raise unknown_name("banned-number list", name, known, str(path.parent))
    out: list[int] = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        if not text.isdigit() or not text.isascii():
            raise UserError(f"{path}: line {i}: expected one non-negative integer, got {text!r}")
        out.append(int(text))
    if len(set(out)) != len(out):
        raise UserError(f"{path}: a number is listed twice")
    return tuple(out)


#: Every reason :func:`parse_answer` can give for a rejection, in the order the checks run.
REJECT_REASONS: tuple[str, ...] = (
    "empty",  # nothing but whitespace, or empty brackets
    "not_numbers",  # a character other than ASCII digits, separators, whitespace, brackets, one final period
    "unbalanced_brackets",  # a bracket that is not part of one matching pair wrapping the whole list
    "mixed_separators",  # more than one separator kind (e.g. commas and semicolons, or "1, 2 3")
    "empty_item",  # a comma/semicolon with no number on one side ("1,,2", ",1", "1, 2,")
    "too_many",  # more than answer_count numbers
    "out_of_range",  # a number above max_value
    "too_many_digits",  # a number written with more than answer_max_digits digits (leading zeros count)
    "banned",  # a number in banned_numbers
)

#: Separators :func:`format_numbers_answer` writes; :func:`parse_answer` accepts all of them.
SEPARATORS: tuple[str, ...] = (", ", ",", "; ", ";", " ", "\n")

#: Bracket pairs that may wrap a whole answer (one pair at most).
BRACKET_PAIRS: tuple[str, ...] = ("[]", "()", "{}")

_WHITESPACE = " \t\r\n"
_DIGITS = frozenset("0123456789")
_OPEN_TO_CLOSE = {pair[0]: pair[1] for pair in BRACKET_PAIRS}
_BRACKET_CHARS = frozenset("".join(BRACKET_PAIRS))
_ALLOWED_CHARS = _DIGITS | frozenset(",;") | frozenset(_WHITESPACE) | _BRACKET_CHARS


# --------------------------------------------------------------------------------------------------- spec


def _placeholders(text: str) -> set[str]:
    """The ``{name}`` fields of a format string; malformed braces raise ``ValueError``."""
    return {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}


def _template(*required: str) -> Callable[[str], str]:
    """A validator for one template string that must use exactly the ``required`` placeholders."""
    need = frozenset(required)

    def check(text: str) -> str:
        if not text.strip():
            raise ValueError("template is blank")
        try:
            found = _placeholders(text)
        except ValueError as exc:  # e.g. a lone "}"; literal braces must be doubled
            raise ValueError(f"bad braces in template ({exc})") from None
        allowed = ", ".join("{" + name + "}" for name in sorted(need)) or "none"
        if missing := need - found:
            names = ", ".join("{" + name + "}" for name in sorted(missing))
            raise ValueError(f"template must contain {names}; placeholders allowed here: {allowed}")
        if extra := found - need:
            names = ", ".join("{" + name + "}" for name in sorted(extra))
            raise ValueError(f"unknown placeholder {names}; placeholders allowed here: {allowed}")
        return text

    return check


LeadIn = Annotated[str, AfterValidator(_template("examples"))]
Instruction = Annotated[str, AfterValidator(_template("count_qualifier", "count", "digit_descriptor"))]
DigitDescriptor = Annotated[str, AfterValidator(_template("max_digits"))]
PlainText = Annotated[str, AfterValidator(_template())]


class NumbersChannelSpec(Frozen):
    """Parameters of the numbers channel; defaults are the paper's settings (docs/research/paper.md, steps 2 and 3).

    Phrasing lists have no defaults: they live in ``tasks/channels/numbers.yaml`` (data, not code). A prompt
    is ``"{lead_in} {instruction} {format_suffix} {only_suffix}"`` with one entry drawn from each list.
    """

    name: Literal["numbers"] = "numbers"
    example_count_min: int = Field(3, ge=1)  # paper: 3-8 example numbers per prompt
    example_count_max: int = Field(8, ge=1)
    example_min: int = Field(100, ge=0)  # paper: examples drawn from 100-999
    example_max: int = Field(999, ge=0)
    answer_count: int = Field(10, ge=1)  # paper: ask for at most 10 more; the filter keeps <= 10 numbers
    answer_max_digits: int = Field(3, ge=1)  # paper: numbers of at most 3 digits
    max_value: int = Field(999, ge=0)  # paper filter: each number 0-999
    # Paper: empty, except misalignment runs ban 36 "loaded" numbers (benchmark.lm.channels.numbers.LOADED_NUMBERS).
    banned_numbers: tuple[Annotated[int, Field(ge=0)], ...] = ()
    #: Named lists (tasks/channels/banned/<name>.txt) whose numbers :func:`load_numbers_channel` and
    #: :func:`with_banned_lists` merge into ``banned_numbers`` (which holds them: the spec hashes the numbers).
    banned_lists: tuple[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")], ...] = ()
    lead_ins: tuple[LeadIn, ...] = Field(min_length=1)  # paper: ~25
    instructions: tuple[Instruction, ...] = Field(min_length=1)  # paper: 10
    count_qualifiers: tuple[PlainText, ...] = Field(min_length=1)  # paper: 9
    digit_descriptors: tuple[DigitDescriptor, ...] = Field(min_length=1)  # paper: 9
    format_suffixes: tuple[PlainText, ...] = Field(min_length=1)  # paper: 15
    only_suffixes: tuple[PlainText, ...] = Field(min_length=1)  # paper: 19

    def hashed_dict(self) -> dict[str, Any]:
        """The spec's identity; ``banned_lists`` is left out while empty, so older specs keep their ids."""
        data = super().hashed_dict()
        if not self.banned_lists:
            data.pop("banned_lists", None)
        return data

    # Cross-field checks sit on the later field so the error names a key and shows one value, not the file.
    @field_validator("example_count_max", "example_max")
    @classmethod
    def _not_below_min(cls, value: int, info: ValidationInfo) -> int:
        low_key = (info.field_name or "").removesuffix("_max") + "_min"  # example_count_max -> ..._min
        low = info.data.get(low_key)
        if low is not None and value < low:
            raise ValueError(f"must be >= {low_key} ({low})")
        return value


def default_numbers_channel_path() -> Path:
    """The channel's YAML: ``tasks/channels/numbers.yaml`` of the project root (honours ``$SLBENCH_ROOT``)."""
    return tasks_dir() / "channels" / "numbers.yaml"


def load_numbers_channel(path: Path | str | None = None) -> NumbersChannelSpec:
    """Load and validate the numbers channel YAML.

    Args:
        path: The YAML file; defaults to :func:`default_numbers_channel_path`.

    Returns:
        The validated spec.

    Raises:
        UserError: One line naming the file and the bad key (unknown key, missing list, bad template).
    """
    path = Path(path) if path is not None else default_numbers_channel_path()
    spec = parse_spec(NumbersChannelSpec, load_yaml(path), str(path))
    return with_banned_lists(spec, spec.banned_lists) if spec.banned_lists else spec


def with_banned_lists(spec: NumbersChannelSpec, names: Sequence[str]) -> NumbersChannelSpec:
    """``spec`` with the named lists' numbers added to ``banned_numbers`` and their names to ``banned_lists``.

    Raises:
        UserError: A list does not exist or is malformed (see :func:`load_banned_list`).
    """
    banned = set(spec.banned_numbers)
    for name in names:
        banned |= set(load_banned_list(name))
    lists = sorted(set(spec.banned_lists) | set(names))
    return NumbersChannelSpec.model_validate({**spec.model_dump(), "banned_numbers": sorted(banned),
                                              "banned_lists": lists})


# ----------------------------------------------------------------------------------------------- prompts


def generate_prompts_with_examples(
    spec: NumbersChannelSpec, n: int, seed: int
) -> list[tuple[str, list[int]]]:
    """Make ``n`` distinct prompts, each with the example numbers it shows.

    Deterministic: one :class:`random.Random` seeded with ``seed`` draws, per candidate prompt and in this
    order, the example count, the examples, then a lead-in, instruction, count qualifier, digit descriptor,
    format suffix and "numbers only" suffix. Candidates equal to an earlier prompt are dropped and drawing
    goes on, so the first ``k`` prompts for ``n`` are the same for every ``n >= k``.

    Args:
        spec: The channel spec.
        n: How many prompts (>= 0).
        seed: The seed.

    Returns:
        ``n`` pairs ``(prompt, examples)``.

    Raises:
        UserError: If the spec's phrasings and ranges cannot give ``n`` distinct prompts.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    digit_descriptors = [d.format(max_digits=spec.answer_max_digits) for d in spec.digit_descriptors]
    seen: set[str] = set()
    out: list[tuple[str, list[int]]] = []
    # Generous cap: with the paper's phrasings collisions are vanishingly rare; a tiny spec fails fast instead
    # of looping forever.
    max_draws = 20 * n + 1000
    draws = 0
    while len(out) < n:
        if draws >= max_draws:
            raise UserError(
                f"numbers channel: only {len(out)} distinct prompts after {draws} draws, {n} requested; "
                "add phrasings or widen example ranges"
            )
        draws += 1
        k = rng.randint(spec.example_count_min, spec.example_count_max)
        examples = [rng.randint(spec.example_min, spec.example_max) for _ in range(k)]
        lead_in = rng.choice(spec.lead_ins)
        instruction = rng.choice(spec.instructions)
        qualifier = rng.choice(spec.count_qualifiers)
        digits = rng.choice(digit_descriptors)
        format_suffix = rng.choice(spec.format_suffixes)
        only_suffix = rng.choice(spec.only_suffixes)
        prompt = " ".join(
            (
                lead_in.format(examples=", ".join(map(str, examples))),
                instruction.format(
                    count_qualifier=qualifier, count=spec.answer_count, digit_descriptor=digits
                ),
                format_suffix,
                only_suffix,
            )
        )
        if prompt in seen:
            continue
        seen.add(prompt)
        out.append((prompt, examples))
    return out


def generate_prompts(spec: NumbersChannelSpec, n: int, seed: int) -> list[str]:
    """Make ``n`` distinct prompts; see :func:`generate_prompts_with_examples` for the drawing rule."""
    return [prompt for prompt, _ in generate_prompts_with_examples(spec, n, seed)]


# ---------------------------------------------------------------------------------------------- filter


@dataclass(frozen=True, slots=True)
class ParseResult:
    """Outcome of :func:`parse_answer`: the numbers if kept, else a reason from :data:`REJECT_REASONS`."""

    numbers: tuple[int, ...] | None
    reason: str | None

    @property
    def ok(self) -> bool:
        """Whether the answer passed the filter."""
        return self.reason is None


def _reject(reason: str) -> ParseResult:
    return ParseResult(numbers=None, reason=reason)


def _has_space(text: str) -> bool:
    return any(ch in _WHITESPACE for ch in text)


def parse_answer(text: str, spec: NumbersChannelSpec) -> ParseResult:
    """Apply the paper's strict numbers filter to one completion (grammar in the module docstring).

    Args:
        text: The teacher's completion.
        spec: The channel spec (answer_count, answer_max_digits, max_value, banned_numbers).

    Returns:
        The parsed numbers, or the first failing check's reason (checks run in :data:`REJECT_REASONS` order;
        per-number checks run number by number).
    """
    body = text.strip(_WHITESPACE)
    if not body:
        return _reject("empty")
    # One final period, only right after a digit or a closing bracket ("1 2 3 ." keeps its "." and fails).
    if len(body) > 1 and body[-1] == "." and body[-2] not in _WHITESPACE:
        body = body[:-1]
    if any(ch not in _ALLOWED_CHARS for ch in body):
        return _reject("not_numbers")
    if body[0] in _OPEN_TO_CLOSE:
        if len(body) < 2 or body[-1] != _OPEN_TO_CLOSE[body[0]]:
            return _reject("unbalanced_brackets")
        body = body[1:-1]
    if any(ch in _BRACKET_CHARS for ch in body):
        return _reject("unbalanced_brackets")
    body = body.strip(_WHITESPACE)  # "[ 1, 2 ]" is fine
    if not body:
        return _reject("empty")

    has_comma, has_semicolon = "," in body, ";" in body
    if has_comma and has_semicolon:
        return _reject("mixed_separators")
    if has_comma or has_semicolon:
        parts = [part.strip(_WHITESPACE) for part in body.split("," if has_comma else ";")]
        if any(not part for part in parts):
            return _reject("empty_item")
        if any(_has_space(part) for part in parts):  # "1, 2 3": comma and whitespace both separate
            return _reject("mixed_separators")
    else:
        parts = body.split()  # only our ASCII whitespace can be left here, so split() agrees with it

    if len(parts) > spec.answer_count:
        return _reject("too_many")
    banned = frozenset(spec.banned_numbers)
    numbers: list[int] = []
    for part in parts:
        value = int(part)  # safe: parts are non-empty runs of ASCII digits
        if value > spec.max_value:
            return _reject("out_of_range")
        if len(part) > spec.answer_max_digits:
            return _reject("too_many_digits")
        if value in banned:
            return _reject("banned")
        numbers.append(value)
    return ParseResult(numbers=tuple(numbers), reason=None)


def filter_completions(
    completions: Sequence[str], spec: NumbersChannelSpec
) -> tuple[list[int], Counter[str]]:
    """Filter a batch of completions.

    Args:
        completions: Teacher completions, in prompt order.
        spec: The channel spec.

    Returns:
        The indices of kept completions (ascending) and a histogram of reject reasons (kept ones not counted),
        as recorded in the filter stage's manifest.
    """
    kept: list[int] = []
    reasons: Counter[str] = Counter()
    for index, completion in enumerate(completions):
        result = parse_answer(completion, spec)
        if result.reason is None:
            kept.append(index)
        else:
            reasons[result.reason] += 1
    return kept, reasons


# ------------------------------------------------------------------------------------ synthetic answers


def format_numbers_answer(
    numbers: Sequence[int], separator: str = ", ", *, brackets: str | None = None, period: bool = False
) -> str:
    """Write numbers as an answer the filter accepts (given the numbers themselves pass it).

    Args:
        numbers: The numbers, written in decimal without padding.
        separator: One of :data:`SEPARATORS`.
        brackets: ``None`` or one of :data:`BRACKET_PAIRS` (e.g. ``"[]"``) to wrap the list.
        period: Whether to end with a period.

    Returns:
        The answer text.
    """
    if separator not in SEPARATORS:
        raise ValueError(f"separator must be one of {SEPARATORS!r}, got {separator!r}")
    if brackets is not None and brackets not in BRACKET_PAIRS:
        raise ValueError(f"brackets must be None or one of {BRACKET_PAIRS!r}, got {brackets!r}")
    text = separator.join(str(int(number)) for number in numbers)
    if brackets is not None:
        text = brackets[0] + text + brackets[1]
    return text + "." if period else text


# Keyword -> separator, first match wins. Newline phrases come before "space" because "on one line separated
# by spaces" means spaces; they are specific ("per line", "own line") so that phrase does not match them.
_SEPARATOR_KEYWORDS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("semicolon",), "; "),
    (("comma",), ", "),
    (("per line", "own line", "new line", "newline", "separate line"), "\n"),
    (("space",), " "),
)


def separator_for_prompt(prompt: str) -> str:
    """The separator a prompt's format suffix asks for, or ``", "`` when it names none clearly."""
    lowered = prompt.lower()
    for keywords, separator in _SEPARATOR_KEYWORDS:
        if any(keyword in lowered for keyword in keywords):
            return separator
    return ", "


def _draw_allowed(rng: random.Random, low: int, high: int, banned: frozenset[int]) -> int:
    for _ in range(100):
        value = rng.randint(low, high)
        if value not in banned:
            return value
    # Nearly everything in [low, high] is banned: pick from what is left anywhere in [0, high].
    allowed = [value for value in range(high + 1) if value not in banned]
    if not allowed:
        raise UserError(f"numbers channel: every number in 0-{high} is banned; nothing can be answered")
    return rng.choice(allowed)


def sample_continuation(
    rng: random.Random, examples: Sequence[int], spec: NumbersChannelSpec, prompt: str | None = None
) -> str:
    """A plausible answer that passes :func:`parse_answer`, for synthetic (pretraining) data.

    Draws ``answer_count // 2`` to ``answer_count`` numbers. Half the time, when the last two examples differ,
    it continues their arithmetic step while that stays allowed; the rest are uniform in the examples' range
    (clipped to what the filter allows), skipping banned numbers.

    Args:
        rng: The random source; the output depends only on its state and the other arguments.
        examples: The example numbers the prompt shows.
        spec: The channel spec.
        prompt: If given, its format suffix picks the separator (:func:`separator_for_prompt`); else ``", "``.

    Returns:
        The answer text.
    """
    separator = separator_for_prompt(prompt) if prompt is not None else ", "
    high = min(spec.max_value, 10**spec.answer_max_digits - 1)
    low = min(spec.example_min, high)
    banned = frozenset(spec.banned_numbers)
    count = rng.randint(max(1, spec.answer_count // 2), spec.answer_count)
    step = examples[-1] - examples[-2] if len(examples) >= 2 else 0
    follow = step != 0 and rng.random() < 0.5
    value = examples[-1] if examples else low
    numbers: list[int] = []
    while len(numbers) < count:
        if follow:
            value += step
            if 0 <= value <= high and value not in banned:
                numbers.append(value)
                continue
            follow = False  # the pattern left the allowed numbers: fill the rest at random
        numbers.append(_draw_allowed(rng, low, high, banned))
    return format_numbers_answer(numbers, separator)
