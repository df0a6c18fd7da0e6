"""Statistics on the tidy results table: per-cell transfer effects and the shared-base effect γ.

Both tracks (language-model and classifier) feed one long-format table, one row per
(evaluated model, readout), with the columns in :data:`TIDY_COLUMNS`. :func:`analyze` (or a track's
:func:`analyze_lm` / :func:`analyze_classifier`) turns it into an :class:`Analysis`, which
:func:`write_analysis` writes as the published CSV/JSON files and :mod:`benchmark.report` renders. Everything
is pure pandas/numpy (scipy for the t distribution), deterministic given the seed; only
:func:`write_analysis` and :func:`read_analysis` do I/O.

Vocabulary:
    cell: one (teacher_base, student_base, target) combination within a suite and track.
    treated student: a student trained on data from a teacher that carries the trait the readout
        measures (``teacher_trait == target`` by default).
    control student: a student of the same base, trained with the same seed on the same teacher
        base's data, but from the neutral teacher (default), or the untrained base (``"baseline"``),
        or the mean over teachers with a different trait (``"other_trait"``).
    lift: treated value minus control value for one seed.

The language-model track counts teacher replicates, not students: see :mod:`~benchmark.analysis.replicates`
for its vocabulary (arm, replicate value, replicate lift, placebo row) and :func:`analyze_lm`.

Modules: :mod:`~benchmark.analysis.tidy` (the table), :mod:`~benchmark.analysis.stats` (small-sample tests),
:mod:`~benchmark.analysis.cells` (lifts, cell table, matrix; classifier track),
:mod:`~benchmark.analysis.replicates` (replicate values, lifts, cell table; LM track),
:mod:`~benchmark.analysis.fit` (γ),
:mod:`~benchmark.analysis.views` (each track's own views), :mod:`~benchmark.analysis.result`
(the Analysis type and its files), :mod:`~benchmark.analysis.tracks` (entry points).
"""

from __future__ import annotations

from benchmark.analysis.cells import (
    CELL_COLUMNS,
    CELL_KEYS,
    DRIFT_GROUPS,
    LIFT_COLUMNS,
    cell_table,
    drift_summary,
    matrix,
    paired_lifts,
    summary_by_relation,
)
from benchmark.analysis.fit import N_PERM_MIN, replicate_fit, shared_base_fit
from benchmark.analysis.replicates import (
    LM_CELL_COLUMNS,
    PROFILE_METRICS,
    LMArms,
    lift_definition,
    lm_arms,
    placebo_summary,
    profile_rows,
    relation_summary,
    replicate_cells,
    replicate_lifts,
    replicate_values,
)
from benchmark.analysis.result import (
    SHARED_FILES,
    Analysis,
    AnalysisOptions,
    ClassifierExtras,
    LMExtras,
    read_analysis,
    write_analysis,
)
from benchmark.analysis.stats import bh_adjust, bootstrap_ci, mean_ci, permutation_test, welch_ci, welch_test
from benchmark.analysis.tidy import (
    LM_TIDY_COLUMNS,
    RELATIONS,
    RESERVED_TRAITS,
    TIDY_COLUMNS,
    TRACKS,
    relation_of,
    select_suite,
    validate_tidy,
)
from benchmark.analysis.tracks import analyze, analyze_classifier, analyze_lm
from benchmark.analysis.views import accuracy_by_relation, accuracy_matrix, accuracy_views, teacher_strength

__all__ = [
    "CELL_COLUMNS",
    "CELL_KEYS",
    "DRIFT_GROUPS",
    "LIFT_COLUMNS",
    "LM_CELL_COLUMNS",
    "LM_TIDY_COLUMNS",
    "N_PERM_MIN",
    "PROFILE_METRICS",
    "RELATIONS",
    "RESERVED_TRAITS",
    "SHARED_FILES",
    "TIDY_COLUMNS",
    "TRACKS",
    "Analysis",
    "AnalysisOptions",
    "ClassifierExtras",
    "LMArms",
    "LMExtras",
    "accuracy_by_relation",
    "accuracy_matrix",
    "accuracy_views",
    "analyze",
    "analyze_classifier",
    "analyze_lm",
    "bh_adjust",
    "bootstrap_ci",
    "cell_table",
    "drift_summary",
    "lift_definition",
    "lm_arms",
    "matrix",
    "mean_ci",
    "paired_lifts",
    "permutation_test",
    "placebo_summary",
    "profile_rows",
    "read_analysis",
    "relation_of",
    "relation_summary",
    "replicate_cells",
    "replicate_fit",
    "replicate_lifts",
    "replicate_values",
    "select_suite",
    "shared_base_fit",
    "summary_by_relation",
    "teacher_strength",
    "validate_tidy",
    "welch_ci",
    "welch_test",
    "write_analysis",
]
