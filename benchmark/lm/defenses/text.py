"""Text defenses of the numbers channel: ``none``, ``sort``, ``shuffle``, ``canonical``.

Each rewrites a row's completion text; tokens and soft labels then follow :func:`benchmark.lm.defenses.base.
retokenized` (soft labels kept up to the first changed token, one-hot after it). A completion is read as digit runs
(the numbers, as written: leading zeros kept) and the text between them (brackets, separators, whitespace, a final
period), by ``re.split("([0-9]+)")``.

* ``none``: every row unchanged (the un-defended dataset; a suite with ``defense: none`` plans no defense node).
* ``sort``: the numbers of a row in ascending numeric order (ties keep their order); the text between them
  (brackets, each separator, the final period) stays where it was, so only the order of the numbers changes.
* ``shuffle``: the numbers of a row in a uniformly random order drawn from ``random.Random(derive_seed(
  "lm-defense-shuffle", seed, row index))``; the text between them stays where it was ("shuffle" permutes the numbers
  within a row; it never moves numbers between rows, nor rows, nor characters within a number).
* ``canonical``: one format for every row: the numbers in their order, each written in decimal without leading zeros,
  joined by ``", "``, with no brackets, no other whitespace and no final period.

A row whose text comes out the same (a sorted row under ``sort``, one number under ``shuffle``) is returned as is.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from benchmark.errors import UserError
from benchmark.hashing import derive_seed
from benchmark.lm.defenses.base import NONE, Change, Rewrite, Row, Scores, Vocab, retokenized

__all__ = ["CANONICAL", "NONE_DEFENSE", "SHUFFLE", "SORT", "canonical_text", "numbers_of", "shuffle_text",
           "sort_text"]

_DIGITS = re.compile(r"([0-9]+)")


def numbers_of(text: str) -> tuple[list[str], list[str]]:
    """``(numbers, glue)``: the digit runs of ``text`` as written and the len(numbers) + 1 strings around them."""
    parts = _DIGITS.split(text)
    return parts[1::2], parts[0::2]


def _join(numbers: Sequence[str], glue: Sequence[str]) -> str:
    out = [glue[0]]
    for n, g in zip(numbers, glue[1:], strict=True):
        out += [n, g]
    return "".join(out)


def sort_text(text: str) -> str:
    """The numbers of ``text`` in ascending numeric order (stable), the text between them in place."""
    numbers, glue = numbers_of(text)
    return _join(sorted(numbers, key=int), glue)


def shuffle_text(text: str, rng: random.Random) -> str:
    """The numbers of ``text`` in the order of ``rng.shuffle``, the text between them in place."""
    numbers, glue = numbers_of(text)
    rng.shuffle(numbers)
    return _join(numbers, glue)


def canonical_text(text: str) -> str:
    """The numbers of ``text`` in order, without leading zeros, joined by ``", "`` (nothing else)."""
    return ", ".join(str(int(n)) for n in numbers_of(text)[0])


@dataclass(frozen=True)
class TextDefense:
    """A defense that rewrites each completion's text by ``rewrite(text, row index, seed)``."""

    name: str
    rule: str
    rewrite: Callable[[str, int, int], str]
    params: tuple[str, ...] = ()
    scorers: tuple[str, ...] = ()
    channels: tuple[str, ...] = ("numbers",)

    def apply(self, rows: Sequence[Row], *, vocab: Vocab | None, seed: int, params: Mapping[str, Any],
              scores: Scores | None, valid: Callable[[str], bool],
              rewrite: Rewrite | None = None) -> tuple[list[Row], list[Change]]:
        out: list[Row] = []
        changes: list[Change] = []
        for i, row in enumerate(rows):
            text = str(row["completion"])
            new_text = self.rewrite(text, i, seed)
            if new_text == text:
                out.append(row)
                changes.append(None)
                continue
            if not valid(new_text):  # a rewrite keeps the multiset of numbers: the channel's filter must keep it
                raise UserError(f"defense {self.name}: row {i} {text!r} became {new_text!r}, which the channel's "
                                "filter rejects (a bug in the defense)")
            new, tokens = retokenized(row, new_text, vocab)
            out.append(new)
            changes.append({"row": i, "before": text, "after": new_text, **tokens})
        return out, changes


def _shuffle(text: str, i: int, seed: int) -> str:
    return shuffle_text(text, random.Random(derive_seed("lm-defense-shuffle", seed, i)))


NONE_DEFENSE = TextDefense(NONE, "Every row unchanged (the un-defended dataset: no defense node is planned).",
                           lambda text, i, seed: text,
                           channels=("numbers", "code", "cot"))
SORT = TextDefense("sort", "The numbers of each row in ascending numeric order (ties keep their order); brackets, "
                   "separators and a final period stay where they were.", lambda text, i, seed: sort_text(text))
SHUFFLE = TextDefense("shuffle", "The numbers of each row permuted uniformly at random (seeded per row); brackets, "
                      "separators and a final period stay where they were; numbers never move between rows.",
                      _shuffle)
CANONICAL = TextDefense("canonical", "Each row rewritten as its numbers in order, in decimal without leading zeros, "
                        "joined by ', ' (no brackets, no other whitespace, no final period).",
                        lambda text, i, seed: canonical_text(text))
