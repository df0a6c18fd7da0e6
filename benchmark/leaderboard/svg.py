"""The site's figures as hand-written SVG: heatmaps whose cells show the estimate and its CI, and the lineage graph.

SVG rather than PNG: the figures scale, their text is searchable and selectable, every cell carries a tooltip
(``<title>``) with its full numbers, and building them needs no plotting library. Colours: a diverging
blue-white-red scale symmetric around 0, readable by colour-blind viewers because the sign is also printed. The
scale is the caller's: the site gives every heatmap of a suite the same one (the largest |effect| of any of its
pairs and placebo rows, :func:`suite_scale`), so a null placebo cell is pale wherever an effect is saturated; it is
written on the figure (``data-scale`` and the legend). One significance convention, stated in the legend: a thick
outline marks a pair whose 95 % CI excludes 0 (the CIs invert the pair tests, so p ≤ 0.05 there too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

__all__ = ["HeatCell", "LineageNode", "colour", "heatmap_svg", "lineage_svg", "suite_scale"]

_CELL_W, _CELL_H = 104, 58
_LABEL_W, _HEAD_H = 150, 92
_LEGEND_W = 560  # the legend's two lines of text fit in this width at font-size 10


@dataclass(frozen=True)
class HeatCell:
    """One pair of a heatmap: its estimate, CI, tests and relation (q: BH within its family; q_drift: the
    drift-aware test's, for same and sibling pairs)."""

    teacher: str
    student: str
    score: float | None
    lower: float | None
    upper: float | None
    p: float | None
    relation: str
    q: float | None = None
    q_drift: float | None = None


def suite_scale(cells: Sequence[HeatCell]) -> float:
    """The colour scale of a suite's heatmaps: the largest |estimate| of any of its cells (0 when none has one)."""
    return max((abs(c.score) for c in cells if c.score is not None), default=0.0)


def colour(value: float | None, scale: float) -> str:
    """Fill of a value on the diverging scale (grey when missing)."""
    if value is None or scale <= 0:
        return "#e0e0e0"
    t = max(-1.0, min(1.0, value / scale))
    end = (178, 24, 43) if t > 0 else (33, 102, 172)  # ColorBrewer RdBu ends
    a = abs(t)
    r, g, b = (round(255 + (e - 255) * a) for e in end)
    return f"#{r:02x}{g:02x}{b:02x}"


def _num(v: float | None, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:+.{digits}f}"


def _excludes_zero(c: HeatCell) -> bool:
    return c.lower is not None and c.upper is not None and (c.lower > 0 or c.upper < 0)


def heatmap_svg(title: str, cells: Sequence[HeatCell], order: Sequence[str], metric: str,
                scale: float | None = None) -> str:
    """A teacher × student heatmap: each cell prints its estimate and [CI]; rows are teachers, columns students.

    Args:
        title: The figure's title.
        cells: Its pairs.
        order: Registry order of the models (rows and columns).
        metric: The readout, for the legend and tooltips.
        scale: |estimate| at the ends of the colour scale (default: this figure's largest, :func:`suite_scale`).
    """
    teachers = [m for m in order if any(c.teacher == m for c in cells)]
    students = [m for m in order if any(c.student == m for c in cells)]
    by = {(c.teacher, c.student): c for c in cells}
    scale = suite_scale(cells) if scale is None else scale
    digits = 1 if scale >= 10 else 3
    width = max(_LABEL_W + _CELL_W * len(students) + 20, _LEGEND_W)
    height = _HEAD_H + _CELL_H * len(teachers) + 84
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="heatmap" role="img" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif" data-scale="{scale!r}">',
           f"<title>{escape(title)}</title>",
           f'<text x="4" y="18" font-size="15" font-weight="bold">{escape(title)}</text>',
           f'<text x="4" y="{_HEAD_H - 8}" font-size="11" fill="#555">teacher ↓ / student →</text>']
    for j, s in enumerate(students):
        x = _LABEL_W + j * _CELL_W + _CELL_W / 2
        out.append(f'<text x="{x:.0f}" y="{_HEAD_H - 8}" font-size="11" text-anchor="start" '
                   f'transform="rotate(-35 {x:.0f} {_HEAD_H - 8})">{escape(s)}</text>')
    for i, t in enumerate(teachers):
        y = _HEAD_H + i * _CELL_H
        out.append(f'<text x="{_LABEL_W - 6}" y="{y + _CELL_H / 2 + 4:.0f}" font-size="11" '
                   f'text-anchor="end">{escape(t)}</text>')
        for j, s in enumerate(students):
            c = by.get((t, s))
            if c is not None:
                out.append(_cell(c, _LABEL_W + j * _CELL_W, y, scale, digits, metric))
    out.append(_legend(height - 54, scale, digits, metric))
    out.append("</svg>")
    return "\n".join(out)


def _cell(c: HeatCell, x: float, y: float, scale: float, digits: int, metric: str) -> str:
    strong = _excludes_zero(c)
    stroke = 'stroke="#000" stroke-width="3"' if strong else 'stroke="#fff" stroke-width="1"'
    text = "#fff" if c.score is not None and scale > 0 and abs(c.score) / scale > 0.6 else "#111"
    tests = [f"{k} = {v:.3g}" for k, v in (("p", c.p), ("q", c.q), ("q_drift", c.q_drift)) if v is not None]
    tip = (f"{c.teacher} → {c.student} ({c.relation}): {metric} effect {_num(c.score, 4)}, 95% CI "
           f"[{_num(c.lower, 4)}, {_num(c.upper, 4)}]" + (f", {', '.join(tests)}" if tests else ""))
    mark = {"same": "●", "sibling": "◐"}.get(c.relation, "")
    parts = [f'<g class="cell" data-teacher="{escape(c.teacher)}" data-student="{escape(c.student)}">',
             f"<title>{escape(tip)}</title>",
             f'<rect x="{x + 1:.0f}" y="{y + 1:.0f}" width="{_CELL_W - 2}" height="{_CELL_H - 2}" '
             f'fill="{colour(c.score, scale)}" {stroke}/>',
             f'<text x="{x + _CELL_W / 2:.0f}" y="{y + 24:.0f}" font-size="13" font-weight="bold" '
             f'text-anchor="middle" fill="{text}">{_num(c.score, digits)}</text>',
             f'<text x="{x + _CELL_W / 2:.0f}" y="{y + 42:.0f}" font-size="10" text-anchor="middle" '
             f'fill="{text}">[{_num(c.lower, digits)}, {_num(c.upper, digits)}]</text>']
    if mark:
        parts.append(f'<text x="{x + 7:.0f}" y="{y + 14:.0f}" font-size="10" fill="{text}">{mark}</text>')
    parts.append("</g>")
    return "".join(parts)


def _legend(y: float, scale: float, digits: int, metric: str) -> str:
    stops = [-1.0, -0.5, 0.0, 0.5, 1.0]
    parts = ['<g class="legend" font-size="10">']
    for k, t in enumerate(stops):
        parts.append(f'<rect x="{4 + k * 38}" y="{y:.0f}" width="38" height="12" fill="{colour(t * scale, scale)}"/>')
        parts.append(f'<text x="{23 + k * 38}" y="{y + 24:.0f}" text-anchor="middle">{_num(t * scale, digits)}</text>')
    parts.append(f'<text x="{204}" y="{y + 10:.0f}">{escape(metric)} effect; one colour scale for every heatmap '
                 "of the suite</text>")
    parts.append(f'<text x="{204}" y="{y + 24:.0f}">thick outline: 95% CI excludes 0 (p ≤ 0.05); ● same model, '
                 "◐ shared init</text>")
    parts.append("</g>")
    return "".join(parts)


@dataclass(frozen=True)
class LineageNode:
    """A model in the lineage graph."""

    name: str
    init: str
    parent: str | None
    label: str


def lineage_svg(nodes: Sequence[LineageNode]) -> str:
    """Models grouped by init lineage (one column per init), with an arrow from each parent to its child."""
    groups: dict[str, list[LineageNode]] = {}
    for n in nodes:
        groups.setdefault(n.init, []).append(n)
    names = {n.name for n in nodes}
    pos: dict[str, tuple[float, float]] = {}
    box_w, box_h, gap_x, gap_y, top, left = 170, 40, 50, 22, 40, 40
    for gi, members in enumerate(groups.values()):
        for depth_i, n in enumerate(_by_depth(members, names)):
            pos[n.name] = (left + gi * (box_w + gap_x), top + depth_i * (box_h + gap_y))
    width = left + len(groups) * (box_w + gap_x)
    height = top + max((len(m) for m in groups.values()), default=1) * (box_h + gap_y) + 10
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="lineage" role="img" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif">',
           "<title>init lineage: one column per shared initialisation; arrows from parent to child</title>",
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#444"/></marker></defs>']
    for gi, init in enumerate(groups):
        out.append(f'<text x="{left + gi * (box_w + gap_x)}" y="22" font-size="12" fill="#555">init: '
                   f"{escape(init)}</text>")
    lanes: dict[float, int] = {}
    for n in nodes:  # an elbow left of the column, one lane per edge, so no edge crosses a box
        if n.parent in pos:
            (px, py), (_, cy) = pos[n.parent], pos[n.name]
            lane = lanes[px] = lanes.get(px, 0) + 1
            d = 6 + 8 * (lane - 1)
            out.append(f'<path class="edge" d="M {px:.0f} {py + box_h / 2:.0f} h -{d} V {cy + box_h / 2:.0f} '
                       f'h {d - 1}" fill="none" stroke="#444" stroke-width="1.5" marker-end="url(#arrow)"/>')
    for n in nodes:
        x, y = pos[n.name]
        out.append(f'<g class="model"><rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="6" fill="#f4f6fb" '
                   f'stroke="#3a5a9b"/><text x="{x + 8}" y="{y + 17}" font-size="12" font-weight="bold">'
                   f'{escape(n.name)}</text><text x="{x + 8}" y="{y + 32}" font-size="10" fill="#555">'
                   f"{escape(n.label)}</text></g>")
    out.append("</svg>")
    return "\n".join(out)


def _by_depth(members: list[LineageNode], names: set[str]) -> list[LineageNode]:
    """Members ordered so that a parent comes before its children (roots first, then by depth, stable)."""
    by_name = {n.name: n for n in members}

    def depth(n: LineageNode, seen: frozenset[str] = frozenset()) -> int:
        parent = by_name.get(n.parent or "")
        if parent is None or n.name in seen:
            return 0
        return 1 + depth(parent, seen | {n.name})

    return sorted(members, key=depth)
