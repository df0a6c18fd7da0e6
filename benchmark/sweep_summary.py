"""The summary of a sweep's published levels (``results/suites/<sweep>/``; :mod:`benchmark.sweep` expands and plans
them): ``summary.csv`` (one row per level, :mod:`benchmark.analysis.sweep`), ``dose_response.png``, ``report.md`` and
``sweep.json``, each checked against its schema (:mod:`benchmark.bundle.sweep`) before it is written.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmark.bundle.sweep import SummaryRow, SweepSummary, summary_rows
from benchmark.sweep import SUMMARY_COLUMNS, Sweep

__all__ = ["write_sweep_summary"]


def _level_rows(sweep: Sweep, results: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The summary's rows, one per level, from the levels' published files."""
    from benchmark.analysis.pairs import contrast_values, pair_design
    from benchmark.analysis.sweep import diagonal_units, remaining_table
    from benchmark.group_summary import read_part

    data = {lv.name: read_part(results / lv.name) for lv in sweep.levels}
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
