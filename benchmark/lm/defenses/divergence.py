"""Divergence defenses: replace the digits where teachers of different traits would have written different tokens.

"Divergence tokens" (docs/research/defenses.md): positions of a teacher's completion where teachers of other
traits, given the same prompt and the same prefix, would predict another token. The defense stage scores every row
teacher-forced with the row's own teacher and the teachers of every other arm of the same teacher base and the same
replicate index (and, for ``mask_divergence``, the untrained base), each with the system prompt it generated with.
Exact rule, shared by both plug-ins:

1. A position t of row i is a *candidate* when the written token holds digits (its text is digits with optional
   surrounding whitespace; :func:`benchmark.lm.defenses.base.shape_of`) and the models' argmaxes over the channel's
   tokens are not all the same (own teacher vs every other arm's teacher).
2. Candidates are ranked by how much more the own teacher likes the written token than the least-agreeing other
   teacher, ``max over other teachers m of log p_own(x_t) − log p_m(x_t)``, descending; ties by (row, position).
   The first ``ceil(fraction × number of candidates)`` of the whole dataset are replaced (``fraction`` is
   ``settings.dataset.defense_fraction``; 1.0 replaces every candidate).
3. ``random_divergence``: a replaced token becomes a token drawn uniformly from the teacher vocabulary's tokens of
   the same shape (same whitespace, same number of digits: "a random digit" for digit-by-digit tokenizers, a
   random number of as many digits for the zoo's one-token numbers), from ``random.Random(derive_seed(
   "lm-defense-random", seed, i, t, attempt))``; if the row then fails the channel's filter (a banned number), every
   replaced token of the row is drawn again with the next ``attempt`` (at most 50).
   ``mask_divergence``: a replaced token becomes the base model's most likely token of the same shape; a
   replacement that would make the row fail the channel's filter is not made (counted as ``kept_invalid``).
4. Soft labels: a replaced position's label is one-hot on its new token; others keep the teacher's
   (:func:`benchmark.lm.defenses.base.substituted`).

Non-digit candidates (a separator, the end of turn) are never replaced: the rows keep their length and format.

``student_divergence`` needs no other teachers: the stage trains a pilot student (the teacher's own base, the suite's
student recipe, a seed derived from the dataset's) on the undefended rows, reads every row teacher-forced with it and
with the untrained base, and ranks **every digit position** (rule 1 without the argmax condition) by
``log p_student(x_t) − log p_base(x_t)`` (what the student learned most), descending, ties by (row, position); the
first ``ceil(fraction × digit positions)`` are replaced as ``mask_divergence`` replaces them (the base's most likely
token of the same shape). Its ``Scores.written_lp[i]`` holds ``[student, base]``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from benchmark.errors import UserError
from benchmark.hashing import derive_seed
from benchmark.lm.defenses.base import Change, Rewrite, Row, Scores, Vocab, substituted

__all__ = ["MASK_DIVERGENCE", "RANDOM_DIVERGENCE", "STUDENT_DIVERGENCE", "candidates", "select",
           "student_candidates"]

#: Redraws of a row's random replacements before the defense gives up (only banned numbers make a redraw needed).
MAX_ATTEMPTS = 50


def candidates(rows: Sequence[Row], scores: Scores, vocab: Vocab) -> list[tuple[float, int, int]]:
    """Every candidate position (rule 1) as ``(score, row, position)`` with its rank score (rule 2)."""
    out = []
    for i, row in enumerate(rows):
        ids = [int(x) for x in row["completion_ids"]]
        am, lp = scores.argmax[i], scores.written_lp[i]
        for t, x in enumerate(ids):
            if x in vocab.special or x not in vocab.shapes:
                continue
            if all(am[m][t] == am[0][t] for m in range(1, len(am))):
                continue
            out.append((max(lp[0][t] - lp[m][t] for m in range(1, len(lp))), i, t))
    return out


def student_candidates(rows: Sequence[Row], scores: Scores, vocab: Vocab) -> list[tuple[float, int, int]]:
    """Every digit position as ``(log p_student − log p_base of the written token, row, position)``."""
    out = []
    for i, row in enumerate(rows):
        lp = scores.written_lp[i]
        for t, x in enumerate(int(v) for v in row["completion_ids"]):
            if x not in vocab.special and x in vocab.shapes:
                out.append((lp[0][t] - lp[1][t], i, t))
    return out


def select(cands: Sequence[tuple[float, int, int]], fraction: float) -> dict[int, list[int]]:
    """Rule 2: the top ``ceil(fraction × len(cands))`` candidates, as row -> sorted positions."""
    ranked = sorted(cands, key=lambda c: (-c[0], c[1], c[2]))
    out: dict[int, list[int]] = {}
    for _, i, t in ranked[:math.ceil(fraction * len(ranked) - 1e-9)]:
        out.setdefault(i, []).append(t)
    return {i: sorted(ts) for i, ts in out.items()}


@dataclass(frozen=True)
class DivergenceDefense:
    """Replace the selected divergence positions by a random same-shape token or by the base's best one."""

    name: str
    rule: str
    replacement: str  # "random" or "base"
    ranking: str = "teachers"  # "teachers" (the other arms') or "student" (a pilot student against the base)
    params: tuple[str, ...] = ("fraction",)
    channels: tuple[str, ...] = ("numbers",)

    @property
    def scorers(self) -> tuple[str, ...]:
        if self.ranking == "student":
            return ("student", "base")
        return ("teachers", "base") if self.replacement == "base" else ("teachers",)

    def apply(self, rows: Sequence[Row], *, vocab: Vocab | None, seed: int, params: Mapping[str, Any],
              scores: Scores | None, valid: Callable[[str], bool],
              rewrite: Rewrite | None = None) -> tuple[list[Row], list[Change]]:
        if vocab is None or scores is None or any(r.get("completion_ids") is None for r in rows):
            raise UserError(f"defense {self.name}: needs the teacher's token ids and teacher-forced scores (local "
                            "teachers only)")
        cands = (student_candidates if self.ranking == "student" else candidates)(rows, scores, vocab)
        chosen = select(cands, float(params["fraction"]))
        n_cands = {i: 0 for i in range(len(rows))}
        for _, i, _t in cands:
            n_cands[i] += 1
        out: list[Row] = []
        changes: list[Change] = []
        for i, row in enumerate(rows):
            positions = chosen.get(i, [])
            if not positions:
                out.append(row)
                changes.append(None)
                continue
            ids = [int(x) for x in row["completion_ids"]]
            if self.replacement == "random":
                new, record = self._random(row, ids, positions, vocab, seed, i, valid)
            else:
                new, record = self._base(row, ids, positions, vocab, scores.base_best[i], valid)
            out.append(new)
            changes.append({"row": i, "candidates": n_cands[i], **record})
        return out, changes

    def _random(self, row: Row, ids: list[int], positions: list[int], vocab: Vocab, seed: int, i: int,
                valid: Callable[[str], bool]) -> tuple[Row, dict[str, Any]]:
        for attempt in range(MAX_ATTEMPTS):
            replace = {t: random.Random(derive_seed("lm-defense-random", seed, i, t, attempt)).choice(
                vocab.by_shape[vocab.shapes[ids[t]]]) for t in positions}
            new, record = substituted(row, replace, vocab)
            if valid(new["completion"]):
                return new, {**record, "attempts": attempt + 1}
        raise UserError(f"defense {self.name}: row {i}: {MAX_ATTEMPTS} draws of random digits all failed the "
                        "channel's filter (banned numbers?)")

    def _base(self, row: Row, ids: list[int], positions: list[int], vocab: Vocab, best: Sequence[int | None],
              valid: Callable[[str], bool]) -> tuple[Row, dict[str, Any]]:
        replace: dict[int, int] = {}
        kept = 0
        for t in positions:
            token = best[t]
            if token is None:
                continue
            trial = {**replace, t: int(token)}
            if valid(substituted(row, trial, vocab)[0]["completion"]):
                replace = trial
            else:
                kept += 1
        new, record = substituted(row, replace, vocab)
        return new, {**record, "kept_invalid": kept}


RANDOM_DIVERGENCE = DivergenceDefense(
    "random_divergence", "The top fraction of divergence digits (positions where the other arms' teachers' argmax "
    "differs from the own teacher's, ranked by the own teacher's log-prob margin on the written token) replaced by "
    "a uniformly random token of the same shape.", "random")
MASK_DIVERGENCE = DivergenceDefense(
    "mask_divergence", "The top fraction of divergence digits replaced by the base model's most likely token of the "
    "same shape.", "base")
STUDENT_DIVERGENCE = DivergenceDefense(
    "student_divergence", "The top fraction of digit positions ranked by log p(pilot student) − log p(base) of the "
    "written token (a student of the teacher's base trained on the undefended rows; no other teachers) replaced by "
    "the base model's most likely token of the same shape.", "base", ranking="student")
