"""What the bundle needs to know about each track: how its statistics are recomputed and how a cell is named.

Recomputing calls the track's report stage's own ``analyze`` (``benchmark/<track>/stages/report.py``), the call its
``run`` makes: one definition of the effect everywhere, so a validated bundle's numbers are the ones the report
published. The tables hold one
track's column names; :class:`CellColumns` says which column is the teacher, the p-value and so on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from benchmark.analysis import Analysis
from benchmark.errors import UserError, unknown_name

__all__ = ["CellColumns", "TrackInfo", "track_info"]


@dataclass(frozen=True)
class CellColumns:
    """Column names of one track's cell table (``cells.csv``); None where the track has no such column."""

    teacher: str
    student: str
    trait: str
    p: str
    q: str | None
    n: str
    placebo: str | None
    ci_method: str

    def key(self, row: Mapping[str, Any]) -> str:
        """A row's name in messages and ``evaluation_results``: ``teacher→student/trait``; a placebo row's trait
        label already says so (``placebo:cat``), otherwise it is prefixed."""
        name = f"{row[self.teacher]}→{row[self.student]}/{row[self.trait]}"
        placebo = self.placebo and bool(row.get(self.placebo)) and "placebo" not in str(row[self.trait])
        return f"placebo {name}" if placebo else name


@dataclass(frozen=True)
class TrackInfo:
    """A track as the bundle sees it."""

    name: str
    cells: CellColumns
    #: (replicate rows, the bundle's other tables, report spec) -> the analysis the report stage computes.
    recompute: Callable[[pd.DataFrame, Mapping[str, pd.DataFrame], dict[str, Any]], Analysis]
    #: (replicate rows, cells, report spec, typed suite settings) -> problems with the design's controls.
    design: Callable[[pd.DataFrame, pd.DataFrame, dict[str, Any], Any], list[str]]
    #: Table file names the analysis reads as input (not recomputed): the LM teachers table.
    inputs: tuple[str, ...] = ()


def _recompute_lm(tidy: pd.DataFrame, tables: Mapping[str, pd.DataFrame], spec: dict[str, Any]) -> Analysis:
    from benchmark.lm.stages.report import analyze

    return analyze(tidy, tables.get("teachers.csv", pd.DataFrame()), spec)


def _recompute_classifier(tidy: pd.DataFrame, tables: Mapping[str, pd.DataFrame], spec: dict[str, Any]) -> Analysis:
    from benchmark.classifier.stages.report import analyze

    # The teachers' accuracies are shown in classifier.md only; no analysis file depends on them.
    return analyze(tidy, spec)


def _lm_design(tidy: pd.DataFrame, cells: pd.DataFrame, spec: dict[str, Any], settings: Any) -> list[str]:
    """Controls and placebo readouts of the LM design: every trait cell has its full treated and control arms, and
    every (teacher, student) pair has A/A placebo rows with a p-value (the calibration check)."""
    from benchmark.analysis.replicates import AA_PREFIX

    problems: list[str] = []
    k = int(spec.get("replicates", 1))
    trait = cells[~cells["placebo"].astype(bool)]
    for row in trait.to_dict(orient="records"):
        name = f"cell {row['teacher']}→{row['student']}/{row['trait']}"
        n_controls = len([a for a in str(row["control_arms"]).split("+") if a])
        if n_controls == 0 or row["n_control_reps"] != k * n_controls:
            problems.append(f"{name}: {row['n_control_reps']} control replicates in arms {row['control_arms']!r}; "
                            f"the design has {k} per control arm")
        if row["n_reps"] != k:
            problems.append(f"{name}: {row['n_reps']} treated replicates; the design has {k}")
    if not any(str(a).startswith(AA_PREFIX) for a in spec.get("arms", [])):
        return [*problems, "no placebo readouts: the suite has no A/A arm (set settings.aa_arm: true); the placebo "
                           "rows' false-positive rate is the check that the per-cell tests are calibrated"]
    placebo = cells[cells["placebo"].astype(bool) & cells["p"].notna()]
    have = set(zip(placebo["teacher"], placebo["student"], strict=True))
    for t, s in dict.fromkeys(zip(trait["teacher"], trait["student"], strict=True)):
        if (t, s) not in have:
            problems.append(f"cell {t}→{s}: no placebo row with a p-value (the A/A arm's students are missing)")
    return problems


def _classifier_design(tidy: pd.DataFrame, cells: pd.DataFrame, spec: dict[str, Any], settings: Any) -> list[str]:
    """Controls of the classifier design: the untrained reference of every student base and seed (what the effect
    is measured against) and, when enabled, the all-logit positive control of every cell."""
    problems: list[str] = []
    seeds = set(spec.get("seeds", []))
    base = tidy[tidy["teacher_trait"] == "baseline"]
    for student in spec.get("students", []):
        have = set(base[base["student_base"] == student]["seed"])
        if have != seeds:
            problems.append(f"student base {student}: untrained reference rows for seeds {sorted(have)}, the suite "
                            f"has {sorted(seeds)} (the control every effect is measured against)")
    if getattr(getattr(settings, "control", None), "enabled", False):
        pos = tidy[tidy["teacher_trait"] == "all_logits"]
        have_pairs = set(zip(pos["teacher_base"], pos["student_base"], strict=True))
        for t in spec.get("teachers", []):
            for s in spec.get("students", []):
                if (t, s) not in have_pairs:
                    problems.append(f"cell {t}→{s}: no all-logit positive-control rows (settings.control.enabled)")
    for row in cells.to_dict(orient="records"):
        if row["n_seeds"] != len(seeds):
            problems.append(f"cell {row['teacher_base']}→{row['student_base']}/{row['target']}: {row['n_seeds']} "
                            f"seeds; the suite has {len(seeds)}")
    return problems


_TRACKS: dict[str, TrackInfo] = {
    "lm": TrackInfo(
        name="lm",
        cells=CellColumns(teacher="teacher", student="student", trait="trait", p="p", q="q", n="n_reps",
                          placebo="placebo", ci_method="welch-t over teacher replicates"),
        recompute=_recompute_lm,
        design=_lm_design,
        inputs=("teachers.csv",),
    ),
    "classifier": TrackInfo(
        name="classifier",
        cells=CellColumns(teacher="teacher_base", student="student_base", trait="target", p="p_perm", q=None,
                          n="n_seeds", placebo=None, ci_method="percentile bootstrap over seeds"),
        recompute=_recompute_classifier,
        design=_classifier_design,
    ),
}


def track_info(name: str, where: str = "") -> TrackInfo:
    """The bundle's view of track ``name``."""
    if name not in _TRACKS:
        raise unknown_name("track", name, _TRACKS, where)
    return _TRACKS[name]


def check_columns(cells: pd.DataFrame, info: TrackInfo, where: str) -> None:
    """Raise a one-line error when a cell table lacks a column the track's cells need."""
    cols = info.cells
    need = [c for c in (cols.teacher, cols.student, cols.trait, cols.p, cols.q, cols.n, cols.placebo,
                        "relation", "effect", "ci_low", "ci_high") if c]
    missing = [c for c in need if c not in cells.columns]
    if missing:
        raise UserError(f"{where}: missing column(s) {', '.join(missing)} for the {info.name} track")
