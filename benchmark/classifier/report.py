"""The classifier track's report: node metrics → the shared tidy table → report files.

Rows of the tidy table (columns :data:`benchmark.analysis.TIDY_COLUMNS`), one per student replicate:

* ``teacher_trait="aux"``: students distilled through the auxiliary logits only (the subliminal channel);
* ``teacher_trait="all_logits"``: the positive control (all 10 + m logits);
* ``teacher_trait="baseline"``: the untrained student base (``teacher_base=""``, ``relation=""``), the
  reference every effect is measured from (effect = accuracy − reference, i.e. ``control="baseline"``).

``value`` is test accuracy in percent, ``target`` is ``"digits"``, ``metric`` is ``"accuracy"``.

The shared report code (:mod:`benchmark.report`) writes the common files; this module adds the track's own
views: raw-accuracy matrices with t-intervals over seeds for both channels (``accuracy_aux.csv``,
``accuracy_all_logits.csv``, ``effect_*.csv``), their heatmaps (``heatmap_accuracy.png``,
``heatmap_all_logits.png``; the shared ``heatmap.png`` is accuracy − untrained reference), ``classifier.md``
and ``classifier_summary.json``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.report import write_report
from benchmark.store import atomic_write_json, atomic_write_text

__all__ = [
    "CHANCE",
    "METRIC",
    "TARGET",
    "accuracy_matrix",
    "mean_ci",
    "tidy_rows",
    "wide",
    "write_classifier_report",
]

METRIC = "accuracy"
TARGET = "digits"
#: Chance accuracy on 10 balanced classes, in percent.
CHANCE = 10.0


def _id(key: str) -> str:
    """Node id from a store key ``<kind>/<name>-<id>``."""
    return key.rsplit("-", 1)[-1]


def tidy_rows(spec: dict[str, Any], metrics: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Build the tidy table from the report node's spec and every upstream node's metrics.

    Args:
        spec: the report node's spec (cells, bases, teacher nodes, suite name).
        metrics: node key -> that node's ``metrics.json``.
    """
    rows: list[dict[str, Any]] = []
    common = {"suite": spec["suite"], "track": "classifier", "target": TARGET, "metric": METRIC}
    for cell in spec["cells"]:
        m = metrics[cell["key"]]
        for seed, acc in zip(m["seeds"], m["accuracy"], strict=True):
            rows.append(
                {
                    **common,
                    "teacher_base": cell["teacher_base"],
                    "teacher_trait": cell["teacher_trait"],
                    "student_base": cell["student_base"],
                    "seed": int(seed),
                    "value": float(acc),
                    "relation": cell["relation"],
                    "student_id": _id(cell["key"]),
                    "teacher_id": _id(cell["teacher_key"]),
                }
            )
    for name in spec["students"]:
        key = spec["bases"][name]
        m = metrics[key]
        for seed, acc in zip(m["seeds"], m["accuracy"], strict=True):
            rows.append(
                {
                    **common,
                    "teacher_base": "",
                    "teacher_trait": "baseline",
                    "student_base": name,
                    "seed": int(seed),
                    "value": float(acc),
                    "relation": "",
                    "student_id": _id(key),
                    "teacher_id": "",
                }
            )
    from benchmark.analysis import TIDY_COLUMNS

    return pd.DataFrame(rows, columns=list(TIDY_COLUMNS))


def mean_ci(values: Any, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval over seeds (NaN interval for one value)."""
    from scipy import stats

    v = pd.Series(values, dtype=float).dropna()
    n = len(v)
    mean = float(v.mean()) if n else math.nan
    if n < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * v.std(ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half


def accuracy_matrix(
    df: pd.DataFrame, trait: str, order: list[str], minus_reference: bool = False
) -> pd.DataFrame:
    """Teacher × student table of mean accuracy with 95% t-CIs (long form: one row per cell).

    Args:
        df: the tidy table.
        trait: ``"aux"`` or ``"all_logits"``.
        order: registry order of model names (rows and columns follow it).
        minus_reference: subtract each seed's untrained-student accuracy first (paired by seed).
    """
    d = df[df["teacher_trait"] == trait]
    if minus_reference:
        ref = df[df["teacher_trait"] == "baseline"][["student_base", "seed", "value"]]
        d = d.merge(ref.rename(columns={"value": "reference"}), on=["student_base", "seed"])
        d = d.assign(value=d["value"] - d["reference"])
    rank = {n: i for i, n in enumerate(order)}
    out = []
    for (t, s), g in d.groupby(["teacher_base", "student_base"], sort=False):
        mean, lo, hi = mean_ci(g["value"])
        out.append(
            {
                "teacher_base": t,
                "student_base": s,
                "relation": g["relation"].iloc[0],
                "n_seeds": len(g),
                "mean": round(mean, 3),
                "ci_low": round(lo, 3),
                "ci_high": round(hi, 3),
            }
        )
    res = pd.DataFrame(out)
    if res.empty:
        return res
    res = res.sort_values(["teacher_base", "student_base"], key=lambda c: c.map(rank))
    return res.reset_index(drop=True)


def wide(cells: pd.DataFrame, order: list[str], column: str = "mean") -> pd.DataFrame:
    """Pivot a long accuracy table (from :func:`accuracy_matrix`) to teacher rows × student columns."""
    piv = cells.pivot(index="teacher_base", columns="student_base", values=column)
    piv = piv.reindex(
        index=[n for n in order if n in piv.index], columns=[n for n in order if n in piv.columns]
    )
    piv.index.name, piv.columns.name = "teacher_base", "student_base"
    return piv


def _annot(cells: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """'mean\n[low, high]' strings for heatmap cells."""
    text = cells.assign(
        text=[
            f"{m:.1f}\n[{lo:.0f}, {hi:.0f}]"
            for m, lo, hi in zip(cells["mean"], cells["ci_low"], cells["ci_high"], strict=True)
        ]
    )
    return wide(text, order, "text")


def _markdown(cells: pd.DataFrame, order: list[str]) -> str:
    """Matrix of 'mean [low, high]' strings as a Markdown table."""
    lines = ["| teacher \\ student | " + " | ".join(order) + " |", "|---" * (len(order) + 1) + "|"]
    for t in order:
        sub = cells[cells["teacher_base"] == t]
        if sub.empty:
            continue
        row = []
        for s in order:
            c = sub[sub["student_base"] == s]
            if c.empty:
                row.append("")
                continue
            r = c.iloc[0]
            txt = f"{r['mean']:.1f} [{r['ci_low']:.1f}, {r['ci_high']:.1f}]"
            row.append(f"**{txt}**" if r["relation"] == "same" else txt)
        lines.append(f"| {t} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def write_classifier_report(
    outdir: Path, df: pd.DataFrame, spec: dict[str, Any], metrics: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Write the shared report files plus the track's accuracy views into ``outdir``; return a summary."""
    outdir = Path(outdir)
    order = [n for n in spec["order"] if n in set(spec["teachers"]) | set(spec["students"])]
    teacher_acc = {name: metrics[key]["accuracy"] for name, key in spec["teacher_nodes"].items()}
    reference = {name: metrics[spec["bases"][name]]["accuracy"] for name in spec["students"]}
    meta = {
        "track": "classifier",
        "suite": spec["suite"],
        "seeds": spec["seeds"],
        "data": spec["data"],
        "settings": spec["settings"],
        "models": spec["describe"],
        "lineage": spec["lineage"],
        "teacher_accuracy": teacher_acc,
        "reference_accuracy": reference,
        "chance": CHANCE,
    }

    views: dict[str, pd.DataFrame] = {}
    for trait in ("aux", "all_logits"):
        if (df["teacher_trait"] == trait).any():
            views[f"accuracy_{trait}"] = accuracy_matrix(df, trait, order)
            views[f"effect_{trait}"] = accuracy_matrix(df, trait, order, minus_reference=True)
    heatmaps: dict[str, tuple[pd.DataFrame, dict[str, Any]]] = {
        "accuracy": (
            wide(views["accuracy_aux"], order),
            {
                "annot_df": _annot(views["accuracy_aux"], order),
                "center": None,
                "fmt": "",
                "title": "aux-only students: test accuracy % (95% CI)",
                "cbar_label": "accuracy %",
                "lineage": spec["lineage"],
            },
        ),
    }
    if "accuracy_all_logits" in views:
        heatmaps["all_logits"] = (
            wide(views["accuracy_all_logits"], order),
            {
                "annot_df": _annot(views["accuracy_all_logits"], order),
                "center": None,
                "fmt": "",
                "title": "all-logit control students: test accuracy % (95% CI)",
                "cbar_label": "accuracy %",
                "lineage": spec["lineage"],
            },
        )
    # The shared statistics see aux students against the untrained reference (control="baseline"): effect =
    # accuracy − reference. The all-logit controls are left out of that call because the shared analysis
    # would count them as "other-trait" students of the cell, which they are not; they are shown in their
    # own heatmap and tables, and tidy.csv is rewritten with every row afterwards.
    analysed = df[df["teacher_trait"] != "all_logits"]
    write_report(
        outdir,
        analysed,
        suite=spec["suite"],
        order=order,
        lineage=spec["lineage"],
        metric=METRIC,
        control="baseline",
        treated="aux",
        track="classifier",
        meta=meta,
        extra_heatmaps=heatmaps,
    )
    atomic_write_text(outdir / "tidy.csv", df.to_csv(index=False))
    for name, table in views.items():
        atomic_write_text(outdir / f"{name}.csv", table.to_csv(index=False))
    md = [
        f"# {spec['suite']}: classifier track accuracy tables",
        "",
        "Mean test accuracy (%) over seeds with 95% t-intervals; bold = same model; chance = 10%.",
        "",
    ]
    titles = {
        "accuracy_aux": "Aux-only students",
        "effect_aux": "Aux-only students minus untrained reference",
        "accuracy_all_logits": "All-logit positive control",
        "effect_all_logits": "All-logit control minus untrained reference",
    }
    for name, table in views.items():
        md += [f"## {titles[name]}", "", _markdown(table, order), ""]
    md += [
        "## Teachers and references",
        "",
        "| model | teacher accuracy | untrained reference |",
        "|---|---|---|",
    ]
    for n in order:
        t = f"{mean_ci(teacher_acc[n])[0]:.1f}" if n in teacher_acc else ""
        r = f"{mean_ci(reference[n])[0]:.1f}" if n in reference else ""
        md.append(f"| {n} | {t} | {r} |")
    atomic_write_text(outdir / "classifier.md", "\n".join(md) + "\n")
    by_rel = {}
    aux = views["accuracy_aux"]
    for rel in ("same", "sibling", "unrelated"):
        vals = df[(df["teacher_trait"] == "aux") & (df["relation"] == rel)]["value"]
        if len(vals):
            mean, lo, hi = mean_ci(vals)
            by_rel[rel] = {
                "n_cells": int((aux["relation"] == rel).sum()),
                "mean": round(mean, 3),
                "ci_low": round(lo, 3),
                "ci_high": round(hi, 3),
            }
    summary = {"rows": len(df), "accuracy_by_relation": by_rel, "aux_cells": aux.to_dict(orient="records")}
    atomic_write_json(outdir / "classifier_summary.json", summary)
    return {"rows": len(df), "accuracy_by_relation": by_rel}
