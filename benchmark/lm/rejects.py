"""The dataset stage's sample of rejected completions (``rejected.jsonl``): what the filters threw away, and why.

``counts.json`` counts every reject by reason (``rejects``); this file keeps the text of a bounded, deterministic
sample of them so that a reader can check a filter by eye (``slbench view``, ``slbench export --samples``): the
first :data:`PER_REASON` rejected completions of each reason, in prompt order, each with the reason ``counts.json``
counts it under: the channel filter's (``parse_answer``'s for numbers, the plug-in's ``check`` otherwise), the
judge filter's ``judge_<decision>`` (with its verdict record), or a later rule of the stage's.

The reasons are recomputed from what the stage already holds (prompts, completions, kept indices, the judge's
verdicts) by the stage's own filters run on one row at a time (:func:`dataset_rejects`), so there is one home for
each rule. Nothing here is hashed into a node id; dataset nodes built before this file existed have none (readers
tolerate that).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

__all__ = ["PER_REASON", "REJECTED", "dataset_rejects", "judge_reason", "rejected_rows"]

#: File name of the sample in a dataset node.
REJECTED = "rejected.jsonl"
#: Rejected completions kept per reason (the first ones, in prompt order).
PER_REASON = 20


def rejected_rows(prompts: Sequence[str], completions: Sequence[str], kept: Iterable[int],
                  filters: Sequence[Callable[[int], str | None]], verdicts: Mapping[int, Mapping[str, Any]] | None = None,
                  per_reason: int = PER_REASON) -> list[dict[str, Any]]:
    """The first ``per_reason`` rejected completions of each reject reason, in prompt order.

    Args:
        prompts: Every prompt the teacher answered, over all rounds.
        completions: Its completions, as the channel's filter saw them (not stripped).
        kept: Indices every filter kept (before the dose's subsample).
        filters: The stage's filters in the order it applies them, each giving index ``i``'s reject reason (None:
            it passes); a row's reason is the first one found, as the stage counted it.
        verdicts: The judge's verdict record by index (attached to the row as ``"judge"``; :func:`judge_reason`
            makes the judge's filter of them).
        per_reason: Rows kept per reason (>= 0).

    Returns:
        ``{"index", "prompt", "completion", "reason"}`` rows (plus ``"judge"``: the verdict record, for rows a judge
        saw), ordered by index.

    Raises:
        ValueError: ``per_reason`` < 0, or prompts and completions of different lengths.
        RuntimeError: a row no filter kept has no reason (the filters and this sample disagree: a bug).
    """
    if per_reason < 0:
        raise ValueError(f"per_reason must be >= 0, got {per_reason}")
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    keep = set(kept)
    verdicts = verdicts or {}
    seen: Counter[str] = Counter()
    rows: list[dict[str, Any]] = []
    for i, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
        if i in keep:
            continue
        reason = next((r for r in (f(i) for f in filters) if r is not None), None)
        if reason is None:
            raise RuntimeError(f"completion {i} was not kept, yet no filter gives a reason")
        seen[reason] += 1
        if seen[reason] > per_reason:
            continue
        row: dict[str, Any] = {"index": i, "prompt": prompt, "completion": completion, "reason": reason}
        if i in verdicts:
            row["judge"] = dict(verdicts[i])
        rows.append(row)
    return rows


def judge_reason(verdicts: Mapping[int, Mapping[str, Any]]) -> Callable[[int], str | None]:
    """The judge filter as a reason: ``judge_<decision>`` for a row it saw and did not keep (as counted)."""
    def reason(i: int) -> str | None:
        v = verdicts.get(i)
        return None if v is None or v["decision"] == "keep" else f"judge_{v['decision']}"
    return reason


def dataset_rejects(got: Any, filt: Any, row_tokens: int | None, long_enough: Callable[..., list[int]],
                    per_reason: int = PER_REASON) -> list[dict[str, Any]]:
    """:func:`rejected_rows` of a dataset stage's generation (``got``: its ``_Generated``; ``filt``: its ``_Filter``;
    ``row_tokens``: the spec's, or None; ``long_enough``: the stage's length rule, ``_long_enough``).

    Each filter is the stage's own function run on the one row, its reject histogram naming the reason, in the
    stage's order: the channel's (``_Filter.check``), the judge's verdicts, then the length rule of ``row_tokens``.
    The stage hands its functions in, so this module imports nothing of it.
    """
    def channel(i: int) -> str | None:
        _, rejects, _ = filt.check([got.items[i]], [got.outs[i]["completion"]])
        return next(iter(rejects), None)

    def length(i: int) -> str | None:
        rejects: Counter[str] = Counter()
        long_enough([i], got.outs, row_tokens, rejects)
        return next(iter(rejects), None)

    return rejected_rows([it.prompt for it in got.items], [o["completion"] for o in got.outs], got.kept,
                         [channel, judge_reason(got.verdicts), length], got.verdicts, per_reason)
