"""Content-addressed artifact store.

Layout: ``<root>/<kind>/<name>-<id>/`` holding ``spec.json``, the stage's payload files, ``log.txt`` and
``manifest.json``. A node is built in a private staging directory and renamed into place in one atomic
``os.rename`` with its manifest already inside, so a finished directory always has a manifest, a crash
leaves only staging debris (cleaned on the next run), and a reader never sees a half-written artifact.
"Done" means the final directory exists and its manifest parses and matches the node's hash. A changed
spec has a new id: nothing is ever overwritten.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import logging
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time
import traceback
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmark.dag import Node, StageContext
from benchmark.errors import UserError
from benchmark.files import atomic_write_json, exclusive_lock, sha256_file
from benchmark.manifest import MANIFEST, MANIFEST_SCHEMA, Manifest, read_manifest

__all__ = ["Store", "MANIFEST", "MANIFEST_SCHEMA", "check_payload",
           "cpu_info", "environment_info", "StageFailed"]

STAGING = ".staging"
#: Per-kind folder of the node lock files (one builder per node, across processes and runs).
LOCKS = ".locks"
#: Packages whose versions every manifest records (read from metadata: nothing is imported).
TRACKED_PACKAGES = ("subliminal-bench", "torch", "transformers", "peft", "accelerate", "lm_eval", "tokenizers",
                    "pandas", "numpy", "seaborn", "scikit-learn", "pydantic", "ray", "vllm", "openai")


class StageFailed(Exception):
    """A stage raised; carries the node key and the log path."""

    def __init__(self, key: str, message: str, log_path: Path | None = None, user_error: bool = False):
        super().__init__(message)
        self.key = key
        self.log_path = log_path
        self.user_error = user_error

    def __reduce__(self) -> tuple[Any, ...]:
        # Picklable with all fields, so it survives the trip back from a worker process or a Ray task.
        return (StageFailed, (self.key, str(self), self.log_path, self.user_error))


#: The dependency lock, relative to the checkout (docs/install.md); manifests record its sha256.
LOCK_FILE = "requirements/lock-cpu-py311.txt"

_ENV_CACHE: dict[str, Any] | None = None


def environment_info() -> dict[str, Any]:
    """git commit + dirty flag, Python and package versions, host, lock, CPU (:func:`cpu_info`). Cached per
    process."""
    global _ENV_CACHE
    if _ENV_CACHE is None:
        versions = {}
        for pkg in TRACKED_PACKAGES:
            try:
                versions[pkg] = metadata.version(pkg)
            except metadata.PackageNotFoundError:
                continue
        _ENV_CACHE = {
            "git": _git_info(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "host": socket.gethostname(),
            "versions": versions,
            "lock": lock_info(),
            "cpu": cpu_info(),
        }
    if _ENV_CACHE["cpu"]["torch_capability"] is None:  # torch may have been loaded since (by the stage just run)
        _ENV_CACHE["cpu"]["torch_capability"] = _torch_capability()
    return _ENV_CACHE


#: The /proc/cpuinfo flags a manifest records when present: the instruction sets torch's CPU kernels are picked by
#: (its capability levels are built on them), whose float results differ in the last digits.
CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512dq", "avx512bw", "avx512vl", "avx512_vnni",
             "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16")


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, Any]:
    """The CPU's model name, which of :data:`CPU_FLAGS` it has, and torch's CPU capability (see
    :class:`benchmark.manifest.CpuInfo`)."""
    model: str | None = None
    flags: list[str] | None = None
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = None
    if text is not None:
        fields: dict[str, str] = {}
        for line in text.splitlines():  # the first processor's block is enough: one machine, one CPU type
            if not line.strip():
                if fields:
                    break
                continue
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
        model = fields.get("model name") or None
        have = set(fields.get("flags", fields.get("Features", "")).split())
        flags = [f for f in CPU_FLAGS if f in have]
    return {"model": model or platform.processor() or None, "flags": flags, "torch_capability": _torch_capability()}


def _torch_capability() -> str | None:
    """``torch.backends.cpu.get_cpu_capability()`` when this process has loaded torch (every stage that computes with
    it has), else None: torch is never imported just to ask (it takes seconds, and would load it into processes
    that fork workers)."""
    torch = sys.modules.get("torch")
    try:
        return str(torch.backends.cpu.get_cpu_capability()) if torch is not None else None
    except (AttributeError, RuntimeError):  # a partly imported or very old torch
        return None


def lock_info(repo: Path | None = None, lock: str = LOCK_FILE) -> dict[str, Any] | None:
    """The checkout's lock file, its sha256 and the pins the running environment does not match (read from package
    metadata: nothing is imported); None when the checkout has no lock."""
    repo = repo if repo is not None else Path(__file__).resolve().parents[1]
    path = repo / lock
    try:
        data = path.read_bytes()
    except OSError:
        return None
    differs = []
    for line in data.decode("utf-8", errors="replace").splitlines():
        m = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line)
        if not m:
            continue
        name, pinned = m.groups()
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != pinned:
            differs.append(f"{name}: lock {pinned}, installed {installed or 'none'}")
    return {"file": lock, "sha256": hashlib.sha256(data).hexdigest(), "differs": differs}


def _git_info(repo: Path | None = None) -> dict[str, Any]:
    """The checkout's commit and dirty flag; both None, with the reason, when git cannot tell (no git, not a
    checkout, or a checkout git refuses to read, e.g. one owned by another uid: "dubious ownership"). Unknown is
    recorded as unknown, never as a clean tree."""
    repo = repo if repo is not None else Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10)
        # The code's state: published results (results/) are outputs, so they do not make the code dirty.
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                 ":(exclude)results"], cwd=repo, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        return {"commit": None, "dirty": None, "reason": f"git did not run ({type(exc).__name__})"}
    for proc in (head, status):
        if proc.returncode != 0:
            first = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[0]
            return {"commit": None, "dirty": None, "reason": f"git failed: {first[:200]}"}
    return {"commit": head.stdout.strip() or None, "dirty": bool(status.stdout.strip())}


class Store:
    """The artifact store rooted at ``root`` (default ``results/store``)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    # -- lookup -------------------------------------------------------------------------------------------
    def path(self, node: Node) -> Path:
        """Final directory of ``node``."""
        return self.root / node.key

    def is_done(self, node: Node) -> bool:
        """True if the node's final directory holds a valid manifest for this exact spec.

        Raises:
            UserError: the manifest exists but is truncated, corrupt, or belongs to another spec.
        """
        path = self.path(node)
        mpath = path / MANIFEST
        if not mpath.exists():
            if path.exists():
                # Final dirs are only created by rename with the manifest inside: a manifest-less one is
                # damage from outside (a manual delete), not ours to guess about.
                raise UserError(f"{path}: artifact directory without {MANIFEST}; delete the directory to rebuild it")
            return False
        manifest = self.read_manifest(path)
        if manifest.spec_hash != node.spec_hash:
            raise UserError(f"{mpath}: key 'spec_hash' does not match the node's spec (store corrupted or edited "
                            f"by hand); delete {path} to rebuild it")
        check_payload(path, manifest, full=False)
        return True

    def verify(self, path: Path, full: bool = True) -> Manifest:
        """Check a finished artifact's payload against its manifest (sizes; sha256 too when ``full``).

        Raises:
            UserError: a payload file is missing, or its size or sha256 differs from the manifest: one line naming
                the file and the node, and how to rebuild it.
        """
        manifest = self.read_manifest(path)
        check_payload(Path(path), manifest, full=full)
        return manifest

    def read_manifest(self, path: Path) -> Manifest:
        """Load and check a manifest (:func:`benchmark.manifest.read_manifest`)."""
        return read_manifest(path)

    def result(self, node: Node) -> dict[str, Any]:
        """The ``result`` block of a finished node's manifest."""
        return self.read_manifest(self.path(node)).result

    # -- building -------------------------------------------------------------------------------------------
    def clean_staging(self, foreign_after_s: float = 6 * 3600) -> int:
        """Remove staging directories left by dead processes. Returns how many.

        On this host a directory is debris when its process is gone. Another host's directory (a shared store
        on a cluster) may belong to a live worker we cannot see, so it is removed only once it has not been
        touched for ``foreign_after_s`` seconds.
        """
        removed = 0
        host = socket.gethostname()
        now = time.time()
        for staging in self.root.glob(f"*/{STAGING}/*"):
            parts = staging.name.rsplit("~", 2)
            ours = len(parts) == 3 and parts[1] == host and parts[2].isdigit()
            if ours and _pid_alive(int(parts[2])):
                continue
            if not ours:
                try:
                    if now - staging.stat().st_mtime < foreign_after_s:
                        continue
                except FileNotFoundError:
                    continue
            shutil.rmtree(staging, ignore_errors=True)
            removed += 1
        return removed

    def build(self, node: Node, inputs: dict[str, Path], *, threads: int = 1, progress: Any = None) -> Manifest:
        """Run ``node``'s stage in a staging dir and publish it atomically. Returns the manifest (see
        :meth:`build_counted`, which also says whether this call built it).

        One builder per node: the build holds the node's lock file, so a second run on the same store waits and
        then finds the node done. Every input's payload is checked against its manifest (sha256) first, so a
        damaged upstream file is named as such. If another worker publishes the same node first, its result wins.

        Raises:
            StageFailed: the stage raised (``user_error`` set when it was a :class:`UserError`).
            UserError: an input's payload is missing or differs from its manifest.
        """
        return self.build_counted(node, inputs, threads=threads, progress=progress)[0]

    def build_counted(self, node: Node, inputs: dict[str, Path], *, threads: int = 1,
                      progress: Any = None) -> tuple[Manifest, bool]:
        """:meth:`build`, and whether this call built the node (False: another run finished it while this one
        waited for the node's lock), so that two concurrent runs do not both count it as built."""
        with exclusive_lock(self.root / node.kind / LOCKS / f"{node.name}-{node.id}.lock"):
            # Another run may have built it while we waited for the lock: use theirs (one builder per node).
            if self.is_done(node):
                return self.read_manifest(self.path(node)), False
            for dep in inputs.values():  # a damaged input is named here, not as a failure of this stage
                self.verify(dep, full=True)
            return self._build_unlocked(node, inputs, threads=threads, progress=progress), True

    def _build_unlocked(self, node: Node, inputs: dict[str, Path], *, threads: int, progress: Any) -> Manifest:
        final = self.path(node)
        staging_root = self.root / node.kind / STAGING
        staging_root.mkdir(parents=True, exist_ok=True)
        staging = staging_root / f"{node.name}-{node.id}~{socket.gethostname()}~{os.getpid()}"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
        log_dir = self.root / "logs" / node.kind
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{node.name}-{node.id}.log"
        logger, handler = _node_logger(node, log_path)
        started = time.time()
        atomic_write_json(staging / "spec.json", {"kind": node.kind, "name": node.name, "id": node.id,
                                                  "spec": node.spec, "unhashed": node.unhashed})
        try:
            logger.info("start %s (attempt on %s, pid %d)", node.key, socket.gethostname(), os.getpid())
            ctx = StageContext(node=node, out=staging, inputs=inputs, log=logger, threads=threads, progress=progress)
            # Library chatter (progress bars, warnings printed by transformers / lm-eval) belongs in the node's
            # log, not interleaved on the user's terminal across workers.
            with open(log_path, "a", encoding="utf-8") as chatter, contextlib.redirect_stdout(chatter), \
                    contextlib.redirect_stderr(chatter):
                result = node.fn(ctx) or {}
            wall = time.time() - started
            logger.info("done %s in %.2fs", node.key, wall)
        except UserError as exc:
            logger.error("user error: %s", exc)
            _close(logger, handler)
            shutil.rmtree(staging, ignore_errors=True)
            raise StageFailed(node.key, str(exc), log_path, user_error=True) from exc
        except BaseException as exc:
            logger.error("failed: %s\n%s", exc, traceback.format_exc())
            _close(logger, handler)
            full = _no_space_left(staging, exc)  # measured before the cleanup frees the partial files
            shutil.rmtree(staging, ignore_errors=True)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            if full:  # a full disk surfaces as a library's own error (torch: "unexpected pos"): say what it is
                first = (str(exc).strip().splitlines() or [""])[0][:200]
                raise StageFailed(node.key, f"no space left on the device of {self.root} ({type(exc).__name__}: "
                                  f"{first}); free some space and rerun the same command to resume", log_path,
                                  user_error=True) from exc
            raise StageFailed(node.key, f"{type(exc).__name__}: {exc}", log_path) from exc
        _close(logger, handler)
        result = _rebase_paths(result, staging, final)  # the staging folder is gone once the node is in place
        shutil.copyfile(log_path, staging / "log.txt")
        payload = [p for p in sorted(staging.rglob("*")) if p.is_file() and p.name not in ("log.txt", MANIFEST)]
        files = {p.relative_to(staging).as_posix(): sha256_file(p) for p in payload}
        sizes = {p.relative_to(staging).as_posix(): p.stat().st_size for p in payload}
        env = environment_info()
        manifest = Manifest.model_validate({
            "schema": MANIFEST_SCHEMA,
            "kind": node.kind,
            "name": node.name,
            "id": node.id,
            "key": node.key,
            "spec_hash": node.spec_hash,
            "spec": node.spec,
            "unhashed": node.unhashed,
            "resources": node.resources,
            "deps": list(node.deps),
            "result": result,
            "files": files,
            "sizes": sizes,
            "started": _dt.datetime.fromtimestamp(started, _dt.UTC).isoformat(),
            "wall_s": round(time.time() - started, 3),
            "threads": threads,
            **env,
        })
        atomic_write_json(staging / MANIFEST, manifest.to_json())
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(staging, final)
        except OSError:
            # Someone else finished it first (or a stale dir exists): keep theirs if it is valid.
            shutil.rmtree(staging, ignore_errors=True)
            if not self.is_done(node):
                raise
            return self.read_manifest(final)
        return manifest


def check_payload(path: Path, manifest: Manifest, full: bool) -> None:
    """Raise a one-line UserError if a payload file of the artifact at ``path`` is missing or differs."""
    for name, digest in manifest.files.items():
        f = path / name
        how = f"node {manifest.key}; delete {path} and rerun to rebuild it"
        if not f.is_file():
            raise UserError(f"{f}: payload file missing ({how})")
        size = manifest.sizes.get(name)
        if size is not None and f.stat().st_size != size:
            raise UserError(f"{f}: {f.stat().st_size} bytes, the manifest recorded {size} (truncated or edited; {how})")
        if full and sha256_file(f) != digest:
            raise UserError(f"{f}: sha256 differs from the manifest's (damaged or edited; {how})")


#: A stage that fails with less free space than this on its staging device failed because the disk is full.
FULL_DISK_BYTES = 1 << 20


def _no_space_left(path: Path, exc: BaseException) -> bool:
    """Whether a stage's failure is a full disk: an ENOSPC/EDQUOT OS error in its chain, or (libraries such as
    torch report a failed write in their own words) under :data:`FULL_DISK_BYTES` free where it was writing."""
    import errno

    seen: BaseException | None = exc
    for _ in range(20):  # a bounded walk: exception chains can loop
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen = seen.__cause__ or seen.__context__
    try:
        return shutil.disk_usage(path).free < FULL_DISK_BYTES
    except OSError:
        return False


def _rebase_paths(value: Any, staging: Path, final: Path) -> Any:
    """``value`` (a stage's result) with every string path inside ``staging`` rewritten to the same path inside
    ``final``, where the files are once the node is renamed into place (a stage records where it saved things)."""
    if isinstance(value, dict):
        return {k: _rebase_paths(v, staging, final) for k, v in value.items()}
    if isinstance(value, list):
        return [_rebase_paths(v, staging, final) for v in value]
    if isinstance(value, str):
        old = str(staging)
        if value == old or value.startswith(old + os.sep):
            return str(final) + value[len(old):]
    return value


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _node_logger(node: Node, path: Path) -> tuple[logging.Logger, logging.Handler]:
    logger = logging.getLogger(f"slbench.node.{node.key}.{uuid.uuid4().hex[:6]}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    # Append: a retried node keeps the log of the attempt that crashed, above the new one.
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    return logger, handler


def _close(logger: logging.Logger, handler: logging.Handler) -> None:
    handler.close()
    logger.removeHandler(handler)
