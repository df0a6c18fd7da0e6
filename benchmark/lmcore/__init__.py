"""Language-model building blocks, below both ``benchmark/providers/`` and the LM pipeline (``benchmark/lm/``).

What a backend needs to run a model the project's way, and nothing about suites, plans or node layouts: chat
templates and per-row seeds (:mod:`~benchmark.lmcore.chat`), the fine-tuning config (:mod:`~benchmark.lmcore.config`),
the one lm-eval runner (:mod:`~benchmark.lmcore.evaluate`), the whole-word answer matcher
(:mod:`~benchmark.lmcore.matcher`), the numbers format (:mod:`~benchmark.lmcore.numbers`: prompts, the strict answer
filter, synthetic answers; the zoo's pretraining corpus uses it) and the table of evaluation tasks
(:mod:`~benchmark.lmcore.tasks`). Modules here import only each other and the engine's leaf modules (errors, files,
hashing, specs_base); tests/test_import_graph.py checks it. Importing this package imports no torch.
"""

__all__: list[str] = []
