"""The manifest: a typed, versioned record of one finished artifact (``<store>/<kind>/<name>-<id>/manifest.json``).

Written last and atomically by :meth:`benchmark.store.Store.build`, inside the staging directory that is then
renamed into place: a directory with a manifest is finished, one without is not. Every key is a field below;
readers use the fields, never string keys. ``schema`` is bumped whenever a field changes meaning or is removed
(adding an optional field is compatible); a reader refuses manifests of another schema with a one-line error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from benchmark.errors import UserError

__all__ = ["MANIFEST", "MANIFEST_SCHEMA", "CpuInfo", "GitInfo", "LockInfo", "Manifest", "key_error", "read_manifest"]

#: File name of the manifest inside an artifact directory.
MANIFEST = "manifest.json"
#: Version of the manifest's layout (see the module docstring).
MANIFEST_SCHEMA = 1


class GitInfo(BaseModel):
    """The checkout that produced an artifact."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: ``git rev-parse HEAD`` of the package's checkout (None outside a git checkout).
    commit: str | None
    #: Whether tracked files differed from that commit (untracked files are ignored); None if unknown.
    dirty: bool | None
    #: Why ``commit`` and ``dirty`` are unknown (git missing, or refusing the checkout); absent when known.
    reason: str | None = None


class LockInfo(BaseModel):
    """The dependency lock of the checkout that produced an artifact (docs/install.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Path of the lock relative to the checkout (``requirements/lock-cpu-py311.txt``).
    file: str
    #: sha256 of the lock file's bytes.
    sha256: str
    #: Pins the environment did not match, as ``"name: lock <v>, installed <v or none>"``; empty when every
    #: package of the lock was installed at its locked version (``make setup``), not empty after an unpinned install.
    differs: list[str] = Field(default_factory=list)


class CpuInfo(BaseModel):
    """The CPU that built an artifact: float results can differ in the last digits between CPU types (torch picks
    its kernels by instruction set: AVX-512, AVX2, ...), so byte-identity holds on one CPU type (docs/install.md).
    Recorded, never hashed into a node id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The CPU's model name (``/proc/cpuinfo``'s ``model name``; ``platform.processor()`` elsewhere); None if unknown.
    model: str | None
    #: Which of the instruction-set flags that change float kernels the CPU has (:data:`benchmark.store.CPU_FLAGS`,
    #: in that order); None where ``/proc/cpuinfo`` is not readable.
    flags: list[str] | None
    #: ``torch.backends.cpu.get_cpu_capability()`` (``AVX512``, ``AVX2``, ``DEFAULT``, ...: the kernels torch runs;
    #: ``ATEN_CPU_CAPABILITY`` can lower it); None when the worker had not loaded torch (a stage computing without it).
    torch_capability: str | None


class Manifest(BaseModel):
    """Everything recorded about one built node (the JSON keys are exactly these field names)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    #: Layout version of this record (:data:`MANIFEST_SCHEMA`); serialised as ``"schema"``.
    schema_version: int = Field(alias="schema")
    #: Node kind: base, teacher, dataset, student, eval, report.
    kind: str
    #: Human-readable node name (unique together with the id).
    name: str
    #: 12-hex content id: the short hash of ``kind`` + ``spec``.
    id: str
    #: Store-relative path ``<kind>/<name>-<id>``.
    key: str
    #: Full content hash of ``kind`` + ``spec``; a reader checks it against the node it expects.
    spec_hash: str
    #: The resolved, hashed spec (upstream ids included).
    spec: dict[str, Any]
    #: Throughput knobs recorded but not hashed (batch sizes, where to read IDX files, ...).
    unhashed: dict[str, Any]
    #: Scheduler hints the node asked for, e.g. ``{"cpus": 1, "gpus": 0}``.
    resources: dict[str, int | float]
    #: Keys of the upstream nodes this one read.
    deps: list[str]
    #: What the stage returned: its own summary (counts, losses, hashes of what it wrote).
    result: dict[str, Any]
    #: sha256 of every payload file, by path relative to the artifact directory (log and manifest excluded).
    files: dict[str, str]
    #: Size in bytes of every payload file (checked whenever the node is used; empty in manifests written before
    #: this field existed, whose payloads are checked by sha256 only).
    sizes: dict[str, int] = Field(default_factory=dict)
    #: UTC start time, ISO 8601.
    started: str
    #: Wall seconds of the whole build.
    wall_s: float
    #: Torch threads the worker ran with.
    threads: int
    #: The checkout that built it.
    git: GitInfo
    #: Python version (``3.11.7``).
    python: str
    #: ``platform.platform()`` of the worker.
    platform: str
    #: Host name of the worker.
    host: str
    #: Versions of the packages that can change results (read from metadata; absent ones omitted).
    versions: dict[str, str]
    #: The checkout's dependency lock and how the environment differed from it; None when the checkout has no lock
    #: (an installed package) and in manifests written before this field existed.
    lock: LockInfo | None = None
    #: The worker's CPU (model, float-relevant instruction-set flags, torch's kernel level); None in manifests
    #: written before this field existed.
    cpu: CpuInfo | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to disk (``schema`` under its on-disk name)."""
        return self.model_dump(mode="json", by_alias=True)


def read_manifest(path: Path) -> Manifest:
    """Load and check the manifest of the artifact directory ``path``.

    Raises:
        UserError: missing, truncated, corrupt, of another schema, or with missing/unknown keys — one line
            naming the file and what to do.
    """
    mpath = Path(path) / MANIFEST
    try:
        data = json.loads(mpath.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{mpath}: missing; the artifact is not finished") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{mpath}: corrupt or truncated manifest ({exc.__class__.__name__}); delete "
                        f"{mpath.parent} to rebuild it") from None
    if not isinstance(data, dict):
        raise UserError(f"{mpath}: corrupt manifest (expected a JSON object); delete {mpath.parent} to rebuild it")
    if "schema" in data and data["schema"] != MANIFEST_SCHEMA:
        raise UserError(f"{mpath}: key 'schema' is {data['schema']!r}, this version reads {MANIFEST_SCHEMA}")
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"{mpath}: corrupt manifest, {key_error(exc)}; delete {mpath.parent} to rebuild it") from None


def key_error(exc: ValidationError) -> str:
    """The first problem of a record file's validation, in a few words: ``missing key 'a.b'`` or
    ``bad key (<pydantic's message>) 'a.b'`` (also used by :func:`benchmark.lm.records.read_record`)."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    what = "missing key" if err["type"] == "missing" else f"bad key ({err['msg']})"
    return f"{what} {where!r}"
