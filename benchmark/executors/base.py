"""What every executor shares: the run summary, progress events, plan status and resuming.

An executor is a module with ``run_plan(nodes, store, *, workers, on_event, ...)`` that runs every unfinished
node of a plan in dependency order and returns a :class:`RunSummary`; extra keyword options are its own
(``threads`` for the local one, ``address`` and retry settings for Ray). Resuming is the same decision
everywhere: a node is done iff its manifest is (:meth:`benchmark.store.Store.is_done`).
"""

from __future__ import annotations

import os
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmark.dag import KIND_ORDER, Node
from benchmark.errors import UserError
from benchmark.store import StageFailed, Store

__all__ = ["Event", "RunSummary", "plan_status", "skip_finished", "kind_rank", "set_threads", "reraise"]

#: Progress callback ``(event, node, info)``; events are "skip", "start", "done" and "fail".
Event = Callable[[str, Node, dict[str, Any]], None]


@dataclass
class RunSummary:
    """What a run did: counts by kind, the nodes built, wall time per kind."""

    built: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    wall_by_kind: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    wall_s: float = 0.0


def plan_status(nodes: Sequence[Node], store: Store) -> tuple[dict[str, dict[str, int]], list[Node]]:
    """Per kind: total, done, todo; and the unfinished nodes in plan order. Corrupt manifests raise UserError."""
    out: dict[str, dict[str, int]] = {}
    todo: list[Node] = []
    for node in nodes:
        row = out.setdefault(node.kind, {"total": 0, "done": 0, "todo": 0})
        row["total"] += 1
        if store.is_done(node):
            row["done"] += 1
        else:
            row["todo"] += 1
            todo.append(node)
    return dict(sorted(out.items(), key=lambda kv: kind_rank(kv[0]))), todo


def skip_finished(
    order: Sequence[Node], store: Store, summary: RunSummary, emit: Event
) -> tuple[set[str], list[Node]]:
    """Prepare the store, report finished nodes as "skip", and return (finished keys, nodes still to run).

    Shared by every executor: resuming is the same decision everywhere (a node is done iff its manifest is).
    """
    store.root.mkdir(parents=True, exist_ok=True)
    store.clean_staging()
    done: set[str] = set()
    for node in order:
        if store.is_done(node):
            done.add(node.key)
            summary.skipped.append(node.key)
            emit("skip", node, {})
    return done, [n for n in order if n.key not in done]


def kind_rank(kind: str) -> int:
    """Position of a node kind in display order (unknown kinds last)."""
    return KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)


def set_threads(n: int) -> None:
    """Limit torch (if loaded later) and BLAS to ``n`` threads in this process."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    # Per-request progress bars of lm-eval / transformers are noise at this level; node logs keep the rest.
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


def reraise(exc: StageFailed) -> None:
    """Raise a failed stage the way the CLI reports it: a user error as :class:`UserError`, else as is."""
    if exc.user_error:
        raise UserError(f"{exc.key}: {exc}") from None
    raise exc
