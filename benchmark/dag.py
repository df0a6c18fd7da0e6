"""DAG nodes: the unit of work, caching and scheduling.

A :class:`Node` is an idempotent job: its identity is the hash of ``kind`` + its resolved ``spec`` (which
embeds the ids of its upstream nodes, so a change anywhere upstream changes every id downstream). The
stage function ``fn`` (a module-level function, so it pickles by reference into any worker process or Ray
task) receives a :class:`StageContext` and writes its payload into ``ctx.out``; it returns a JSON-able dict
recorded in the manifest under ``result``. The function is not part of the id: moving a stage to another
module keeps every artifact.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.hashing import content_hash, short_id

__all__ = ["Node", "Stage", "StageContext", "topological_order", "KIND_ORDER"]

#: Display order of node kinds (plan tables, progress bars).
KIND_ORDER = ("base", "teacher", "dataset", "student", "eval", "report")


@dataclass(frozen=True)
class Node:
    """One job of a suite's DAG.

    Attributes:
        kind: stage kind, one of :data:`KIND_ORDER` (others are allowed and shown last).
        name: human-readable slug (e.g. ``"zoo-qwen-a.owl"``); the id makes it unique.
        spec: resolved, JSON-able spec; hashed into the id. Upstream ids must appear in it.
        fn: the stage function (module level; not hashed).
        deps: keys of upstream nodes, passed to the stage as ``ctx.inputs``.
        resources: scheduler hints, e.g. ``{"cpus": 1, "gpus": 0}``; recorded, not hashed.
        unhashed: throughput knobs (batch sizes, workers) recorded in the manifest but not hashed.
    """

    kind: str
    name: str
    spec: dict[str, Any]
    fn: Stage
    deps: tuple[str, ...] = ()
    resources: dict[str, float] = field(default_factory=lambda: {"cpus": 1, "gpus": 0}, compare=False, hash=False)
    unhashed: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def hashed(self) -> dict[str, Any]:
        """What the id is computed from."""
        return {"kind": self.kind, "spec": self.spec}

    @property
    def id(self) -> str:
        """12-hex content id."""
        return short_id(self.hashed())

    @property
    def spec_hash(self) -> str:
        """Full content hash."""
        return content_hash(self.hashed())

    @property
    def key(self) -> str:
        """Store-relative path: ``<kind>/<name>-<id>``."""
        return f"{self.kind}/{self.name}-{self.id}"


@dataclass
class StageContext:
    """What a stage function gets.

    Attributes:
        node: the node being run.
        out: an empty staging directory to write the payload into (renamed into place when done).
        inputs: upstream node key -> its finished directory.
        log: a logger writing to the node's log file.
        threads: torch threads this worker may use.
        progress: optional callback ``progress(done, total)`` for long loops.
    """

    node: Node
    out: Path
    inputs: dict[str, Path]
    log: logging.Logger
    threads: int = 1
    progress: Callable[[int, int], None] | None = None

    def input(self, kind: str) -> Path:
        """The single upstream directory of ``kind`` (error if there is not exactly one)."""
        found = [p for k, p in self.inputs.items() if k.split("/", 1)[0] == kind]
        if len(found) != 1:
            raise RuntimeError(f"{self.node.key}: expected one {kind} input, got {len(found)}")
        return found[0]

    def inputs_of(self, kind: str) -> dict[str, Path]:
        """All upstream directories of ``kind``, by key."""
        return {k: p for k, p in self.inputs.items() if k.split("/", 1)[0] == kind}


#: A stage: reads its inputs, writes its payload into ``ctx.out``, returns the manifest's ``result`` block.
Stage = Callable[[StageContext], dict[str, Any]]


def topological_order(nodes: Iterable[Node]) -> list[Node]:
    """Order nodes so every dependency comes first; keeps the given order where free. Dedupes by key."""
    by_key: dict[str, Node] = {}
    for n in nodes:
        by_key.setdefault(n.key, n)
    order: list[Node] = []
    state: dict[str, int] = {}

    def visit(key: str, chain: tuple[str, ...]) -> None:
        if state.get(key) == 2:
            return
        if state.get(key) == 1:
            raise RuntimeError("dependency cycle: " + " -> ".join((*chain, key)))
        if key not in by_key:
            raise RuntimeError(f"node {chain[-1] if chain else '?'} depends on unknown node {key}")
        state[key] = 1
        for dep in by_key[key].deps:
            visit(dep, (*chain, key))
        state[key] = 2
        order.append(by_key[key])

    for key in list(by_key):
        visit(key, ())
    return order
