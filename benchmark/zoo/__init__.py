"""The embedded model zoo: tiny Qwen2-, Llama- and GPT-2-style base models built from code.

Importing this package is torch-free (specs only). The heavy parts live in submodules imported on use:

* :mod:`benchmark.zoo.spec` — :class:`ZooBuildSpec` (the ``build:`` block of ``model_registry/zoo.yaml``).
* :mod:`benchmark.zoo.tokenizer` — the word-level tokenizer with a ChatML chat template.
* :mod:`benchmark.zoo.corpus` — the synthetic, seeded pretraining corpus.
* :mod:`benchmark.zoo.build` — ``build_model``, ``build_or_copy`` (the zoo backend's base nodes), ``build_all``
  (``slbench zoo build``), ``committed_dir``, ``model_dir_of``.
"""

from __future__ import annotations

from benchmark.zoo.spec import (
    ARCHS,
    CORPORA,
    TOKENIZERS,
    CorpusMix,
    PretrainSpec,
    ZooBuildSpec,
    check_lineage,
)

__all__ = ["ARCHS", "CORPORA", "TOKENIZERS", "CorpusMix", "PretrainSpec", "ZooBuildSpec", "check_lineage"]
