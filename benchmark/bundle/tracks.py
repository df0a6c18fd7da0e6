"""What the bundle needs to know about each track: how its statistics are recomputed and how a pair is named.

Recomputing calls the track's report stage's own ``analyze`` (``benchmark/<track>/stages/report.py``), the call its
``run`` makes: one definition of the effect everywhere, so a validated bundle's numbers are the ones the report
published. :class:`CellColumns` says which column of a track's pair table (``pairs.csv``) is the teacher, the
p-value and so on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from benchmark.analysis import Analysis
from benchmark.analysis.pairs import pair_design
from benchmark.errors import UserError, unknown_name
from benchmark.vocabulary import AA_PREFIX, BASELINE, OTHER_TRAIT

__all__ = ["CellColumns", "TrackInfo", "check_columns", "track_info"]


@dataclass(frozen=True)
class CellColumns:
    """Column names of one track's pair table (``pairs.csv``); None where the track has no such column.

    Attributes:
        teacher, student: The pair's teacher and student base.
        trait: What the row's effect is about (LM: the primary trait, or ``placebo:<trait>`` for an A/A row).
        p, q: The test against 0 and its BH adjustment within the row's family.
        n: The treated units (teacher replicates or seeds).
        placebo: True on an A/A placebo row.
        ci_method: How the 95 % CI was made.
        family: The declared family BH runs within (same, sibling, unrelated, placebo).
        p_drift, q_drift: The drift-aware test (same and sibling pairs) and its BH adjustment.
        transfer_ratio: The pair's effect over its teachers' own contrast.
    """

    teacher: str
    student: str
    trait: str
    p: str
    q: str | None
    n: str
    placebo: str | None
    ci_method: str
    family: str | None = None
    p_drift: str | None = None
    q_drift: str | None = None
    transfer_ratio: str | None = None

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
    #: (replicate rows, pairs, report spec, typed suite settings) -> problems with the design's controls.
    design: Callable[[pd.DataFrame, pd.DataFrame, dict[str, Any], Any], list[str]]
    #: Table file names the analysis reads as input (not recomputed): the LM teachers and candidates tables.
    inputs: tuple[str, ...] = ()


def _recompute_lm(tidy: pd.DataFrame, tables: Mapping[str, pd.DataFrame], spec: dict[str, Any]) -> Analysis:
    from benchmark.lm.stages.report import analyze

    # As the report stage calls it: no per-candidate table (a suite read out without log-probs) is None.
    candidates = tables.get("candidates.csv")
    return analyze(tidy, tables.get("teachers.csv", pd.DataFrame()), spec,
                   candidates=candidates if candidates is not None and not candidates.empty else None)


def _recompute_classifier(tidy: pd.DataFrame, tables: Mapping[str, pd.DataFrame], spec: dict[str, Any]) -> Analysis:
    from benchmark.classifier.stages.report import analyze

    # The teachers' accuracies are shown in classifier.md only; no analysis file depends on them.
    return analyze(tidy, spec)


def _lm_design(tidy: pd.DataFrame, cells: pd.DataFrame, spec: dict[str, Any], settings: Any) -> list[str]:
    """Controls and placebo readouts of the LM design, on the pair table: every pair compares the treated arm's K
    replicates with K replicates of each of the design's control arms, and every (teacher, student) pair has an
    A/A placebo row with a p-value (the calibration check)."""
    problems: list[str] = []
    k = int(spec.get("replicates", 1))
    try:
        design = pair_design(spec.get("arms", []), spec.get("controls", OTHER_TRAIT), spec.get("traits", []))
        want: tuple[str, ...] | None = design.controls
    except UserError:  # an arm list the analysis refuses is reported by the recomputation
        want = None
    trait = cells[~cells["placebo"].astype(bool)]
    for row in trait.to_dict(orient="records"):
        name = f"pair {row['teacher']}→{row['student']}/{row['target']}"
        arms = [a for a in str(row["control_arms"]).split("+") if a]
        if want is not None and tuple(arms) != want:
            problems.append(f"{name}: control arms {'+'.join(arms) or 'none'}; the design's are {'+'.join(want)}")
        if not arms or row["n_control"] != k * len(arms):
            problems.append(f"{name}: {row['n_control']} control replicates in arms {row['control_arms']!r}; "
                            f"the design has {k} per control arm")
        if row["n_treated"] != k:
            problems.append(f"{name}: {row['n_treated']} treated replicates; the design has {k}")
    if not any(str(a).startswith(AA_PREFIX) for a in spec.get("arms", [])):
        return [*problems, "no placebo readouts: the suite has no A/A arm (set settings.aa_arm: true); the placebo "
                           "rows' false-positive rate is the check that the per-pair tests are calibrated"]
    placebo = cells[cells["placebo"].astype(bool) & cells["p"].notna()]
    have = set(zip(placebo["teacher"], placebo["student"], strict=True))
    for t, s in dict.fromkeys(zip(trait["teacher"], trait["student"], strict=True)):
        if (t, s) not in have:
            problems.append(f"pair {t}→{s}: no placebo row with a p-value (the A/A arm's students are missing)")
    for row in placebo.to_dict(orient="records"):
        if row["n_treated"] != k or row["n_control"] != k:
            problems.append(f"pair {row['teacher']}→{row['student']}/{row['target']}: {row['n_treated']} vs "
                            f"{row['n_control']} replicates; an A/A row compares {k} with {k}")
    return problems


def _classifier_design(tidy: pd.DataFrame, cells: pd.DataFrame, spec: dict[str, Any], settings: Any) -> list[str]:
    """Controls of the classifier design: the untrained reference of every student base and seed (what the effect
    is measured against) and, when enabled, the all-logit positive control of every cell."""
    problems: list[str] = []
    seeds = set(spec.get("seeds", []))
    base = tidy[tidy["teacher_trait"] == BASELINE]
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
        if row["n_treated"] != len(seeds):
            problems.append(f"pair {row['teacher']}→{row['student']}/{row['target']}: {row['n_treated']} "
                            f"seeds; the suite has {len(seeds)}")
    return problems


_TRACKS: dict[str, TrackInfo] = {
    "lm": TrackInfo(
        name="lm",
        cells=CellColumns(teacher="teacher", student="student", trait="target", p="p", q="q", n="n_treated",
                          placebo="placebo", ci_method="permutation-inverted over teacher replicates",
                          family="family", p_drift="p_drift", q_drift="q_drift", transfer_ratio="transfer_ratio"),
        recompute=_recompute_lm,
        design=_lm_design,
        inputs=("teachers.csv", "candidates.csv"),
    ),
    "classifier": TrackInfo(
        name="classifier",
        cells=CellColumns(teacher="teacher", student="student", trait="target", p="p", q="q", n="n_treated",
                          placebo="placebo", ci_method="sign-flip-inverted over seeds", family="family",
                          p_drift="p_drift", q_drift="q_drift"),
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
    """Raise a one-line error when a pair table lacks a column the track's pairs need."""
    cols = info.cells
    need = [c for c in (cols.teacher, cols.student, cols.trait, cols.p, cols.q, cols.n, cols.placebo, cols.family,
                        cols.p_drift, cols.q_drift, cols.transfer_ratio, "relation", "effect", "ci_low", "ci_high")
            if c]
    missing = [c for c in need if c not in cells.columns]
    if missing:
        raise UserError(f"{where}: missing column(s) {', '.join(missing)} for the {info.name} track")
