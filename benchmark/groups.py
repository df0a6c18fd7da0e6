"""Suite groups: several ordinary suites planned, run and summarised as one (``tasks/suites/channels.yaml``).

A group (:class:`benchmark.specs.SuiteGroup`) names its parts; each part stays an ordinary suite, analysed and
published exactly as when it runs alone (``results/suites/<part>/`` with its bundle), so the analysis, bundles,
``slbench validate`` and the leaderboard need nothing new. The group adds two things:

* one node list for all parts (:func:`plan_group`), deduplicated by node key, so a node two parts share (the same
  base, or the same teacher replicate when parts train teachers alike) is built once;
* a summary of the published parts in ``results/suites/<group>/``
  (:func:`benchmark.group_summary.write_group_summary`): every part's pair table (``pairs.csv``: one row per
  teacher × student pair on the suite's primary trait, plus its placebo rows) in
  one ``cells.csv`` with ``part``, ``channel`` and ``readout`` columns, the students' capability readouts and
  collapse flags in ``capability.csv``, and ``report.md`` / ``index.html`` linking the parts' own reports.

The summary is a function of the parts' published files (and, for a judged rate, of the same analysis code the
parts use), so the same parts give byte-identical summaries. This module plans (it sits beside the registry, which
dispatches groups and sweeps); the summary, which reads the analysis, is :mod:`benchmark.group_summary`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchmark.registry import Registry
    from benchmark.specs import SuiteGroup, SuiteSpec

__all__ = ["GroupPart", "plan_group"]

@dataclass(frozen=True)
class GroupPart:
    """One part of a group: its suite spec, typed settings and plan (its report node last among its nodes)."""

    name: str
    spec: SuiteSpec
    settings: Any
    nodes: list[Any]

    @property
    def report(self) -> Any:
        """The part's report node."""
        return next(n for n in self.nodes if n.kind == "report")

    @property
    def channel(self) -> str:
        """The part's data channel as the summary names it (``numbers`` with its banned lists, if any)."""
        dataset = getattr(self.settings, "dataset", None)
        name = str(getattr(dataset, "channel", "numbers"))
        banned = list(getattr(dataset, "banned_lists", []) or [])
        return name + "".join(f" (banned: {b})" for b in banned)


def plan_group(reg: Registry, group: SuiteGroup) -> tuple[list[GroupPart], list[Any]]:
    """Plan every part and merge their nodes into one list, first occurrence of each key kept.

    Every part's plan lists a node after its dependencies, so the merged list does too.

    Returns:
        The parts (in the group's order) and the merged node list.
    """
    parts: list[GroupPart] = []
    merged: dict[str, Any] = {}
    for name in group.parts:
        spec, settings, path = reg.suite(name)
        reg.check_local(spec)
        nodes = reg.plan(spec, settings, path)
        parts.append(GroupPart(name, spec, settings, nodes))
        for node in nodes:
            merged.setdefault(node.key, node)
    return parts, list(merged.values())
