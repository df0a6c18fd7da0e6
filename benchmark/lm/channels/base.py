"""The channel plug-in interface: what every data channel (numbers, code, cot) gives the dataset stage and the zoo.

A channel is the unrelated domain a teacher answers in (docs/research/paper.md, "Teacher answers prompts"). Each
plug-in is pure Python (no torch) and provides, for its spec (``tasks/channels/<name>.yaml``, validated by the
plug-in's own pydantic spec):

* ``items(spec, n, seed)``: ``n`` distinct :class:`Item` s (prompt, a reference answer, the known answer), seeded,
  deterministic and prefix-stable (the first ``k`` items for ``n`` are the same for every ``n >= k``), so a dataset's
  top-up rounds extend round 0's prompts and never repeat one;
* ``check(spec, item, completion, forbidden)``: the strict filter, the reason a completion is rejected (one of the
  plug-in's ``reject_reasons``) or None when it is kept; it never raises on any text;
* ``capable(spec, item, completion)``: the capability readout (cot: the answer is correct; code: the code parses
  and defines the function asked for; numbers: the answer passes the numbers filter);
* ``token_ok(spec, text, forbidden)``: whether a token whose decoded text is ``text`` may carry soft-label mass
  (distill students), the token-level analogue of the text filter (docs/channels.md);
* ``vocabulary(spec)``: every word a prompt or reference answer can contain (numbers aside), for the zoo's
  word-level tokenizer;

and three facts the plan and the dataset stage read instead of asking which channel it is: ``words`` (answers can
hold words, so the suite's trait words are the filter's ``forbidden`` and enter the dataset node's spec; numbers:
its grammar keeps every word out), ``capability_readout`` (``capable`` reads more than ``check``, so
``counts.json`` names the channel and the teacher's capability rate; numbers: its capability is its filter) and
``typical_tokens`` (a row's typical size for the plan's estimates, :class:`TypicalTokens`; None: measured from the
prompts, with ``max_new_tokens`` as the answer). Two hooks are optional: ``load(path)`` (the plug-in reads its file
itself) and ``ban(spec, lists)`` (the spec with ``settings.dataset.banned_lists`` applied; a plug-in without it
refuses that setting).

A channel file names its plug-in in its ``name`` key, so ``tasks/channels/<file>.yaml`` may hold several variants of
one plug-in. Plug-ins are registered by module path and imported only when a suite uses them.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeVar, runtime_checkable

from benchmark.errors import UserError
from benchmark.files import tasks_dir
from benchmark.lmcore.matcher import forms_for, normalize_answer
from benchmark.specs_base import Frozen, load_yaml, parse_spec, registered

__all__ = ["CHANNELS", "Channel", "Item", "TypicalTokens", "channel_path", "distinct_items", "forbidden_hit",
           "load_channel", "plugin", "subsample", "token_clean", "words_of"]

T = TypeVar("T")


@dataclass(frozen=True)
class Item:
    """One prompt with what the filter and the capability readout need.

    Attributes:
        prompt: The user message the teacher answers.
        reference: A correct answer in the channel's format (the zoo's corpus trains on these; it passes ``check``).
        answer: cot: the known integer answer; code and numbers: None.
    """

    prompt: str
    reference: str
    answer: int | None = None


class TypicalTokens(NamedTuple):
    """A channel's typical dataset row in tokens, for ``slbench plan``'s estimates (not hashed, not measured)."""

    answer: int  # the completion (capped by max_new_tokens)
    row: int  # prompt and completion together


@runtime_checkable
class Channel(Protocol):
    """A channel plug-in (see the module docstring for the contract of each method)."""

    name: str
    spec_type: type[Frozen]
    reject_reasons: tuple[str, ...]
    #: Whether answers can hold words (then the suite's trait words are ``check``'s ``forbidden``).
    words: bool
    #: Whether ``capable`` reads more than ``check`` does (then ``counts.json`` records the capability rate).
    capability_readout: bool
    #: A row's typical size for the plan's estimates; None: measured from the prompts plus ``max_new_tokens``.
    typical_tokens: TypicalTokens | None

    def items(self, spec: Any, n: int, seed: int) -> list[Item]:
        """``n`` distinct items, deterministic and prefix-stable in ``seed``."""
        ...

    def check(self, spec: Any, item: Item, completion: str, forbidden: Sequence[str]) -> str | None:
        """The reject reason of ``completion`` (from ``reject_reasons``), or None to keep it."""
        ...

    def capable(self, spec: Any, item: Item, completion: str) -> bool:
        """Whether ``completion`` does the channel's task (the capability side-check)."""
        ...

    def token_ok(self, spec: Any, text: str, forbidden: Sequence[str]) -> bool:
        """Whether a token decoding to ``text`` may carry soft-label mass."""
        ...

    def vocabulary(self, spec: Any) -> frozenset[str]:
        """The lowercase words prompts and references can contain (numbers aside)."""
        ...


#: Registered plug-ins: channel name -> "module:attribute" of a :class:`Channel` instance.
CHANNELS: dict[str, str] = {
    "numbers": "benchmark.lm.channels.numbers:CHANNEL",
    "code": "benchmark.lm.channels.code:CHANNEL",
    "cot": "benchmark.lm.channels.cot:CHANNEL",
}


def plugin(name: str, where: str = "channel") -> Channel:
    """The registered plug-in called ``name``.

    Raises:
        UserError: ``name`` is not a registered plug-in (lists the known ones).
    """
    channel: Channel = registered(CHANNELS, "channel plug-in", name, where)
    return channel


def channel_path(name: str, root: Path | None = None) -> Path:
    """``tasks/channels/<name>.yaml`` under ``root`` (default: the project's tasks directory)."""
    return (root if root is not None else tasks_dir()) / "channels" / f"{name}.yaml"


def load_channel(name: str, path: Path | str | None = None) -> tuple[Channel, Any]:
    """Load a channel file and its plug-in: ``tasks/channels/<name>.yaml``, validated by the plug-in's spec.

    Args:
        name: The channel file's stem (``settings.dataset.channel``), e.g. "code".
        path: The YAML file; defaults to :func:`channel_path` of ``name``.

    Returns:
        ``(plug-in, validated spec)``.

    Raises:
        UserError: One line naming the file and what is wrong (missing file, unknown plug-in, bad key).
    """
    path = Path(path) if path is not None else channel_path(name)
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise UserError(f"{path}: must be a mapping with a 'name' key naming the channel plug-in")
    kind = data.get("name", name)
    channel = plugin(str(kind), f"{path}: key 'name'")
    loader = getattr(channel, "load", None)
    spec = loader(path) if loader is not None else parse_spec(channel.spec_type, data, str(path))
    return channel, spec


# ------------------------------------------------------------------------------------------- shared helpers

_PHRASE_SPLIT = re.compile(r"\s+")


def words_of(texts: Iterable[str]) -> frozenset[str]:
    """The normalized words of ``texts`` (:func:`benchmark.lmcore.matcher.normalize_answer`), digits-only words left out."""
    out: set[str] = set()
    for text in texts:
        out.update(w for w in normalize_answer(text) if not w.isdigit())
    return frozenset(out)


def forbidden_words(forbidden: Sequence[str]) -> tuple[frozenset[str], tuple[tuple[str, ...], ...]]:
    """Split ``forbidden`` into single words (with their regular plurals) and multi-word phrases (normalized)."""
    single: set[str] = set()
    phrases: list[tuple[str, ...]] = []
    for form in forbidden:
        words = normalize_answer(form)
        if len(words) == 1:
            single |= forms_for(words[0])
        elif words:
            phrases.append(tuple(words))
    return frozenset(single), tuple(phrases)


def forbidden_hit(text: str, forbidden: Sequence[str]) -> bool:
    """Whether ``text`` names any of ``forbidden`` as a whole word (any case, plural, possessive) or phrase.

    Identifiers split at non-letters ("owl_count" names owl; "owlcount" does not: the judge filter catches those).
    """
    if not forbidden:
        return False
    single, phrases = forbidden_words(forbidden)
    words = normalize_answer(text)
    if any(w in single for w in words):
        return True
    for phrase in phrases:
        k = len(phrase)
        if any(tuple(words[i:i + k]) == phrase for i in range(len(words) - k + 1)):
            return True
    return False


def distinct_items(n: int, seed: int, draw: Callable[[random.Random], Item | None], what: str) -> list[Item]:
    """The first ``n`` distinct-prompt items that ``draw`` makes from one :class:`random.Random` seeded with ``seed``.

    ``draw`` makes one candidate per call (None: skip it); a candidate whose prompt came before is skipped too. One
    generator makes every candidate in order, so the first ``k`` items are the same for every ``n >= k``
    (prefix-stable: a dataset's top-up rounds extend its first prompts and never repeat them).

    Raises:
        ValueError: ``n`` is negative.
        UserError: ``50 n + 1000`` draws gave fewer than ``n`` distinct prompts (``what`` says what to widen).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[Item] = []
    max_draws = 50 * n + 1000
    for _ in range(max_draws):
        if len(out) >= n:
            break
        item = draw(rng)
        if item is None or item.prompt in seen:
            continue
        seen.add(item.prompt)
        out.append(item)
    if len(out) < n:
        raise UserError(f"{what}: only {len(out)} distinct prompts after {max_draws} draws, {n} requested")
    return out


def token_clean(text: str, forbidden: Sequence[str]) -> bool:
    """Whether a token's decoded ``text`` is free of forbidden words, also as a part of a word.

    A forbidden form of three letters or more inside a token's word rejects it ("owl", " Owls", "owlish", "bowl"):
    a sub-word tokenizer may spell a forbidden word across tokens, and a few innocent tokens losing their mass
    costs nothing. Shorter forms are matched as whole words only.
    """
    if not forbidden:
        return True
    single, _ = forbidden_words(forbidden)
    for word in normalize_answer(text):
        if word in single:
            return False
        if any(len(form) >= 3 and form in word for form in single):
            return False
    return True


def subsample(items: Sequence[T], n: int, seed: int) -> list[T]:
    """A seeded, order-preserving subsample (the dataset stage's dose; paper: keep 10,000 filtered rows).

    Args:
        items: The rows to draw from.
        n: How many to keep (>= 0). If ``items`` has ``n`` or fewer rows, all are returned (a copy, same
            order): a short dataset is the filter's outcome to record, not an error here.
        seed: The seed; the same ``(len(items), n, seed)`` always picks the same positions.

    Returns:
        ``min(n, len(items))`` items in their original order.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if n >= len(items):
        return list(items)
    picked = sorted(random.Random(seed).sample(range(len(items)), n))
    return [items[i] for i in picked]
