"""The language-model track: suite planning (:mod:`~benchmark.lm.pipeline`), stage workers
(:mod:`~benchmark.lm.stages`) and the Hugging Face model operations they share (:mod:`~benchmark.lm.backend`).

Importing this package imports no torch: :mod:`benchmark.lm.backend` is imported only inside stage workers.
"""

__all__: list[str] = []
