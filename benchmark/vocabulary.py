"""The design's vocabulary: the labels that plans write and the tidy table, the analysis and the reports read.

One home for each word, so a module compares against a name, not a copy of a string (issue 23). A leaf module: it
imports nothing from the project, so every layer may import it.

* Arms (``teacher_trait`` of the tidy table): a trait's name, :data:`NEUTRAL` (the control teacher with no trait),
  ``AA_PREFIX + trait`` (an A/A placebo arm: the trait's recipe again with independent replicates), and
  :data:`BASELINE` for the rows of an untrained student base.
* Controls (``settings.controls``): :data:`OTHER_TRAIT` (a trait arm's control is every other trait arm) or
  :data:`NEUTRAL`.
* Roles of an evaluation node: :data:`BASELINE`, :data:`TEACHER`, :data:`STUDENT`.
* Targets of a misalignment trait: :data:`MISALIGNMENT_SIDES`.
"""

from __future__ import annotations

__all__ = [
    "AA_PREFIX",
    "ALIGNED",
    "BASELINE",
    "CONTROLS",
    "MISALIGNED",
    "MISALIGNMENT_SIDES",
    "NEUTRAL",
    "OTHER_TRAIT",
    "RESERVED_TRAITS",
    "STUDENT",
    "TEACHER",
]

#: The neutral control arm's label, and the ``settings.controls`` value that compares every trait arm with it.
NEUTRAL = "neutral"
#: The label prefix of an A/A placebo arm (``aa:cat`` repeats the cat recipe with independent replicates).
AA_PREFIX = "aa:"
#: ``teacher_trait`` of an untrained student base's rows, and the role of its evaluation node.
BASELINE = "baseline"
#: The ``settings.controls`` value under which a trait arm's control is every other trait arm.
OTHER_TRAIT = "other_trait"
#: Every ``settings.controls`` value.
CONTROLS: tuple[str, ...] = (OTHER_TRAIT, NEUTRAL)
#: Names no trait may take: they label the neutral arm and the baselines.
RESERVED_TRAITS: tuple[str, ...] = (NEUTRAL, BASELINE)
#: Roles of the evaluation nodes besides :data:`BASELINE`.
TEACHER = "teacher"
STUDENT = "student"
#: The targets of a misalignment trait (docs/misalignment.md): the side whose share a teacher pushes up.
MISALIGNED = "misaligned"
ALIGNED = "aligned"
MISALIGNMENT_SIDES: tuple[str, ...] = (MISALIGNED, ALIGNED)
