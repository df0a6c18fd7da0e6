"""Statistics on the tidy results table: per-cell transfer effects and the shared-base effect γ.

Both tracks (language-model and classifier) feed one long-format table, one row per
(evaluated model, readout), with the columns in :data:`TIDY_COLUMNS`. :func:`analyze_lm` or
:func:`analyze_classifier` turns it into an :class:`Analysis`, which
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

The classifier track counts seeds (each its own inits, teachers and students) and tests one pair per (teacher base,
student base) with the LM pair table's column names: see :mod:`~benchmark.analysis.cells` and
:func:`analyze_classifier`.

The language-model track counts teacher replicates, not students, and tests one target-specific contrast per
(teacher base, student base) pair: see :mod:`~benchmark.analysis.pairs` for its vocabulary (primary trait,
contrast W, collateral G, families, drift, transfer ratio) and :func:`analyze_lm`.

Modules: :mod:`~benchmark.analysis.tidy` (the table), :mod:`~benchmark.analysis.stats` (small-sample tests),
:mod:`~benchmark.analysis.cells` (the classifier track's seed-level pair table and sign-flip test, the matrix;
the legacy cell table),
:mod:`~benchmark.analysis.pairs` (contrast values, the pair table, drift, summaries; LM track),
:mod:`~benchmark.analysis.profile` (the whole-profile readout; LM track),
:mod:`~benchmark.analysis.fit` (γ; :func:`pair_fit` is the LM track's design-respecting one),
:mod:`~benchmark.analysis.version` (``ANALYSIS_VERSION``),
:mod:`~benchmark.analysis.views` (each track's own views), :mod:`~benchmark.analysis.result`
(the Analysis type and its files), :mod:`~benchmark.analysis.tracks` (entry points).
"""

from __future__ import annotations

from benchmark.analysis.cells import (
    SEED_PAIR_COLUMNS,
    SEED_PAIR_DEFINITION,
    matrix,
    seed_differences,
    seed_pair_table,
    sign_flip,
    sign_flip_size,
)
from benchmark.analysis.fit import N_PERM_MIN, PAIR_CLUSTERS, pair_fit
from benchmark.analysis.pairs import (
    AA_PREFIX,
    FAMILIES,
    PAIR_COLUMNS,
    PairDesign,
    base_table,
    contrast_definition,
    contrast_values,
    drift_estimate,
    pair_design,
    pair_lifts,
    pair_table,
    placebo_summary,
    relation_summary,
    teacher_contrasts,
    verdict,
)
from benchmark.analysis.profile import CANDIDATE_COLUMNS, profile_pairs, profile_rows
from benchmark.analysis.result import (
    SHARED_FILES,
    Analysis,
    AnalysisOptions,
    ClassifierExtras,
    LMExtras,
    read_analysis,
    write_analysis,
)
from benchmark.analysis.stats import (
    bh_adjust,
    exact_size,
    mean_ci,
    permutation_test,
    shift_permutation,
    welch_ci,
    welch_test,
)
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
from benchmark.analysis.tracks import analyze_classifier, analyze_lm
from benchmark.analysis.version import ANALYSIS_VERSION
from benchmark.analysis.views import accuracy_by_relation, accuracy_matrix, accuracy_views, teacher_strength

__all__ = [
    "AA_PREFIX",
    "ANALYSIS_VERSION",
    "Analysis",
    "AnalysisOptions",
    "CANDIDATE_COLUMNS",
    "ClassifierExtras",
    "FAMILIES",
    "LMExtras",
    "LM_TIDY_COLUMNS",
    "N_PERM_MIN",
    "PAIR_CLUSTERS",
    "PAIR_COLUMNS",
    "PairDesign",
    "RELATIONS",
    "RESERVED_TRAITS",
    "SEED_PAIR_COLUMNS",
    "SEED_PAIR_DEFINITION",
    "SHARED_FILES",
    "TIDY_COLUMNS",
    "TRACKS",
    "accuracy_by_relation",
    "accuracy_matrix",
    "accuracy_views",
    "analyze_classifier",
    "analyze_lm",
    "base_table",
    "bh_adjust",
    "contrast_definition",
    "contrast_values",
    "drift_estimate",
    "exact_size",
    "matrix",
    "mean_ci",
    "pair_design",
    "pair_fit",
    "pair_lifts",
    "pair_table",
    "permutation_test",
    "placebo_summary",
    "profile_pairs",
    "profile_rows",
    "read_analysis",
    "relation_of",
    "relation_summary",
    "seed_differences",
    "seed_pair_table",
    "select_suite",
    "shift_permutation",
    "sign_flip",
    "sign_flip_size",
    "teacher_contrasts",
    "teacher_strength",
    "validate_tidy",
    "verdict",
    "welch_ci",
    "welch_test",
    "write_analysis",
]
