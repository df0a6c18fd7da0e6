"""Model providers behind one small interface (:mod:`benchmark.providers.base`): ``backend_for(model)``.

* :mod:`~benchmark.providers.hf` — zoo and hf models (transformers; heavy code in ``hf_model``, ``hf_train``);
* :mod:`~benchmark.providers.vllm` — optional vLLM generation for hf models;
* :mod:`~benchmark.providers.openai` — any OpenAI-compatible endpoint, on the generic HTTP client
  :mod:`~benchmark.providers.api_client` (endpoint config, retries, strict bodies, key redaction).

Importing the package, ``base``, ``hf``, ``openai``, ``api_client`` or ``vllm`` imports no torch, transformers, peft, lm-eval,
openai or vllm: each imports its SDK inside the functions that use it.
"""

from __future__ import annotations

__all__: list[str] = []
