"""Build the static leaderboard site from results bundles: plain files that any web server (or a file browser) shows.

Layout of ``--out``::

    index.html                 every pair of every suite in one sortable, filterable table, and the suites
    leaderboard.json           the table's rows (download)
    static/style.css, app.js   the only script: sorting and filtering the table in the browser
    schema/bundle.schema.json  the bundle's JSON Schema
    suites/<name>/index.html   one page per suite: γ, per-base table, heatmaps with CIs, lineage graph, models,
                               provenance
    suites/<name>/*.svg        the figures: the pairs' heatmap and the placebo rows' (one colour scale per suite)
    suites/<name>/bundle.json, tidy.csv, pairs.csv, matrix.csv, fit.json, ...  downloads (the published bytes)

The table is rendered into the HTML (it shows without JavaScript); ``app.js`` sorts and filters the rows it
finds there. The CSV downloads are rendered from the bundle's tables, which give back the published files byte for
byte (:mod:`benchmark.bundle.tables`). The site is written to a staging directory and swapped in whole.

``--out`` is replaced whole, so only a directory this module made is replaced: the site carries its own marker
file (:data:`MARKER`), and any other non-empty directory, or anything in or above ``results/suites/`` (the
published results), is refused with one line before anything is written (docs/reliability.md).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any

from benchmark.analysis.views import base_logodds, probability_text
from benchmark.bundle.export import bundle_bytes
from benchmark.bundle.schema import Bundle, schema_text
from benchmark.bundle.tables import frame_of, render_csv
from benchmark.errors import UserError
from benchmark.leaderboard.svg import HeatCell, LineageNode, heatmap_svg, lineage_svg, suite_scale

__all__ = ["COLUMNS", "MARKER", "Site", "build_site", "check_site_dir", "table_rows"]

#: Columns of the cross-suite table: (key, header, kind) with kind "num" or "str" (how app.js sorts it).
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("suite", "suite", "str"), ("track", "track", "str"), ("teacher", "teacher", "str"),
    ("teacher_family", "teacher family", "str"), ("student", "student", "str"),
    ("student_family", "student family", "str"), ("relation", "relation", "str"), ("trait", "target", "str"),
    ("metric", "metric", "str"), ("effect", "effect", "num"), ("ci", "95% CI", "num"), ("p", "p", "num"),
    ("q", "q", "num"), ("p_drift", "p (drift)", "num"), ("q_drift", "q (drift)", "num"),
    ("ratio", "transfer ratio", "num"), ("n", "n", "num"),
)
_STATIC = ("style.css", "app.js")
#: The file that marks a directory as a site :func:`build_site` wrote (the only kind of directory it replaces).
MARKER = ".slbench-site"


@dataclass(frozen=True)
class Site:
    """What :func:`build_site` wrote."""

    root: Path
    index: Path
    suites: dict[str, Path]
    n_rows: int


def build_site(bundles: Sequence[Bundle], out: Path, samples: Mapping[str, Path] | None = None) -> Site:
    """Write the site for ``bundles`` into ``out`` (replacing it); suite names must be unique.

    ``samples`` maps a suite's name to the sample log beside its bundle (``samples.jsonl``, ``slbench export
    --samples``): that suite's page links a per-sample page (``suites/<name>/samples.html``,
    :mod:`benchmark.leaderboard.view`) and offers the log as a download.
    """
    names = [b.suite.name for b in bundles]
    dup = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if dup is not None:
        raise UserError(f"two bundles of suite {dup!r}: give one bundle per suite")
    out = Path(out).resolve()
    check_site_dir(out)  # before anything is written
    stage = out.with_name(f".{out.name}.building-{uuid.uuid4().hex[:8]}")
    try:
        stage.mkdir(parents=True)
        site = _write(bundles, stage, samples or {})
        (stage / MARKER).write_text("written by `slbench leaderboard`; this directory is replaced whole on the "
                                    "next build\n", encoding="utf-8")
        _swap(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return Site(root=out, index=out / "index.html", suites={k: out / v.relative_to(stage) for k, v in
                                                               site.suites.items()}, n_rows=site.n_rows)


def check_site_dir(out: Path) -> None:
    """Refuse an ``out`` that is not ours to replace: a file, a non-empty directory without :data:`MARKER`, or a
    path in, at or above ``results/suites/`` (the published results; a copied marker does not make them a site).

    Raises:
        UserError: one line naming the directory and what is allowed.
    """
    from benchmark.files import project_root

    out = Path(out).resolve()
    allowed = f"give --out a new or empty directory, or one an earlier `slbench leaderboard` wrote (with {MARKER})"
    try:
        published = (project_root() / "results" / "suites").resolve()
    except UserError:  # outside a checkout there are no published results to protect
        published = None
    if published is not None and (out == published or published in out.parents or out in published.parents):
        raise UserError(f"{out}: in or above the published results ({published}); refusing to replace it; {allowed}")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: is a file, not a directory; refusing to replace it; {allowed}")
    if out.is_dir() and not (out / MARKER).is_file() and any(out.iterdir()):
        raise UserError(f"{out}: not empty and not a leaderboard site (no {MARKER}); refusing to replace it; "
                        f"{allowed}")


def _swap(stage: Path, out: Path) -> None:
    """Replace ``out`` by ``stage`` (the old copy is removed after the rename); ``out`` is checked again just
    before, in case it changed while the site was written."""
    check_site_dir(out)
    old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
    if out.exists():
        out.rename(old)
    stage.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def _write(bundles: Sequence[Bundle], root: Path, samples: Mapping[str, Path]) -> Site:
    (root / "static").mkdir()
    for name in _STATIC:
        (root / "static" / name).write_text(resources.files("benchmark.leaderboard").joinpath(
            "static", name).read_text(encoding="utf-8"), encoding="utf-8")
    (root / "schema").mkdir()
    (root / "schema" / "bundle.schema.json").write_text(schema_text(), encoding="utf-8")
    rows = [row for b in bundles for row in table_rows(b)]
    (root / "leaderboard.json").write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    suites = {b.suite.name: _suite_page(b, root / "suites" / b.suite.name, samples.get(b.suite.name))
              for b in bundles}
    (root / "index.html").write_text(_index_page(bundles, rows), encoding="utf-8")
    return Site(root=root, index=root / "index.html", suites=suites, n_rows=len(rows))


# -- the cross-suite table -------------------------------------------------------------------------------------
def table_rows(bundle: Bundle) -> list[dict[str, Any]]:
    """One row per pair and placebo row of a bundle, as the index table and ``leaderboard.json`` show it."""
    family = {m.name: m.family for m in bundle.models}
    metric = bundle.metric_config.metric
    rows = []
    for r in bundle.evaluation_results:
        d = r.score_details
        ci = d.uncertainty.confidence_interval
        rows.append({"suite": bundle.suite.name, "track": bundle.suite.track, "teacher": r.teacher,
                     "teacher_family": family.get(r.teacher, ""), "student": r.student,
                     "student_family": family.get(r.student, ""), "relation": r.relation, "trait": r.trait,
                     "placebo": r.placebo, "metric": metric, "effect": d.score, "ci_low": ci.lower,
                     "ci_high": ci.upper, "p": d.p_value, "q": d.q_value, "p_drift": d.p_drift, "q_drift": d.q_drift,
                     "ratio": r.transfer_ratio, "n": d.uncertainty.num_samples})
    return rows


def _fmt(v: float | None, digits: int = 3) -> str:
    return "" if v is None else f"{v:+.{digits}f}"


def _fmt_p(v: float | None) -> str:
    return "" if v is None else f"{v:.3g}"


def _sort_value(v: Any) -> str:
    """``data-sort`` of a cell: numbers as repr (app.js parses them), missing as empty (sorted last)."""
    return "" if v is None else escape(str(v))


def _row_html(row: dict[str, Any]) -> str:
    digits = 1 if row["effect"] is not None and abs(row["effect"]) >= 10 else 3
    cells = {
        "suite": f'<a href="suites/{escape(row["suite"])}/index.html">{escape(row["suite"])}</a>',
        "effect": _fmt(row["effect"], digits),
        "ci": f"[{_fmt(row['ci_low'], digits)}, {_fmt(row['ci_high'], digits)}]" if row["ci_low"] is not None else "",
        "p": _fmt_p(row["p"]), "q": _fmt_p(row["q"]), "p_drift": _fmt_p(row["p_drift"]),
        "q_drift": _fmt_p(row["q_drift"]), "ratio": _fmt(row["ratio"]), "n": str(row["n"]),
    }
    sort = {"effect": row["effect"], "ci": row["ci_low"], "p": row["p"], "q": row["q"], "p_drift": row["p_drift"],
            "q_drift": row["q_drift"], "ratio": row["ratio"], "n": row["n"]}
    tds = []
    for key, _, _ in COLUMNS:
        text = cells.get(key, escape(str(row.get(key, ""))))
        value = sort.get(key, row.get(key, ""))
        tds.append(f'<td data-key="{key}" data-sort="{_sort_value(value)}">{text}</td>')
    strong = row["ci_low"] is not None and row["ci_high"] is not None and (row["ci_low"] > 0 or row["ci_high"] < 0)
    classes = " ".join(c for c in ("placebo" if row["placebo"] else "", "excludes-zero" if strong else "") if c)
    attrs = "".join(f' data-{k.replace("_", "-")}="{escape(str(row[k]))}"' for k in
                    ("suite", "track", "relation", "teacher_family", "student_family", "placebo"))
    return f'<tr class="{classes}"{attrs}>' + "".join(tds) + "</tr>"


def _select(name: str, label: str, values: Sequence[str]) -> str:
    options = "".join(f'<option value="{escape(v)}">{escape(v)}</option>' for v in values)
    return (f'<label>{escape(label)} <select id="filter-{name}" data-filter="{name}">'
            f'<option value="">all</option>{options}</select></label>')


def _index_page(bundles: Sequence[Bundle], rows: list[dict[str, Any]]) -> str:
    families = sorted({r["teacher_family"] for r in rows} | {r["student_family"] for r in rows})
    heads = "".join(f'<th data-key="{k}" data-type="{t}" tabindex="0" aria-sort="none">{escape(h)}</th>'
                    for k, h, t in COLUMNS)
    body = "\n".join(_row_html(r) for r in rows)
    filters = " ".join([
        '<label>search <input id="filter-text" type="search" placeholder="model, trait, family…"></label>',
        _select("suite", "suite", sorted({r["suite"] for r in rows})),
        _select("track", "track", sorted({r["track"] for r in rows})),
        _select("relation", "relation", ["same", "sibling", "unrelated"]),
        _select("family", "family", families),
        '<label><input id="filter-placebo" type="checkbox"> placebo rows</label>',
    ])
    content = f"""
<h1>subliminal-bench leaderboard</h1>
<p class="lead">Transfer of a teacher's trait to students trained on its filtered, unrelated data, as a teacher ×
student matrix per suite: one row per (teacher, student) pair. A pair's <em>effect</em> is its students'
target-specific readout under the treated teachers minus under the control teachers (each suite's definition is on
its page); the 95% CI inverts the pair's test, with the independent teacher replicate (or seed) as the unit; q is
Benjamini-Hochberg within the pair's family (same, sibling, unrelated); p/q (drift) test same and sibling pairs
against the drift unrelated pairs show. The <em>transfer ratio</em> is the effect over the teachers' own contrast.
<strong>γ</strong>, the primary claim, is the extra effect of pairs whose teacher and student share an
initialisation.</p>
<h2>Suites</h2>
{_suites_table(bundles)}
<h2>Pairs</h2>
<div class="filters">{filters}</div>
<p class="count" id="row-count">{sum(not r["placebo"] for r in rows)} of {len(rows)} rows</p>
<table id="cells" class="sortable">
<thead><tr>{heads}</tr></thead>
<tbody>
{body}
</tbody>
</table>
<p class="foot">Downloads: <a href="leaderboard.json">leaderboard.json</a> (these rows),
<a href="schema/bundle.schema.json">bundle.schema.json</a> (the results bundle's schema). Bold effect: the 95% CI
excludes 0 (p ≤ 0.05). Placebo rows (an A/A arm against its twin) are hidden unless ticked.</p>
"""
    return _page("subliminal-bench leaderboard", content, depth=0)


def _suites_table(bundles: Sequence[Bundle]) -> str:
    head = ("<tr><th>suite</th><th>track</th><th>models</th><th>families</th><th>pairs</th><th>γ [95% CI]</th>"
            "<th>p (γ)</th><th>placebo p≤0.05 (exact size)</th><th>commit</th><th>date</th></tr>")
    rows = []
    for b in bundles:
        sb = b.shared_base
        name = escape(b.suite.name)
        commit = (b.provenance.git_commit or "unknown")[:10] + (" (dirty)" if b.provenance.git_dirty else "")
        n_pairs = sum(not r.placebo for r in b.evaluation_results)
        rows.append(f'<tr><td><a href="suites/{name}/index.html">{name}</a></td><td>{escape(b.suite.track)}</td>'
                    f"<td>{len(b.models)}</td><td>{escape(', '.join(sorted({m.family for m in b.models})))}</td>"
                    f"<td>{n_pairs}</td><td>{_gamma_ci(b)}</td><td>{_fmt_p(sb.p_value)}</td>"
                    f"<td>{escape(_placebo_text(b))}</td><td><code>{escape(commit)}</code></td>"
                    f"<td>{escape(b.evaluation_timestamp[:10])}</td></tr>")
    return f'<table class="suites"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def _gamma_ci(bundle: Bundle) -> str:
    """``+0.325 [-0.069, +0.719]``, or why there is no estimate."""
    sb = bundle.shared_base
    ci = sb.uncertainty.confidence_interval
    if sb.gamma is None or not _identifiable(bundle):
        return "not identifiable"
    bounds = f" [{_fmt(ci.lower)}, {_fmt(ci.upper)}]" if ci.lower is not None and ci.upper is not None else " (no CI)"
    return _fmt(sb.gamma) + bounds


def _identifiable(bundle: Bundle) -> bool:
    """Whether the fit could estimate the primary γ (``fit.json`` ``primary.identifiable``; bundles without the key:
    whether γ has a value)."""
    primary = bundle.data.fit.get("primary") or {}
    return bool(primary.get("identifiable", bundle.shared_base.gamma is not None))


def _placebo_text(bundle: Bundle) -> str:
    """The A/A calibration check: rows at p ≤ 0.05 of all, their share and what it should be (the exact size)."""
    sb = bundle.shared_base
    if sb.placebo_rate is None:
        return ""
    placebo = bundle.data.fit.get("placebo") or {}
    count = f"{placebo['n_p05']} of {placebo['n_rows']}, " if {"n_p05", "n_rows"} <= set(placebo) else ""
    size = f" (exact size {100 * sb.placebo_exact_size:.1f}%)" if sb.placebo_exact_size is not None else ""
    return f"{count}{100 * sb.placebo_rate:.1f}%{size}"


def _page(title: str, content: str, depth: int) -> str:
    up = "../" * depth
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<link rel="stylesheet" href="{up}static/style.css">
</head>
<body>
<nav><a href="{up}index.html">leaderboard</a></nav>
<main>{content}</main>
<script src="{up}static/app.js"></script>
</body>
</html>
"""


# -- a suite's page --------------------------------------------------------------------------------------------
def _suite_page(bundle: Bundle, directory: Path, samples: Path | None = None) -> Path:
    directory.mkdir(parents=True)
    downloads = _write_downloads(bundle, directory)
    samples_link = _samples_page(bundle, samples, directory, downloads) if samples is not None else ""
    figures = _write_figures(bundle, directory)
    fit = bundle.data.fit
    parts = [f"<h1>{escape(bundle.suite.name)} <small>({escape(bundle.suite.track)} track)</small></h1>",
             f'<p class="lead">{escape(bundle.suite.description)}</p>',
             _gamma_block(bundle), samples_link, _bases_table(bundle), _relations_table(fit),
             f"<h2>Method</h2><p>{escape(bundle.metric_config.evaluation_description)}</p>",
             "<h2>Heatmaps</h2><p>Each cell: a pair's effect and its 95% CI; a thick outline marks a CI that excludes "
             "0 (p ≤ 0.05). The pairs and the placebo rows share one colour scale. Hover a cell for p, q and the "
             "drift-aware q.</p>"]
    for name, svg in figures["heatmaps"]:
        parts.append(f'<figure class="heatmap">{svg}<figcaption><a href="{escape(name)}">{escape(name)}</a>'
                     "</figcaption></figure>")
    parts += ["<h2>Init lineage</h2>", f'<figure class="lineage">{figures["lineage"]}<figcaption>'
              '<a href="lineage.svg">lineage.svg</a></figcaption></figure>',
              _models_table(bundle), _provenance(bundle), _downloads_list(downloads),
              f'<p><a href="../../index.html?suite={escape(bundle.suite.name)}">this suite\'s pairs in the '
              "leaderboard table</a></p>"]
    page = directory / "index.html"
    page.write_text(_page(f"{bundle.suite.name} — subliminal-bench", "\n".join(parts), depth=2), encoding="utf-8")
    return page


def _write_downloads(bundle: Bundle, directory: Path) -> list[str]:
    """The bundle and its data files, as published (CSV and JSON bytes rendered from the bundle)."""
    data = bundle.data
    files: dict[str, bytes] = {"bundle.json": bundle_bytes(bundle),
                               "tidy.csv": render_csv(data.replicate_rows), "pairs.csv": render_csv(data.cells),
                               "matrix.csv": render_csv(data.matrix),
                               "fit.json": json.dumps(data.fit, indent=2, sort_keys=True).encode("utf-8")}
    files.update({name: render_csv(t) for name, t in data.tables.items()})
    files.update({name: (json.dumps(d, indent=2, sort_keys=True) + "\n").encode("utf-8")
                  for name, d in data.documents.items()})
    for name, content in files.items():
        (directory / name).write_bytes(content)
    return list(files)


def _samples_page(bundle: Bundle, log: Path, directory: Path, downloads: list[str]) -> str:
    """The per-sample page of a suite's sample log (checked against the bundle's record of it) and the link to it."""
    from benchmark.bundle.export import SAMPLES
    from benchmark.leaderboard.view import VIEW_FILE, from_samples_file, write_view

    meta = bundle.detailed_evaluation_results
    data = Path(log).read_bytes()
    if meta is None or meta.checksum != hashlib.sha256(data).hexdigest():
        raise UserError(f"{log}: not the sample log its bundle records (detailed_evaluation_results); regenerate both "
                        f"with `slbench export {bundle.suite.name} --samples --store STORE`, or delete it")
    (directory / SAMPLES).write_bytes(data)
    downloads.append(SAMPLES)
    found = from_samples_file(directory / SAMPLES, bundle.suite.name)
    write_view(found, directory, back="index.html")
    return (f'<p class="samples"><a href="{VIEW_FILE}">Browse the samples</a>: what each evaluated model answered '
            f"({len(found.evals)} evaluations, from <a href=\"{SAMPLES}\">{SAMPLES}</a>).</p>")


def _write_figures(bundle: Bundle, directory: Path) -> dict[str, Any]:
    """The pairs' heatmap and the placebo rows' (one per A/A arm), all on one colour scale, and the lineage graph;
    each also as its own .svg file."""
    order = list(bundle.suite.report_spec.get("order") or [m.name for m in bundle.models])
    groups: dict[tuple[bool, str], list[HeatCell]] = {}
    for r in bundle.evaluation_results:
        d = r.score_details
        ci = d.uncertainty.confidence_interval
        groups.setdefault((r.placebo, r.trait), []).append(
            HeatCell(r.teacher, r.student, d.score, ci.lower, ci.upper, d.p_value, r.relation, d.q_value, d.q_drift))
    scale = suite_scale([c for cells in groups.values() for c in cells])
    heatmaps = []
    for (placebo, trait), cells in sorted(groups.items()):
        kind = "placebo" if placebo else "pairs"
        several = sum(p == placebo for p, _ in groups) > 1
        title = (f"{bundle.suite.name}: A/A placebo ({trait.removeprefix('placebo:')} arm vs its twin)" if placebo
                 else f"{bundle.suite.name}: pairs ({trait} contrast)")
        svg = heatmap_svg(title, cells, order, bundle.metric_config.metric, scale=scale)
        name = f"heatmap_{kind}" + (f"-{_slug(trait.removeprefix('placebo:'))}" if several else "") + ".svg"
        (directory / name).write_text(svg + "\n", encoding="utf-8")
        heatmaps.append((name, svg))
    nodes = [LineageNode(m.name, m.lineage_init, m.lineage_parent, f"{m.family} · {m.provider}")
             for m in sorted(bundle.models, key=lambda m: order.index(m.name) if m.name in order else len(order))]
    lineage = lineage_svg(nodes)
    (directory / "lineage.svg").write_text(lineage + "\n", encoding="utf-8")
    return {"heatmaps": heatmaps, "lineage": lineage}


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text)


def _gamma_block(bundle: Bundle) -> str:
    """The headline: the primary γ with its CI and p, how they were made, the leave-one-base-out range and the
    placebo check."""
    sb = bundle.shared_base
    primary = bundle.data.fit.get("primary") or {}
    side = {"greater": "one-sided, ", "less": "one-sided, "}.get(str(primary.get("alternative")), "")
    if not _identifiable(bundle):
        def count(key: str, noun: str, default: Any = "?") -> str:
            n = primary.get(key, default)
            return f"{n} {noun}" + ("" if n == 1 else "s")

        lines = [f"<li><strong>γ ({escape(sb.indicator)}): not identifiable</strong> in this design "
                 f"({count('n_pairs', 'pair', sb.uncertainty.num_samples)}, {count('n_teachers', 'teacher base')}, "
                 f"{primary.get('n_shared_pairs', '?')} sharing an init): it cannot separate "
                 "transfer through a shared base from the bases' own effects, so no estimate or p is given "
                 "(<code>slbench plan</code> says so before a run).</li>"]
        placebo = _placebo_text(bundle)
        if placebo:
            lines.append(f"<li>Calibration: A/A placebo rows at p ≤ 0.05: {escape(placebo)}; the exact size is what "
                         "a calibrated test gives (below 5% with few replicates).</li>")
        return f'<ul class="summary">{"".join(lines)}</ul>'
    lines = [f"<li><strong>γ ({escape(sb.indicator)}) = {_gamma_ci(bundle)}</strong>, p = {_fmt_p(sb.p_value)} "
             f"({side}{escape(sb.method or sb.uncertainty.confidence_interval.method)}; "
             f"{sb.uncertainty.num_samples} pairs)</li>"]
    prob = _gamma_probability(bundle)
    if prob:
        lines.append(f"<li>In probability: {escape(prob)} (the whole γ added to that log-odds; docs/statistics.md)."
                     "</li>")
    if sb.leave_one_base_out_min is not None and sb.leave_one_base_out_max is not None:
        lines.append(f"<li>Leaving out one base at a time (as teacher and as student): γ from "
                     f"{_fmt(sb.leave_one_base_out_min)} to {_fmt(sb.leave_one_base_out_max)}.</li>")
    placebo = _placebo_text(bundle)
    if placebo:
        lines.append(f"<li>Calibration: A/A placebo rows at p ≤ 0.05: {escape(placebo)}; the exact size is what "
                     "a calibrated test gives (below 5% with few replicates).</li>")
    return f'<ul class="summary">{"".join(lines)}</ul>'


def _gamma_probability(bundle: Bundle) -> str:
    """γ in probability units, as the report gives it: at the median student base's log-odds of the primary trait
    before training (the bundle's baseline rows); '' for other metrics or without baseline rows."""
    fit = bundle.data.fit
    target = fit.get("primary_trait")
    if fit.get("metric") != "logodds" or not target or not (fit.get("primary") or {}).get("identifiable", False):
        return ""
    rates = base_logodds(frame_of(bundle.data.replicate_rows), str(target))
    return probability_text(str(target), rates, bundle.shared_base.gamma)


def _bases_table(bundle: Bundle) -> str:
    """Per base (``bases.csv``): its same-model pair, transfer ratio and verdict — which bases transfer."""
    table = bundle.data.tables.get("bases.csv")
    if table is None or not table.rows:
        return ""
    body = "".join(_base_row(dict(zip(table.columns, values, strict=True))) for values in table.rows)
    return ("<h2>Per base</h2><p>Each base's same-model pair (teacher and student the same base): its effect, the "
            "drift-aware q of its verdict, and the transfer ratio (the effect over its teachers' own contrast).</p>"
            "<table class=\"bases\"><thead><tr><th>base</th><th>effect [95% CI]</th><th>p</th><th>q (drift)</th>"
            "<th>transfer ratio [95% CI]</th><th>teacher contrast</th><th>verdict</th></tr></thead>"
            f"<tbody>{body}</tbody></table>")


def _base_row(r: dict[str, Any]) -> str:
    def n(key: str) -> str:
        return _fmt(r.get(key))

    def p(key: str) -> str:
        return _fmt_p(r.get(key))

    return (f"<tr><td>{escape(str(r.get('base', '')))}</td><td>{n('effect')} [{n('ci_low')}, {n('ci_high')}]</td>"
            f"<td>{p('p')}</td><td>{p('q_drift')}</td><td>{n('transfer_ratio')} [{n('ratio_ci_low')}, "
            f"{n('ratio_ci_high')}]</td><td>{n('teacher_contrast')}</td><td>{escape(str(r.get('verdict', '')))}</td>"
            "</tr>")


def _relations_table(fit: dict[str, Any]) -> str:
    """Mean effect per relation with both CIs where the fit has them: conditional on these pairs, and over bases."""
    rel = fit.get("by_relation") or {}
    if not rel:
        return ""

    def ci(v: dict[str, Any], lo: str, hi: str) -> str:
        return f"[{_fmt(v.get(lo))}, {_fmt(v.get(hi))}]" if v.get(lo) is not None else ""

    rows = "".join(f"<tr><td>{escape(k)}</td><td>{v.get('n_pairs', v.get('n_cells', ''))}</td>"
                   f"<td>{_fmt(v.get('mean'))}</td><td>{ci(v, 'ci_low', 'ci_high')}</td>"
                   f"<td>{ci(v, 'base_ci_low', 'base_ci_high')}</td></tr>" for k, v in rel.items())
    return ("<h2>By relation</h2><table><thead><tr><th>relation</th><th>pairs</th><th>mean effect</th>"
            "<th>95% CI, these pairs</th><th>95% CI, bases as units</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>")


def _models_table(bundle: Bundle) -> str:
    rows = []
    for m in bundle.models:
        weights = f"<code>{m.weights.sha256[:12]}</code>" if m.weights else ""
        rows.append(f"<tr><td>{escape(m.name)}</td><td>{escape(m.family)}</td><td>{escape(m.provider)}</td>"
                    f"<td>{escape(m.id)}</td><td>{escape(m.revision or '')}</td><td>{escape(m.lineage_init)}</td>"
                    f"<td>{escape(m.lineage_parent or '')}</td><td>{escape(', '.join(m.roles))}</td>"
                    f"<td>{weights}</td></tr>")
    return ("<h2>Models</h2><table><thead><tr><th>name</th><th>family</th><th>provider</th><th>id</th>"
            "<th>revision</th><th>init</th><th>parent</th><th>roles</th><th>weights sha256</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _provenance(bundle: Bundle) -> str:
    p = bundle.provenance
    versions = "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in sorted(p.versions.items()))
    dirty = {True: " (uncommitted changes)", False: "", None: " (unknown state)"}[p.git_dirty]
    return f"""<h2>Provenance</h2>
<ul class="provenance">
<li>git commit <code>{escape(p.git_commit or 'unknown')}</code>{dirty}</li>
<li>report node <code>{escape(bundle.suite.report_id)}</code>, started {escape(p.started)}, {p.wall_s:.1f} s</li>
<li>Python {escape(p.python)} on {escape(p.platform)}</li>
<li>bundle schema {escape(bundle.schema_version)}, content hash <code>{escape(bundle.dedupe_identity.content_hash[:16])}</code></li>
</ul>
<table class="versions"><thead><tr><th>package</th><th>version</th></tr></thead><tbody>{versions}</tbody></table>"""


def _downloads_list(names: list[str]) -> str:
    items = "".join(f'<li><a href="{escape(n)}">{escape(n)}</a></li>' for n in names)
    return f'<h2>Downloads</h2><ul class="downloads">{items}</ul>'
