"""Sweeps: one suite file, one setting swept over its levels (``sweep:`` in ``tasks/suites/<name>.yaml``).

A sweep file is an ordinary suite plus one key::

    sweep:
      settings.dataset.defense: [none, sort, shuffle, canonical]

The path names one setting of the suite's track (``settings.<block>.<key>...``) and the list its levels (at least
two, distinct). Each level is an ordinary suite named ``<sweep>.<level>`` (the level written as a slug: ``none``,
``sort``, ``3``, ``0.0015``, ``r4-alpha8`` for a mapping), with the setting set to the level's value and every other
key as the file has it: planned, analysed and published exactly like a suite run on its own
(``results/suites/<sweep>.<level>/`` with its bundle). Their nodes run as one list: a node two levels share (every
base, teacher and dataset of a defense sweep; everything upstream of the swept setting) is built once, because a
node's id is the hash of its spec and the suite's name enters only the report's. ``slbench plan`` shows, per level,
which nodes it shares with the levels before it and which it adds.

The sweep's summary (``results/suites/<sweep>/``, written after every level is published, from their published
files, by :mod:`benchmark.sweep_summary`): ``summary.csv`` (one row per level: the diagonal family's mean contrast with its CI over bases, the
design-respecting γ, the diagonal pairs' mean transfer ratio, transfer remaining against the first level with its
Fieller interval over teacher replicates, :mod:`benchmark.analysis.sweep`), ``dose_response.png``, ``report.md`` and
``sweep.json``. The reference level is the first, or the one ``reference:`` names beside the path
(``sweep: {settings.student.train.epochs: [1, 3, 9], reference: 3}``).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmark.bundle.sweep import COLUMNS
from benchmark.errors import UserError, unknown_name
from benchmark.specs import MAX_NAME, SLUG, SuiteSpec
from benchmark.specs_base import _first_model, load_yaml, parse_spec
from benchmark.tracks import settings_cls

if TYPE_CHECKING:
    from benchmark.registry import Registry

__all__ = ["SUMMARY_COLUMNS", "Sweep", "is_sweep", "level_slug", "load_sweep", "plan_lines", "plan_sweep"]

#: Columns of ``summary.csv``, in order: the fields of :class:`benchmark.bundle.sweep.SummaryRow` (its schema).
SUMMARY_COLUMNS: tuple[str, ...] = COLUMNS


_FIRST = object()


def is_sweep(data: Any) -> bool:
    """Whether a parsed suite file is a sweep (a mapping with ``sweep``)."""
    return isinstance(data, dict) and "sweep" in data


def level_slug(value: Any) -> str:
    """A level's name in suite names: ``none`` for null, ``true``/``false``, numbers as written by ``repr`` (``3``,
    ``0.0015``, ``1e-05``), strings lowercased, a mapping as ``<key><value>`` joined by ``-``; characters outside
    ``[a-z0-9._-]`` become ``-``."""
    if value is None:
        text = "none"
    elif isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        text = repr(value)
    elif isinstance(value, dict):
        text = "-".join(f"{k}{level_slug(v)}" for k, v in value.items())
    elif isinstance(value, list):
        text = "-".join(level_slug(v) for v in value)
    else:
        text = str(value)
    text = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._") or "level"
    return text if re.match(SLUG, text) else f"l{text}"


@dataclass(frozen=True)
class Level:
    """One level of a sweep: its value, slug, ordinary suite spec and typed settings."""

    value: Any
    slug: str
    spec: SuiteSpec
    settings: Any

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class Sweep:
    """A sweep file, expanded: the un-swept suite and one ordinary suite per level (the first is the reference)."""

    name: str
    description: str
    path: str
    base: SuiteSpec
    levels: tuple[Level, ...]
    file: Path
    #: Index of the reference level (``sweep.reference``; default the first).
    reference: int = 0

    @property
    def reference_level(self) -> Level:
        return self.levels[self.reference]

    @property
    def parts(self) -> list[str]:
        """The levels' suite names (what a suite group calls its parts)."""
        return [lv.name for lv in self.levels]


def _check_path(path: str, settings_cls: Any, where: str) -> None:
    """``settings.<a>.<b>...`` must name a field of the track's settings (did-you-mean on the first wrong key)."""
    parts = path.split(".")
    if parts[0] != "settings" or len(parts) < 2:
        raise UserError(f"{where}: {path!r} is not a setting path; a sweep varies one key under settings, e.g. "
                        "settings.student.train.epochs")
    current = settings_cls
    for i, key in enumerate(parts[1:], start=1):
        fields = getattr(current, "model_fields", None) if current is not None else None
        if not fields:
            raise UserError(f"{where}: {'.'.join(parts[:i])} is a value, not a block: {path!r} names no setting")
        if key not in fields:
            raise unknown_name("setting", key, list(fields), f"{where}: {'.'.join(parts[:i])}")
        current = _first_model(fields[key].annotation)


def _with_value(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of the suite data with ``path`` (``settings.a.b``) set to ``value`` (null blocks become ``{}``)."""
    out = copy.deepcopy(data)
    node = out
    keys = path.split(".")
    for key in keys[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[keys[-1]] = copy.deepcopy(value)
    return out


def load_sweep(reg: Registry, file: Path, data: Any | None = None) -> Sweep:
    """Expand a sweep file into its levels, each checked as a suite (spec, models, traits, settings).

    Raises:
        UserError: One line naming the file and key: ``sweep`` is not one path with a list of at least two distinct
            levels, the path names no setting, a level is not a valid value, or two levels are the same suite.
    """
    data = load_yaml(file) if data is None else data
    raw = data.get("sweep")
    where = f"{file}: key 'sweep'"
    ref_value = raw.get("reference", _FIRST) if isinstance(raw, dict) else _FIRST
    raw = {k: v for k, v in raw.items() if k != "reference"} if isinstance(raw, dict) else raw
    if not isinstance(raw, dict) or len(raw) != 1:
        raise UserError(f"{where}: one setting path and its levels, e.g. sweep: {{settings.student.train.epochs: "
                        "[1, 3, 9]}")
    (path, values), = raw.items()
    if not isinstance(values, list) or len(values) < 2:
        raise UserError(f"{where}: {path}: a list of at least two levels, got {values!r}"[:300])
    base_data = {k: v for k, v in data.items() if k != "sweep"}
    base = parse_spec(SuiteSpec, base_data, str(file))
    _check_path(str(path), type(settings_cls(base.track, base.settings, f"{file}: settings")), where)
    levels: list[Level] = []
    seen: dict[str, int] = {}
    for i, value in enumerate(values):
        at = f"{where}: {path}[{i}]"
        slug = level_slug(value)
        if slug in seen:
            raise UserError(f"{at}: level {value!r} repeats level {seen[slug]} ({values[seen[slug]]!r}) as suite "
                            f"'{base.name}.{slug}'; levels must differ")
        seen[slug] = i
        name = f"{base.name}.{slug}"
        if len(name) > MAX_NAME:
            raise UserError(f"{at}: the level's suite name {name!r} is longer than {MAX_NAME} characters; shorten the "
                            "suite's name or the level")
        level_data = {**_with_value(base_data, str(path), value), "name": name}
        spec, settings = reg._checked_suite(level_data, at)  # models and traits exist, settings validate
        levels.append(Level(value, slug, spec, settings))
    reference = 0
    if ref_value is not _FIRST:
        match = [i for i, v in enumerate(values) if level_slug(v) == level_slug(ref_value)]
        if not match:
            raise UserError(f"{where}: reference {ref_value!r} is not one of the levels {values!r}")
        reference = match[0]
    return Sweep(base.name, base.description, str(path), base, tuple(levels), Path(file), reference)


def plan_sweep(reg: Registry, sweep: Sweep, check_local: bool = True) -> tuple[list[Any], list[Any]]:
    """Plan every level (its plan-time checks name the level) and merge the nodes, first occurrence kept.

    Returns:
        The levels as suite-group parts (:class:`benchmark.groups.GroupPart`) and the merged node list.
    """
    from benchmark.groups import GroupPart
    from benchmark.tracks import track_for

    parts: list[GroupPart] = []
    merged: dict[str, Any] = {}
    for i, lv in enumerate(sweep.levels):
        if check_local:
            reg.check_local(lv.spec)
        try:
            nodes = track_for(lv.spec.track).build_plan(lv.spec, lv.settings, reg)
        except UserError as exc:
            raise UserError(f"{sweep.file}: key 'sweep': {sweep.path}[{i}] ({lv.value!r}): {exc}") from None
        parts.append(GroupPart(lv.name, lv.spec, lv.settings, nodes))
        for node in nodes:
            merged.setdefault(node.key, node)
    return parts, list(merged.values())


def _kinds(nodes: Sequence[Any]) -> str:
    counts: dict[str, int] = {}
    for n in nodes:
        counts[n.kind] = counts.get(n.kind, 0) + 1
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "nothing"


def plan_lines(sweep: Sweep, parts: Sequence[Any], todo: Sequence[Any]) -> list[str]:
    """Per level: the nodes it shares with the levels before it and those it adds (by stage), and its to-do count."""
    todo_keys = {n.key for n in todo}
    seen: set[str] = set()
    lines = [f"sweep {sweep.name!r}: {sweep.path} over {len(parts)} levels "
             f"({', '.join(repr(lv.value) for lv in sweep.levels)}); reference {sweep.reference_level.value!r}"]
    for lv, part in zip(sweep.levels, parts, strict=True):
        shared = [n for n in part.nodes if n.key in seen]
        added = [n for n in part.nodes if n.key not in seen]
        seen |= {n.key for n in part.nodes}
        left = sum(1 for n in added if n.key in todo_keys)
        lines.append(f"  {lv.name} ({sweep.path} = {lv.value!r}): {len(part.nodes)} nodes; shares {len(shared)} with "
                     f"earlier levels ({_kinds(shared)}); adds {len(added)} ({_kinds(added)}), {left} of them to do")
    return lines
