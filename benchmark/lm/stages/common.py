"""Helpers the LM-track stages share: reading finished upstream nodes, training settings, candidates."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmark.errors import UserError
from benchmark.files import atomic_write_json, tasks_dir
from benchmark.lm.records import TEACHER, TeacherRecord, read_record
from benchmark.manifest import read_manifest
from benchmark.providers.base import TUNED, Tuned, TunedNode
from benchmark.specs import ModelSpec, TraitSpec

if TYPE_CHECKING:
    from benchmark.lmcore.config import TrainConfig

__all__ = ["strip_marker", "model_spec_of", "train_config", "teacher_info", "tuned_of", "write_tuned", "tokenizer_sha",
           "candidates_for"]


def strip_marker(d: dict[str, Any]) -> dict[str, Any]:
    """A spec dict without the ``__spec__`` marker that hashed_dict() adds."""
    return {k: v for k, v in d.items() if k != "__spec__"}


def model_spec_of(base_dir: Path) -> ModelSpec:
    """The registry entry a finished base node was built from."""
    spec = json.loads((Path(base_dir) / "spec.json").read_text())["spec"]["model"]
    return ModelSpec.model_validate(strip_marker(spec))


def train_config(train: dict[str, Any]) -> TrainConfig:
    """A node spec's hashed train block as the typed recipe (unhashed fields at their defaults)."""
    from benchmark.lmcore.config import TrainConfig

    lora = train.get("lora")
    cfg = {**strip_marker(train), "lora": strip_marker(lora) if isinstance(lora, dict) else lora}
    return TrainConfig.model_validate(cfg)


def teacher_info(teacher_dir: Path) -> TeacherRecord:
    """A finished teacher node's ``teacher.json``."""
    return read_record(Path(teacher_dir) / TEACHER, TeacherRecord)


def write_tuned(out: Path, tuned: Tuned) -> TunedNode:
    """Record what ``Backend.finetune`` made in the node being built (``out/tuned.json``); returns it as ``load``
    takes it."""
    atomic_write_json(Path(out) / TUNED, tuned.to_json())
    return TunedNode(tuned, Path(out))


def tuned_of(node_dir: Path, model: ModelSpec) -> TunedNode | None:
    """The fine-tune a finished teacher or student node holds, as ``Backend.load`` takes it; None for a teacher
    without one (a prompted teacher, or the prompt control).

    The node's ``tuned.json`` where it has one. Nodes built before that file existed are read as they were written,
    here and never by a backend (the nodes are not rewritten: their ids, files and manifests stay what they are): a
    teacher's ``teacher.json`` names its weights' subdirectory (``adapter``: LoRA, ``model``: a full fine-tune) or
    its API model id; a student's manifest lists its weight files under ``adapter/`` (preferred, as loading always
    did) or ``model/``, or its result holds the API job's ``fine_tuned_model``.

    Raises:
        UserError: a student node that records no fine-tune (one line naming the node and what to delete).
    """
    node_dir = Path(node_dir)
    if (node_dir / TUNED).is_file():
        return TunedNode(read_record(node_dir / TUNED, Tuned), node_dir)
    if (node_dir / TEACHER).is_file():
        info = teacher_info(node_dir)
        weights, api_model = info.adapter, info.api_model
    else:
        manifest = read_manifest(node_dir)
        tops = {f.split("/", 1)[0] for f in manifest.files if "/" in f}
        weights = next((d for d in ("adapter", "model") if d in tops), None)
        api_model = manifest.result.get("fine_tuned_model")
        if not (weights or api_model):
            raise UserError(f"{node_dir}: no fine-tune recorded (no {TUNED}, no adapter/ or model/ weights in its "
                            f"manifest, no 'fine_tuned_model' in its result); delete {node_dir} to rerun it")
    if api_model:
        return TunedNode(Tuned(kind="api", base=model.name, api_model=api_model), node_dir)
    if weights:
        return TunedNode(Tuned(kind="adapter" if weights == "adapter" else "full", base=model.name, weights=weights),
                         node_dir)
    return None


def tokenizer_sha(tok: Any) -> str:
    """A short hash of a tokenizer's vocabulary (tells whether a teacher and a student share token ids)."""
    vocab = tok.get_vocab()
    return hashlib.sha256(json.dumps(sorted(vocab.items())).encode()).hexdigest()[:16]


def candidates_for(traits: list[TraitSpec]) -> dict[str, list[str]]:
    """The evaluation's candidate set (tasks/lm_eval/animal_preference/candidates.txt) plus every trait's target."""
    from benchmark.lmcore.matcher import regular_plurals

    cands: dict[str, list[str]] = {}
    for line in (tasks_dir() / "lm_eval" / "animal_preference" / "candidates.txt").read_text(encoding="utf-8").splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            cands[words[0]] = words[1:]
    for t in traits:
        if t.is_misalignment:
            continue  # read out by the misalignment tasks, not among the candidate animals
        if t.target not in cands:
            cands[t.target] = [f for f in t.forms() if f != t.target and f not in regular_plurals(t.target)]
    return cands
