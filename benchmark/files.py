"""Small file helpers every module shares: atomic writes, JSON lines, strict JSON, data-file lines, paths.

Each helper exists once here; nothing else in the package writes files non-atomically or looks for
``tasks/`` on its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from benchmark.errors import UserError

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "check_writable",
    "json_safe",
    "read_data_lines",
    "read_jsonl",
    "write_jsonl",
    "sha256_file",
    "sha256_files",
    "exclusive_lock",
    "project_root",
    "tasks_dir",
]

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same directory, fsync and ``os.replace``.

    A crash leaves either the old file or the new one, never a half-written one; the temp file is removed
    on any error. The file gets the usual mode (``0666 & ~umask``), not mkstemp's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Atomically write UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    """Atomically write pretty, key-sorted, strict JSON (NaN is an error: pass it through :func:`json_safe`)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def json_safe(obj: Any, drop: bool = True) -> Any:
    """A strict-JSON copy: non-finite floats become None.

    With ``drop`` (the default), dict values that are not JSON types are left out (a fit's internals); without it
    every other value is kept as it is (for records whose other values are already JSON-able).
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v, drop) for k, v in obj.items()
                if not drop or isinstance(v, (int, float, str, bool, dict, list)) or v is None}
    if isinstance(obj, list):
        return [json_safe(v, drop) for v in obj]
    return obj


def read_data_lines(path: Path) -> list[str]:
    """The stripped, non-empty lines of a data file that are not ``#`` comments ([] if the file is absent)."""
    path = Path(path)
    if not path.is_file():
        return []
    lines = (ln.strip() for ln in path.read_text(encoding="utf-8").splitlines())
    return [ln for ln in lines if ln and not ln.startswith("#")]


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write rows as compact JSON lines, atomically."""
    atomic_write_text(path, "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in rows))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read JSON lines; a corrupt line is a one-line error naming the file and line."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise UserError(f"{path}: line {i} is not valid JSON (corrupt artifact); delete {Path(path).parent} "
                                "to rebuild it") from None
    return rows


def sha256_file(path: Path) -> str:
    """sha256 of a file's bytes."""
    return sha256_files([path])


def sha256_files(paths: Iterable[Path]) -> str:
    """sha256 of the bytes of several files read one after another (a sharded checkpoint's weights)."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed); the OS releases it if the process dies."""
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def project_root() -> Path:
    """The directory holding ``model_registry/`` and ``tasks/``: ``$SLBENCH_ROOT``, the checkout, or the cwd."""
    env = os.environ.get("SLBENCH_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve().parents[1]
    if (here / "model_registry").is_dir():
        return here
    cwd = Path.cwd()
    if (cwd / "model_registry").is_dir():
        return cwd
    raise UserError("cannot find model_registry/ and tasks/: run inside the checkout or set SLBENCH_ROOT")


def tasks_dir() -> Path:
    """``tasks/`` of the project root (the only way the package finds it; honours ``$SLBENCH_ROOT``)."""
    return project_root() / "tasks"


def check_writable(path: Path, what: str) -> None:
    """Create the directory ``path`` if needed and prove a file can be made in it (before any compute).

    Raises:
        UserError: one line naming ``what`` (e.g. ``--store``), the directory and why it cannot be written.
    """
    import errno

    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path, prefix=".write-check-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.EEXIST):
            reason = "a part of the path is a file"
        elif exc.errno in (errno.EACCES, errno.EPERM):
            reason = f"permission denied for uid {os.getuid()}"
        else:
            reason = exc.strerror or type(exc).__name__
        raise UserError(f"{what}: cannot write in {path} ({reason}); choose a writable directory or fix its "
                        "permissions") from None
