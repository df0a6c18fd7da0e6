"""A plan seen as a matrix: which cells and teacher bases have work to do, which are served from the store.

Adding a model to an N-model suite changes no existing node's spec (a node's id hashes only its own inputs), so
``slbench plan`` shows the old cells as cached and schedules only the new model's base, teachers and datasets and
the students of its new cells: on the LM track 2N+1 students per trait arm and teacher replicate (N + 1 on its own
teachers' data, N of the old teachers' data on it), each with its evaluation, and a new report.

Works for any track whose student nodes depend on one dataset node and one base node (both tracks here): the
teacher base of a student is the base its dataset descends from, its student base the base it depends on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CellWork", "PlanCells", "plan_cells"]


@dataclass
class CellWork:
    """The student nodes of one (teacher base, student base) cell: how many, how many still to build."""

    total: int = 0
    todo: int = 0


@dataclass
class PlanCells:
    """The plan by cell and by teacher base.

    Attributes:
        cells: (teacher base, student base) -> its student nodes' counts, in plan order.
        teachers: teacher base -> (teacher nodes, teacher nodes to build).
        todo_keys: keys of every node still to build.
        cached_keys: keys of every finished node.
    """

    cells: dict[tuple[str, str], CellWork] = field(default_factory=dict)
    teachers: dict[str, CellWork] = field(default_factory=dict)
    todo_keys: list[str] = field(default_factory=list)
    cached_keys: list[str] = field(default_factory=list)

    def new_cells(self) -> list[tuple[str, str]]:
        """Cells with at least one student to build."""
        return [c for c, w in self.cells.items() if w.todo]

    def lines(self, show: int = 12) -> list[str]:
        """What ``slbench plan`` prints about the matrix."""
        new = self.new_cells()
        out = [f"cells (teacher → student): {len(self.cells)} in the matrix, {len(self.cells) - len(new)} fully "
               f"cached, {len(new)} with students to train"]
        if len(new) == len(self.cells):
            show = 0  # nothing cached: every cell is new, no need to list them
        for t, s in new[:show]:
            w = self.cells[(t, s)]
            out.append(f"  new: {t} → {s}: {w.todo} of {w.total} student(s) to train")
        if 0 < show < len(new):
            out.append(f"  ... and {len(new) - show} more cells")
        fresh = [f"{b} ({w.todo} of {w.total})" for b, w in self.teachers.items() if w.todo]
        if fresh and any(w.todo < w.total or not w.todo for w in self.teachers.values()):
            out.append("teachers to build: " + ", ".join(fresh))
        return out


def _base_of(key: str, nodes: dict[str, Any], memo: dict[str, str | None]) -> str | None:
    """The base model a teacher-side node descends from (its first base ancestor), by node key."""
    if key in memo:
        return memo[key]
    node = nodes.get(key)
    found: str | None = None
    if node is not None:
        if node.kind == "base":
            found = node.name
        else:
            for dep in node.deps:
                found = _base_of(dep, nodes, memo)
                if found is not None:
                    break
    memo[key] = found
    return found


def plan_cells(nodes: Sequence[Any], todo: Sequence[Any]) -> PlanCells:
    """Group a plan's student and teacher nodes by cell and teacher base, counting what is still to build."""
    by_key = {n.key: n for n in nodes}
    todo_keys = {n.key for n in todo}
    memo: dict[str, str | None] = {}
    out = PlanCells(todo_keys=[n.key for n in nodes if n.key in todo_keys],
                    cached_keys=[n.key for n in nodes if n.key not in todo_keys])
    for node in nodes:
        if node.kind == "teacher":
            base = _base_of(node.key, by_key, memo)
            if base is not None:
                work = out.teachers.setdefault(base, CellWork())
                work.total += 1
                work.todo += node.key in todo_keys
        if node.kind != "student":
            continue
        bases = [by_key[d] for d in node.deps if d in by_key and by_key[d].kind == "base"]
        if len(bases) > 1:  # a student that maps its teacher's soft labels (vocab_map) also reads the teacher's base
            bases = [b for b in bases if b.id == node.spec.get("base")]
        data = [d for d in node.deps if d in by_key and by_key[d].kind in ("dataset", "defense")]
        if len(bases) != 1 or len(data) != 1:
            continue
        teacher = _base_of(data[0], by_key, memo)
        if teacher is None:
            continue
        work = out.cells.setdefault((teacher, bases[0].name), CellWork())
        work.total += 1
        work.todo += node.key in todo_keys
    return out
