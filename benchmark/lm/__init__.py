"""The language-model track: settings (:mod:`~benchmark.lm.settings`), the suite → DAG plan
(:mod:`~benchmark.lm.plan`), one module per stage (:mod:`~benchmark.lm.stages`), the data channels, the lm-eval
runner and the answer matcher. Models are reached only through :func:`benchmark.providers.base.backend_for`.

Importing this package imports no torch: heavy imports happen inside the stage functions that run them.
"""

__all__: list[str] = []
