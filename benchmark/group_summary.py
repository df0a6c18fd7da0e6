"""The summary of a suite group's published parts (``results/suites/<group>/``; :mod:`benchmark.groups` plans them).

Every part's pair table (``pairs.csv``: one row per teacher × student pair on the suite's primary trait, plus its
placebo rows) in one ``cells.csv`` with ``part``, ``channel`` and ``readout`` columns, the students' capability
readouts and collapse flags in ``capability.csv``, and ``report.md`` / ``index.html`` linking the parts' own reports.
A function of the parts' published files (and, for a judged rate, of the same analysis code the parts use), so the
same parts give byte-identical summaries.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from benchmark.groups import GroupPart
    from benchmark.specs import SuiteGroup

__all__ = ["read_part", "write_group_summary"]


def read_part(directory: Path) -> dict[str, Any]:
    """The published files of a part the summary reads (tidy, pairs, teachers, fit, manifest), read back by
    :func:`benchmark.analysis.read_analysis` with the options its report ran with (text stays text, floats bit for
    bit)."""
    import pandas

    from benchmark.analysis import LMExtras, read_analysis
    from benchmark.errors import UserError
    from benchmark.lm.stages.report import analysis_options

    if not (directory / "manifest.json").is_file():
        raise UserError(f"{directory}: no published report (manifest.json); run the group's parts first")
    manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    analysis = read_analysis(directory, analysis_options(manifest["spec"]))
    teachers = analysis.extras.teachers if isinstance(analysis.extras, LMExtras) else pandas.DataFrame()
    return {"tidy": analysis.tidy, "cells": analysis.cells, "teachers": teachers, "fit": analysis.fit,
            "manifest": manifest}


def _rate_pairs(data: Mapping[str, Any]) -> pd.DataFrame | None:
    """The pair table of a judged rate readout (``rate`` rows of a misalignment part whose pair metric is another),
    by the parts' own analysis code; None when the part has no such rows."""
    from benchmark.lm.stages.report import analyze

    spec = data["manifest"]["spec"]  # the published report node's spec: what its own analysis ran with
    tidy = data["tidy"]
    if spec["analysis"].get("metric", spec["metric"]) == "rate" or "rate" not in set(tidy["metric"]):
        return None
    rate_spec = {**spec, "analysis": {**spec["analysis"], "metric": "rate"}}
    return analyze(tidy, data["teachers"], rate_spec).cells  # the LM analysis's cells are its pair table


def _summaries(parts: Sequence[GroupPart], results: Path) -> list[dict[str, Any]]:
    """Per part: its published data, its pair tables (pair metric and, where judged, rate) and capability.

    Each pair table has one row per (teacher, student) pair, on the part's primary trait (``misaligned`` in a
    misalignment part: the aligned side enters its contrast, it is not a second row), and its placebo rows.
    """
    from benchmark.analysis.views import capability_flags

    out = []
    for part in parts:
        data = read_part(results / part.name)
        out.append({"part": part, "data": data, "cells": data["cells"], "rate": _rate_pairs(data),
                    "capability": capability_flags(data["tidy"])})
    return out


def _combined_cells(summaries: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    frames = []
    for s in summaries:
        for readout, cells in (("pair metric", s["cells"]), ("judged rate", s["rate"])):
            if cells is None:
                continue
            frame = cells.copy()
            frame.insert(0, "readout", readout)  # "pair metric" or "judged rate"
            frame.insert(0, "channel", s["part"].channel)
            frame.insert(0, "part", s["part"].name)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _combined_capability(summaries: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    frames = []
    for s in summaries:
        frame = s["capability"].copy()
        frame.insert(0, "channel", s["part"].channel)
        frame.insert(0, "part", s["part"].name)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _part_blocks(s: Mapping[str, Any]) -> list[tuple[str, str, list[str], list[list[Any]]]]:
    """The summary's sections for one part: its pair matrix per readout (pair metric, judged rate), γ and placebo,
    capability; each (title, intro, header, rows)."""
    from benchmark.report import SIG_LEGEND, capability_section, gamma_lines, pair_matrix_text, placebo_reading

    part: GroupPart = s["part"]
    order = list(dict.fromkeys([*part.spec.teachers, *part.spec.students]))
    spec = s["data"]["manifest"]["spec"]
    metric = str(spec["analysis"].get("metric", spec["metric"]))
    fit = s["data"]["fit"]
    blocks = []
    for label, cells in ((metric, s["cells"]), ("judged rate", s["rate"])):
        if cells is None:
            continue
        text = pair_matrix_text(cells, order)
        rows = [[str(i), *row] for i, row in zip(text.index, text.to_numpy().tolist(), strict=True)]
        blocks.append((f"{part.name}: pairs, `{fit.get('primary_trait', part.spec.traits[0])}` contrast, {label}",
                       f"Effect of each pair ({label}): the treated arm's {part.settings.replicates} teacher "
                       f"replicates against its control arms' ({', '.join(fit.get('control_arms') or [])}), 95% CI "
                       f"inverting the exact permutation test; {SIG_LEGEND}.",
                       ["teacher \\ student", *map(str, text.columns)], rows))
    blocks.append((f"{part.name}: shared-base effect and placebo",
                   " ".join([*gamma_lines(fit), placebo_reading(fit)]), [], []))
    capability = capability_section(s["data"]["tidy"])
    if capability is not None:
        title, intro, header, rows = capability
        blocks.append((f"{part.name}: {title.lower()}", intro, header, rows))
    return blocks


def _intro_lines(group: SuiteGroup, summaries: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = [group.description.strip()] if group.description else []
    for s in summaries:
        part: GroupPart = s["part"]
        lines.append(f"`{part.name}` ({part.channel}): traits {', '.join(part.spec.traits)}; report "
                     f"{s['data']['manifest'].get('id', '')}; full report: ../{part.name}/report.md")
    shared = _shared_nodes(summaries)
    if shared:
        lines.append(f"Shared nodes: {shared}.")
    lines.append("One row per (teacher, student) pair, on each part's primary trait (its first): the contrast "
                 "W = L(primary) − mean L(other traits) within each student, so with traits [misaligned, aligned] "
                 "the aligned side is inside the one contrast, not a mirrored second row. Placebo rows compare an "
                 "A/A arm with its twin.")
    return lines


def _shared_nodes(summaries: Sequence[Mapping[str, Any]]) -> str:
    """Which parts share teacher nodes (then their matrices are not independent of each other)."""
    keys = {s["part"].name: {n.key for n in s["part"].nodes if n.kind == "teacher"} for s in summaries}
    names = list(keys)
    pairs = [(a, b, len(keys[a] & keys[b])) for i, a in enumerate(names) for b in names[i + 1:]]
    return "; ".join(f"{a} and {b} share {k} teacher replicates (the same teachers write both channels: each "
                     "matrix is honest within itself, the two are not independent)" for a, b, k in pairs if k)


def _markdown(group: SuiteGroup, summaries: Sequence[Mapping[str, Any]]) -> str:
    from benchmark.report import md_table

    out = [f"# Suite group: {group.name}", "", *[f"- {line}" for line in _intro_lines(group, summaries)]]
    for s in summaries:
        for title, intro, header, rows in _part_blocks(s):
            out += ["", f"## {title}", "", intro] + (["", md_table(header, rows)] if header else [])
    return "\n".join(out) + "\n"


def _html(group: SuiteGroup, summaries: Sequence[Mapping[str, Any]]) -> str:
    import pandas as pd

    from benchmark.report import html_page

    esc = html.escape
    links = "".join(f'<li><a href="../{esc(s["part"].name)}/index.html">{esc(s["part"].name)}</a> '
                    f'({esc(s["part"].channel)})</li>' for s in summaries)
    body = [f"<h1>Suite group: {esc(group.name)}</h1>", f"<h2>Parts</h2><ul>{links}</ul>", "<ul>"]
    body += [f"<li>{esc(line)}</li>" for line in _intro_lines(group, summaries)] + ["</ul>"]
    for s in summaries:
        for title, intro, header, rows in _part_blocks(s):
            block = f"<h2>{esc(title.replace('`', ''))}</h2><p>{esc(intro)}</p>"
            if header:
                block += pd.DataFrame(rows, columns=header).to_html(index=False, escape=True)
            body.append(block)
    return html_page(group.name, body, {})


def write_group_summary(group: SuiteGroup, parts: Sequence[GroupPart], results: Path) -> Path:
    """Write the group's summary of its published parts into ``results/<group>/`` (each file atomically).

    Args:
        group: The group.
        parts: Its planned parts (:func:`plan_group`), all published under ``results/<part>/``.
        results: The published suites' folder (``results/suites``).

    Returns:
        The summary folder.

    Raises:
        UserError: A part has no published report.
    """
    from benchmark.files import atomic_write_bytes

    summaries = _summaries(parts, results)
    dest = results / group.name
    meta = {"group": group.name, "parts": [
        {"name": s["part"].name, "channel": s["part"].channel, "report": s["data"]["manifest"].get("id")}
        for s in summaries]}
    files = {
        "cells.csv": _combined_cells(summaries).to_csv(index=False).encode(),
        "capability.csv": _combined_capability(summaries).to_csv(index=False).encode(),
        "report.md": _markdown(group, summaries).encode(),
        "index.html": _html(group, summaries).encode(),
        "group.json": (json.dumps(meta, indent=1) + "\n").encode(),
    }
    for name, data in files.items():
        atomic_write_bytes(dest / name, data)
    return dest
