"""Publishing a finished report node into ``results/suites/<suite>/``: locked, verified, atomic, idempotent.

* One publisher at a time per suite (an ``flock`` on ``results/suites/.<suite>.lock``), each staging its copy
  under a unique name, so concurrent publishers never collide.
* Readers never see a missing or partial directory: the new copy replaces the old one with one atomic exchange
  (``renameat2(RENAME_EXCHANGE)`` on Linux; where the kernel or libc lacks it, two renames leave a window of
  microseconds without the directory), and the old copy is deleted only ``grace_s`` seconds later (by a later
  publish), so a reader that opened it just before the swap still reads it whole.
* Republishing identical results (every file but ``manifest.json`` byte-equal) changes nothing, so a rerun
  leaves the git tree clean.
* Files derived from the node at publish time (the results bundle, ``bundle.json``) are written into the staging
  copy before the exchange, so they appear atomically with the files they describe.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import filecmp
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from benchmark.files import exclusive_lock
from benchmark.manifest import MANIFEST

__all__ = ["GRACE_S", "publish_dir"]

#: Node files that are not part of a published suite (the store's own records).
_NOT_PUBLISHED = ("spec.json", "log.txt")
_RENAME_EXCHANGE = 2  # linux/fs.h
#: Seconds a replaced copy stays readable before a later publish deletes it.
GRACE_S = 60.0


#: Files computed from a report node at publish time: ``derive(src) -> {file name: bytes}``.
Derive = Callable[[Path], dict[str, bytes]]


def publish_dir(src: Path, dest: Path, grace_s: float = GRACE_S, derive: Derive | None = None) -> bool:
    """Publish the report node directory ``src`` as ``dest``; returns False when ``dest`` already held it.

    ``derive`` computes extra files from ``src`` (the results bundle); they are published with it and compared
    like the node's own files.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    derived = derive(src) if derive is not None else {}
    with exclusive_lock(dest.parent / f".{dest.name}.lock"):
        _remove_old_copies(dest, grace_s)
        if dest.is_dir() and _same_results(src, dest, derived):
            return False
        tmp = dest.with_name(f".{dest.name}.publishing-{uuid.uuid4().hex[:12]}")
        shutil.copytree(src, tmp, ignore=shutil.ignore_patterns(*_NOT_PUBLISHED))
        for name, data in derived.items():
            (tmp / name).write_bytes(data)
        old = dest.with_name(f".{dest.name}.old-{time.time_ns()}-{uuid.uuid4().hex[:8]}")
        try:
            if not dest.exists():
                os.rename(tmp, dest)
            elif _exchange(tmp, dest):
                os.rename(tmp, old)  # tmp now holds the old copy: readers may still be in it
            else:
                os.rename(dest, old)
                os.rename(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return True


def _remove_old_copies(dest: Path, grace_s: float) -> None:
    """Delete replaced copies of ``dest`` older than ``grace_s`` seconds (named ``.<name>.old-<ns>-<id>``)."""
    now = time.time_ns()
    for old in dest.parent.glob(f".{dest.name}.old-*"):
        born = old.name.removeprefix(f".{dest.name}.old-").split("-", 1)[0]
        if born.isdigit() and now - int(born) > grace_s * 1e9:
            shutil.rmtree(old, ignore_errors=True)


def _same_results(src: Path, dest: Path, derived: dict[str, bytes] | None = None) -> bool:
    """Whether ``dest`` already holds ``src``'s published files and the derived ones, byte for byte (the manifest
    aside)."""
    derived = derived or {}
    mine = sorted(p.name for p in src.iterdir() if p.name not in (*_NOT_PUBLISHED, MANIFEST, *derived))
    theirs = sorted(p.name for p in dest.iterdir() if p.name not in (MANIFEST, *derived))
    if mine != theirs or (src / MANIFEST).exists() != (dest / MANIFEST).exists():
        return False
    if any(not (dest / name).is_file() or (dest / name).read_bytes() != data for name, data in derived.items()):
        return False
    return all(filecmp.cmp(src / name, dest / name, shallow=False) for name in mine)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2); False where unsupported."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        return False
    at_fdcwd = -100
    rc = fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    return bool(rc == 0)


def sweep_publishing_debris(dest: Path) -> int:
    """Remove the staging copies (``.<name>.publishing-*``) that a killed or failed publish of ``dest`` left behind.

    Taken under the suite's publish lock: while it is held no publisher is running, so every staging copy there is
    debris (its owner died or gave up). Returns how many were removed. Call it before :func:`publish_dir`, not
    inside it (the lock is not re-entrant).
    """
    if not dest.parent.is_dir():
        return 0
    removed = 0
    with exclusive_lock(dest.parent / f".{dest.name}.lock"):
        for tmp in dest.parent.glob(f".{dest.name}.publishing-*"):
            shutil.rmtree(tmp, ignore_errors=True)
            removed += not tmp.exists()
    return removed
