"""The whole-word answer matcher's old import path, kept for one importer: ``tasks/lm_eval/animal_preference/utils.py``
imports ``benchmark.lm.matcher``, and that file's bytes are hashed into every LM node id (``tasks_digest``), so
editing it would make every teacher, dataset and student a new artifact. The matcher lives in
:mod:`benchmark.lmcore.matcher`; import it from there.
"""

from benchmark.lmcore.matcher import build_form_index, first_animal

__all__ = ["build_form_index", "first_animal"]
