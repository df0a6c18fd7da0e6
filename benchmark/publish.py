"""Publishing a finished report node into ``results/suites/<suite>/``: locked, verified, atomic, idempotent.

* One publisher at a time per suite (an ``flock`` on ``results/suites/.<suite>.lock``, :func:`publish_lock`), each
  staging its copy under a unique name, so concurrent publishers never collide. ``slbench export`` takes the same
  lock and replaces the folder the same way (:func:`update_published`) when it writes beside a published suite.
* Exactly the files the report node's manifest lists are published (with the manifest itself, without the store's
  records ``spec.json`` and ``log.txt``): a stray file in the node directory is not part of the results.
* Readers never see a missing or partial directory: the new copy replaces the old one with one atomic exchange
  (``renameat2(RENAME_EXCHANGE)`` on Linux; where the kernel or libc lacks it, two renames leave a window of
  microseconds without the directory), and the old copy is deleted only ``grace_s`` seconds later (by a later
  publish), so a reader that opened it just before the swap still reads it whole.
* Republishing identical results (every file but ``manifest.json`` byte-equal) changes nothing, so a rerun
  leaves the git tree clean.
* Files derived from the node at publish time (the results bundle ``bundle.json``, ``samples.jsonl`` where
  ``slbench export --samples`` added one, the Every Eval Ever records under ``eee/`` where
  ``slbench export --format eee`` added them) are computed under the lock from the node and the copy being replaced,
  and written into the staging copy before the exchange, so they appear atomically with the files they describe.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import filecmp
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from benchmark.errors import UserError
from benchmark.files import atomic_write_bytes, exclusive_lock, project_root
from benchmark.manifest import MANIFEST, read_manifest

if TYPE_CHECKING:
    from benchmark.dag import Node
    from benchmark.registry import Registry
    from benchmark.specs import SuiteSpec
    from benchmark.store import Store

__all__ = ["GRACE_S", "publish_dir", "publish_lock", "publish_report", "update_published", "write_eee"]

#: Node files that are not part of a published suite (the store's own records).
_NOT_PUBLISHED = ("spec.json", "log.txt")
_RENAME_EXCHANGE = 2  # linux/fs.h
#: Seconds a replaced copy stays readable before a later publish deletes it.
GRACE_S = 60.0


#: Files computed at publish time: ``derive(src, published) -> {file name: bytes}``, from the report node ``src``
#: and the copy it replaces (``published``, which may not exist yet).
Derive = Callable[[Path, Path], dict[str, bytes]]


@contextlib.contextmanager
def publish_lock(dest: Path) -> Iterator[None]:
    """Hold the publish lock of the published folder ``dest`` (``.<name>.lock`` beside it)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(dest.parent / f".{dest.name}.lock"):
        yield


def publish_dir(src: Path, dest: Path, grace_s: float = GRACE_S, derive: Derive | None = None) -> bool:
    """Publish the report node directory ``src`` as ``dest``; returns False when ``dest`` already held it.

    Only the files listed in ``src``'s manifest are published (and the manifest). ``derive`` computes extra files
    (the results bundle); they are published with it and compared like the node's own files.

    Raises:
        UserError: ``src``'s manifest is missing or corrupt, or a file it lists is missing.
    """
    listed = _listed(src)
    with publish_lock(dest):
        derived = derive(src, dest) if derive is not None else {}
        _remove_old_copies(dest, grace_s)
        if dest.is_dir() and _same_results(src, dest, listed, derived):
            return False
        tmp = _staging(dest)
        try:
            tmp.mkdir()
            for name in [*listed, MANIFEST]:
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src / name, tmp / name)
            for name, data in derived.items():
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                (tmp / name).write_bytes(data)
            _replace(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return True


def update_published(dest: Path, make: Callable[[Path], dict[str, bytes]], grace_s: float = GRACE_S) -> bool:
    """Add or replace files of the published folder ``dest`` (what ``slbench export`` writes beside a suite).

    Under the suite's publish lock ``make(dest)`` computes the files from the copy it sees; a staged copy of ``dest``
    with them replaces it in one exchange, like :func:`publish_dir`. Returns False when ``dest`` already held them.
    A file in a subfolder (``eee/data/...``) makes that top-level subfolder derived as a whole: the files ``make``
    returned for it replace everything it held, so a record that is no longer made does not linger.

    Raises:
        UserError: ``dest`` is not a directory.
    """
    with publish_lock(dest):
        if not dest.is_dir():
            raise UserError(f"{dest}: not a published suite folder")
        files = make(dest)
        whole = sorted({n.split("/", 1)[0] for n in files if "/" in n})
        held = {p.relative_to(dest).as_posix() for d in whole for p in (dest / d).rglob("*") if p.is_file()}
        if held <= set(files) and all((dest / n).is_file() and (dest / n).read_bytes() == data
                                      for n, data in files.items()):
            return False
        _remove_old_copies(dest, grace_s)
        tmp = _staging(dest)
        try:
            shutil.copytree(dest, tmp)
            for folder in whole:
                shutil.rmtree(tmp / folder, ignore_errors=True)
            for name, data in files.items():
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                (tmp / name).write_bytes(data)
            _replace(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return True


def _listed(src: Path) -> list[str]:
    """The files of the report node ``src`` that are published: its manifest's, less the store's records."""
    manifest = read_manifest(src)
    names = sorted(n for n in manifest.files if n not in _NOT_PUBLISHED)
    missing = [n for n in names if not (src / n).is_file()]
    if missing:
        raise UserError(f"{src / missing[0]}: listed in {src / MANIFEST} but missing; delete {src} and rerun to "
                        "rebuild it")
    return names


def _staging(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.publishing-{uuid.uuid4().hex[:12]}")


def _replace(tmp: Path, dest: Path) -> None:
    """Put the staged copy ``tmp`` in place of ``dest``; the old copy becomes ``.<name>.old-<ns>-<id>``."""
    old = dest.with_name(f".{dest.name}.old-{time.time_ns()}-{uuid.uuid4().hex[:8]}")
    if not dest.exists():
        os.rename(tmp, dest)
    elif _exchange(tmp, dest):
        os.rename(tmp, old)  # tmp now holds the old copy: readers may still be in it
    else:
        os.rename(dest, old)
        os.rename(tmp, dest)


def _remove_old_copies(dest: Path, grace_s: float) -> None:
    """Delete replaced copies of ``dest`` older than ``grace_s`` seconds (named ``.<name>.old-<ns>-<id>``)."""
    now = time.time_ns()
    for old in dest.parent.glob(f".{dest.name}.old-*"):
        born = old.name.removeprefix(f".{dest.name}.old-").split("-", 1)[0]
        if born.isdigit() and now - int(born) > grace_s * 1e9:
            shutil.rmtree(old, ignore_errors=True)


def _same_results(src: Path, dest: Path, listed: list[str], derived: dict[str, bytes]) -> bool:
    """Whether ``dest`` holds exactly ``src``'s ``listed`` files and the derived ones, byte for byte, and nothing
    else (the manifest aside: a rerun's has new timestamps)."""
    mine = sorted(n for n in listed if n not in derived)
    present = (p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    theirs = sorted(n for n in present if n != MANIFEST and n not in derived)
    if mine != theirs or not (dest / MANIFEST).is_file():
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


# -- a report node and the files beside it, published --------------------------------------------------------
def publish_report(store: Store, node: Node, suite: str, suite_spec: SuiteSpec | None = None,
                   registry: Registry | None = None) -> str:
    """Verify a finished report node and its inputs (sha256), then publish it into results/suites/<suite>/ with its
    results bundle (bundle.json, exported from the node and ``suite_spec``) and, where the published copy has one
    (``slbench export --samples``), its sample log regenerated from the store.

    Returns the line to print: where it was published, or that the published copy was already identical.
    """
    from benchmark.bundle.export import derived_files  # late: pandas and the analysis, for publishing only

    for dep in node.deps:
        store.verify(store.root / dep, full=True)
    _verify_upstream(store, node.deps)
    src = store.path(node)
    store.verify(src, full=True)
    dest = project_root() / "results" / "suites" / suite
    derive = partial(derived_files, suite_spec=suite_spec, registry=registry, store=store.root)
    sweep_publishing_debris(dest)  # staging copies that a killed or disk-full publish left behind
    if publish_dir(src, dest, derive=derive):
        return f"published {dest}"
    return f"{dest} already holds these results (unchanged)"


def _verify_upstream(store: Store, keys: Sequence[str]) -> None:
    """Every node upstream of ``keys`` (teachers, datasets, bases: what the results rest on) still has a manifest
    that parses and payload files of the recorded sizes; a missing or garbage one is a one-line UserError."""
    seen: set[str] = set()
    todo = [d for key in keys for d in store.read_manifest(store.root / key).deps]
    while todo:
        key = todo.pop()
        if key in seen:
            continue
        seen.add(key)
        todo.extend(store.verify(store.root / key, full=False).deps)


def write_eee(directory: Path, published: Path, out: Path | None = None, *, suite_spec: SuiteSpec | None = None,
              registry: Registry | None = None, organization: str = "subliminal-bench") -> str:
    """``slbench export --format eee``: write the records of the report in ``directory`` into ``out`` (default:
    ``<directory>/eee``), never touching ``bundle.json``. Into the published folder ``published`` (its ``eee/``) it
    writes under the suite's publish lock, replacing the folder atomically (:func:`update_published`);
    records of an older report in ``out`` are removed. Returns the line to print.

    Raises:
        UserError: the bundle cannot be exported (see :func:`benchmark.bundle.export.export_bundle`).
    """
    from benchmark.bundle.eee import EEE_DIR, EEE_SCHEMA_VERSION, eee_records, record_bytes
    from benchmark.bundle.export import export_bundle  # late: pandas and the analysis

    directory, published = Path(directory), Path(published)
    target = Path(out) if out is not None else directory / EEE_DIR
    reads_live = directory.resolve() == published.resolve()
    written: dict[str, bytes] = {}

    def make(folder: Path) -> dict[str, bytes]:
        bundle = export_bundle(folder if reads_live else directory, suite_spec=suite_spec, registry=registry,
                               organization=organization)
        files = {path: record_bytes(rec) for path, rec in eee_records(bundle).items()}
        written.update(files)
        return files

    if target.resolve() == (published / EEE_DIR).resolve():  # the live folder: locked, replaced whole
        changed = update_published(published, lambda folder: {f"{EEE_DIR}/{n}": b for n, b in make(folder).items()})
    elif reads_live:  # read under the lock, so a publish cannot swap the folder mid-read
        with publish_lock(published):
            changed = _write_records(target, make(published))
    else:
        changed = _write_records(target, make(directory))
    return (f"{'wrote' if changed else 'up to date:'} {target}: {len(written)} Every Eval Ever {EEE_SCHEMA_VERSION} "
            "records (one per student model)")


def _write_records(folder: Path, files: dict[str, bytes]) -> bool:
    """Write ``files`` (``data/...``) under ``folder`` atomically, removing records there that are not among them."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder}: not a directory (the Every Eval Ever records are a folder)")
    held = {p.relative_to(folder).as_posix() for p in (folder / "data").rglob("*.json") if p.is_file()}
    stale = held - set(files)
    changed = bool(stale)
    for name, data in files.items():
        path = folder / name
        if not (path.is_file() and path.read_bytes() == data):
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, data)
            changed = True
    for name in stale:
        (folder / name).unlink()
    return changed
