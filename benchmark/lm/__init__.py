"""The language-model track's pipeline: settings (:mod:`~benchmark.lm.settings`), the suite → DAG plan
(:mod:`~benchmark.lm.plan`), one module per stage (:mod:`~benchmark.lm.stages`), the data channels, the judges,
the defenses and the tidy rows. It sits above ``benchmark/providers/``: models are reached only through
:func:`benchmark.providers.base.backend_for`; the building blocks both use (chat templates, the train config, the
lm-eval runner, the answer matcher, the table of evaluation tasks) are in :mod:`benchmark.lmcore`.

Importing this package imports no torch: heavy imports happen inside the stage functions that run them.
"""

__all__: list[str] = []
