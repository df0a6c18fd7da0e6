"""Soft labels across tokenizers over a channel's alphabet (``settings.student.vocab_map: alphabet``).

A ``distill`` student matches its teacher's stored top-k next-token log-probs id by id, which needs the teacher's
vocabulary. Two tokenizers that write the channel's answers one character per token share those ids in all but
name: SmolLM2's and Gemma 3's both write ``"123, 456"`` as ``1 2 3 , ␣ 4 5 6`` (the space its own token, ``Ġ`` /
``▁``). This module moves a teacher's rows into the student's ids over that alphabet.

**What is matched.** For each of the alphabet's characters (:data:`ALPHABETS`; numbers: the ten digits, comma and
space), the one id each tokenizer gives it when it writes a number list (:func:`alphabet_ids`, read off its own
tokenization of ``"0, 1, 2, ..., 9"``). The completion text (the teacher's tokens decoded) is re-tokenized by the
student; a student position is *matched* when its token is one alphabet character and the teacher's token at the
same character offset is that same character. There the student's label is the teacher's top-k restricted to the
alphabet's ids, each moved to the student's id of the same character, with the teacher's log-probs unchanged.

**Before the map.** The dataset stage has already cut each stored top-k to the channel's tokens (number text and end
tokens) and renormalised it over them (``filter_soft_labels``), as for every distill suite.

**What is dropped.** Teacher top-k entries that are not one of the alphabet's ids (an end-of-turn or newline token,
a multi-digit token, anything else the dataset's channel filter left): their probability is not given to any
alphabet id; with ``topk_mode: rest`` (the default) it stays in the "rest" bucket, so the loss is the exact KL
between the teacher's and the student's distributions over the alphabet's characters plus one bucket for
everything else. Student positions that are not matched (the end-of-turn token, any other character, a row whose
texts do not re-tokenize to the same characters) get their own token as a one-hot label (log-prob 0): cross-entropy
on the sampled text there, as ``sft`` does. Nothing else of the teacher's distribution reaches the student.

Used for every pair of a suite that sets it, same-tokenizer pairs included (there the ids map onto themselves but
are restricted to the alphabet all the same), so same- and cross-family cells train on the same kind of label.
The student's text is the row's ``completion`` (the teacher's decoded tokens, surrounding whitespace stripped, as
the dataset stage stores it), re-tokenized by the student and followed by its end-of-turn tokens, exactly as an
``sft`` student reads it. Pure Python on tokenizer objects (``decode``, ``__call__``): no torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from benchmark.errors import UserError

__all__ = ["ALPHABETS", "MapStats", "alphabet_ids", "map_rows", "map_row"]

#: The characters a channel's answers are written in, and the probe text that writes each of them once.
ALPHABETS: dict[str, tuple[str, str]] = {
    "numbers": ("0123456789, ", "0, 1, 2, 3, 4, 5, 6, 7, 8, 9"),
}


def alphabet_ids(tokenizer: Any, channel: str, name: str = "") -> dict[str, int]:
    """Character -> the id ``tokenizer`` writes it with inside a number list (one token per character).

    Raises:
        UserError: the channel has no alphabet, or the tokenizer does not write the probe one character per token
            with one id per character (then soft labels cannot be moved onto it).
    """
    if channel not in ALPHABETS:
        raise UserError(f"vocab_map 'alphabet': channel {channel!r} has no alphabet; allowed: {', '.join(ALPHABETS)}")
    chars, probe = ALPHABETS[channel]
    ids = tokenizer(probe, add_special_tokens=False).input_ids
    pieces = _pieces(tokenizer, ids)
    found: dict[str, int] = {}
    for tid, piece in zip(ids, pieces, strict=True):
        if len(piece) != 1 or found.setdefault(piece, tid) != tid:
            raise UserError(f"tokenizer of {name or '?'}: does not write {probe!r} one character per token "
                            f"(piece {piece!r}); vocab_map 'alphabet' needs that")
    missing = [c for c in chars if c not in found]
    if missing:
        raise UserError(f"tokenizer of {name or '?'}: no token for {missing!r} in {probe!r}")
    return {c: found[c] for c in chars}


def _pieces(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """The text each token adds to the decoded prefix (special tokens decode to "")."""
    out: list[str] = []
    prev = ""
    for i in range(len(ids)):
        text = tokenizer.decode(list(ids[: i + 1]), skip_special_tokens=True)
        out.append(text[len(prev):] if text.startswith(prev) else "\0")  # "\0": not a clean prefix, never matched
        prev = text
    return out


@dataclass
class MapStats:
    """Counts over mapped rows (recorded in the student's manifest)."""

    rows: int = 0
    rows_aligned: int = 0
    positions: int = 0
    matched: int = 0
    #: Teacher probability mass at matched positions that fell outside the alphabet (summed; mean = / matched).
    dropped_mass: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "rows_aligned": self.rows_aligned, "positions": self.positions,
                "matched_positions": self.matched,
                "mean_dropped_mass": round(self.dropped_mass / self.matched, 6) if self.matched else None}


def map_row(row: Mapping[str, Any], teacher_tok: Any, student_tok: Any, t_ids: Mapping[str, int],
            s_ids: Mapping[str, int], end_of_turn: Sequence[int], stats: MapStats | None = None) -> dict[str, Any]:
    """One teacher row (``completion_ids`` + ``topk``) as a student row in the student's ids (module notes).

    Args:
        row: the teacher's row: ``prompt``, ``completion_ids``, ``topk`` (per position ``[[id, logprob], ...]``).
        teacher_tok, student_tok: the two tokenizers.
        t_ids, s_ids: :func:`alphabet_ids` of each.
        end_of_turn: the student's end-of-turn ids (appended, one-hot), as for a text completion.
        stats: counts to update.

    Returns:
        ``{"prompt", "completion", "completion_ids", "topk"}`` with ids and labels of the student's vocabulary.
    """
    st = stats if stats is not None else MapStats()
    tc = [int(t) for t in row["completion_ids"]]
    topk = row["topk"]
    # The row's text is the teacher's decoded tokens with surrounding whitespace stripped (the dataset stage's
    # rule; a plain-format teacher's final newline goes with it): teacher offsets count from its first character.
    full = teacher_tok.decode(tc, skip_special_tokens=True)
    text = str(row.get("completion", full.strip()))
    lead = len(full) - len(full.lstrip())
    t_char = {tid: c for c, tid in t_ids.items()}
    # Teacher positions that are one alphabet character, by character offset in the completion text.
    by_offset: dict[int, tuple[str, list[list[float]]]] = {}
    offset = -lead
    for tid, piece, labels in zip(tc, _pieces(teacher_tok, tc), topk, strict=False):
        if t_char.get(tid) == piece:
            by_offset[offset] = (piece, labels)
        offset += len(piece) if piece != "\0" else 0
    sc = [int(t) for t in student_tok(text, add_special_tokens=False).input_ids]
    s_pieces = _pieces(student_tok, sc)
    aligned = full[lead:].startswith(text) and "".join(s_pieces) == text and "\0" not in s_pieces
    out_topk: list[list[list[float]]] = []
    offset = 0
    for sid, piece in zip(sc, s_pieces, strict=True):
        hit = by_offset.get(offset) if aligned and s_ids.get(piece) == sid else None
        if hit is not None and hit[0] == piece:
            mass: dict[int, float] = {}
            total = 0.0
            for label_id, lp in hit[1]:
                p = _exp(lp)
                total += p
                c = t_char.get(int(label_id))
                if c is not None:
                    mass[s_ids[c]] = mass.get(s_ids[c], 0.0) + p
            if mass:
                st.matched += 1
                st.dropped_mass += max(0.0, total - sum(mass.values()))
                out_topk.append([[j, _log(p)] for j, p in sorted(mass.items(), key=lambda kv: -kv[1])])
                offset += len(piece)
                continue
        out_topk.append([[sid, 0.0]])  # unmatched: the sampled token itself (cross-entropy, as sft)
        offset += len(piece) if piece != "\0" else 0
    eot = [int(t) for t in end_of_turn]
    out_topk.extend([[t, 0.0]] for t in eot)
    st.rows += 1
    st.rows_aligned += int(aligned)
    st.positions += len(sc) + len(eot)
    return {"prompt": row["prompt"], "completion": text, "completion_ids": sc + eot, "topk": out_topk}


def map_rows(rows: Sequence[Mapping[str, Any]], teacher_tok: Any, student_tok: Any, channel: str,
             end_of_turn: Sequence[int], *, names: tuple[str, str] = ("teacher", "student"),
             ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every row mapped (:func:`map_row`); returns the rows and the counts for the manifest.

    Raises:
        UserError: a row without ``completion_ids`` and ``topk`` (the dataset needs ``settings.dataset.top_k``), or a
            tokenizer that does not write the channel's alphabet one character per token.
    """
    t_ids = alphabet_ids(teacher_tok, channel, names[0])
    s_ids = alphabet_ids(student_tok, channel, names[1])
    stats = MapStats()
    out = []
    for i, r in enumerate(rows):
        if r.get("completion_ids") is None or r.get("topk") is None:
            raise UserError(f"training row {i}: vocab_map 'alphabet' needs 'completion_ids' and 'topk' (the teacher's "
                            "log-probs); generate the dataset with settings.dataset.top_k set")
        out.append(map_row(r, teacher_tok, student_tok, t_ids, s_ids, end_of_turn, stats))
    return out, {"vocab_map": "alphabet", "alphabet": ALPHABETS[channel][0], "teacher_alphabet_ids": t_ids,
                 "student_alphabet_ids": s_ids, **stats.as_dict()}


def _exp(lp: float) -> float:
    import math

    return math.exp(lp) if lp > -745 else 0.0


def _log(p: float) -> float:
    import math

    return math.log(p) if p > 0 else -math.inf
