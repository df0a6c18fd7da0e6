"""The committed zoo weights: ``model_registry/weights/<name>-<build id>/`` and their ``zoo_build.json``.

A build directory is keyed by its model name and build id (the ``build:`` block's ``spec_id``); its manifest records
the build spec, metrics and every file's sha256, so a copy into the store (:func:`verified_copy`) catches Git LFS
pointers and partial checkouts.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmark.errors import UserError
from benchmark.files import atomic_write_json, sha256_file
from benchmark.zoo.spec import zoo_build_spec

if TYPE_CHECKING:
    from benchmark.specs import ModelSpec

__all__ = [
    "BUILD_MANIFEST",
    "BUILD_SCHEMA",
    "WEIGHTS_DIR",
    "committed_by_build_id",
    "committed_dir",
    "file_digests",
    "model_dir_of",
    "read_build_manifest",
    "resolve_root",
    "verified_copy",
    "weights_root",
    "write_manifest",
]

#: The manifest written next to a built model (spec, metrics, timing, file digests).
BUILD_MANIFEST = "zoo_build.json"
BUILD_SCHEMA = 1
#: Committed builds, relative to the project root.
WEIGHTS_DIR = Path("model_registry") / "weights"


def resolve_root(root: Path | None) -> Path:
    """``root``, else the project root (``$SLBENCH_ROOT`` or the checkout)."""
    if root is not None:
        return Path(root)
    from benchmark.files import project_root

    return project_root()


def file_digests(directory: Path) -> dict[str, str]:
    """File name -> sha256 of every file of a build directory but its manifest."""
    return {
        p.name: sha256_file(p)
        for p in sorted(directory.iterdir())
        if p.is_file() and p.name != BUILD_MANIFEST
    }


def write_manifest(directory: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as the directory's ``zoo_build.json`` (atomically)."""
    atomic_write_json(directory / BUILD_MANIFEST, data)

def weights_root(root: Path | None = None) -> Path:
    """``<project root>/model_registry/weights``."""
    return resolve_root(root) / WEIGHTS_DIR


def committed_dir(spec: ModelSpec, root: Path | None = None) -> Path | None:
    """The committed build of exactly this entry's build spec, or None (then it must be built)."""
    path = weights_root(root) / f"{spec.name}-{zoo_build_spec(spec).spec_id}"
    return path if (path / BUILD_MANIFEST).is_file() else None


def committed_by_build_id(root: Path, build_id: str) -> Path | None:
    """The committed build with this build id under any model name (a continued build's start), or None."""
    base = Path(root) / WEIGHTS_DIR
    for path in sorted(base.glob(f"*-{build_id}")):
        if (path / BUILD_MANIFEST).is_file():
            return path
    return None


def read_build_manifest(directory: Path) -> dict[str, Any]:
    """The ``zoo_build.json`` of a build directory.

    Raises:
        UserError: missing or corrupt manifest.
    """
    path = Path(directory) / BUILD_MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: missing; not a finished zoo build") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{path}: corrupt manifest; delete {directory} and run 'slbench zoo build'") from None
    if not isinstance(data, dict) or data.get("schema") != BUILD_SCHEMA:
        raise UserError(f"{path}: key 'schema' must be {BUILD_SCHEMA}; run 'slbench zoo build' to rebuild it")
    return data


def verified_copy(src: Path, dest: Path) -> dict[str, Any]:
    """Copy a committed build, checking every file against the manifest's sha256 (catches LFS pointers)."""
    manifest = read_build_manifest(src)
    for name, digest in manifest["files"].items():
        path = src / name
        if not path.is_file() or sha256_file(path) != digest:
            raise UserError(
                f"{path}: missing or does not match its sha256 in {BUILD_MANIFEST} (a Git LFS pointer or "
                "a partial checkout?); restore it or run 'slbench zoo build --force'"
            )
    shutil.copytree(src, dest)
    return manifest


def model_dir_of(base_node_dir: Path) -> Path:
    """The ``from_pretrained`` directory inside a finished zoo base node."""
    return Path(base_node_dir) / "model"
