"""Report views of the tidy table: heatmaps, Markdown/HTML tables and one-line readings.

Plot functions take DataFrames and return a matplotlib Figure (no I/O, no statistics: significance
marks are drawn from p-values computed in :mod:`benchmark.analysis`). Text functions return strings.
Only :func:`write_report` touches the disk, and it renders everything in memory first, then writes
each file atomically (temp file in the same directory + ``os.replace``), so a failure never leaves a
half-written report.

matplotlib and seaborn are imported inside the functions that draw, keeping ``import
benchmark.report`` light (STYLE item 7); figures are built with ``matplotlib.figure.Figure``
directly, so no pyplot state or GUI backend is involved.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import json
import math
import os
import re
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from benchmark import analysis
from benchmark.errors import UserError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "figure_png",
    "heatmap_figure",
    "html_report",
    "markdown_tables",
    "readings",
    "report_markdown",
    "significance_marks",
    "write_report",
]

_P_STRONG, _P_WEAK = 0.01, 0.05  # "**" and "*" thresholds
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read the process umask once (os.umask can only be read by setting it)
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_RELATION_LABEL = {"same": "Same-base", "sibling": "sibling (shared init)", "unrelated": "unrelated"}


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


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


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
    import seaborn as sns
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch, Rectangle

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

    annot = annot_df.reindex(index=data.index, columns=data.columns) if annot_df is not None else data
    sig = sig_df.reindex(index=data.index, columns=data.columns) if sig_df is not None else None
    labels = np.empty(values.shape, dtype=object)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            a = annot.iat[i, j]
            text = a if isinstance(a, str) else ("" if a is None or not np.isfinite(a) else format(a, fmt))
            labels[i, j] = text + (significance_marks(float(sig.iat[i, j])) if sig is not None else "")

    kw: dict[str, Any] = {}
    if center is not None:
        half = float(np.max(np.abs(finite - center))) or 1.0
        kw.update(vmin=center - half, vmax=center + half, center=center, cmap=cmap or "RdBu_r")
    else:
        kw.update(cmap=cmap or "viridis")
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
            **kw,
        )
    ax.set_xlabel("student base")
    ax.set_ylabel("teacher base")
    ax.set_title(title)
    for tick in ax.get_xticklabels():  # long model names: anchor rotated labels at their end
        tick.set(rotation=45, ha="right", rotation_mode="anchor")
    ax.tick_params(axis="y", labelrotation=0)

    if lineage:
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
        handles.append(
            Patch(facecolor="none", edgecolor="black", label="boxed: teacher and student share an init")
        )
        legend_rows = math.ceil(len(handles) / 2)
        legend_h = 0.2 * legend_rows + 0.1  # inches: 7-pt text rows
        w, h = fig.get_size_inches()
        fig.set_size_inches(w, h + legend_h)
        bottom = legend_h / (h + legend_h)
        fig.legend(handles=handles, loc="lower center", ncol=min(2, len(handles)), fontsize=7, frameon=False)
    else:
        bottom = 0.0
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


def figure_png(fig: Figure, dpi: int = 120) -> bytes:
    """Render a Figure to PNG bytes in memory."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# text
# --------------------------------------------------------------------------------------------


def readings(cells: pd.DataFrame, fit: Mapping[str, Any], alpha: float = 0.05) -> list[str]:
    """One-line plain-language readings generated from the numbers.

    Args:
        cells: Output of :func:`benchmark.analysis.cell_table`.
        fit: Output of :func:`benchmark.analysis.shared_base_fit`.
        alpha: Threshold for calling γ's permutation test significant.

    Returns:
        Sentences: lift by relation, γ with its verdict, leave-one-out robustness, generic drift
        (other-trait students), and how many cells are individually significant.
    """
    out: list[str] = []
    by_rel = fit.get("by_relation", {})
    parts = []
    for rel in analysis.RELATIONS:
        r = by_rel.get(rel)
        if r and r.get("n_cells"):
            parts.append(
                f"{_RELATION_LABEL[rel]} cells: mean lift {_num(r['mean'], sign=True)} "
                f"{_ci(r['ci_low'], r['ci_high'])} (n={r['n_cells']})"
            )
    if parts:
        out.append("; ".join(parts) + ".")

    name = "γ (shared init)" if fit.get("indicator") == "shared_init" else "γ (same base)"
    g, lo, hi, p = (_fl(fit.get(k)) for k in ("gamma", "ci_low", "ci_high", "p_perm"))
    if not fit.get("identifiable", False):
        out.append(
            f"{name} is not identifiable: the matrix has no shared-base cells, or too few cells to "
            "separate them from the teacher and student base effects."
        )
    else:
        head = f"{name} = {_num(g, sign=True)} {_ci(lo, hi)}, permutation p = {_pval(p)}"
        sig = bool(np.isfinite(p) and p < alpha)
        if not (np.isfinite(lo) and np.isfinite(hi)):
            verdict = "no confidence interval (too few cells); read the permutation test alone."
        elif lo > 0 and sig:
            verdict = "transfer depends on a shared base."
        elif lo > 0:
            verdict = f"suggestive only: the CI excludes 0 but the permutation p is not below {alpha:g}."
        elif hi < 0:
            verdict = "shared-base cells lift *less* than the others (the opposite of subliminal learning)."
        else:
            verdict = (
                f"no detectable dependence on a shared base: the CI covers 0 (a null at this power, not "
                f"evidence of absence; half-width ±{_num((hi - lo) / 2)})."
            )
            if sig:
                verdict += f" The permutation p is below {alpha:g}: treat as suggestive."
        out.append(f"{head} → {verdict}")
        lmin, lmax = _fl(fit.get("loo_min")), _fl(fit.get("loo_max"))
        if np.isfinite(lmin) and np.isfinite(lmax):
            loo = (
                f"Leave-one-cell-out γ ranges {_num(lmin, sign=True)} (without {fit.get('loo_min_cluster')}) "
                f"to {_num(lmax, sign=True)} (without {fit.get('loo_max_cluster')})"
            )
            if np.sign(lmin) != np.sign(g) or np.sign(lmax) != np.sign(g):
                out.append(loo + ": a single cell flips the sign of γ - not robust.")
            elif g != 0 and min(abs(lmin), abs(lmax)) < 0.5 * abs(g):
                out.append(loo + ": a single cell carries over half of γ - report it.")
            else:
                out.append(loo + ": no single cell drives the result.")

    if len(cells) and cells["effect_vs_other"].notna().any():
        ctrl = cells["control"].iloc[0]
        groups = {
            "shared-init": cells["relation"].isin(["same", "sibling"]),
            "unrelated": cells["relation"] == "unrelated",
        }
        for gname, mask in groups.items():
            sub = cells[mask & cells["effect"].notna() & cells["effect_vs_other"].notna()]
            if sub.empty:
                continue
            eff, eff_o = float(sub["effect"].mean()), float(sub["effect_vs_other"].mean())
            line = (
                f"Other-trait control, {gname} cells: lift {_num(eff, sign=True)} over {ctrl} students, "
                f"{_num(eff_o, sign=True)} over students of other-trait teachers"
            )
            se = float(sub["effect"].std(ddof=1)) / math.sqrt(len(sub)) if len(sub) > 1 else float("nan")
            if np.isfinite(se) and eff > 2 * se:  # the lift over control is clearly positive
                if eff_o < 0.5 * eff:
                    line += (
                        " - over half of it is shared by other-trait students: generic drift, not the trait."
                    )
                else:
                    line += " - specific to the teacher's trait."
            out.append(line + ("" if line.endswith(".") else "."))

    if len(cells):
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
        out.append(line)
    return out


def _effect_matrix_text(cells: pd.DataFrame, target: str, order: Sequence[str] | None) -> pd.DataFrame:
    """Matrix of "effect [lo, hi]marks" strings for one target, registry order kept."""
    sub = cells[cells["target"] == target]
    eff = analysis.matrix(sub, "effect", order)
    lo, hi, p = (analysis.matrix(sub, c, order) for c in ("ci_low", "ci_high", "p_perm"))
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


def markdown_tables(cells: pd.DataFrame, fit: Mapping[str, Any], order: Sequence[str] | None = None) -> str:
    """Markdown tables: effect matrix per target (with CIs and marks), γ line, lift by relation, cells.

    Args:
        cells: Output of :func:`benchmark.analysis.cell_table`.
        fit: Output of :func:`benchmark.analysis.shared_base_fit`.
        order: Registry order of bases for the matrices.

    Returns:
        Markdown text.
    """
    parts: list[str] = []
    for target in sorted(cells["target"].unique()):
        text = _effect_matrix_text(cells, target, order)
        header = ["teacher \\ student", *map(str, text.columns)]
        rows = [[str(idx), *row] for idx, row in zip(text.index, text.to_numpy().tolist(), strict=True)]
        parts.append(
            f"### Effect matrix, target `{target}` (lift over control, 95% CI; ** p<0.01, * p<0.05)\n\n"
            + _md_table(header, rows)
        )
    parts.append("### Shared-base effect\n\n" + _fit_line(fit))
    h, r = _relation_rows(fit)
    if r:
        parts.append("### Lift by relation\n\n" + _md_table(h, r))
    h, r = _cell_rows(cells)
    parts.append("### Cells\n\n" + _md_table(h, r))
    return "\n\n".join(parts) + "\n"


def _meta_value(v: Any) -> str:
    """One-line text for a metadata value (tables become a size note; the caller writes them out)."""
    if isinstance(v, pd.DataFrame):
        return f"(table: {len(v)} rows × {v.shape[1]} columns)"
    text = v if isinstance(v, str) else json.dumps(_json_safe(v), default=str)
    return " ".join(text.split())


def _meta_rows(meta: Mapping[str, Any]) -> list[list[str]]:
    return [[str(k), _meta_value(v)] for k, v in meta.items()]


def report_markdown(
    suite: str,
    cells: pd.DataFrame,
    fit: Mapping[str, Any],
    meta: Mapping[str, Any],
    order: Sequence[str] | None = None,
    images: Sequence[str] = (),
) -> str:
    """Full Markdown report: title, readings, images, tables and run metadata.

    Args:
        suite: Suite name for the title.
        cells: Output of :func:`benchmark.analysis.cell_table`.
        fit: Output of :func:`benchmark.analysis.shared_base_fit`.
        meta: Key/value metadata shown at the end (metric, control, versions, ...).
        order: Registry order of bases.
        images: Relative paths of images to link (e.g. ``["heatmap.png"]``).

    Returns:
        Markdown text.
    """
    lines = [f"# Subliminal transfer: {suite}", "", "## Readings", ""]
    lines += [f"- {r}" for r in readings(cells, fit)]
    if images:
        lines += ["", "## Heatmaps", ""] + [f"![{Path(i).stem}]({i})" for i in images]
    lines += ["", "## Tables", "", markdown_tables(cells, fit, order)]
    if meta:
        lines += ["## Run metadata", "", _md_table(["key", "value"], _meta_rows(meta)), ""]
    return "\n".join(lines)


def html_report(
    suite: str,
    cells: pd.DataFrame,
    fit: Mapping[str, Any],
    meta: Mapping[str, Any],
    images: Mapping[str, bytes] | None = None,
    order: Sequence[str] | None = None,
) -> str:
    """Self-contained HTML page (tables plus PNGs embedded as base64).

    Args:
        suite: Suite name for the title.
        cells: Output of :func:`benchmark.analysis.cell_table`.
        fit: Output of :func:`benchmark.analysis.shared_base_fit`.
        meta: Key/value metadata.
        images: Caption -> PNG bytes (see :func:`figure_png`).
        order: Registry order of bases.

    Returns:
        The HTML document as a string.
    """
    esc = html.escape
    body = [f"<h1>Subliminal transfer: {esc(suite)}</h1>", "<h2>Readings</h2><ul>"]
    body += [f"<li>{esc(r)}</li>" for r in readings(cells, fit)] + ["</ul>"]
    for caption, png in (images or {}).items():
        b64 = base64.b64encode(png).decode("ascii")
        body.append(
            f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,{b64}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>"
        )
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
    if meta:
        body.append(
            "<h2>Run metadata</h2>"
            + pd.DataFrame(_meta_rows(meta), columns=["key", "value"]).to_html(index=False, escape=True)
        )
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
# I/O
# --------------------------------------------------------------------------------------------


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory and ``os.replace``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give report files the usual mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _by_caption(pngs: Mapping[str, bytes], captions: Mapping[str, str]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for key, png in pngs.items():
        cap = captions.get(key, key)
        out[cap if cap not in out else f"{cap} ({key})"] = png
    return out


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_report(
    outdir: Path | str,
    df: pd.DataFrame,
    *,
    suite: str,
    order: Sequence[str] | None,
    lineage: Mapping[str, str] | None,
    metric: str,
    control: str = "neutral",
    meta: Mapping[str, Any] | None = None,
    treated: str = "trait",
    track: str | None = None,
    extra_heatmaps: Mapping[str, tuple[pd.DataFrame, Mapping[str, Any]]] | None = None,
    n_boot: int = 2000,
    n_perm: int = 2000,
    seed: int = 0,
    alternative: str = "greater",
    pool_controls: bool = False,
    indicator: str = "shared_init",
) -> dict[str, Path]:
    """Analyse one suite of the tidy table and write the report files.

    Writes ``cells.csv``, ``matrix.csv`` (mean effect over targets, registry order), ``tidy.csv``
    (the validated input table), ``fit.json`` (γ and friends), ``heatmap.png``,
    ``heatmap_<target>.png`` per target when there are several, ``heatmap_<name>.png`` per extra
    heatmap, ``report.md`` and ``index.html``. Everything is computed and rendered first; each file
    is then written atomically.

    Args:
        outdir: Output directory (created if missing).
        df: Tidy table (may hold other suites; only ``suite`` is analysed, all of it goes to tidy.csv).
        suite: Suite to analyse.
        order: Registry order of bases.
        lineage: Base -> init lineage id; rows' ``relation`` must agree with it.
        metric: Readout to analyse.
        control: Control arm (see :func:`benchmark.analysis.paired_lifts`).
        meta: Extra metadata shown in the reports.
        treated: ``"trait"`` or a teacher_trait label (classifier track: ``"aux"``).
        track: Track to analyse when the suite holds several.
        extra_heatmaps: Name -> (matrix DataFrame, :func:`heatmap_figure` keyword arguments), e.g.
            ``{"accuracy": (acc, {"center": None, "fmt": ".2f", "title": "accuracy"})}``.
        n_boot: Bootstrap resamples.
        n_perm: Permutations for γ.
        seed: Random seed.
        alternative: Direction of the tests.
        pool_controls: See :func:`benchmark.analysis.cell_table`.
        indicator: ``"shared_init"`` or ``"same"`` for γ.

    Returns:
        Name -> path of every file written (``cells``, ``matrix``, ``tidy``, ``fit``, ``heatmap``,
        ``heatmap_<x>``, ``report_md``, ``index_html``).

    Raises:
        UserError: Bad table, unknown suite/track/metric, relation contradicting ``lineage``, or a bad
            extra-heatmap name.
    """
    tidy = analysis.validate_tidy(df)
    sub = tidy[tidy["suite"] == suite]
    if sub.empty:
        raise UserError(
            f"tidy table: no rows for suite {suite!r}; suites present: "
            f"{', '.join(sorted(tidy['suite'].unique()))}"
        )
    if track is not None:
        sub = sub[sub["track"] == track]
        if sub.empty:
            raise UserError(f"tidy table: suite {suite!r} has no rows for track {track!r}")
    elif sub["track"].nunique() > 1:
        raise UserError(
            f"suite {suite!r} holds several tracks ({', '.join(sorted(sub['track'].unique()))}); pass track="
        )
    if lineage is not None:
        trained = sub[sub["teacher_trait"] != "baseline"]
        expect = [
            analysis.relation_of(t, s, lineage)
            for t, s in zip(trained["teacher_base"], trained["student_base"], strict=True)
        ]
        bad = trained["relation"].to_numpy() != np.array(expect, dtype=object)
        if bad.any():
            row = trained[bad].iloc[0]
            raise UserError(
                f"tidy table: relation {row['relation']!r} for {row['teacher_base']}→{row['student_base']} "
                f"contradicts the lineage map (expected {expect[int(np.argmax(bad))]!r})"
            )
    for name in extra_heatmaps or {}:
        if not _NAME_RE.match(name):
            raise UserError(f"extra heatmap name {name!r}: use letters, digits, '.', '_' or '-'")

    cells = analysis.cell_table(
        sub,
        metric,
        control,
        n_boot=n_boot,
        seed=seed,
        alternative=alternative,
        treated=treated,
        pool_controls=pool_controls,
    )
    lifts = analysis.paired_lifts(sub, metric, treated=treated, control=control)
    fit = analysis.shared_base_fit(
        lifts,
        order=order,
        n_boot=n_boot,
        n_perm=n_perm,
        seed=seed,
        indicator=indicator,
        alternative=alternative,
        lineage=lineage,
    )
    mat = analysis.matrix(cells, "effect", order)
    targets = sorted(cells["target"].unique())

    label = f"{metric} lift (treated − {control}{' + other-trait, pooled' if pool_controls else ''})"
    pngs: dict[str, bytes] = {}
    captions: dict[str, str] = {}
    if len(targets) == 1:
        sig = analysis.matrix(cells, "p_perm", order, target=targets[0])
        title = f"{suite}: {metric}, target {targets[0]}"
        pngs["heatmap"] = figure_png(
            heatmap_figure(mat, sig_df=sig, lineage=lineage, title=title, cbar_label=label)
        )
        captions["heatmap"] = title
    else:
        title = f"{suite}: {metric}, mean over {len(targets)} targets"
        pngs["heatmap"] = figure_png(heatmap_figure(mat, lineage=lineage, title=title, cbar_label=label))
        captions["heatmap"] = title
        for t in targets:
            if not _NAME_RE.match(str(t)):
                continue  # an odd target name still appears in the tables, just not as a file
            m_t = analysis.matrix(cells, "effect", order, target=t)
            s_t = analysis.matrix(cells, "p_perm", order, target=t)
            cap = f"{suite}: {metric}, target {t}"
            pngs[f"heatmap_{t}"] = figure_png(
                heatmap_figure(m_t, sig_df=s_t, lineage=lineage, title=cap, cbar_label=label)
            )
            captions[f"heatmap_{t}"] = cap
    for name, (m_df, kwargs) in (extra_heatmaps or {}).items():
        kw = {"lineage": lineage, "title": name, **dict(kwargs)}
        pngs[f"heatmap_{name}"] = figure_png(heatmap_figure(m_df, **kw))
        captions[f"heatmap_{name}"] = str(kw.get("title") or name)

    meta_all = {
        "suite": suite,
        "track": str(sub["track"].iloc[0]),
        "metric": metric,
        "treated": treated,
        "control": control,
        "alternative": alternative,
        "pool_controls": pool_controls,
        "n_boot": n_boot,
        "n_perm": n_perm,
        "seed": seed,
        **dict(meta or {}),
    }
    images = [f"{k}.png" for k in pngs]
    texts: dict[str, tuple[str, bytes]] = {
        "cells": ("cells.csv", cells.to_csv(index=False).encode()),
        "matrix": ("matrix.csv", mat.to_csv().encode()),
        "tidy": ("tidy.csv", tidy.to_csv(index=False).encode()),
        "fit": ("fit.json", json.dumps(_json_safe(fit), indent=2, sort_keys=True).encode()),
        "report_md": ("report.md", report_markdown(suite, cells, fit, meta_all, order, images).encode()),
        "index_html": (
            "index.html",
            html_report(suite, cells, fit, meta_all, _by_caption(pngs, captions), order).encode(),
        ),
    }
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for key, png in pngs.items():
        paths[key] = out / f"{key}.png"
        _atomic_write(paths[key], png)
    for key, (fname, data) in texts.items():
        paths[key] = out / fname
        _atomic_write(paths[key], data)
    return paths
