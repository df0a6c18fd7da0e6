"""Report views of an :class:`~benchmark.analysis.Analysis`: heatmaps, Markdown/HTML pages and one-line readings.

Nothing here computes a statistic: every number shown was computed by :mod:`benchmark.analysis` (columns of the
cell table, entries of the fit, the track's extra views); this module only reshapes, formats and draws them.
Plot functions return a matplotlib Figure and text functions return strings, without I/O. Only
:func:`write_report` touches the disk: it renders every file in memory first (:func:`render_report`), then
writes each one atomically, so a rendering failure never leaves a half-written report.

matplotlib and seaborn are imported inside the functions that draw, keeping ``import benchmark.report``
light; figures are built with ``matplotlib.figure.Figure`` directly, so no pyplot state or GUI backend is
involved.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from benchmark.analysis import RELATIONS, Analysis, ClassifierExtras, LMExtras
from benchmark.analysis.common import ordered_levels
from benchmark.errors import UserError
from benchmark.files import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "accuracy_grid",
    "capability_section",
    "classifier_heatmaps",
    "classifier_markdown",
    "figure_png",
    "heatmap_figure",
    "html_page",
    "html_report",
    "lm_fit_lines",
    "lm_matrix_text",
    "lm_traits",
    "markdown_tables",
    "md_table",
    "placebo_reading",
    "readings",
    "render_report",
    "report_markdown",
    "significance_marks",
    "write_report",
]

_P_STRONG, _P_WEAK = 0.01, 0.05  # "**" and "*" thresholds
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_REPLICATE_CI = " - 95% t-intervals over replicate indices."  # how the LM relation means' CIs are made
_RELATION_LABEL = {"same": "Same-base", "sibling": "sibling (shared init)", "unrelated": "unrelated"}

#: A heatmap to draw: the matrix and :func:`heatmap_figure` keyword arguments.
Heatmap = tuple[pd.DataFrame, Mapping[str, Any]]


# --------------------------------------------------------------------------------------------
# formatting helpers
# --------------------------------------------------------------------------------------------


def significance_marks(p: float) -> str:
    """``"**"`` for p < 0.01, ``"*"`` for p < 0.05, else ``""`` (also for NaN)."""
    p = _fl(p)
    if not math.isfinite(p):
        return ""
    return "**" if p < _P_STRONG else ("*" if p < _P_WEAK else "")


def _fl(x: Any) -> float:
    """Float or NaN (None comes back from fit.json for NaN)."""
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def _num(x: Any, digits: int = 3, sign: bool = False) -> str:
    v = _fl(x)
    if not math.isfinite(v):
        return "—"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def _pval(p: Any) -> str:
    v = _fl(p)
    if not math.isfinite(v):
        return "—"
    return f"{v:.1e}" if v < 1e-3 else f"{v:.3f}"


def _ci(lo: Any, hi: Any, digits: int = 3) -> str:
    if not (math.isfinite(_fl(lo)) and math.isfinite(_fl(hi))):
        return "[—]"
    return f"[{_num(lo, digits)}, {_num(hi, digits)}]"


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def _grid(cells: pd.DataFrame, column: str, order: Sequence[str] | None, target: str) -> pd.DataFrame:
    """Teacher × student table of one cell-table column for one target, in registry order.

    A reshape, not an aggregate: one suite, track and target hold one row per (teacher, student).
    """
    sub = cells[cells["target"] == target]
    out = sub.pivot(index="teacher_base", columns="student_base", values=column)
    rows = ordered_levels(sub["teacher_base"], order)
    cols = ordered_levels(sub["student_base"], order)
    out = out.reindex(index=rows, columns=cols).astype(float)
    out.index.name, out.columns.name = "teacher_base", "student_base"
    return out


# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------


def heatmap_figure(
    matrix_df: pd.DataFrame,
    annot_df: pd.DataFrame | None = None,
    sig_df: pd.DataFrame | None = None,
    lineage: Mapping[str, str] | None = None,
    title: str = "",
    center: float | None = 0.0,
    fmt: str = ".2f",
    cbar_label: str = "",
    cmap: str | None = None,
) -> Figure:
    """Teacher × student heatmap with effect annotations, significance marks and lineage groups.

    Args:
        matrix_df: Teacher bases (rows) × student bases (columns), already in registry order (see
            :func:`benchmark.analysis.matrix`); the order is kept as given.
        annot_df: Values (or preformatted strings) to print in the cells; default ``matrix_df``.
        sig_df: p-values aligned with ``matrix_df``; adds ``**`` (p < 0.01) / ``*`` (p < 0.05).
        lineage: Base -> init lineage id. Tick labels are colored by lineage, cells whose teacher and
            student share an init are boxed, and a legend names the groups.
        title: Axes title.
        center: Center of a diverging colormap with symmetric limits (effects); ``None`` for a
            sequential colormap (raw accuracies, rates).
        fmt: Number format of the annotations.
        cbar_label: Colorbar label.
        cmap: Colormap name; default ``"RdBu_r"`` when centered, ``"viridis"`` otherwise.

    Returns:
        A matplotlib Figure (not registered with pyplot; nothing is written).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    data = matrix_df.astype(float)
    rows, cols = [str(r) for r in data.index], [str(c) for c in data.columns]
    n_r, n_c = max(len(rows), 1), max(len(cols), 1)
    fig = Figure(figsize=(2.6 + 0.95 * n_c, 1.9 + 0.6 * n_r))
    FigureCanvasAgg(fig)  # a real canvas: text extents need a renderer; no GUI, no pyplot registry
    ax = fig.subplots()
    values = data.to_numpy()
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        ax.set_title(title)
        return fig

    sig = sig_df.reindex(index=data.index, columns=data.columns) if sig_df is not None else None
    labels = _cell_labels(data, annot_df, sig, fmt)
    _draw_cells(ax, data, labels, _color_scale(finite, center, cmap), title, cbar_label)
    bottom = _draw_lineage(fig, ax, rows, cols, lineage) if lineage else 0.0
    if sig is not None:
        ax.annotate(
            "** p<0.01, * p<0.05",
            xy=(1.0, 1.0),
            xycoords="axes fraction",
            xytext=(0, 3),
            textcoords="offset points",
            ha="right",
            va="bottom",
            fontsize=7,
        )
    # one layout pass at the end (constrained layout cannot be switched on after seaborn's colorbar)
    fig.tight_layout(rect=(0.0, bottom, 1.0, 1.0))
    return fig


def _cell_labels(
    data: pd.DataFrame, annot_df: pd.DataFrame | None, sig: pd.DataFrame | None, fmt: str
) -> np.ndarray:
    """The text of each cell: its annotation (formatted number or given string) plus significance marks."""
    annot = annot_df.reindex(index=data.index, columns=data.columns) if annot_df is not None else data
    labels = np.empty(data.shape, dtype=object)
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            a = annot.iat[i, j]
            text = a if isinstance(a, str) else ("" if a is None or not np.isfinite(a) else format(a, fmt))
            labels[i, j] = text + (significance_marks(float(sig.iat[i, j])) if sig is not None else "")
    return labels


def _color_scale(finite: np.ndarray, center: float | None, cmap: str | None) -> dict[str, Any]:
    """seaborn color arguments: symmetric limits around ``center``, or a sequential map when it is None."""
    if center is None:
        return {"cmap": cmap or "viridis"}
    half = float(np.max(np.abs(finite - center))) or 1.0
    return {"vmin": center - half, "vmax": center + half, "center": center, "cmap": cmap or "RdBu_r"}


def _draw_cells(
    ax: Axes, data: pd.DataFrame, labels: np.ndarray, colors: dict[str, Any], title: str, cbar_label: str
) -> None:
    import seaborn as sns

    with warnings.catch_warnings():  # seaborn's own use of a deprecated matplotlib API; not ours to fix
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        sns.heatmap(
            data,
            ax=ax,
            annot=labels,
            fmt="",
            linewidths=0.5,
            linecolor="white",
            square=False,
            cbar_kws={"label": cbar_label},
            annot_kws={"fontsize": 8},
            **colors,
        )
    ax.set_xlabel("student base")
    ax.set_ylabel("teacher base")
    ax.set_title(title)
    for tick in ax.get_xticklabels():  # long model names: anchor rotated labels at their end
        tick.set(rotation=45, ha="right", rotation_mode="anchor")
    ax.tick_params(axis="y", labelrotation=0)


def _draw_lineage(fig: Figure, ax: Axes, rows: list[str], cols: list[str], lineage: Mapping[str, str]) -> float:
    """Color tick labels by init lineage, box shared-init cells, add a legend below the axes.

    Returns:
        The figure fraction the legend takes at the bottom (the layout keeps the axes above it).
    """
    import seaborn as sns
    from matplotlib.patches import Patch, Rectangle

    lin = {b: lineage.get(b, b) for b in [*rows, *cols]}
    groups = list(dict.fromkeys(lin[b] for b in [*rows, *cols]))
    palette = sns.color_palette("tab10", max(len(groups), 1))
    color = {g: palette[k % len(palette)] for k, g in enumerate(groups)}
    for tick in ax.get_xticklabels():
        tick.set_color(color[lin.get(tick.get_text(), tick.get_text())])
    for tick in ax.get_yticklabels():
        tick.set_color(color[lin.get(tick.get_text(), tick.get_text())])
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            if lin[r] == lin[c]:
                ax.add_patch(Rectangle((j, i), 1, 1, fill=False, edgecolor="black", linewidth=1.6))
    bases = list(dict.fromkeys([*rows, *cols]))
    handles = []
    for g in groups:
        members = [b for b in bases if lin[b] == g]
        text = f"{g} (own init)" if members == [g] else f"init {g}: " + ", ".join(members)
        handles.append(Patch(color=color[g], label=text))
    handles.append(Patch(facecolor="none", edgecolor="black", label="boxed: teacher and student share an init"))
    legend_rows = math.ceil(len(handles) / 2)
    legend_h = 0.2 * legend_rows + 0.1  # inches: 7-pt text rows
    w, h = fig.get_size_inches()
    fig.set_size_inches(w, h + legend_h)
    fig.legend(handles=handles, loc="lower center", ncol=min(2, len(handles)), fontsize=7, frameon=False)
    return legend_h / (h + legend_h)


def figure_png(fig: Figure, dpi: int = 120) -> bytes:
    """Render a Figure to PNG bytes in memory."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# readings
# --------------------------------------------------------------------------------------------


def readings(analysis: Analysis, alpha: float = 0.05) -> list[str]:
    """One-line plain-language readings generated from the numbers.

    Args:
        analysis: The cells, fit and drift summary to read (a fit read back from ``fit.json`` works too).
        alpha: Threshold for calling γ's permutation test significant.

    Returns:
        Sentences: lift by relation, γ with its verdict, leave-one-out robustness, generic drift
        (other-trait students), and how many cells are individually significant.
    """
    if _is_replicate_lm(analysis):
        return _lm_readings(analysis, alpha)
    cells, fit = analysis.cells, analysis.fit
    out = _relation_readings(fit.get("by_relation", {}), "mean lift")
    out += _gamma_readings(fit, alpha)
    if analysis.drift:
        out += _drift_readings(analysis.drift, str(cells["control"].iloc[0]))
    if len(cells):
        out.append(_significance_reading(cells, alpha))
    return out


def _gamma_readings(fit: Mapping[str, Any], alpha: float) -> list[str]:
    """γ with its verdict, then how much a single cluster moves it."""
    name = "γ (shared init)" if fit.get("indicator") == "shared_init" else "γ (same base)"
    if not fit.get("identifiable", False):
        return [
            f"{name} is not identifiable: the matrix has no shared-base cells, or too few cells to "
            "separate them from the teacher and student base effects."
        ]
    g, lo, hi, p = (_fl(fit.get(k)) for k in ("gamma", "ci_low", "ci_high", "p_perm"))
    head = f"{name} = {_num(g, sign=True)} {_ci(lo, hi)}, permutation p = {_pval(p)}"
    out = [f"{head} → {_gamma_verdict(lo, hi, p, alpha)}"]
    lmin, lmax = _fl(fit.get("loo_min")), _fl(fit.get("loo_max"))
    if np.isfinite(lmin) and np.isfinite(lmax):
        loo = (
            f"Leave-one-cell-out γ ranges {_num(lmin, sign=True)} (without {fit.get('loo_min_cluster')}) "
            f"to {_num(lmax, sign=True)} (without {fit.get('loo_max_cluster')})"
        )
        out.append(loo + _loo_verdict(g, lmin, lmax, ("the sign of γ", "γ", "the result")))
    return out


def _loo_verdict(g: float, lmin: float, lmax: float, words: tuple[str, str, str]) -> str:
    """How a leave-one-cell-out range bears on γ; ``words`` name (its sign, it, what it drives) in the sentence."""
    sign, it, result = words
    if np.sign(lmin) != np.sign(g) or np.sign(lmax) != np.sign(g):
        return f": a single cell flips {sign} - not robust."
    if g != 0 and min(abs(lmin), abs(lmax)) < 0.5 * abs(g):
        return f": a single cell carries over half of {it} - report it."
    return f": no single cell drives {result}."


def _gamma_verdict(lo: float, hi: float, p: float, alpha: float) -> str:
    sig = bool(np.isfinite(p) and p < alpha)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "no confidence interval (too few cells); read the permutation test alone."
    if lo > 0 and sig:
        return "transfer depends on a shared base."
    if lo > 0:
        return f"suggestive only: the CI excludes 0 but the permutation p is not below {alpha:g}."
    if hi < 0:
        return "shared-base cells lift *less* than the others (the opposite of subliminal learning)."
    verdict = (
        f"no detectable dependence on a shared base: the CI covers 0 (a null at this power, not "
        f"evidence of absence; half-width ±{_num((hi - lo) / 2)})."
    )
    if sig:
        verdict += f" The permutation p is below {alpha:g}: treat as suggestive."
    return verdict


def _drift_readings(drift: Mapping[str, Mapping[str, float]], ctrl: str) -> list[str]:
    """Lift over the control next to lift over other-trait students (:func:`benchmark.analysis.drift_summary`)."""
    out = []
    for gname, d in drift.items():
        eff, eff_o, se = d["effect"], d["effect_vs_other"], d["se_effect"]
        line = (
            f"Other-trait control, {gname} cells: lift {_num(eff, sign=True)} over {ctrl} students, "
            f"{_num(eff_o, sign=True)} over students of other-trait teachers"
        )
        if np.isfinite(se) and eff > 2 * se:  # the lift over control is clearly positive
            if eff_o < 0.5 * eff:
                line += " - over half of it is shared by other-trait students: generic drift, not the trait."
            else:
                line += " - specific to the teacher's trait."
        out.append(line + ("" if line.endswith(".") else "."))
    return out


def _significance_reading(cells: pd.DataFrame, alpha: float) -> str:
    n_sig, n_sig01 = int(cells["significant"].sum()), int(cells["significant_01"].sum())
    alt = cells["alternative"].iloc[0]
    pooled = " pooled with other-trait students" if bool(cells["pooled_controls"].iloc[0]) else ""
    line = (
        f"{n_sig} of {len(cells)} cells significant at p < {alpha:g} ({n_sig01} at p < 0.01; "
        f"{alt} permutation test, treated vs {cells['control'].iloc[0]} students{pooled}; "
        f"no multiple-comparison correction)."
    )
    p_min = cells["p_min"].dropna()
    if len(p_min) and p_min.min() >= alpha:
        line += (
            f" With these group sizes the smallest attainable p is {_pval(p_min.min())}, so no "
            f"single cell can reach p < {alpha:g}; the matrix-level test is γ "
            f"(or add seeds / pool_controls=True)."
        )
    return line


# --------------------------------------------------------------------------------------------
# tables and pages
# --------------------------------------------------------------------------------------------


def _effect_matrix_text(cells: pd.DataFrame, target: str, order: Sequence[str] | None) -> pd.DataFrame:
    """Matrix of "effect [lo, hi]marks" strings for one target, registry order kept."""
    eff = _grid(cells, "effect", order, target)
    lo, hi, p = (_grid(cells, c, order, target) for c in ("ci_low", "ci_high", "p_perm"))
    text = eff.copy().astype(object)
    for r in eff.index:
        for c in eff.columns:
            e = eff.at[r, c]
            text.at[r, c] = (
                "—"
                if not np.isfinite(e)
                else f"{_num(e, sign=True)} {_ci(lo.at[r, c], hi.at[r, c])}{significance_marks(p.at[r, c])}"
            )
    return text


def _cell_rows(cells: pd.DataFrame) -> tuple[list[str], list[list[Any]]]:
    header = [
        "teacher",
        "student",
        "target",
        "relation",
        "seeds",
        "treated",
        "control",
        "other",
        "baseline",
        "effect [95% CI]",
        "p perm",
        "p Welch",
        "vs other [95% CI]",
        "p perm (other)",
    ]
    rows = []
    for r in cells.itertuples(index=False):
        rows.append(
            [
                r.teacher_base,
                r.student_base,
                r.target,
                r.relation,
                r.n_seeds,
                _num(r.mean_treated),
                _num(r.mean_control),
                _num(r.mean_other),
                _num(r.mean_baseline),
                f"{_num(r.effect, sign=True)} {_ci(r.ci_low, r.ci_high)}{significance_marks(r.p_perm)}",
                _pval(r.p_perm),
                _pval(r.p_welch),
                f"{_num(r.effect_vs_other, sign=True)} {_ci(r.ci_low_vs_other, r.ci_high_vs_other)}",
                _pval(r.p_perm_vs_other),
            ]
        )
    return header, rows


def _fit_line(fit: Mapping[str, Any]) -> str:
    if not fit.get("identifiable", False):
        n_cells, n_rows = fit.get("n_cells", 0), fit.get("n_rows", 0)
        return f"γ ({fit.get('indicator')}): not identifiable ({n_cells} cells, {n_rows} runs)."
    ci_how = (
        "CR2 cluster-robust, Bell-McCaffrey df = " + _num(fit.get("df"), 1)
        if fit.get("ci_method") == "cr2"
        else f"cluster bootstrap, {fit.get('n_boot_used')} resamples"
    )
    return (
        f"γ ({fit.get('indicator')}) = {_num(fit['gamma'], sign=True)} {_ci(fit['ci_low'], fit['ci_high'])} "
        f"(95% CI, {ci_how}); permutation p = {_pval(fit['p_perm'])} ({fit.get('alternative')}, "
        f"{fit.get('perm')}, {fit.get('n_perm_used')} permutations); leave-one-cell-out range "
        f"[{_num(fit['loo_min'], sign=True)}, {_num(fit['loo_max'], sign=True)}]; "
        f"{fit.get('n_cells')} cells, {fit.get('n_clusters')} clusters ({fit.get('cluster')}), "
        f"{fit.get('n_rows')} runs."
    )


def _relation_rows(fit: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
    header = ["relation", "cells", "runs", "mean lift [95% CI]"]
    rows = []
    for rel, r in fit.get("by_relation", {}).items():
        if r.get("n_cells"):
            rows.append(
                [
                    rel,
                    r["n_cells"],
                    r["n_rows"],
                    f"{_num(r['mean'], sign=True)} {_ci(r['ci_low'], r['ci_high'])}",
                ]
            )
    return header, rows


def markdown_tables(analysis: Analysis) -> str:
    """Markdown tables: effect matrix per target (with CIs and marks), γ line, lift by relation, cells.

    Args:
        analysis: The cells and fit to show; matrices follow ``analysis.options.order``.

    Returns:
        Markdown text.
    """
    if _is_replicate_lm(analysis):
        return _lm_markdown_tables(analysis)
    cells, fit, order = analysis.cells, analysis.fit, analysis.options.order
    parts: list[str] = []
    for target in sorted(cells["target"].unique()):
        text = _effect_matrix_text(cells, target, order)
        header = ["teacher \\ student", *map(str, text.columns)]
        rows = [[str(idx), *row] for idx, row in zip(text.index, text.to_numpy().tolist(), strict=True)]
        parts.append(
            f"### Effect matrix, target `{target}` (lift over control, 95% CI; ** p<0.01, * p<0.05)\n\n"
            + md_table(header, rows)
        )
    parts.append("### Shared-base effect\n\n" + _fit_line(fit))
    h, r = _relation_rows(fit)
    if r:
        parts.append("### Lift by relation\n\n" + md_table(h, r))
    h, r = _cell_rows(cells)
    parts.append("### Cells\n\n" + md_table(h, r))
    return "\n\n".join(parts) + "\n"


def _displayable(obj: Any) -> Any:
    """A JSON-ready copy of a metadata value for display: NaN -> None, tuples -> lists, numpy -> Python.

    Not :func:`benchmark.files.json_safe`, which drops dict values that are not JSON types: a metadata
    table must show every value a plan put there (tuples and numpy scalars included), not hide it.
    """
    if isinstance(obj, Mapping):
        return {str(k): _displayable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_displayable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _meta_value(v: Any) -> str:
    """One-line text for a metadata value (tables become a size note; the caller writes them out)."""
    if isinstance(v, pd.DataFrame):
        return f"(table: {len(v)} rows × {v.shape[1]} columns)"
    text = v if isinstance(v, str) else json.dumps(_displayable(v), default=str)
    return " ".join(text.split())


def _meta_rows(meta: Mapping[str, Any]) -> list[list[str]]:
    return [[str(k), _meta_value(v)] for k, v in meta.items()]


def report_markdown(analysis: Analysis, meta: Mapping[str, Any], images: Sequence[str] = ()) -> str:
    """Full Markdown report: title, readings, images, tables and run metadata.

    Args:
        analysis: What to report.
        meta: Key/value metadata shown at the end (metric, control, versions, ...).
        images: Relative paths of images to link (e.g. ``["heatmap.png"]``).

    Returns:
        Markdown text.
    """
    lines = [f"# Subliminal transfer: {analysis.suite}", "", "## Readings", ""]
    lines += [f"- {r}" for r in readings(analysis)]
    if images:
        links = [f"![{Path(i).stem}]({i})" for i in images]
        if "heatmap.png" in images and "heatmap_profile.png" in images:  # the two readouts side by side
            pair = [links[list(images).index(n)] for n in ("heatmap.png", "heatmap_profile.png")]
            links = [" ".join(pair)] + [x for x in links if x not in pair]
        lines += ["", "## Heatmaps", "", *links]
    lines += ["", "## Tables", "", markdown_tables(analysis)]
    if meta:
        lines += ["## Run metadata", "", md_table(["key", "value"], _meta_rows(meta)), ""]
    return "\n".join(lines)


def html_report(analysis: Analysis, meta: Mapping[str, Any], images: Mapping[str, bytes] | None = None) -> str:
    """Self-contained HTML page (tables plus PNGs embedded as base64).

    Args:
        analysis: What to report.
        meta: Key/value metadata.
        images: Caption -> PNG bytes (see :func:`figure_png`).

    Returns:
        The HTML document as a string.
    """
    esc = html.escape
    suite, cells, fit, order = analysis.suite, analysis.cells, analysis.fit, analysis.options.order
    body = [f"<h1>Subliminal transfer: {esc(suite)}</h1>", "<h2>Readings</h2><ul>"]
    body += [f"<li>{esc(r)}</li>" for r in readings(analysis)] + ["</ul>"]
    figures = [
        f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
        for caption, png in (images or {}).items()
    ]
    if _is_replicate_lm(analysis):
        # the target-lift and profile heatmaps (the first two figures) side by side
        body.append('<div style="display:flex;flex-wrap:wrap;gap:1em">' + "".join(figures[:2]) + "</div>")
        body += figures[2:] + _lm_html_sections(analysis)
        return html_page(suite, body, meta)
    body += figures
    for target in sorted(cells["target"].unique()):
        text = _effect_matrix_text(cells, target, order)
        body.append(
            f"<h2>Effect matrix, target {esc(str(target))}</h2>"
            "<p>Lift over control with 95% CI; ** p&lt;0.01, * p&lt;0.05.</p>"
            + text.to_html(escape=True, na_rep="—")
        )
    body.append(f"<h2>Shared-base effect</h2><p>{esc(_fit_line(fit))}</p>")
    h, r = _relation_rows(fit)
    if r:
        body.append(
            "<h2>Lift by relation</h2>" + pd.DataFrame(r, columns=h).to_html(index=False, escape=True)
        )
    h, r = _cell_rows(cells)
    body.append("<h2>Cells</h2>" + pd.DataFrame(r, columns=h).to_html(index=False, escape=True))
    return html_page(suite, body, meta)


def html_page(suite: str, body: list[str], meta: Mapping[str, Any]) -> str:
    """The HTML document: the body blocks, then the run metadata."""
    esc = html.escape
    if meta:
        body = body + [
            "<h2>Run metadata</h2>"
            + pd.DataFrame(_meta_rows(meta), columns=["key", "value"]).to_html(index=False, escape=True)
        ]
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:13px;margin:.5em 0}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
        "img{max-width:100%}figcaption{font-size:12px;color:#555}"
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(suite)}</title>'
        f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


# --------------------------------------------------------------------------------------------
# the LM track's replicate-level report
# --------------------------------------------------------------------------------------------


def _is_replicate_lm(analysis: Analysis) -> bool:
    """Whether the analysis is the LM track's replicate-level one (its cell table has placebo rows' column)."""
    return analysis.track == "lm" and "placebo" in analysis.cells.columns


def _trait_cells(cells: pd.DataFrame) -> pd.DataFrame:
    return cells[~cells["placebo"].astype(bool)]


def _lm_grid(cells: pd.DataFrame, column: str, order: Sequence[str] | None, trait: str) -> pd.DataFrame:
    """Teacher × student table of one LM cell-table column for one trait (a reshape: one row per pair)."""
    sub = _trait_cells(cells)
    sub = sub[sub["trait"] == trait]
    out = sub.pivot(index="teacher", columns="student", values=column)
    out = out.reindex(index=ordered_levels(sub["teacher"], order), columns=ordered_levels(sub["student"], order))
    out = out.astype(float)
    out.index.name, out.columns.name = "teacher_base", "student_base"
    return out


def lm_traits(cells: pd.DataFrame, fit: Mapping[str, Any] | None = None) -> list[str]:
    """The traits of the cell table, in the suite's order where the fit records it."""
    present = list(dict.fromkeys(map(str, _trait_cells(cells)["trait"])))
    return ordered_levels(present, (fit or {}).get("traits"))


def _lm_readings(analysis: Analysis, alpha: float) -> list[str]:
    """Readings of the replicate-level LM analysis: definition, relations, γ, profile, placebo, cells."""
    fit, cells = analysis.fit, analysis.cells
    out = [str(fit["lift_definition"])] if fit.get("lift_definition") else []
    out += _relation_readings(fit.get("by_relation", {}), "mean lift", _REPLICATE_CI)
    out += _lm_gamma_readings(fit, "γ (shared init)", alpha)
    same = fit.get("same")
    if same:
        out.append(_lm_fit_line(same, "γ (same base only)"))
    profile = fit.get("profile")
    if profile:
        out += _relation_readings(profile.get("by_relation", {}), "mean profile r", _REPLICATE_CI)
        out += _lm_gamma_readings(profile, "Profile γ (shared init, on the whole-profile correlation)", alpha)
    out.append(placebo_reading(fit))
    trait = _trait_cells(cells)
    if len(trait):
        n_p, n_q = int((trait["p"] < alpha).sum()), int((trait["q"] < alpha).sum())
        line = (
            f"{n_p} of {len(trait)} cells have p < {alpha:g} and {n_q} have q < {alpha:g} "
            f"({trait['alternative'].iloc[0]} permutation tests over replicates; q: Benjamini-Hochberg over the "
            f"{len(trait)} cells)"
        )
        p_min = trait["p_min"].dropna()
        if len(p_min):
            line += f"; the smallest attainable p is {_pval(p_min.min())}"
        out.append(
            line + ". Per-cell effects include drift of random sign that recurs in every replicate, so the "
            "verdict on transfer rests on γ and the relation means."
        )
    return out


def _relation_readings(by_rel: Mapping[str, Any], what: str, end: str = ".") -> list[str]:
    """One line: each relation's mean ``what`` with its CI and cell count, ending with ``end``."""
    parts = []
    for rel in RELATIONS:
        r = by_rel.get(rel)
        if r and r.get("n_cells"):
            parts.append(
                f"{_RELATION_LABEL[rel]} cells: {what} {_num(r['mean'], sign=True)} {_ci(r['ci_low'], r['ci_high'])} "
                f"(n={r['n_cells']})"
            )
    return ["; ".join(parts) + end] if parts else []


def _lm_fit_line(fit: Mapping[str, Any], name: str) -> str:
    """γ, its CR2 interval, the Freedman-Lane p and the leave-one-cell-out range, in one line."""
    if not fit.get("identifiable", False):
        return (
            f"{name}: not identifiable ({fit.get('n_cells')} cells): no shared cells, or too few to separate them "
            "from the teacher and student base effects."
        )
    return (
        f"{name} = {_num(fit['gamma'], sign=True)} {_ci(fit['ci_low'], fit['ci_high'])} (95% CI, CR2, "
        f"Bell-McCaffrey df = {_num(fit.get('df'), 1)}), Freedman-Lane p = {_pval(fit['p_perm'])} "
        f"({fit.get('alternative')}, {fit.get('n_perm_used')} permutations); leave-one-cell-out range "
        f"[{_num(fit['loo_min'], sign=True)}, {_num(fit['loo_max'], sign=True)}]; {fit.get('n_cells')} cells, "
        f"{fit.get('n_clusters')} clusters (teacher base × replicate), {fit.get('n_rows')} rows"
    )


def _lm_gamma_readings(fit: Mapping[str, Any], name: str, alpha: float) -> list[str]:
    if not fit.get("identifiable", False):
        return [_lm_fit_line(fit, name)]
    lo, hi, p = (_fl(fit.get(k)) for k in ("ci_low", "ci_high", "p_perm"))
    out = [f"{_lm_fit_line(fit, name)} → {_gamma_verdict(lo, hi, p, alpha)}"]
    g, lmin, lmax = (_fl(fit.get(k)) for k in ("gamma", "loo_min", "loo_max"))
    if np.isfinite(lmin) and np.isfinite(lmax):
        loo = (
            f"Leaving one cell out, {name} ranges {_num(lmin, sign=True)} (without {fit.get('loo_min_cell')}) to "
            f"{_num(lmax, sign=True)} (without {fit.get('loo_max_cell')})"
        )
        out.append(loo + _loo_verdict(g, lmin, lmax, ("its sign", "it", "it")))
    return out


def placebo_reading(fit: Mapping[str, Any]) -> str:
    n = int(fit.get("placebo_n_rows") or 0)
    if not n:
        return "No A/A placebo arm: the calibration check of the per-cell test did not run."
    arms = ", ".join(fit.get("placebo_arms") or [])
    return (
        f"Placebo (A/A: {arms} against the same recipe's trait arm): {fit.get('placebo_n_p05')} of {n} rows have "
        f"p < 0.05, a false-positive rate of {100 * _fl(fit.get('placebo_fpr')):.1f}% (nominal 5%); "
        f"{fit.get('placebo_n_q05')} have q < 0.05."
    )


def _effect_text(r: Any) -> str:
    return f"{_num(r.effect, sign=True)} {_ci(r.ci_low, r.ci_high)}{significance_marks(r.p)}"


def lm_matrix_text(cells: pd.DataFrame, trait: str, order: Sequence[str] | None) -> pd.DataFrame:
    """Teacher × student "effect [lo, hi]marks" strings for one trait, registry order kept."""
    sub = _trait_cells(cells)
    sub = sub[sub["trait"] == trait].assign(text=lambda d: [_effect_text(r) for r in d.itertuples(index=False)])
    text = sub.pivot(index="teacher", columns="student", values="text")
    text = text.reindex(index=ordered_levels(sub["teacher"], order), columns=ordered_levels(sub["student"], order))
    return text.fillna("—")


def _lm_cell_rows(cells: pd.DataFrame) -> tuple[list[str], list[list[Any]]]:
    header = [
        "teacher", "student", "trait", "relation", "replicates (treated / control)", "treated", "control",
        "effect [95% CI]", "p", "q", "profile r [95% CI]", "profile r without traits [95% CI]",
    ]
    rows = [
        [
            r.teacher, r.student, r.trait, r.relation, f"{r.n_reps} / {r.n_control_reps}", _num(r.mean_treated),
            _num(r.mean_control), _effect_text(r), _pval(r.p), _pval(r.q),
            f"{_num(r.profile_r, sign=True)} {_ci(r.profile_ci_low, r.profile_ci_high)}",
            f"{_num(r.profile_r_ex, sign=True)} {_ci(r.profile_ex_ci_low, r.profile_ex_ci_high)}",
        ]
        for r in _trait_cells(cells).itertuples(index=False)
    ]
    return header, rows


def _lm_placebo_rows(cells: pd.DataFrame) -> tuple[list[str], list[list[Any]]]:
    header = ["teacher", "student", "readout", "treated arm", "control arm", "replicates", "effect [95% CI]", "p", "q"]
    rows = [
        [
            r.teacher, r.student, r.target, r.treated_arm, r.control_arms, f"{r.n_reps} / {r.n_control_reps}",
            _effect_text(r), _pval(r.p), _pval(r.q),
        ]
        for r in cells[cells["placebo"].astype(bool)].itertuples(index=False)
    ]
    return header, rows


def _lm_relation_rows(fit: Mapping[str, Any], key: str = "by_relation",
                      label: str = "relation") -> tuple[list[str], list[list[Any]]]:
    """Rows of a group summary of fit.json: ``by_relation`` (relations in order) or ``by_sibling_pair``."""
    header = [label, "cells", "replicates", "mean lift [95% CI]", "p < 0.05", "q < 0.05",
              "mean profile r [95% CI]"]
    profile = (fit.get("profile") or {}).get(key, {})
    rows = []
    for rel in (RELATIONS if key == "by_relation" else list(fit.get(key) or {})):
        r = (fit.get(key) or {}).get(rel)
        if not r:
            continue
        pr = profile.get(rel)
        rows.append(
            [
                rel, r["n_cells"], r["n_reps"], f"{_num(r['mean'], sign=True)} {_ci(r['ci_low'], r['ci_high'])}",
                f"{r['n_p05']} ({100 * _fl(r['frac_p05']):.0f}%)", f"{r['n_q05']} ({100 * _fl(r['frac_q05']):.0f}%)",
                f"{_num(pr['mean'], sign=True)} {_ci(pr['ci_low'], pr['ci_high'])}" if pr else "—",
            ]
        )
    return header, rows


def _teacher_rows(teachers: pd.DataFrame) -> tuple[list[str], list[list[Any]]]:
    """The teachers table as given (one row per teacher replicate and target), numbers formatted."""

    def fmt(v: Any) -> str:
        if isinstance(v, bool | np.bool_) or isinstance(v, str):
            return str(v)
        if isinstance(v, int | np.integer):
            return str(int(v))
        return _num(v, 4) if isinstance(v, float | np.floating) else str(v)

    return list(map(str, teachers.columns)), [[fmt(v) for v in row] for row in teachers.itertuples(index=False)]


def capability_section(tidy: pd.DataFrame) -> tuple[str, str, list[str], list[list[Any]]] | None:
    """The capability side-checks (docs/misalignment.md): students' readout on the channel's own task, per cell.

    A student must not be merely broken: a trait lift means little if the student lost the channel's skill, so each
    (teacher base, arm, student base) row shows its students' capability next to their untrained base's and how
    many fell below :data:`benchmark.lm.tidy.CAPABILITY_COLLAPSE` of it. None (no section) when the suite has no
    capability readout, so reports of suites without one are unchanged.
    """
    from benchmark.lm.tidy import CAPABILITY_COLLAPSE, capability_flags

    flags = capability_flags(tidy) if "metric" in tidy.columns else pd.DataFrame()
    if flags.empty:
        return None
    keys = ["metric", "teacher_base", "teacher_trait", "student_base"]
    rows = []
    for key, g in flags.groupby(keys, sort=True):
        rows.append([*map(str, key), str(len(g)), _num(g["value"].mean()), _num(g["value"].min()),
                     _num(g["base_value"].iloc[0]), str(int(g["collapsed"].sum()))])
    n_bad, n = int(flags["collapsed"].sum()), int(flags["student_id"].nunique())
    intro = (f"Each student's readout on the channel's own held-out items (greedy) next to its untrained base's; "
             f"a student below {CAPABILITY_COLLAPSE:g} x its base's readout is flagged as collapsed. "
             f"{n_bad} of {len(flags)} student readouts ({n} students) collapsed.")
    header = ["capability", "teacher base", "arm", "student base", "students", "mean", "min", "base", "collapsed"]
    return "Capability side-checks", intro, header, rows


def lm_fit_lines(fit: Mapping[str, Any]) -> list[str]:
    """Every γ fit of the LM analysis, one line each."""
    lines = [_lm_fit_line(fit, "γ (shared init)")]
    if fit.get("same"):
        lines.append(_lm_fit_line(fit["same"], "γ (same base only)"))
    profile = fit.get("profile")
    if profile:
        lines.append(_lm_fit_line(profile, "Profile γ (shared init)"))
        if profile.get("same"):
            lines.append(_lm_fit_line(profile["same"], "Profile γ (same base only)"))
    return [line + "." for line in lines]


def _lm_sections(analysis: Analysis) -> list[tuple[str, str, list[str], list[list[Any]]]]:
    """The LM report's sections as (title, intro, header, rows): matrices, γ, relations, cells, placebo, teachers."""
    cells, fit, order = analysis.cells, analysis.fit, analysis.options.order
    out = []
    for trait in lm_traits(cells, fit):
        text = lm_matrix_text(cells, trait, order)
        rows = [[str(i), *row] for i, row in zip(text.index, text.to_numpy().tolist(), strict=True)]
        out.append((f"Effect matrix, trait `{trait}`", "Lift over control, 95% Welch CI; ** p<0.01, * p<0.05.",
                    ["teacher \\ student", *map(str, text.columns)], rows))
    out.append(("Shared-base effect", " ".join(lm_fit_lines(fit)), [], []))
    h, r = _lm_relation_rows(fit)
    out.append(("Lift by relation", "Means over cells; 95% t-intervals over replicate indices.", h, r))
    h, r = _lm_relation_rows(fit, "by_sibling_pair", "shared-init pair")
    if r:
        out.append(("Shared-init pairs", "Sibling cells of each pair of bases (both directions, both traits): the "
                    "lineage gradient. Means over cells; 95% t-intervals over replicate indices.", h, r))
    h, r = _lm_cell_rows(cells)
    out.append(("Cells", str(fit.get("lift_definition") or ""), h, r))
    h, r = _lm_placebo_rows(cells)
    if r:
        out.append(("Placebo (A/A) rows", placebo_reading(fit), h, r))
    capability = capability_section(analysis.tidy)
    if capability is not None:
        out.append(capability)
    extras = analysis.extras
    if isinstance(extras, LMExtras) and not extras.teachers.empty:
        h, r = _teacher_rows(extras.teachers)
        out.append(("Teachers", "One row per teacher replicate and readout target: its own readout and its dataset.",
                    h, r))
    return out


def _lm_markdown_tables(analysis: Analysis) -> str:
    parts = []
    for title, intro, header, rows in _lm_sections(analysis):
        text = f"### {title}\n\n{intro}" if intro else f"### {title}"
        parts.append(text + ("\n\n" + md_table(header, rows) if header else ""))
    return "\n\n".join(parts) + "\n"


def _lm_html_sections(analysis: Analysis) -> list[str]:
    esc = html.escape
    body = []
    for title, intro, header, rows in _lm_sections(analysis):
        block = f"<h2>{esc(title.replace('`', ''))}</h2>" + (f"<p>{esc(intro)}</p>" if intro else "")
        if header:
            block += pd.DataFrame(rows, columns=header).to_html(index=False, escape=True)
        body.append(block)
    return body


def _lm_heatmaps(analysis: Analysis) -> dict[str, Heatmap]:
    """Effect (mean over traits, then one per trait when several) and mean profile correlation heatmaps.

    Keys: ``heatmap``, ``heatmap_profile`` (drawn beside it), ``heatmap_<trait>``.
    """
    o, cells = analysis.options, analysis.cells
    traits = lm_traits(cells, analysis.fit)
    label = f"{o.metric} lift (replicates, treated − control)"
    out: dict[str, Heatmap] = {}
    if len(traits) == 1:
        out["heatmap"] = (analysis.matrix, {"sig_df": _lm_grid(cells, "p", o.order, traits[0]),
                                            "title": f"{o.suite}: {o.metric} lift, trait {traits[0]}",
                                            "cbar_label": label})
    else:
        out["heatmap"] = (analysis.matrix, {"title": f"{o.suite}: {o.metric} lift, mean over {len(traits)} traits",
                                            "cbar_label": label})
    extras = analysis.extras
    if isinstance(extras, LMExtras) and extras.profile_matrix is not None:
        out["heatmap_profile"] = (extras.profile_matrix, {"title": f"{o.suite}: mean profile r (students vs teacher)",
                                                          "cbar_label": "profile correlation r"})
    if len(traits) > 1:
        for t in traits:
            if _NAME_RE.match(t) and t != "profile":
                out[f"heatmap_{t}"] = (_lm_grid(cells, "effect", o.order, t),
                                       {"sig_df": _lm_grid(cells, "p", o.order, t),
                                        "title": f"{o.suite}: {o.metric} lift, trait {t}", "cbar_label": label})
    return out


# --------------------------------------------------------------------------------------------
# track views
# --------------------------------------------------------------------------------------------

_ACCURACY_TITLES = {
    "accuracy_aux": "Aux-only students",
    "effect_aux": "Aux-only students minus untrained reference",
    "accuracy_all_logits": "All-logit positive control",
    "effect_all_logits": "All-logit control minus untrained reference",
}
_ACCURACY_HEATMAPS = {  # heatmap name -> (accuracy table, title)
    "accuracy": ("accuracy_aux", "aux-only students: test accuracy % (95% CI)"),
    "all_logits": ("accuracy_all_logits", "all-logit control students: test accuracy % (95% CI)"),
}


def classifier_heatmaps(analysis: Analysis) -> dict[str, Heatmap]:
    """Raw-accuracy heatmaps of each classifier channel present (``heatmap_accuracy``, ``heatmap_all_logits``)."""
    extras = analysis.extras
    if not isinstance(extras, ClassifierExtras):
        return {}
    order = analysis.options.order
    out: dict[str, Heatmap] = {}
    for name, (view, title) in _ACCURACY_HEATMAPS.items():
        if view not in extras.accuracy:
            continue
        table = extras.accuracy[view]
        kwargs = {
            "annot_df": _accuracy_annotations(table, order),
            "center": None,
            "fmt": "",
            "title": title,
            "cbar_label": "accuracy %",
            "lineage": analysis.options.lineage,
        }
        out[name] = (accuracy_grid(table, order), kwargs)
    return out


def classifier_markdown(analysis: Analysis) -> str:
    """``classifier.md``: every accuracy table, then each model's teacher and untrained-reference accuracy."""
    extras = analysis.extras
    if not isinstance(extras, ClassifierExtras):
        raise UserError(f"classifier_markdown: the analysis of {analysis.suite!r} has no classifier views")
    order = analysis.options.order
    md = [
        f"# {analysis.suite}: classifier track accuracy tables",
        "",
        "Mean test accuracy (%) over seeds with 95% t-intervals; bold = same model; chance = 10%.",
        "",
    ]
    for name, table in extras.accuracy.items():
        md += [f"## {_ACCURACY_TITLES[name]}", "", _accuracy_markdown(table, order), ""]
    md += [
        "## Teachers and references",
        "",
        "| model | teacher accuracy | untrained reference |",
        "|---|---|---|",
    ]
    for n in order:
        t = f"{extras.teacher_accuracy[n]:.1f}" if n in extras.teacher_accuracy else ""
        r = f"{extras.reference_accuracy[n]:.1f}" if n in extras.reference_accuracy else ""
        md.append(f"| {n} | {t} | {r} |")
    return "\n".join(md) + "\n"


def accuracy_grid(table: pd.DataFrame, order: Sequence[str], column: str = "mean") -> pd.DataFrame:
    """Pivot a long accuracy table (:func:`benchmark.analysis.accuracy_matrix`) to teacher rows × student columns."""
    piv = table.pivot(index="teacher_base", columns="student_base", values=column)
    piv = piv.reindex(
        index=[n for n in order if n in piv.index], columns=[n for n in order if n in piv.columns]
    )
    piv.index.name, piv.columns.name = "teacher_base", "student_base"
    return piv


def _accuracy_annotations(table: pd.DataFrame, order: Sequence[str]) -> pd.DataFrame:
    """'mean\\n[low, high]' strings for heatmap cells."""
    text = table.assign(
        text=[
            f"{m:.1f}\n[{lo:.0f}, {hi:.0f}]"
            for m, lo, hi in zip(table["mean"], table["ci_low"], table["ci_high"], strict=True)
        ]
    )
    return accuracy_grid(text, order, "text")


def _accuracy_markdown(table: pd.DataFrame, order: Sequence[str]) -> str:
    """Matrix of 'mean [low, high]' strings as a Markdown table; same-model cells in bold."""
    lines = ["| teacher \\ student | " + " | ".join(order) + " |", "|---" * (len(order) + 1) + "|"]
    for t in order:
        sub = table[table["teacher_base"] == t]
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


def _lm_metadata(extras: LMExtras) -> dict[str, Any]:
    """The LM views' lines of the metadata table: teachers' trait strength and the same-model γ."""
    out: dict[str, Any] = {}
    if extras.teacher_strength is not None:
        out["teachers' own P(trait | candidates), mean"] = extras.teacher_strength
    same = extras.same_model_fit
    if same is not None and same.get("gamma") is not None:
        out["γ (same model only, vs other-trait students)"] = (
            f"{same['gamma']:+.3f} [{same['ci_low']:+.3f}, {same['ci_high']:+.3f}], "
            f"permutation p = {same['p_perm']:.3f}"
        )
    return out


# --------------------------------------------------------------------------------------------
# rendering and writing
# --------------------------------------------------------------------------------------------


def write_report(
    outdir: Path | str,
    analysis: Analysis,
    *,
    meta: Mapping[str, Any] | None = None,
    extra_heatmaps: Mapping[str, Heatmap] | None = None,
) -> dict[str, Path]:
    """Render the report of an analysis (:func:`render_report`), then write each file atomically.

    The analysis's own files (tidy.csv, cells.csv, ...) are written by :func:`benchmark.analysis.write_analysis`.

    Args:
        outdir: Output directory (created if missing).
        analysis: What to render.
        meta: Extra metadata shown in the reports.
        extra_heatmaps: See :func:`render_report`.

    Returns:
        Key -> path of every file written (see :func:`render_report`).

    Raises:
        UserError: A bad extra-heatmap name (nothing is written).
    """
    files = render_report(analysis, meta=meta, extra_heatmaps=extra_heatmaps)
    out = Path(outdir)
    paths: dict[str, Path] = {}
    for key, (name, data) in files.items():
        paths[key] = out / name
        atomic_write_bytes(paths[key], data)
    return paths


def render_report(
    analysis: Analysis,
    *,
    meta: Mapping[str, Any] | None = None,
    extra_heatmaps: Mapping[str, Heatmap] | None = None,
) -> dict[str, tuple[str, bytes]]:
    """Render every report file of an analysis in memory.

    Files: ``heatmap.png`` (effect, mean over targets), ``heatmap_<target>.png`` per target when there are
    several, ``heatmap_<name>.png`` per track or extra heatmap (classifier: ``accuracy``, ``all_logits``),
    ``report.md``, ``index.html``, and for the classifier track ``classifier.md``.

    Args:
        analysis: What to render (order, lineage and run settings come from ``analysis.options``).
        meta: Extra metadata shown in the reports (after the analysis options; same keys replace them).
        extra_heatmaps: Name -> (matrix DataFrame, :func:`heatmap_figure` keyword arguments), e.g.
            ``{"accuracy": (acc, {"center": None, "fmt": ".2f", "title": "accuracy"})}``.

    Returns:
        Key (``heatmap``, ``heatmap_<x>``, ``report_md``, ``index_html``, ``classifier_md``) -> (file name,
        bytes).

    Raises:
        UserError: An extra heatmap name that is not a plain file-name part.
    """
    heatmaps = {**classifier_heatmaps(analysis), **dict(extra_heatmaps or {})}
    if _is_replicate_lm(analysis):
        heatmaps = {**_lm_heatmaps(analysis), **heatmaps}
    for name in heatmaps:
        if not _NAME_RE.match(name):
            raise UserError(f"extra heatmap name {name!r}: use letters, digits, '.', '_' or '-'")
    pngs, captions = _render_heatmaps(analysis, heatmaps)
    meta_all = _run_metadata(analysis, meta)
    images = [f"{k}.png" for k in pngs]
    files = {key: (f"{key}.png", png) for key, png in pngs.items()}
    files["report_md"] = ("report.md", report_markdown(analysis, meta_all, images).encode())
    files["index_html"] = ("index.html", html_report(analysis, meta_all, _by_caption(pngs, captions)).encode())
    if isinstance(analysis.extras, ClassifierExtras):
        files["classifier_md"] = ("classifier.md", classifier_markdown(analysis).encode())
    return files


def _run_metadata(analysis: Analysis, meta: Mapping[str, Any] | None) -> dict[str, Any]:
    """The metadata table: the analysis options, the caller's entries (which win), then the track's lines."""
    o = analysis.options
    if _is_replicate_lm(analysis):  # the replicate-level analysis has no treated label, pooling or bootstrap
        lm = {"suite": o.suite, "track": analysis.track, "metric": o.metric, "controls": o.control,
              "alternative (cells)": o.alternative, "alternative (γ)": o.gamma_alternative, "n_perm (γ)": o.n_perm,
              "seed": o.seed, **dict(meta or {})}
        if isinstance(analysis.extras, LMExtras):
            lm.update(_lm_metadata(analysis.extras))
        return lm
    out = {
        "suite": o.suite,
        "track": analysis.track,
        "metric": o.metric,
        "treated": o.treated,
        "control": o.control,
        "alternative": o.alternative,
        "pool_controls": o.pool_controls,
        "n_boot": o.n_boot,
        "n_perm": o.n_perm,
        "seed": o.seed,
        **dict(meta or {}),
    }
    if isinstance(analysis.extras, LMExtras):
        out.update(_lm_metadata(analysis.extras))
    return out


def _render_heatmaps(analysis: Analysis, extra: Mapping[str, Heatmap]) -> tuple[dict[str, bytes], dict[str, str]]:
    """PNG bytes and caption of each heatmap: the effect matrix (one per target when several), then ``extra``."""
    o = analysis.options
    cells, lineage = analysis.cells, o.lineage
    pngs: dict[str, bytes] = {}
    captions: dict[str, str] = {}
    if _is_replicate_lm(analysis):  # every LM heatmap is among the given ones, under its own key
        for key, (m_df, kwargs) in extra.items():
            name = key if key.startswith("heatmap") else f"heatmap_{key}"
            kw = {"lineage": lineage, "title": name, **dict(kwargs)}
            pngs[name] = figure_png(heatmap_figure(m_df, **kw))
            captions[name] = str(kw.get("title") or name)
        return pngs, captions
    targets = sorted(cells["target"].unique())
    label = f"{o.metric} lift (treated − {o.control}{' + other-trait, pooled' if o.pool_controls else ''})"
    if len(targets) == 1:
        sig = _grid(cells, "p_perm", o.order, targets[0])
        title = f"{o.suite}: {o.metric}, target {targets[0]}"
        fig = heatmap_figure(analysis.matrix, sig_df=sig, lineage=lineage, title=title, cbar_label=label)
        pngs["heatmap"], captions["heatmap"] = figure_png(fig), title
    else:
        title = f"{o.suite}: {o.metric}, mean over {len(targets)} targets"
        fig = heatmap_figure(analysis.matrix, lineage=lineage, title=title, cbar_label=label)
        pngs["heatmap"], captions["heatmap"] = figure_png(fig), title
        for t in targets:
            if not _NAME_RE.match(str(t)):
                continue  # an odd target name still appears in the tables, just not as a file
            cap = f"{o.suite}: {o.metric}, target {t}"
            fig = heatmap_figure(
                _grid(cells, "effect", o.order, t),
                sig_df=_grid(cells, "p_perm", o.order, t),
                lineage=lineage,
                title=cap,
                cbar_label=label,
            )
            pngs[f"heatmap_{t}"], captions[f"heatmap_{t}"] = figure_png(fig), cap
    for name, (m_df, kwargs) in extra.items():
        kw = {"lineage": lineage, "title": name, **dict(kwargs)}
        pngs[f"heatmap_{name}"] = figure_png(heatmap_figure(m_df, **kw))
        captions[f"heatmap_{name}"] = str(kw.get("title") or name)
    return pngs, captions


def _by_caption(pngs: Mapping[str, bytes], captions: Mapping[str, str]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for key, png in pngs.items():
        cap = captions.get(key, key)
        out[cap if cap not in out else f"{cap} ({key})"] = png
    return out
