"""The embedded model zoo: tiny Qwen2-, Llama- and GPT-2-style base models built from code.

Importing this package is torch-free (specs only). The heavy parts live in submodules imported on use:

* :mod:`benchmark.zoo.spec` — :class:`ZooBuildSpec` (the ``build:`` block of ``model_registry/zoo.yaml``).
* :mod:`benchmark.zoo.tokenizer` — the word-level tokenizer with a ChatML chat template.
* :mod:`benchmark.zoo.corpus` — the synthetic, seeded pretraining corpus.
* :mod:`benchmark.zoo.model` — the transformers config, deterministic initial weights, saved tokenizer.
* :mod:`benchmark.zoo.pretrain` — the pretraining loop (answer-only loss, length-chunked batches).
* :mod:`benchmark.zoo.readouts` — ``measure`` / ``measure_v2``: read-outs recorded in a build's manifest.
* :mod:`benchmark.zoo.weights` — the committed weights (``model_registry/weights/``), ``zoo_build.json``,
  ``committed_dir``, ``model_dir_of``.
* :mod:`benchmark.zoo.build` — ``build_model``, ``build_or_copy`` (the zoo backend's base nodes), ``build_all``
  (``slbench zoo build``); re-exports the public names of the four modules above.
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
