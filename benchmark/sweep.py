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
files): ``summary.csv`` (one row per level: the diagonal family's mean contrast with its CI over bases, the
design-respecting γ, the diagonal pairs' mean transfer ratio, transfer remaining against the first level with its
Fieller interval over teacher replicates, :mod:`benchmark.analysis.sweep`), ``dose_response.png``, ``report.md`` and
``sweep.json``. The reference level is the first, or the one ``reference:`` names beside the path
(``sweep: {settings.student.train.epochs: [1, 3, 9], reference: 3}``).
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.bundle.sweep import COLUMNS, SummaryRow, SweepSummary, summary_rows
from benchmark.errors import UserError, unknown_name
from benchmark.specs import MAX_NAME, SLUG, SuiteSpec
from benchmark.specs_base import _first_model, load_yaml, parse_spec

__all__ = ["SUMMARY_COLUMNS", "Sweep", "is_sweep", "level_slug", "load_sweep", "plan_lines", "plan_sweep",
           "write_sweep_summary"]

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

    def write_summary(self, parts: Sequence[Any], results: Path) -> Path:
        """Write the sweep's summary of its published levels (:func:`write_sweep_summary`)."""
        return write_sweep_summary(self, parts, results)


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


def load_sweep(reg: Any, file: Path, data: Any | None = None) -> Sweep:
    """Expand a sweep file into its levels, each checked as a suite (spec, models, traits, settings).

    Raises:
        UserError: One line naming the file and key: ``sweep`` is not one path with a list of at least two distinct
            levels, the path names no setting, a level is not a valid value, or two levels are the same suite.
    """
    from benchmark.registry import settings_cls

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


def plan_sweep(reg: Any, sweep: Sweep, check_local: bool = True) -> tuple[list[Any], list[Any]]:
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


# -- summary --------------------------------------------------------------------------------------------------
def _level_rows(sweep: Sweep, results: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The summary's rows, one per level, from the levels' published files."""
    from benchmark.analysis.pairs import contrast_values, pair_design
    from benchmark.analysis.sweep import diagonal_units, remaining_table
    from benchmark.groups import _read_part

    data = {lv.name: _read_part(results / lv.name) for lv in sweep.levels}
    units = {}
    for lv in sweep.levels:
        d = data[lv.name]
        spec = d["manifest"]["spec"]
        metric = str(spec["analysis"].get("metric", spec["metric"]))
        design = pair_design(d["tidy"]["teacher_trait"].unique(), spec["controls"], spec["traits"])
        units[lv.name] = diagonal_units(contrast_values(d["tidy"], metric, design), design.treated, design.controls)
    rem = remaining_table(units, sweep.reference_level.name)
    rows = []
    for lv in sweep.levels:
        d = data[lv.name]
        fit, pairs = d["fit"], d["cells"]
        same = fit.get("by_relation", {}).get("same", {})
        prim = fit.get("primary", {})
        diag = pairs[(pairs["family"] == "same")] if "family" in pairs.columns else pairs.iloc[0:0]
        r = rem[lv.name]
        rows.append({
            "level": lv.slug, "value": json.dumps(lv.value), "suite": lv.name, "report": d["manifest"].get("id"),
            "n_bases": same.get("n_bases"), "diagonal_mean": same.get("mean"),
            "diagonal_ci_low": same.get("base_ci_low"), "diagonal_ci_high": same.get("base_ci_high"),
            "gamma": prim.get("estimate"), "gamma_ci_low": prim.get("ci_low"), "gamma_ci_high": prim.get("ci_high"),
            "gamma_p": prim.get("p"), "gamma_method": prim.get("method"),
            "transfer_ratio": float(diag["transfer_ratio"].mean()) if len(diag) else float("nan"),
            "remaining": r.estimate, "remaining_ci_low": r.ci_low, "remaining_ci_high": r.ci_high,
            "remaining_df": r.df, "remaining_units": r.n_units, "d_level": r.d_level, "d_reference": r.d_ref,
        })
    return rows, data


def _figure(sweep: Sweep, rows: Sequence[dict[str, Any]]) -> bytes:
    """The dose–response figure: four panels over the levels (diagonal mean, γ, transfer ratio, remaining)."""
    from matplotlib.figure import Figure

    from benchmark.report import figure_png

    fig = Figure(figsize=(12, 3.4), constrained_layout=True)
    axes = fig.subplots(1, 4)
    x = list(range(len(rows)))
    labels = [r["level"] for r in rows]

    def num(r: dict[str, Any], key: str) -> float:
        return float(r[key]) if r[key] is not None else math.nan

    def panel(ax: Any, key: str, lo: str | None, hi: str | None, title: str, ref: float | None) -> None:
        y = [num(r, key) for r in rows]
        if lo and hi:
            low, high = [num(r, lo) for r in rows], [num(r, hi) for r in rows]
            span = [v for v in [*y, *low, *high] if math.isfinite(v)]
            top, bottom = (max(span), min(span)) if span else (1.0, -1.0)
            pad = 0.25 * (top - bottom or 1.0)
            for xi, a, b in zip(x, low, high, strict=True):
                if math.isnan(a) or math.isnan(b):
                    continue  # no interval (e.g. one base: no CI over bases)
                unbounded = math.isinf(a) or math.isinf(b)  # runs off the panel, dashed
                ax.vlines(xi, a if math.isfinite(a) else bottom - pad, b if math.isfinite(b) else top + pad,
                          color="0.4", linestyles="dashed" if unbounded else "solid")
            ax.set_ylim(bottom - pad, top + pad)
        ax.plot(x, y, "o-", color="C0")
        if ref is not None:
            ax.axhline(ref, color="0.7", lw=0.8, ls="--")
        ax.set_xticks(x, labels, rotation=35, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)

    panel(axes[0], "diagonal_mean", "diagonal_ci_low", "diagonal_ci_high", "same-model pairs: mean effect\n(95% CI over bases)", 0.0)
    panel(axes[1], "gamma", "gamma_ci_low", "gamma_ci_high", "γ, design-respecting (95% CI)", 0.0)
    panel(axes[2], "transfer_ratio", None, None, "transfer ratio\n(mean over same-model pairs)", 0.0)
    panel(axes[3], "remaining", "remaining_ci_low", "remaining_ci_high",
          f"transfer remaining vs {sweep.reference_level.slug}\n(95% Fieller CI; dashed: unbounded)", 1.0)
    fig.suptitle(f"{sweep.name}: {sweep.path}", fontsize=10)
    return figure_png(fig)


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, float):
        return "−inf" if v == -math.inf else "+inf" if v == math.inf else f"{v:+.{digits}f}"
    return str(v)


def _markdown(sweep: Sweep, rows: Sequence[dict[str, Any]]) -> str:
    from benchmark.report import md_table

    ref = sweep.reference_level.slug
    header = ["level", "same-model mean [CI over bases]", "γ [CI], p", "transfer ratio", f"remaining vs {ref} [CI]"]
    table = [[r["suite"], f"{_fmt(r['diagonal_mean'])} [{_fmt(r['diagonal_ci_low'])}, {_fmt(r['diagonal_ci_high'])}]",
              f"{_fmt(r['gamma'])} [{_fmt(r['gamma_ci_low'])}, {_fmt(r['gamma_ci_high'])}], p = {_fmt(r['gamma_p'])}",
              _fmt(r["transfer_ratio"]),
              f"{_fmt(r['remaining'])} [{_fmt(r['remaining_ci_low'])}, {_fmt(r['remaining_ci_high'])}]"]
             for r in rows]
    lines = [f"# Sweep: {sweep.name}", "", sweep.description.strip(), "",
             f"- Swept setting: `{sweep.path}`; levels {', '.join('`' + str(r['level']) + '`' for r in rows)}; each level is an "
             "ordinary suite with its own report (../<level suite>/report.md) and bundle.",
             f"- Transfer remaining = the same-model pairs' mean effect at the level ÷ at `{ref}`; its 95% interval "
             "inverts a t-test over teacher replicates (Fieller; paired where levels share teachers; conditional on "
             "these bases; ±inf when the reference's own transfer is not distinguishable from 0). docs/statistics.md, "
             "\"Sweeps\".",
             "- γ is each level's pre-declared primary test (fit.json `primary`); the same-model mean's CI is over "
             "teacher bases.", "", md_table(header, table), "", "![dose-response](dose_response.png)", ""]
    return "\n".join(lines)


def write_sweep_summary(sweep: Sweep, parts: Sequence[Any], results: Path) -> Path:
    """Write ``summary.csv``, ``dose_response.png``, ``report.md`` and ``sweep.json`` into ``results/<sweep>/``
    (``sweep.json`` and ``summary.csv`` checked against their schema, :mod:`benchmark.bundle.sweep`, first).

    Raises:
        UserError: A level has no published report.
    """
    import pandas as pd

    from benchmark.files import atomic_write_bytes

    rows, data = _level_rows(sweep, results)
    dest = results / sweep.name
    meta = {"sweep": sweep.name, "path": sweep.path, "reference": sweep.reference_level.name,
            "levels": [{"level": lv.slug, "value": lv.value, "suite": lv.name,
                        "report": data[lv.name]["manifest"].get("id")} for lv in sweep.levels]}
    SweepSummary.model_validate(meta)  # the files are written to their schema (schemas/sweep.schema.json)
    table = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS)).to_csv(index=False)
    for row in summary_rows(table)[1]:
        SummaryRow.model_validate(row)
    files = {
        "summary.csv": table.encode(),
        "dose_response.png": _figure(sweep, rows),
        "report.md": _markdown(sweep, rows).encode(),
        "sweep.json": (json.dumps(meta, indent=1) + "\n").encode(),
    }
    for name, blob in files.items():
        atomic_write_bytes(dest / name, blob)
    return dest
