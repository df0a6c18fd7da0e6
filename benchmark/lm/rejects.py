"""The dataset stage's sample of rejected completions (``rejected.jsonl``): what the filters threw away, and why.

``counts.json`` counts every reject by reason (``rejects``); this file keeps the text of a bounded, deterministic
sample of them so that a reader can check a filter by eye (``slbench view``, ``slbench export --samples``): the
first :data:`PER_REASON` rejected completions of each reason, in prompt order, each with the reason ``counts.json``
counts it under: the channel filter's (the plug-in's ``check``), the judge filter's ``judge_<decision>`` (with its
verdict record), or a later rule of the stage's (``shorter_than_row_tokens``).

The reasons are the ones the stage's filters recorded as they ran (one home for each rule: nothing is re-run
here). Nothing here is hashed into a node id; dataset nodes built before this file existed have none (readers
tolerate that).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["PER_REASON", "REJECTED", "rejected_rows"]

#: File name of the sample in a dataset node.
REJECTED = "rejected.jsonl"
#: Rejected completions kept per reason (the first ones, in prompt order).
PER_REASON = 20


def rejected_rows(prompts: Sequence[str], completions: Sequence[str], reasons: Mapping[int, str],
                  verdicts: Mapping[int, Mapping[str, Any]] | None = None,
                  per_reason: int = PER_REASON) -> list[dict[str, Any]]:
    """The first ``per_reason`` rejected completions of each reject reason, in prompt order.

    Args:
        prompts: Every prompt the teacher answered, over all rounds.
        completions: Its completions, as the channel's filter saw them (not stripped).
        reasons: The reason of every rejected completion, by index (the first filter that rejected it, as the
            stage counted it); an index not in it was kept.
        verdicts: The judge's verdict record by index (attached to the row as ``"judge"``, for rows a judge saw).
        per_reason: Rows kept per reason (>= 0).

    Returns:
        ``{"index", "prompt", "completion", "reason"}`` rows (plus ``"judge"``: the verdict record, for rows a judge
        saw), ordered by index.

    Raises:
        ValueError: ``per_reason`` < 0, prompts and completions of different lengths, or a reason for an index
            that is not a completion's.
    """
    if per_reason < 0:
        raise ValueError(f"per_reason must be >= 0, got {per_reason}")
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    if any(not 0 <= i < len(prompts) for i in reasons):
        raise ValueError(f"a reason names a completion outside 0..{len(prompts) - 1}")
    verdicts = verdicts or {}
    seen: Counter[str] = Counter()
    rows: list[dict[str, Any]] = []
    for i in sorted(reasons):
        reason = reasons[i]
        seen[reason] += 1
        if seen[reason] > per_reason:
            continue
        row: dict[str, Any] = {"index": i, "prompt": prompts[i], "completion": completions[i], "reason": reason}
        if i in verdicts:
            row["judge"] = dict(verdicts[i])
        rows.append(row)
    return rows
