"""Helpers the LM-track stages share: reading finished upstream nodes, training settings, candidates."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmark.files import tasks_dir
from benchmark.specs import ModelSpec, TraitSpec

if TYPE_CHECKING:
    from benchmark.lmcore.config import TrainConfig

__all__ = ["strip_marker", "model_spec_of", "train_config", "teacher_info", "tuned_teacher", "tokenizer_sha",
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


def teacher_info(teacher_dir: Path) -> dict[str, Any]:
    """A finished teacher node's ``teacher.json``."""
    info: dict[str, Any] = json.loads((Path(teacher_dir) / "teacher.json").read_text())
    return info


def tuned_teacher(teacher_dir: Path, info: dict[str, Any]) -> Path | None:
    """The teacher node directory when the teacher was fine-tuned (local weights or an API model), else None."""
    return Path(teacher_dir) if info["adapter"] or info["api_model"] else None


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
