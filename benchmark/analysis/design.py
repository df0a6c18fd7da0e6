"""What a design can show before any data: the smallest p each pre-declared test can reach.

A permutation test over few units has a floor: 4 vs 4 replicates cannot go below p = 2/70, 3 vs 3 not below 0.1,
and the teacher-block test of γ cannot go below the share of teacher relabellings that leave the shared-init
indicator unchanged (1/6 with three unrelated teacher bases). ``slbench plan`` and ``slbench validate`` print these
floors, so a suite that could not reach a verdict, or could not be submitted, says so before anything is spent
(docs/statistics.md, docs/submitting.md).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from benchmark.analysis.stats import exact_size, min_attainable_p
from benchmark.analysis.tidy import relation_of

__all__ = ["MIN_SUBMIT_UNITS", "DesignFloors", "design_floors", "design_lines", "gamma_floor", "pair_floor",
           "shared_table", "teacher_relabellings"]

#: Fewest independent units per arm (replicates, or seeds) a submitted bundle needs (docs/submitting.md).
MIN_SUBMIT_UNITS = 3


def pair_floor(k: int, m: int) -> float:
    """Smallest two-sided p of the exact k-vs-m permutation test (doubled with equal groups: the mirror split)."""
    p = min_attainable_p(k, m)
    return min(1.0, 2 * p) if k == m and math.comb(k + m, k) <= 20_000 else p


def teacher_relabellings(k: int, n_perm: int, rng: np.random.Generator | None = None) -> tuple[list[np.ndarray], bool]:
    """The relabellings of ``k`` teacher-base blocks that γ's permutation test uses, and whether they are exact:
    all k! when that is at most ``n_perm``, else the identity first and ``n_perm`` draws from ``rng`` (seed 0 when
    none is given)."""
    if math.factorial(k) <= n_perm:
        return [np.array(p) for p in itertools.permutations(range(k))], True
    rng = np.random.default_rng(0) if rng is None else rng
    return [np.arange(k)] + [rng.permutation(k) for _ in range(n_perm)], False


def shared_table(teachers: Sequence[str], students: Sequence[str], lineage: Mapping[str, str],
                 shared: Sequence[str]) -> np.ndarray:
    """1 where a (teacher, student) pair's relation is in ``shared``, else 0: rows are teachers, columns students."""
    return np.array([[relation_of(t, s, lineage) in shared for s in students] for t in teachers], dtype=float)


def gamma_floor(teachers: Sequence[str], students: Sequence[str], lineage: Mapping[str, str],
                indicator: str = "shared_init", n_perm: int = 10_000) -> float:
    """Smallest p of γ's teacher-block permutation test: the share of teacher relabellings whose shared indicator
    over the teacher × student grid equals the observed one (they always tie with the observed γ). NaN when the
    indicator is constant (no shared pair, or every pair shared)."""
    shared = ("same", "sibling") if indicator == "shared_init" else ("same",)
    grid = shared_table(teachers, students, lineage, shared).astype(bool)
    if grid.all() or not grid.any():
        return float("nan")
    perms, _ = teacher_relabellings(len(teachers), n_perm)
    # relabelling teacher i as teacher π(i): its rows are read against π(i)'s relations
    same = sum(bool((grid[p, :] == grid).all()) for p in perms)
    return same / len(perms)


@dataclass(frozen=True)
class DesignFloors:
    """The floors of one design (see :func:`design_floors`)."""

    units: int
    n_treated: int
    n_control: int
    pair_p_min: float
    pair_size: float
    placebo_p_min: float | None
    placebo_size: float | None
    gamma_p_min: float
    n_teachers: int


def design_floors(teachers: Sequence[str], students: Sequence[str], lineage: Mapping[str, str], units: int,
                  n_control_units: int, placebo: bool, alpha: float = 0.05) -> DesignFloors:
    """The floors of a design: ``units`` treated units against ``n_control_units`` control units per pair, an A/A
    comparison of ``units`` vs ``units`` when ``placebo``, and γ over these teachers and students."""
    return DesignFloors(
        units=units, n_treated=units, n_control=n_control_units,
        pair_p_min=pair_floor(units, n_control_units), pair_size=exact_size(units, n_control_units, alpha=alpha),
        placebo_p_min=pair_floor(units, units) if placebo else None,
        placebo_size=exact_size(units, units, alpha=alpha) if placebo else None,
        gamma_p_min=gamma_floor(teachers, students, lineage), n_teachers=len(teachers))


def design_lines(f: DesignFloors, unit: str = "replicates", alpha: float = 0.05) -> list[str]:
    """Plain lines for ``plan`` and ``validate``: what each test can reach, and what stops a verdict or a
    submission (each such line starts with ``warning:``)."""
    lines = [f"verdicts: pair test {f.n_treated} vs {f.n_control} {unit}, smallest p {f.pair_p_min:.4g}, real size "
             f"at {alpha:g} {100 * f.pair_size:.2f}%"]
    if f.placebo_p_min is not None and f.placebo_size is not None:
        lines.append(f"verdicts: placebo (A/A) {f.units} vs {f.units}, smallest p {f.placebo_p_min:.4g}, real size "
                     f"{100 * f.placebo_size:.2f}%")
    if math.isfinite(f.gamma_p_min):
        lines.append(f"verdicts: γ over {f.n_teachers} teacher bases, smallest teacher-block p {f.gamma_p_min:.4g}")
    warn = []
    if f.units < 2 or not math.isfinite(f.pair_p_min) or f.pair_p_min > alpha:
        warn.append(f"no pair can reach p ≤ {alpha:g} with {f.n_treated} vs {f.n_control} {unit}: add {unit}")
    if not math.isfinite(f.gamma_p_min):
        warn.append("γ is not identifiable: no teacher-student pair shares an init, or every pair does")
    elif f.gamma_p_min > alpha:
        warn.append(f"γ cannot be shown at {alpha:g}: its smallest p is {f.gamma_p_min:.3g} with {f.n_teachers} "
                    "teacher bases; add teacher bases (of other lineages)")
    if f.units < MIN_SUBMIT_UNITS:
        warn.append(f"not submittable: {f.units} {unit} per arm; a results bundle needs ≥ {MIN_SUBMIT_UNITS} "
                    "(docs/submitting.md)")
    if f.placebo_p_min is not None and f.placebo_p_min > alpha:
        warn.append(f"the A/A check cannot reject at {alpha:g} with {f.units} vs {f.units} {unit} (smallest p "
                    f"{f.placebo_p_min:.3g}): it calibrates nothing; use ≥ 4 {unit}")
    if f.placebo_p_min is None and unit == "replicates":
        warn.append("not submittable: no A/A arm, so no calibration check (set settings.aa_arm: true; "
                    "docs/submitting.md)")
    return lines + [f"warning: {w}" for w in warn]
