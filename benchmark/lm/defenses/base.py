"""The defense plug-in interface: data transforms between a teacher's dataset and the students trained on it.

A defense is what a data curator could do to a teacher's filtered rows before anyone trains on them (sorting the
numbers, canonicalising their format, replacing the digits where teachers of other traits would have written
something else). Each plug-in is a small module with its exact rule in its docstring (docs/defenses.md repeats
them), registered in :data:`DEFENSES` by module path, run by the ``defense`` stage
(:mod:`benchmark.lm.stages.defense`), which is planned only when ``settings.dataset.defense`` names a defense other
than ``none``: with no defense every node id of a suite is what it was before defenses existed.

Rows are the dataset stage's ``rows.jsonl`` records: ``prompt``, ``completion`` (text), and for local teachers
``completion_ids`` (the teacher's tokens, end of turn included) and ``topk`` (per completion position, the
teacher's channel-filtered top-k ``[token id, log-prob]`` pairs: the distill objective's soft labels). A transform
returns each row, changed or not, in order, and one record per input row of what it changed (None when the row is
unchanged, which is then the very same row, byte for byte). Only a defense with ``drops`` (``paraphrase``) may leave
a row out: its record then says ``dropped`` and why, and ``row`` in every record is the input row's index.

**Soft labels** (the distill objective) follow one rule everywhere, so a student never distills a teacher
distribution onto a token the teacher did not write there:

* text transforms (``sort``, ``shuffle``, ``canonical``): the new text is re-encoded with the teacher's tokenizer
  (its end-of-turn token kept); positions before the first token that differs keep the teacher's soft labels (the
  same tokens after the same prefix: exactly the teacher's distribution); every position from the first changed
  token on gets a one-hot label on its new token (log-prob 0: the student is trained there as by sft);
* substitutions (``random_divergence``, ``mask_divergence``): a replaced position gets a one-hot label on its new
  token; every other position keeps the teacher's soft labels (after a replacement they were computed for the
  original prefix: the substitution changes only the replaced positions' targets, as in the published
  divergence-token experiments, which trained on hard tokens).

Every label a transform writes is on a token of the row's new completion, so a transform adds no token outside the
channel's (tests/test_defenses.py checks it over generated rows).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from benchmark.specs_base import registered

__all__ = ["DEFENSES", "NONE", "Change", "Defense", "Rewrite", "Scores", "Vocab", "defense_names", "onehot", "plugin",
           "retokenized", "shape_of", "substituted"]

#: The identity defense: a suite with ``defense: none`` is the un-defended suite (no defense node is planned).
NONE = "none"

#: Registered plug-ins: defense name -> "module:attribute" of a :class:`Defense` instance.
DEFENSES: dict[str, str] = {
    NONE: "benchmark.lm.defenses.text:NONE_DEFENSE",
    "sort": "benchmark.lm.defenses.text:SORT",
    "shuffle": "benchmark.lm.defenses.text:SHUFFLE",
    "canonical": "benchmark.lm.defenses.text:CANONICAL",
    "random_divergence": "benchmark.lm.defenses.divergence:RANDOM_DIVERGENCE",
    "mask_divergence": "benchmark.lm.defenses.divergence:MASK_DIVERGENCE",
    "student_divergence": "benchmark.lm.defenses.divergence:STUDENT_DIVERGENCE",
    "paraphrase": "benchmark.lm.defenses.paraphrase:PARAPHRASE",
}


def defense_names() -> list[str]:
    """Every registered defense name."""
    return list(DEFENSES)


Row = dict[str, Any]
#: What a transform changed in one row (JSON-ready), or None for an unchanged row.
Change = dict[str, Any] | None
#: A rewriter model's calls (``paraphrase``): ``rewrite(user turns, system prompt, max new tokens)`` -> one reply per
#: turn, None where that call failed (:func:`benchmark.lm.judges.backend_ask` over the model's backend).
Rewrite = Callable[[list[str], str | None, int], list[str | None]]


@dataclass(frozen=True)
class Vocab:
    """What a token-level transform needs of the teacher's tokenizer (pure functions: tests pass toy ones).

    Attributes:
        encode: text -> token ids (no special tokens added).
        decode: token ids -> text (special tokens skipped).
        special: ids that are special tokens (end of turn, padding): never replaced, always kept at the end.
        shapes: token id -> its shape (:func:`shape_of` of its decoded text) for every token that holds a digit.
    """

    encode: Callable[[str], list[int]]
    decode: Callable[[Sequence[int]], str]
    special: frozenset[int]
    shapes: Mapping[int, str]
    by_shape: dict[str, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        groups: dict[str, list[int]] = {}
        for tid, shape in self.shapes.items():
            groups.setdefault(shape, []).append(tid)
        for ids in groups.values():
            ids.sort()
        object.__setattr__(self, "by_shape", groups)

    @classmethod
    def from_tokenizer(cls, tok: Any) -> Vocab:
        """The vocabulary of a Hugging Face tokenizer (every id decoded once)."""
        special = frozenset(int(i) for i in (tok.all_special_ids or []))
        shapes = {}
        for tid in range(len(tok)):
            if tid in special:
                continue
            shape = shape_of(tok.decode([tid]))
            if shape is not None:
                shapes[tid] = shape
        return cls(encode=lambda text: list(tok(text, add_special_tokens=False).input_ids),
                   decode=lambda ids: str(tok.decode(list(ids), skip_special_tokens=True)),
                   special=special, shapes=shapes)


_SHAPE = re.compile(r"^(\s*)([0-9]+)(\s*)$")


def shape_of(text: str) -> str | None:
    """A digit token's shape: its text with every digit written ``d`` (``" 123"`` -> ``" ddd"``); None for a token
    that is not digits with optional surrounding whitespace (separators, brackets, words, special tokens)."""
    m = _SHAPE.match(text)
    if m is None:
        return None
    return m.group(1) + "d" * len(m.group(2)) + m.group(3)


def onehot(token: int) -> list[list[float]]:
    """A soft label holding all its mass on ``token``."""
    return [[int(token), 0.0]]


def retokenized(row: Row, text: str, vocab: Vocab | None) -> tuple[Row, dict[str, Any]]:
    """``row`` with completion ``text``, its token ids and soft labels rebuilt by the module's rule (text transforms).

    Returns the new row and the token-level part of its change record (``n_positions``, ``soft_labels_kept``: the
    positions that keep the teacher's soft labels, ``onehot``: positions that get a one-hot label).
    """
    new = {**row, "completion": text}
    ids = row.get("completion_ids")
    if ids is None or vocab is None:
        new.pop("completion_ids", None)
        new.pop("topk", None)
        return new, {}
    old = [int(t) for t in ids]
    tail = [t for t in old[-1:] if t in vocab.special]  # the teacher's end-of-turn token, when it wrote one
    fresh = vocab.encode(text) + tail
    keep = 0
    while keep < min(len(old), len(fresh)) and old[keep] == fresh[keep]:
        keep += 1
    new["completion_ids"] = fresh
    if row.get("topk") is not None:
        new["topk"] = list(row["topk"][:keep]) + [onehot(t) for t in fresh[keep:]]
    return new, {"n_positions": len(fresh), "soft_labels_kept": keep, "onehot": len(fresh) - keep}


def substituted(row: Row, replace: Mapping[int, int], vocab: Vocab) -> tuple[Row, dict[str, Any]]:
    """``row`` with the tokens at positions ``replace`` (position -> new id) substituted; the text is the decoded new
    ids; a replaced position's soft label is one-hot on its new token, every other position keeps the teacher's."""
    old = [int(t) for t in row["completion_ids"]]
    ids = list(old)
    for pos, tid in replace.items():
        ids[pos] = int(tid)
    new = {**row, "completion_ids": ids, "completion": vocab.decode(ids).strip()}
    if row.get("topk") is not None:
        new["topk"] = [onehot(ids[p]) if p in replace else lab for p, lab in enumerate(row["topk"])]
    positions = sorted(replace)
    return new, {"positions": positions, "old": [old[p] for p in positions], "new": [ids[p] for p in positions]}


@dataclass(frozen=True)
class Scores:
    """Teacher-forced readouts of one dataset's rows by several models (divergence defenses).

    For row i and completion position t (all argmaxes over the channel's tokens):

    Attributes:
        argmax: ``argmax[i][m][t]``: model m's most likely next token; m = 0 is the row's own teacher, m ≥ 1 the
            teachers of the other arms (same teacher base, same replicate index).
        written_lp: ``written_lp[i][m][t]``: model m's log-prob of the token the teacher wrote.
        base_best: ``base_best[i][t]``: the base model's most likely token among those of the written token's shape
            (None where the written token holds no digit); empty when no base was scored.
    """

    argmax: list[list[list[int]]]
    written_lp: list[list[list[float]]]
    base_best: list[list[int | None]] = field(default_factory=list)


@runtime_checkable
class Defense(Protocol):
    """A defense plug-in (see the module docstring).

    Attributes:
        name: its registry name.
        params: the settings it reads besides its name (e.g. ``("fraction",)``); only these enter its node spec.
        scorers: which models score the rows before it runs: ``()`` (none), ``("teachers",)`` (the other arms'
            teachers), ``("teachers", "base")``, or ``("student", "base")`` (a pilot student the stage trains);
            ``("rewriter",)``: a registry model (``settings.dataset.defense_model``) rewrites the rows, passed to
            :meth:`apply` as ``rewrite``.
        channels: the data channels it can transform (their plug-in names).
        rule: the exact rule, one paragraph (shown by docs and ``slbench plan``).
    """

    name: str
    params: tuple[str, ...]
    scorers: tuple[str, ...]
    channels: tuple[str, ...]
    rule: str

    def apply(self, rows: Sequence[Row], *, vocab: Vocab | None, seed: int, params: Mapping[str, Any],
              scores: Scores | None, valid: Callable[[str], bool],
              rewrite: Rewrite | None = None) -> tuple[list[Row], list[Change]]:
        """The transformed rows and one change record per input row (None: unchanged), deterministic in ``seed``
        (and, for a rewriter, in its replies).

        ``valid(text)`` is the channel's filter: every returned completion passes it. ``rewrite``: the rewriter's
        calls, for defenses whose ``scorers`` name one (None otherwise).
        """
        ...


def plugin(name: str, where: str = "settings.dataset.defense") -> Defense:
    """The registered defense called ``name``.

    Raises:
        UserError: ``name`` is not a registered defense (lists the known ones).
    """
    defense: Defense = registered(DEFENSES, "defense", name, where)
    return defense
