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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from benchmark.analysis import RELATIONS, Analysis, ClassifierExtras, LMExtras
from benchmark.analysis.common import ordered_levels
from benchmark.analysis.views import base_logodds, probability_text
from benchmark.errors import UserError, unknown_name
from benchmark.files import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "SIG_LEGEND",
    "TRACK_VIEWS",
    "TrackViews",
    "accuracy_grid",
    "capability_section",
    "classifier_heatmaps",
    "classifier_markdown",
    "figure_png",
    "gamma_lines",
    "heatmap_figure",
    "html_page",
    "html_report",
    "markdown_tables",
    "md_table",
    "pair_grid",
    "pair_matrix_text",
    "placebo_reading",
    "readings",
    "render_report",
    "report_markdown",
    "significance_marks",
    "views_for",
    "write_report",
]

_ALPHA = 0.05  # the one significance threshold of every mark (see SIG_LEGEND)
#: The one significance convention of every table, heatmap and legend.
SIG_LEGEND = "* p ≤ 0.05 (two-sided; the 95% CI excludes 0)"
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_RELATION_LABEL = {"same": "same model", "sibling": "sibling (shared init)", "unrelated": "unrelated"}

#: A heatmap to draw: the matrix and :func:`heatmap_figure` keyword arguments.
Heatmap = tuple[pd.DataFrame, Mapping[str, Any]]


# --------------------------------------------------------------------------------------------
# formatting helpers
# --------------------------------------------------------------------------------------------


def significance_marks(p: float) -> str:
    """``"*"`` for p ≤ 0.05, else ``""`` (also for NaN): one mark, one level, everywhere (:data:`SIG_LEGEND`)."""
    p = _fl(p)
    return "*" if math.isfinite(p) and p <= _ALPHA else ""


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
    vlim: float | None = None,
) -> Figure:
    """Teacher × student heatmap with effect annotations, significance marks and lineage groups.

    Args:
        matrix_df: Teacher bases (rows) × student bases (columns), already in registry order (see
            :func:`benchmark.analysis.matrix`); the order is kept as given.
        annot_df: Values (or preformatted strings) to print in the cells; default ``matrix_df``.
        sig_df: p-values aligned with ``matrix_df``; adds ``*`` at p ≤ 0.05 (:data:`SIG_LEGEND`).
        lineage: Base -> init lineage id. Tick labels are colored by lineage, cells whose teacher and
            student share an init are boxed, and a legend names the groups.
        title: Axes title.
        center: Center of a diverging colormap with symmetric limits (effects); ``None`` for a
            sequential colormap (raw accuracies, rates).
        fmt: Number format of the annotations.
        cbar_label: Colorbar label.
        cmap: Colormap name; default ``"RdBu_r"`` when centered, ``"viridis"`` otherwise.
        vlim: Fixed half-range of a centered scale (one scale for every heatmap of a suite, so a null is never
            drawn saturated); default: the largest |value| of this matrix.

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
    _draw_cells(ax, data, labels, _color_scale(finite, center, cmap, vlim), title, cbar_label)
    notes = [SIG_LEGEND] if sig is not None else []
    if lineage:
        bottom = _draw_lineage(fig, ax, rows, cols, lineage, notes)
    else:  # no lineage legend to carry the note: a second title line
        bottom = 0.0
        if notes:
            ax.set_title(f"{title}\n{notes[0]}", fontsize=9)
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


def _color_scale(finite: np.ndarray, center: float | None, cmap: str | None, vlim: float | None = None
                 ) -> dict[str, Any]:
    """seaborn color arguments: symmetric limits around ``center`` (``vlim`` when given), or a sequential map."""
    if center is None:
        return {"cmap": cmap or "viridis"}
    half = vlim if vlim else (float(np.max(np.abs(finite - center))) or 1.0)
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


def _draw_lineage(fig: Figure, ax: Axes, rows: list[str], cols: list[str], lineage: Mapping[str, str],
                  notes: Sequence[str] = ()) -> float:
    """Color tick labels by init lineage, box shared-init cells, add a legend (and ``notes``) below the axes.

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
    handles += [Patch(facecolor="none", edgecolor="none", label=note) for note in notes]
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
# the pair table (both tracks): readings, tables, heatmaps
# --------------------------------------------------------------------------------------------
_UNITS = {"logodds": "log-odds", "accuracy": "accuracy points"}


def _units(metric: str) -> str:
    return _UNITS.get(metric, metric)


def _trait_pairs(cells: pd.DataFrame) -> pd.DataFrame:
    return cells[~cells["placebo"].astype(bool)] if "placebo" in cells.columns else cells


def _placebo_pairs(cells: pd.DataFrame) -> pd.DataFrame:
    return cells[cells["placebo"].astype(bool)] if "placebo" in cells.columns else cells.iloc[0:0]


def pair_grid(cells: pd.DataFrame, column: str, order: Sequence[str] | None) -> pd.DataFrame:
    """Teacher × student table of one pair-table column (a reshape: one row per pair), registry order kept."""
    out = cells.pivot(index="teacher", columns="student", values=column)
    out = out.reindex(index=ordered_levels(cells["teacher"], order), columns=ordered_levels(cells["student"], order))
    out = out.astype(float)
    out.index.name, out.columns.name = "teacher_base", "student_base"
    return out


def _effect_text(r: Any) -> str:
    return f"{_num(r.effect, sign=True)} {_ci(r.ci_low, r.ci_high)}{significance_marks(r.p)}"


def pair_matrix_text(cells: pd.DataFrame, order: Sequence[str] | None) -> pd.DataFrame:
    """Teacher × student "effect [lo, hi]*" strings of the trait pairs, registry order kept."""
    sub = _trait_pairs(cells)
    sub = sub.assign(text=[_effect_text(r) for r in sub.itertuples(index=False)])
    text = sub.pivot(index="teacher", columns="student", values="text")
    text = text.reindex(index=ordered_levels(sub["teacher"], order), columns=ordered_levels(sub["student"], order))
    return text.fillna("—")


def _gamma_line(fit: Mapping[str, Any] | None, name: str, units: str) -> str:
    """γ, its interval, its permutation p and the leave-one-base-out range, in one line (``fit["primary"]``)."""
    if not fit:
        return f"{name}: not fitted."
    if not fit.get("identifiable", False):
        return (f"{name}: n/a - not identifiable ({fit.get('n_pairs')} pairs): no shared pairs, fewer than 3 pair "
                "clusters, or no spread to estimate an interval from")
    perm = "exact over" if fit.get("exact") else "Monte Carlo,"
    return (
        f"{name} = {_num(fit['estimate'], sign=True)} {units} {_ci(fit['ci_low'], fit['ci_high'])} (95% CI, CR2 "
        f"clustered by pair, Bell-McCaffrey df {_num(fit.get('df'), 1)}), teacher-block permutation p = "
        f"{_pval(fit['p'])} ({fit.get('alternative')}, {perm} {fit.get('n_perm_used')} relabellings of whole "
        f"teacher bases); leave-one-base-out {_num(fit.get('lobo_min'), sign=True)} (without "
        f"{fit.get('lobo_min_base')}) to {_num(fit.get('lobo_max'), sign=True)} (without {fit.get('lobo_max_base')}); "
        f"{fit.get('n_pairs')} pairs, {fit.get('n_rows')} rows"
    )


def gamma_lines(fit: Mapping[str, Any]) -> list[str]:
    """Every γ fit of an analysis (primary, same base only, profile), one line each."""
    units = _units(str(fit.get("metric", "")))
    lines = [_gamma_line(fit.get("primary"), "γ (shared init, primary)", units)]
    if fit.get("same"):
        lines.append(_gamma_line(fit["same"], "γ (same base only)", units))
    profile = fit.get("profile")
    if profile:
        lines.append(_gamma_line(profile.get("primary"), "Profile γ (shared init, Fisher z; descriptive)", "z"))
    return [line + "." for line in lines]


#: The probability conversion of a log-odds effect (:func:`benchmark.analysis.views.implied_probability`): the
#: primary target and each student base's log-odds of it before training; None where the metric is not log-odds.
_Rates = tuple[str, dict[str, float]] | None


def _rates(analysis: Analysis) -> _Rates:
    """The primary target and the student bases' log-odds of it (their baseline rows), for log-odds suites."""
    trait = _trait_pairs(analysis.cells)
    if analysis.options.metric != "logodds" or trait.empty or "target" not in trait.columns:
        return None
    target = str(trait["target"].iloc[0])
    base = base_logodds(analysis.tidy, target)
    return (target, base) if base else None


def _in_probability(rates: _Rates, effect: Any, base: str | None = None) -> str:
    """``P(owl) 7.2% → 23.5% at <base>'s rate`` (``base`` None: at the median student base's rate); '' without
    rates or a finite effect (:func:`benchmark.analysis.views.probability_text`)."""
    if rates is None:
        return ""
    target, logodds = rates
    return probability_text(target, logodds, _fl(effect), base)


def _gamma_verdict(g: Mapping[str, Any], alpha: float, rates: _Rates = None, units: str = "") -> str:
    """The headline sentence: does transfer depend on a shared base, how strongly (log-odds and probability), how
    sure, which bases carry it."""
    if not g or not g.get("identifiable", False):
        return "Whether transfer depends on a shared base cannot be told here: γ is not identifiable."
    p, lo, est = _fl(g.get("p")), _fl(g.get("ci_low")), _fl(g.get("estimate"))
    lobo = {b: _fl(v) for b, v in (g.get("leave_one_base_out") or {}).items()}
    fragile = [b for b, v in lobo.items() if math.isfinite(v) and math.isfinite(est) and (v <= 0 or v < 0.5 * est)]
    prob = _in_probability(rates, est)
    size = f"{_num(est, sign=True)}{' ' + units if units else ''}{': ' + prob if prob else ''}"
    if math.isfinite(p) and p <= alpha and est > 0:
        head = f"Yes: transfer is larger when teacher and student share an init (γ = {size}; p = {_pval(p)})"
        if not (math.isfinite(lo) and lo > 0):
            head += ", though the CR2 interval still reaches 0"
    elif est > 0 and _fl(g.get("p_floor")) > alpha:
        head = (f"Cannot be shown by this design: γ is positive ({size}), but with {g.get('n_teachers')} teacher "
                f"bases the teacher-block test's smallest p is {_pval(g.get('p_floor'))} (> {alpha:g}); add teacher "
                "bases")
    elif est > 0:
        head = f"Not shown: γ is positive ({size}) but the teacher-block test gives p = {_pval(p)} (> {alpha:g})"
    else:
        head = f"No: shared-init pairs do not transfer more (γ = {size}, not above 0; p = {_pval(p)})"
    if fragile:
        head += f"; leaving out {', '.join(fragile)} takes over half of γ away, so it rests on those bases"
    return head + "."


def _base_reading(extras: Any, alpha: float, rates: _Rates = None) -> str | None:
    """Which bases' own teachers transfer, from the per-base table (drift-aware verdicts), each effect also in
    probability units at that base's own rate."""
    bases = getattr(extras, "bases", None)
    if bases is None or bases.empty:
        return None
    groups: dict[str, list[str]] = {}
    for r in bases.itertuples(index=False):
        ratio = f", ratio {_num(r.transfer_ratio, 2)}" if math.isfinite(_fl(r.transfer_ratio)) else ""
        prob = _in_probability(rates, r.effect, str(r.base)).removesuffix(f" at {r.base}'s rate")
        prob = f", {prob}" if prob else ""
        groups.setdefault(str(r.verdict), []).append(f"{r.base} ({_num(r.effect, sign=True)}{prob}{ratio})")
    order = [("transfer", "beyond the drift of unrelated pairs (q_drift ≤ 0.05)"),
             ("within drift", "different from 0 but not beyond that drift"), ("reverse", "reversed"),
             ("none", "no detectable transfer"), ("n/a", "no drift test")]
    parts = [f"{text}: {', '.join(groups[k])}" for k, text in order if k in groups]
    how = f" (effect; P({rates[0]}) at the base's own rate, before → after)" if rates else ""
    return f"Same-model pairs, {len(bases)} base{'s' * (len(bases) != 1)}{how} - " + "; ".join(parts) + "."


def _unit_word(fit: Mapping[str, Any]) -> str:
    """What a track's independent unit is called in text (fit.json ``unit``: teacher replicates or seeds)."""
    return "seeds" if str(fit.get("unit", "")).startswith("seed") else "replicates"


def _relation_line(by_rel: Mapping[str, Any], units: str, unit_word: str = "replicates") -> str | None:
    parts = []
    for rel in RELATIONS:
        r = by_rel.get(rel)
        if r and r.get("n_pairs"):
            parts.append(f"{_RELATION_LABEL[rel]} {_num(r['mean'], sign=True)} {units} {_ci(r['ci_low'], r['ci_high'])} "
                         f"over {unit_word}, {_ci(r.get('base_ci_low'), r.get('base_ci_high'))} over "
                         f"{r.get('n_bases')} bases (n = {r['n_pairs']} pairs)")
    return ("Mean pair effect by relation: " + "; ".join(parts) + ". The first interval is conditional on these "
            "pairs; the second treats the bases as the sample.") if parts else None


def _drift_line(fit: Mapping[str, Any], cells: pd.DataFrame, alpha: float) -> str | None:
    d = fit.get("drift")
    if not d or not d.get("n_unrelated"):
        return None
    un = _trait_pairs(cells)
    un = un[un["family"] == "unrelated"]
    n_p = int((un["p"] <= alpha).sum())
    n_pos = int(((un["p"] <= alpha) & (un["effect"] > 0)).sum())
    return (f"Drift: {n_p} of {len(un)} unrelated pairs differ from 0 at p ≤ {alpha:g} ({n_pos} positive, "
            f"{n_p - n_pos} negative): systematic effects of random sign, τ = {_num(d.get('tau'))} beyond the noise "
            f"between {_unit_word(fit)}. A same or sibling pair is called transfer only when it beats that drift "
            f"(p_drift).")


def placebo_reading(fit: Mapping[str, Any]) -> str:
    """The A/A calibration check, judged against the test's exact size."""
    pl = fit.get("placebo") or {}
    n = int(pl.get("n_rows") or 0)
    if not n:
        return "No A/A placebo arm: the calibration check of the pair test did not run."
    return (
        f"Placebo (A/A: {', '.join(pl.get('arms') or [])} against its twin arm, same test): {pl.get('n_p05')} of {n} "
        f"rows at p ≤ {_fl(pl.get('alpha')):g} = {100 * _fl(pl.get('rate')):.1f}%, against the test's exact size "
        f"{100 * _fl(pl.get('exact_size')):.2f}% (not {100 * _fl(pl.get('alpha')):g}%: a permutation test over "
        f"few replicates cannot reach every level); {pl.get('n_q05')} at q ≤ 0.05."
    )


def _pair_readings(analysis: Analysis, alpha: float) -> list[str]:
    """The plain-language readings of a pair-table analysis: verdict first, then which bases, then the rest."""
    fit, cells = analysis.fit, analysis.cells
    units = _units(analysis.options.metric)
    rates = _rates(analysis)
    out = [_gamma_verdict(fit.get("primary") or {}, alpha, rates, units)]
    base = _base_reading(analysis.extras, alpha, rates)
    out += [base] if base else []
    out += gamma_lines(fit)[:1]
    rel = _relation_line(fit.get("by_relation", {}), units, _unit_word(fit))
    out += [rel] if rel else []
    drift = _drift_line(fit, cells, alpha)
    out += [drift] if drift else []
    if _placebo_pairs(cells).shape[0] or fit.get("placebo"):
        out.append(placebo_reading(fit))
    if rates is not None:
        out.append(f"P({rates[0]}) before → after: {rates[0]}'s probability among the candidates at a student base's "
                   "log-odds before training (its baseline evaluation, mean over questions), and with the whole effect "
                   "added to that log-odds; the effect is a contrast between arms, so this reads its size, it is not "
                   "a measured rate.")
    if fit.get("contrast_definition"):
        out.append("Definition: " + str(fit["contrast_definition"]))
    return out


def _pair_rows(cells: pd.DataFrame, units: str) -> tuple[list[str], list[list[Any]]]:
    """The pairs table: the columns every track has, then the LM's collateral, transfer ratio and profile where the
    pair table has them (the classifier's has not)."""
    optional = [("collateral G [95% CI]", "collateral", "collateral_ci_low", "collateral_ci_high", True),
                ("transfer ratio [95% CI]", "transfer_ratio", "ratio_ci_low", "ratio_ci_high", False),
                ("profile r [95% CI]", "profile_r", "profile_ci_low", "profile_ci_high", True)]
    extra = [o for o in optional if o[1] in cells.columns]
    header = ["teacher", "student", "family", "units (treated / control)", f"effect [95% CI] ({units})", "p",
              "q (family)", "p_drift", "q_drift", *[o[0] for o in extra]]
    rows = []
    for r in _trait_pairs(cells).itertuples(index=False):
        row = [r.teacher, r.student, r.family, f"{r.n_treated} / {r.n_control}", _effect_text(r), _pval(r.p),
               _pval(r.q), _pval(getattr(r, "p_drift", np.nan)), _pval(getattr(r, "q_drift", np.nan))]
        row += [f"{_num(getattr(r, v), 3, sign=signed)} {_ci(getattr(r, lo), getattr(r, hi))}"
                for _, v, lo, hi, signed in extra]
        rows.append(row)
    return header, rows


def _placebo_rows(cells: pd.DataFrame) -> tuple[list[str], list[list[Any]]]:
    header = ["teacher", "student", "treated arm", "control arm", "replicates", "effect [95% CI]", "p", "q",
              "exact size"]
    rows = [[r.teacher, r.student, r.treated_arm, r.control_arms, f"{r.n_treated} / {r.n_control}", _effect_text(r),
             _pval(r.p), _pval(r.q), _pval(r.exact_size)] for r in _placebo_pairs(cells).itertuples(index=False)]
    return header, rows


def _relation_rows(fit: Mapping[str, Any], units: str) -> tuple[list[str], list[list[Any]]]:
    header = ["relation", "pairs", f"mean effect ({units})", "95% CI over units (conditional)",
              "95% CI over bases", "p ≤ 0.05", "q ≤ 0.05", "q_drift ≤ 0.05", "mean profile r [95% CI]"]
    profile = ((fit.get("profile") or {}).get("by_relation") or {})
    rows = []
    for rel in RELATIONS:
        r = (fit.get("by_relation") or {}).get(rel)
        if not r:
            continue
        pr = profile.get(rel)
        n = r["n_pairs"]
        rows.append([rel, n, _num(r["mean"], sign=True), _ci(r["ci_low"], r["ci_high"]),
                     f"{_ci(r.get('base_ci_low'), r.get('base_ci_high'))} (n = {r.get('n_bases')})",
                     f"{r.get('n_p05')} of {n}", f"{r.get('n_q05')} of {n}",
                     f"{r['n_qdrift05']} of {n}" if "n_qdrift05" in r else "—",
                     f"{_num(pr['mean_r'], sign=True)} {_ci(pr['ci_low'], pr['ci_high'])}" if pr else "—"])
    return header, rows


def _base_rows(bases: pd.DataFrame, units: str) -> tuple[list[str], list[list[Any]]]:
    header = ["base", f"same-model effect [95% CI] ({units})", "p", "q_drift", "verdict", "transfer ratio [95% CI]",
              "teacher contrast [95% CI]", "collateral G", "profile r"]
    rows = [[r.base, f"{_num(r.effect, sign=True)} {_ci(r.ci_low, r.ci_high)}{significance_marks(r.p)}", _pval(r.p),
             _pval(r.q_drift), r.verdict, f"{_num(r.transfer_ratio, 3)} {_ci(r.ratio_ci_low, r.ratio_ci_high)}",
             f"{_num(r.teacher_contrast, sign=True)} {_ci(r.teacher_ci_low, r.teacher_ci_high)}",
             _num(r.collateral, sign=True), _num(r.profile_r, sign=True)] for r in bases.itertuples(index=False)]
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
    many fell below :data:`benchmark.analysis.views.CAPABILITY_COLLAPSE` of it (numbers from
    :func:`benchmark.analysis.views.capability_summary`). None (no section) when the suite has no capability readout.
    """
    from benchmark.analysis.views import CAPABILITY_COLLAPSE, capability_summary

    summary = capability_summary(tidy)
    if summary.empty:
        return None
    rows = [[r.metric, r.teacher_base, r.teacher_trait, r.student_base, str(r.students), _num(r.mean), _num(r.min),
             _num(r.base_value), str(int(r.collapsed))] for r in summary.itertuples(index=False)]
    n_bad, n = int(summary["collapsed"].sum()), int(summary["students"].sum())
    intro = (f"Each student's readout on the channel's own held-out items (greedy) next to its untrained base's; "
             f"a student below {CAPABILITY_COLLAPSE:g} x its base's readout is flagged as collapsed. "
             f"{n_bad} of {n} student readouts collapsed.")
    header = ["capability", "teacher base", "arm", "student base", "students", "mean", "min", "base", "collapsed"]
    return "Capability side-checks", intro, header, rows


Section = tuple[str, str, list[str], list[list[Any]]]


def _pair_sections(analysis: Analysis) -> list[Section]:
    """The sections every pair-table report has: per base, γ, relations, matrix, pairs, placebo."""
    cells, fit, order = analysis.cells, analysis.fit, analysis.options.order
    units = _units(analysis.options.metric)
    out: list[Section] = []
    bases = getattr(analysis.extras, "bases", None)
    if bases is not None and not bases.empty:
        h, r = _base_rows(bases, units)
        out.append(("Per base: does a base's own teacher transfer?", "Each base's same-model pair. Verdict from the "
                    "drift-aware test (q_drift, Benjamini-Hochberg within the same-model family); transfer ratio = "
                    "the pair's effect over its teachers' own contrast on the same readout. " + SIG_LEGEND + ".",
                    h, r))
    out.append(("Shared-base effect γ", " ".join(gamma_lines(fit)), [], []))
    h, r = _relation_rows(fit, units)
    out.append(("By relation", "Means over pairs; intervals conditional on these pairs (over replicate indices) "
                "and with the bases as units.", h, r))
    text = pair_matrix_text(cells, order)
    rows = [[str(i), *row] for i, row in zip(text.index, text.to_numpy().tolist(), strict=True)]
    out.append(("Pair matrix", f"Effect per (teacher, student) pair, {units}, 95% CI; {SIG_LEGEND}.",
                ["teacher \\ student", *map(str, text.columns)], rows))
    h, r = _pair_rows(cells, units)
    out.append(("Pairs", str(fit.get("contrast_definition") or ""), h, r))
    h, r = _placebo_rows(cells)
    if r:
        out.append(("Placebo (A/A) rows", placebo_reading(fit), h, r))
    return out


def _pair_heatmaps(analysis: Analysis) -> dict[str, Heatmap]:
    """The pair effect and placebo heatmaps on one fixed symmetric scale, and the profile heatmap when present."""
    o, cells = analysis.options, analysis.cells
    units = _units(o.metric)
    trait, placebo = _trait_pairs(cells), _placebo_pairs(cells)
    both = pd.concat([trait[["effect", "ci_low", "ci_high"]], placebo[["effect", "ci_low", "ci_high"]]])
    finite = both["effect"].to_numpy(dtype=float)
    finite = finite[np.isfinite(finite)]
    vlim = float(np.max(np.abs(finite))) if finite.size else 1.0
    label = f"pair effect ({units})"
    out: dict[str, Heatmap] = {
        "heatmap": (pair_grid(trait, "effect", o.order),
                    {"sig_df": pair_grid(trait, "p", o.order), "vlim": vlim, "cbar_label": label,
                     "title": f"{o.suite}: transfer per pair ({units}, treated − control)"})}
    if len(placebo):
        first = placebo.drop_duplicates(["teacher", "student"])
        out["heatmap_placebo"] = (pair_grid(first, "effect", o.order),
                                  {"sig_df": pair_grid(first, "p", o.order), "vlim": vlim, "cbar_label": label,
                                   "title": f"{o.suite}: placebo (A/A) per pair, same scale"})
    extras = analysis.extras
    pm = getattr(extras, "profile_matrix", None)
    if pm is not None:
        out["heatmap_profile"] = (pm, {"title": f"{o.suite}: profile r (descriptive)", "vlim": 1.0,
                                       "cbar_label": "profile correlation r"})
    return out


def _lm_sections(analysis: Analysis) -> list[Section]:
    """The LM report's sections: the pair sections, capability side-checks, teachers."""
    out = _pair_sections(analysis)
    capability = capability_section(analysis.tidy)
    if capability is not None:
        out.append(capability)
    extras = analysis.extras
    if isinstance(extras, LMExtras) and not extras.teachers.empty:
        h, r = _teacher_rows(extras.teachers)
        out.append(("Teachers", "One row per teacher replicate and readout target: its own readout and its dataset "
                    "(completion_tokens: the dose in completion tokens; tokens_per_row: their mean per row).", h, r))
    return out


def _lm_metadata(analysis: Analysis) -> dict[str, Any]:
    o, out = analysis.options, {}
    out.update({"suite": o.suite, "track": analysis.track, "metric": o.metric, "controls": o.control,
                "alternative (γ)": o.gamma_alternative, "n_perm (γ, most)": o.n_perm, "seed": o.seed})
    extras = analysis.extras
    if isinstance(extras, LMExtras) and extras.teacher_strength is not None:
        out["teachers' own P(trait | candidates), mean"] = extras.teacher_strength
    return out


def _classifier_metadata(analysis: Analysis) -> dict[str, Any]:
    o = analysis.options
    return {"suite": o.suite, "track": analysis.track, "metric": o.metric, "treated": o.treated,
            "control": o.control, "n_perm (γ, most)": o.n_perm, "seed": o.seed}


@dataclass(frozen=True)
class TrackViews:
    """How a track's analysis is shown: readings, table sections, heatmaps, metadata and extra files."""

    readings: Callable[[Analysis, float], list[str]]
    sections: Callable[[Analysis], list[Section]]
    heatmaps: Callable[[Analysis], dict[str, Heatmap]]
    metadata: Callable[[Analysis], dict[str, Any]]
    files: Callable[[Analysis], dict[str, tuple[str, bytes]]] = lambda analysis: {}


def _classifier_files(analysis: Analysis) -> dict[str, tuple[str, bytes]]:
    return {"classifier_md": ("classifier.md", classifier_markdown(analysis).encode())}


def _classifier_heatmaps_all(analysis: Analysis) -> dict[str, Heatmap]:
    return {**_pair_heatmaps(analysis), **classifier_heatmaps(analysis)}


#: Track -> its views: the report dispatches on ``analysis.track`` here and nowhere else.
TRACK_VIEWS: dict[str, TrackViews] = {
    "lm": TrackViews(_pair_readings, _lm_sections, _pair_heatmaps, _lm_metadata),
    "classifier": TrackViews(_pair_readings, _pair_sections, _classifier_heatmaps_all, _classifier_metadata,
                             _classifier_files),
}


def views_for(analysis: Analysis) -> TrackViews:
    """The views of the analysis's track (one-line error naming the known tracks)."""
    if analysis.track not in TRACK_VIEWS:
        raise unknown_name("track", analysis.track, TRACK_VIEWS, "report")
    return TRACK_VIEWS[analysis.track]


def readings(analysis: Analysis, alpha: float = 0.05) -> list[str]:
    """Plain-language readings generated from the numbers: the verdict first (does transfer depend on a shared
    base, how strongly, how sure, which bases carry it), then the details and the definitions."""
    return views_for(analysis).readings(analysis, alpha)


def markdown_tables(analysis: Analysis) -> str:
    """The report's tables as Markdown (the track's sections)."""
    parts = []
    for title, intro, header, rows in views_for(analysis).sections(analysis):
        text = f"### {title}\n\n{intro}" if intro else f"### {title}"
        parts.append(text + ("\n\n" + md_table(header, rows) if header else ""))
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
    """Full Markdown report: the verdict and readings, the figures, the tables, the run metadata."""
    lines = [f"# Subliminal transfer: {analysis.suite}", "", "## What this suite shows", ""]
    lines += [f"- {r}" for r in readings(analysis)]
    if images:
        lines += ["", "## Figures", "", *[f"![{Path(i).stem}]({i})" for i in images]]
    lines += ["", "## Tables", "", markdown_tables(analysis)]
    if meta:
        lines += ["## Run metadata", "", md_table(["key", "value"], _meta_rows(meta)), ""]
    return "\n".join(lines)


def html_report(analysis: Analysis, meta: Mapping[str, Any], images: Mapping[str, bytes] | None = None) -> str:
    """Self-contained HTML page: the verdict, the figures (PNGs embedded as base64), the tables, the metadata."""
    esc = html.escape
    body = [f"<h1>Subliminal transfer: {esc(analysis.suite)}</h1>", "<h2>What this suite shows</h2><ul>"]
    body += [f"<li>{esc(r)}</li>" for r in readings(analysis)] + ["</ul>"]
    figures = [
        f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
        for caption, png in (images or {}).items()
    ]
    body.append('<div style="display:flex;flex-wrap:wrap;gap:1em">' + "".join(figures) + "</div>")
    for title, intro, header, rows in views_for(analysis).sections(analysis):
        block = f"<h2>{esc(title.replace('`', ''))}</h2>" + (f"<p>{esc(intro)}</p>" if intro else "")
        if header:
            block += ('<div style="overflow-x:auto">' + pd.DataFrame(rows, columns=header).to_html(
                index=False, escape=True) + "</div>")
        body.append(block)
    return html_page(analysis.suite, body, meta)


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
# the classifier track's accuracy views
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

    The analysis's own files (tidy.csv, pairs.csv, ...) are written by :func:`benchmark.analysis.write_analysis`.

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

    Files: ``heatmap.png`` (the pair effects), ``heatmap_placebo.png`` (A/A rows, same scale),
    ``heatmap_profile.png`` (LM, when the profile readout exists), the track's own heatmaps (classifier:
    ``heatmap_accuracy``, ``heatmap_all_logits``) and ``extra_heatmaps``, ``report.md``, ``index.html``, and the
    track's extra files (classifier: ``classifier.md``).

    Returns:
        Key -> (file name, bytes).

    Raises:
        UserError: An extra heatmap name that is not a plain file-name part, or an unknown track.
    """
    views = views_for(analysis)
    heatmaps = {**views.heatmaps(analysis), **dict(extra_heatmaps or {})}
    for name in heatmaps:
        if not _NAME_RE.match(name):
            raise UserError(f"extra heatmap name {name!r}: use letters, digits, '.', '_' or '-'")
    pngs, captions = _render_heatmaps(analysis, heatmaps)
    meta_all = {**views.metadata(analysis), **dict(meta or {})}
    images = [f"{k}.png" for k in pngs]
    files = {key: (f"{key}.png", png) for key, png in pngs.items()}
    files["report_md"] = ("report.md", report_markdown(analysis, meta_all, images).encode())
    files["index_html"] = ("index.html", html_report(analysis, meta_all, _by_caption(pngs, captions)).encode())
    files.update(views.files(analysis))
    return files


def _render_heatmaps(analysis: Analysis, heatmaps: Mapping[str, Heatmap]) -> tuple[dict[str, bytes], dict[str, str]]:
    """PNG bytes and caption of each heatmap, under ``heatmap_<name>`` (``heatmap`` itself kept)."""
    pngs: dict[str, bytes] = {}
    captions: dict[str, str] = {}
    for key, (m_df, kwargs) in heatmaps.items():
        name = key if key.startswith("heatmap") else f"heatmap_{key}"
        kw = {"lineage": analysis.options.lineage, "title": name, **dict(kwargs)}
        pngs[name] = figure_png(heatmap_figure(m_df, **kw))
        captions[name] = str(kw.get("title") or name)
    return pngs, captions


def _by_caption(pngs: Mapping[str, bytes], captions: Mapping[str, str]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for key, png in pngs.items():
        cap = captions.get(key, key)
        out[cap if cap not in out else f"{cap} ({key})"] = png
    return out
