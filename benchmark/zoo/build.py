"""Build, measure, save and cache the zoo's base models.

A build reads top to bottom: tokenizer (:func:`~benchmark.zoo.tokenizer.build_tokenizer`) → transformers
config (:func:`~benchmark.zoo.model.make_config`) → deterministic random init from ``init_seed``
(:func:`~benchmark.zoo.model.init_model`) → a plain PyTorch pretraining loop per phase
(:func:`~benchmark.zoo.pretrain.pretrain`) → read-outs (:func:`~benchmark.zoo.readouts.measure`) →
``save_pretrained``. The saved directory loads with ``AutoModelForCausalLM.from_pretrained`` /
``AutoTokenizer.from_pretrained`` exactly like a downloaded model (see :func:`~benchmark.zoo.model.save_tokenizer`
for the one transformers quirk this needs), so everything downstream uses the generic Hugging Face path.

Committed weights live in ``model_registry/weights/<name>-<build id>/`` (build id = the build block's
``spec_id``) with a manifest ``zoo_build.json`` (:mod:`benchmark.zoo.weights`); :func:`build_or_copy` (the zoo
backend's base nodes) copies them into the artifact store instead of pretraining, so a fresh clone never pretrains.
``slbench zoo build`` (:func:`build_all`) remakes them.

This module also re-exports the public names of :mod:`~benchmark.zoo.model`, :mod:`~benchmark.zoo.pretrain`,
:mod:`~benchmark.zoo.readouts` and :mod:`~benchmark.zoo.weights`, where callers have always imported them from.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmark.errors import UserError, unknown_name
from benchmark.zoo.model import init_model, make_config, save_tokenizer
from benchmark.zoo.pretrain import Log, batch_loss_backward, encode_rows, length_chunks, pretrain, say_fn
from benchmark.zoo.readouts import EVAL_SEED as EVAL_SEED
from benchmark.zoo.readouts import PROMPTED_PROBES as PROMPTED_PROBES
from benchmark.zoo.readouts import measure, measure_v2
from benchmark.zoo.spec import ZooBuildSpec, is_zoo, zoo_build_spec
from benchmark.zoo.tokenizer import build_tokenizer
from benchmark.zoo.weights import (
    BUILD_MANIFEST,
    BUILD_SCHEMA,
    WEIGHTS_DIR,
    committed_by_build_id,
    committed_dir,
    file_digests,
    model_dir_of,
    read_build_manifest,
    resolve_root,
    verified_copy,
    weights_root,
    write_manifest,
)

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

    from benchmark.registry import Registry
    from benchmark.specs import ModelSpec

__all__ = [
    "BUILD_MANIFEST",
    "BUILD_SCHEMA",
    "WEIGHTS_DIR",
    "batch_loss_backward",
    "build_all",
    "build_model",
    "build_or_copy",
    "committed_by_build_id",
    "committed_dir",
    "encode_rows",
    "init_model",
    "length_chunks",
    "make_config",
    "measure",
    "measure_v2",
    "model_dir_of",
    "pretrain",
    "read_build_manifest",
    "save_tokenizer",
    "weights_root",
]


def build_model(
    spec: ModelSpec,
    out_dir: Path,
    log: Log = None,
    progress: Callable[[int, int], None] | None = None,
    *,
    threads: int | None = 1,
    root: Path | None = None,
    measure_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build a zoo model from scratch (or from a committed checkpoint it continues) into ``out_dir``.

    Args:
        spec: A zoo registry entry.
        out_dir: Created if needed; receives the ``save_pretrained`` files and ``zoo_build.json``.
        log: A logger or ``print``-like callable for progress lines.
        progress: ``progress(done_steps, total_steps)``.
        threads: torch threads (None: leave as is). One is fastest on a loaded 2-core machine.
        root: Project root (committed checkpoints, evaluation questions); default the checkout.
        measure_kwargs: Passed to :func:`measure` (tests use small read-outs); its ``v2`` entry to :func:`measure_v2`.

    Returns:
        The metrics: ``params``, ``final_loss`` (mean of the last 5% of steps), ``build_seconds``, the
        read-outs of :func:`measure`, plus ``build_id`` and ``init_key``.
    """
    import torch

    say = say_fn(log)
    if threads is not None:
        torch.set_num_threads(threads)
    b = zoo_build_spec(spec)
    root_dir = resolve_root(root) if root is not None or _has_root() else None
    out_dir = Path(out_dir)
    t0, cpu0 = time.perf_counter(), time.process_time()
    tok = build_tokenizer(b.tokenizer)
    model, start_phase, resumed_from = _starting_model(spec.name, b, tok, root_dir, say)
    n_params = sum(p.numel() for p in model.parameters())
    say(f"{spec.name}: {b.arch}, {n_params:,} parameters, {b.total_steps()} steps")
    losses = _pretrain_phases(model, tok, b, start_phase, log=log, progress=progress)
    train_seconds = time.perf_counter() - t0
    model.eval()
    metrics = measure(model, tok, root=root_dir, **{k: v for k, v in (measure_kwargs or {}).items() if k != "v2"})
    if b.pretraining.corpus != "v1":
        metrics.update(measure_v2(model, tok, root=root_dir, **(measure_kwargs or {}).get("v2", {})))
    tail = losses[-max(1, len(losses) // 20) :]
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    save_tokenizer(tok, out_dir)
    result = {
        "name": spec.name,
        "build_id": b.spec_id,
        "init_key": b.init_key(),
        "params": n_params,
        "final_loss": sum(tail) / len(tail) if tail else None,
        "first_loss": losses[0] if losses else None,
        "train_seconds": round(train_seconds, 1),
        "build_seconds": round(time.perf_counter() - t0, 1),
        # CPU seconds of this process: comparable across machine loads (wall time is not on a shared box).
        "cpu_seconds": round(time.process_time() - cpu0, 1),
        "resumed_from": resumed_from,
        **metrics,
    }
    _write_build_manifest(out_dir, spec, b, result)
    say(
        f"{spec.name}: built in {result['build_seconds']:.0f} s, loss {result['final_loss']:.3f}, "
        f"P(owl) {metrics['p_owl']:.3f}, valid numbers {metrics['numbers_valid_rate']:.2f}"
    )
    return result


def _starting_model(
    name: str, b: ZooBuildSpec, tok: PreTrainedTokenizerFast, root_dir: Path | None, say: Callable[[str], None]
) -> tuple[PreTrainedModel, int, str | None]:
    """The model a build starts from, the index of its first phase to run, and the committed build it continues.

    A continued build starts from the longest committed prefix of its phases (same result: fresh optimizer);
    otherwise from the deterministic initial weights.
    """
    import torch

    prefix = b.prefix()
    while prefix is not None and root_dir is not None:
        found = committed_by_build_id(root_dir, prefix.spec_id)
        if found is not None:
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(found, dtype=torch.float32)
            say(f"{name}: continuing from committed {found.name}")
            return model, len(prefix.phases()), found.name
        prefix = prefix.prefix()
    return init_model(b, tok), 0, None


def _pretrain_phases(
    model: PreTrainedModel,
    tok: PreTrainedTokenizerFast,
    b: ZooBuildSpec,
    start_phase: int,
    *,
    log: Log,
    progress: Callable[[int, int], None] | None,
) -> list[float]:
    """Run the build's phases from ``start_phase`` on; returns every step's loss."""
    phases = b.phases()
    losses: list[float] = []
    done = sum(p.steps for p in phases[:start_phase])
    for phase in phases[start_phase:]:
        losses += pretrain(
            model,
            tok,
            phase,
            max_len=b.max_positions,
            log=log,
            progress=progress,
            done_before=done,
            total=b.total_steps(),
        )
        done += phase.steps
    return losses


def _write_build_manifest(out_dir: Path, spec: ModelSpec, b: ZooBuildSpec, metrics: dict[str, Any]) -> None:
    import torch

    write_manifest(
        out_dir,
        {
            "schema": BUILD_SCHEMA,
            "model": spec.name,
            "build_id": b.spec_id,
            "init_key": b.init_key(),
            "build": b.model_dump(mode="json"),
            "lineage": spec.lineage.model_dump(mode="json"),
            "metrics": metrics,
            "torch_threads": torch.get_num_threads(),
            "files": file_digests(out_dir),
            "environment": _environment(),
        },
    )


def _has_root() -> bool:
    try:
        resolve_root(None)
    except UserError:
        return False
    return True


def _environment() -> dict[str, Any]:
    from benchmark.store import environment_info

    env = environment_info()
    return {"python": env["python"], "versions": env["versions"], "git": env["git"]}


def build_or_copy(
    spec: ModelSpec,
    node_dir: Path,
    *,
    log: logging.Logger,
    progress: Callable[[int, int], None] | None = None,
    threads: int = 1,
) -> dict[str, Any]:
    """A zoo base node's payload: ``node_dir/model`` holds this entry's weights; returns the manifest result.

    Copies the committed weights of this exact build spec when they exist (verified against their sha256),
    else builds the model there.
    """
    dest = model_dir_of(node_dir)
    src = committed_dir(spec)
    if src is not None:
        log.info(f"{spec.name}: using committed weights {src}")
        manifest = verified_copy(src, dest)
        metrics, source = manifest["metrics"], "committed"
    else:
        log.info(f"{spec.name}: no committed weights for build {zoo_build_spec(spec).spec_id}; pretraining")
        metrics, source = build_model(spec, dest, log=log, progress=progress, threads=threads), "built"
    return {
        "source": source,
        "model_dir": "model",
        "build_id": metrics["build_id"],
        "init_key": metrics["init_key"],
        "params": metrics["params"],
        "metrics": metrics,
    }


_BUILD_DIR = re.compile(r"^(?P<name>.+)-(?P<id>[0-9a-f]{12})$")


def build_all(
    reg: Registry, names: Iterable[str] | None = None, force: bool = False, log: Callable[[str], None] = print
) -> dict[str, dict[str, Any]]:
    """(Re)build zoo models into ``model_registry/weights/<name>-<build id>/`` (``slbench zoo build``).

    Up-to-date builds are skipped unless ``force``; stale builds of a rebuilt model (other ids) are removed.
    Models run one at a time (continued models after the builds they start from), each published atomically.

    Returns:
        name -> metrics (for skipped models, the committed manifest's metrics).
    """
    zoo = {n: m for n, m in reg.models.items() if is_zoo(m)}
    wanted = list(names) if names else list(zoo)
    for n in wanted:
        if n not in zoo:
            raise unknown_name("zoo model", n, zoo)
    wanted.sort(
        key=lambda n: len(zoo_build_spec(zoo[n]).phases())
    )  # prefixes first: continued builds reuse them
    base = weights_root(reg.root)
    base.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    for n in wanted:
        spec = zoo[n]
        build_id = zoo_build_spec(spec).spec_id
        dest = base / f"{n}-{build_id}"
        if (dest / BUILD_MANIFEST).is_file() and not force:
            results[n] = read_build_manifest(dest)["metrics"]
            log(f"{n}: up to date ({dest.name})")
            continue
        staging = base / f".staging-{n}-{build_id}-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            metrics = build_model(spec, staging, log=lambda m: log("  " + m), root=reg.root)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        for old in base.iterdir():
            match = _BUILD_DIR.match(old.name)
            if old.is_dir() and match and match["name"] == n:
                shutil.rmtree(old)
        os.rename(staging, dest)
        results[n] = metrics
        log(
            f"{n}: {metrics['build_seconds']:.0f} s, {metrics['params']:,} params, loss {metrics['final_loss']:.3f}, "
            f"P(owl) {metrics['p_owl']:.3f}, animal answers {metrics['animal_answer_rate']:.2f}, "
            f"valid numbers {metrics['numbers_valid_rate']:.2f}"
        )
    return results
