"""Nothing lost, nothing silently wrong (issue 25, points 1, 5 and 6): the leaderboard replaces only its own site,
publishing copies exactly the report node's manifest-listed files and keeps what ``export`` added, and manifests
record unknown provenance as unknown. docs/reliability.md cites these tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.bundle_fixtures import SUITES, fresh_bundle, fresh_report
from tests.conftest import run_cli


# -- 1. `slbench leaderboard --out DIR` replaces only a directory the site itself made ------------------------------
def _tree(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_leaderboard_refuses_a_published_suite_copy_and_touches_nothing(tmp_path):
    """The issue's repro: a copy of a published suite (it has an index.html) plus a user's notes."""
    d = tmp_path / "x"
    shutil.copytree(SUITES / "default", d)
    (d / "notes.txt").write_text("notes\n", encoding="utf-8")
    before = _tree(d)
    res = run_cli("leaderboard", str(d / "bundle.json"), "--out", str(d))
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and str(d) in lines[0] and "not a leaderboard site" in lines[0], res.stderr
    assert _tree(d) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]  # no staging debris beside it


def test_leaderboard_never_replaces_the_published_results_even_with_a_marker(tmp_path, project_copy):
    """A marker copied into results/suites/<suite>/ does not make it a site: in, at or above it is refused."""
    from benchmark.errors import UserError
    from benchmark.leaderboard import MARKER, build_site

    suites = project_copy / "results" / "suites"
    shutil.copytree(SUITES / "default", suites / "default")
    (suites / "default" / MARKER).write_text("", encoding="utf-8")
    before = _tree(project_copy / "results")
    for out in (suites / "default", suites, project_copy / "results", suites / "new"):
        with pytest.raises(UserError, match="published results"):
            build_site([], out)
    assert _tree(project_copy / "results") == before


def test_leaderboard_replaces_its_own_site_and_fills_an_empty_directory(tmp_path):
    from benchmark.bundle import Bundle
    from benchmark.errors import UserError
    from benchmark.leaderboard import MARKER, build_site

    bundle = Bundle.model_validate_json(fresh_bundle("classifiers", tmp_path / "bundle").read_bytes())
    empty = tmp_path / "empty"
    empty.mkdir()
    build_site([bundle], empty)
    assert (empty / MARKER).is_file() and (empty / "index.html").is_file()
    (empty / "stale.txt").write_text("x", encoding="utf-8")
    build_site([bundle], empty)
    assert not (empty / "stale.txt").exists()
    # An index.html alone (what the old check trusted) is not the marker.
    other = tmp_path / "other"
    other.mkdir()
    (other / "index.html").write_text("mine", encoding="utf-8")
    with pytest.raises(UserError, match="not a leaderboard site"):
        build_site([bundle], other)
    assert (other / "index.html").read_text(encoding="utf-8") == "mine"
    a_file = tmp_path / "file"
    a_file.write_text("x", encoding="utf-8")
    with pytest.raises(UserError, match="is a file"):
        build_site([bundle], a_file)


# -- 5. publishing copies exactly the manifest's files and keeps what export added; export takes the lock ---------
def _manifest_for(directory: Path, like: dict, **changes) -> None:
    """Write ``directory``'s manifest: ``like`` with ``files``/``sizes`` of the files really there."""
    import hashlib
    import json

    payload = sorted(p for p in directory.rglob("*") if p.is_file() and p.name not in ("manifest.json", "log.txt"))
    doc = {**like, **changes,
           "files": {p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in payload},
           "sizes": {p.relative_to(directory).as_posix(): p.stat().st_size for p in payload}}
    (directory / "manifest.json").write_text(json.dumps(doc), encoding="utf-8")


@pytest.fixture()
def store_with_report(project_copy, tmp_path):
    """A store holding today's ``classifiers`` report (:func:`tests.bundle_fixtures.fresh_report`) as a finished
    node, its inputs stand-ins holding a ``metrics.json`` each (what the sample log reads), and the node as
    ``publish_report`` takes it."""
    import json
    from types import SimpleNamespace

    from benchmark.manifest import read_manifest
    from benchmark.store import Store

    store = Store(tmp_path / "store")
    staged = fresh_report("classifiers", tmp_path / "fresh")
    manifest = read_manifest(staged)
    report = store.root / manifest.key
    shutil.copytree(staged, report)
    like = manifest.to_json()
    for i, key in enumerate(manifest.deps):
        dep = store.root / key
        dep.mkdir(parents=True)
        (dep / "metrics.json").write_text(json.dumps({"accuracy": i}), encoding="utf-8")
        kind, name_id = key.split("/")
        name, node_id = name_id.rsplit("-", 1)
        _manifest_for(dep, like, kind=kind, key=key, name=name, id=node_id, deps=[], result={})
    return store, SimpleNamespace(key=manifest.key, kind="report", deps=list(manifest.deps))


def test_a_stray_file_in_the_report_node_is_not_published(tmp_path):
    from benchmark.bundle.export import derived_files
    from benchmark.manifest import read_manifest
    from benchmark.publish import publish_dir

    src = fresh_report("classifiers", tmp_path / "node")
    (src / "stray.csv").write_text("a,b\n1,2\n", encoding="utf-8")  # not in the manifest
    dest = tmp_path / "published" / "classifiers"
    assert publish_dir(src, dest, derive=derived_files) is True
    listed = set(read_manifest(src).files) - {"spec.json"}
    assert {p.name for p in dest.iterdir()} == listed | {"manifest.json", "bundle.json"}
    (dest / "stray.csv").write_text("a,b\n1,2\n", encoding="utf-8")  # a published copy with an extra file is not
    assert publish_dir(src, dest, derive=derived_files) is True      # "the same results": it is replaced
    assert not (dest / "stray.csv").exists()


def test_republishing_keeps_the_sample_log_export_added(project_copy, store_with_report):
    """The issue's repro: `export --samples`, then a fully cached run republishes (publish_report, as `slbench run`
    and `slbench report` call it): samples.jsonl and the bundle that records it stay, byte for byte."""
    from benchmark.bundle import Bundle
    from benchmark.publish import publish_report
    from benchmark.registry import Registry

    store, node = store_with_report
    reg = Registry()
    spec = reg.suite("classifiers")[0]
    dest = project_copy / "results" / "suites" / "classifiers"
    assert publish_report(store, node, "classifiers", suite_spec=spec, registry=reg).startswith("published")
    assert not (dest / "samples.jsonl").exists()
    res = run_cli("export", "classifiers", "--samples", "--store", str(store.root))
    assert res.returncode == 0, res.stderr
    before = _tree(dest)
    meta = Bundle.model_validate_json(before["bundle.json"]).detailed_evaluation_results
    assert meta is not None and meta.total_rows == len(node.deps) == before["samples.jsonl"].count(b"\n")
    assert "unchanged" in publish_report(store, node, "classifiers", suite_spec=spec, registry=reg)
    assert _tree(dest) == before
    res = run_cli("export", "classifiers")  # no --samples and no store: the verified log is kept
    assert res.returncode == 0, res.stderr
    assert _tree(dest) == before
    # A republish that has to rewrite the folder regenerates the log from the store.
    (dest / "bundle.json").write_text("{}", encoding="utf-8")
    assert publish_report(store, node, "classifiers", suite_spec=spec, registry=reg).startswith("published")
    assert _tree(dest) == before


def test_export_into_the_published_folder_holds_the_publish_lock(project_copy, store_with_report, monkeypatch):
    """Everything export reads and writes in the live folder happens under the suite's publish lock, and the folder
    is replaced whole (a staged copy swapped in), never written file by file."""
    import contextlib

    import benchmark.bundle.export as export_mod
    import benchmark.publish as publish_mod
    from benchmark import cli
    from benchmark.registry import Registry

    store, node = store_with_report
    reg = Registry()
    publish_mod.publish_report(store, node, "classifiers", suite_spec=reg.suite("classifiers")[0], registry=reg)
    dest = project_copy / "results" / "suites" / "classifiers"
    held: list[Path] = []
    calls: list[bool] = []
    real_lock, real_derive = publish_mod.publish_lock, export_mod.derived_files

    @contextlib.contextmanager
    def lock(path):
        with real_lock(path):
            held.append(Path(path).resolve())
            try:
                yield
            finally:
                held.pop()

    def derive(*args, **kwargs):
        calls.append(held == [dest.resolve()])
        return real_derive(*args, **kwargs)

    monkeypatch.setattr(publish_mod, "publish_lock", lock)
    monkeypatch.setattr(export_mod, "derived_files", derive)
    (dest / "bundle.json").unlink()
    inode = dest.stat().st_ino
    monkeypatch.setattr("sys.argv", ["slbench", "export", "classifiers", "--samples", "--store", str(store.root)])
    cli.main()  # returns on success (exits only on an error)
    assert calls == [True]
    assert (dest / "bundle.json").is_file() and (dest / "samples.jsonl").is_file()
    assert dest.stat().st_ino != inode  # a new folder swapped in, not files written into the live one


# -- 6. provenance that does not lie ------------------------------------------------------------------------------
def _git(repo: Path, *args: str) -> None:
    import subprocess

    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                   capture_output=True)


def test_git_refusing_the_checkout_records_unknown_not_clean(tmp_path):
    """As another uid git refuses a root-owned checkout ("dubious ownership"): commit and dirty are None, with the
    reason, where they used to read ``commit: null, dirty: false`` for a dirty tree."""
    import json
    import os
    import subprocess
    import sys
    import tempfile

    from benchmark.manifest import GitInfo
    from benchmark.store import _git_info

    if os.geteuid() != 0 or shutil.which("setpriv") is None or shutil.which("git") is None:
        pytest.skip("needs root and setpriv to run git as another uid")
    repo = Path(tempfile.mkdtemp(prefix="slbench-git-", dir="/tmp"))
    try:
        os.chmod(repo, 0o755)
        (repo / "a.txt").write_text("1\n", encoding="utf-8")
        _git(repo, "init", "-q")
        _git(repo, "add", "a.txt")
        _git(repo, "commit", "-q", "-m", "one")
        (repo / "a.txt").write_text("2\n", encoding="utf-8")  # a dirty tree
        os.chmod(repo / "a.txt", 0o644)
        mine = _git_info(repo)
        assert mine["commit"] and mine["dirty"] is True  # git can read it as its owner
        code = ("import json, sys; from pathlib import Path; from benchmark.store import _git_info; "
                "print(json.dumps(_git_info(Path(sys.argv[1]))))")
        env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "HOME": "/tmp"}
        res = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                              code, str(repo)], capture_output=True, text=True, env=env, timeout=120)
        if res.returncode != 0 and "Operation not permitted" in res.stderr:
            pytest.skip(f"setpriv cannot change uid here: {res.stderr.strip()[:200]}")
        assert res.returncode == 0, res.stderr
        theirs = json.loads(res.stdout)
    finally:
        shutil.rmtree(repo, ignore_errors=True)
    assert theirs["commit"] is None and theirs["dirty"] is None, theirs
    assert "dubious ownership" in theirs["reason"] or theirs["reason"].startswith("git"), theirs
    assert GitInfo.model_validate(theirs).dirty is None  # the manifest records it as is


def test_saved_paths_in_a_result_point_at_the_final_directory(tmp_path):
    """A stage that records where it saved something (hf_train's ``saved_to``) wrote a staging path; the manifest
    records the path the files have once the node is in place."""
    from benchmark.dag import Node
    from benchmark.store import Store

    def stage(ctx):
        (ctx.out / "adapter").mkdir()
        (ctx.out / "adapter" / "w.bin").write_bytes(b"w")
        return {"saved_to": str(ctx.out / "adapter"), "files": [str(ctx.out / "adapter" / "w.bin")], "n": 1,
                "elsewhere": "/opt/x"}

    store = Store(tmp_path / "store")
    node = Node(kind="student", name="s", spec={"x": 1}, fn=stage)
    manifest = store.build(node, {})
    final = store.path(node)
    assert manifest.result == {"saved_to": str(final / "adapter"), "files": [str(final / "adapter" / "w.bin")],
                               "n": 1, "elsewhere": "/opt/x"}
    assert Path(manifest.result["saved_to"]).is_dir()
    assert store.read_manifest(final).result == manifest.result


def test_report_refuses_to_publish_over_a_missing_or_garbage_upstream_manifest(project_copy, store_with_report):
    """An upstream teacher (an input of an input of the report) without a manifest, or with garbage in it: one
    line naming it, nothing published."""
    import json

    from benchmark.errors import UserError
    from benchmark.publish import publish_report
    from benchmark.registry import Registry

    store, node = store_with_report
    reg = Registry()
    spec = reg.suite("classifiers")[0]
    dest = project_copy / "results" / "suites" / "classifiers"
    teacher = store.root / "teacher" / "t-000000000000"
    teacher.mkdir(parents=True)
    dep = store.root / node.deps[-1]
    doc = json.loads((dep / "manifest.json").read_text(encoding="utf-8"))
    (dep / "manifest.json").write_text(json.dumps({**doc, "deps": ["teacher/t-000000000000"]}), encoding="utf-8")
    with pytest.raises(UserError, match=r"t-000000000000/manifest.json: missing"):
        publish_report(store, node, "classifiers", suite_spec=spec, registry=reg)
    (teacher / "manifest.json").write_text("garbage{", encoding="utf-8")
    with pytest.raises(UserError, match=r"t-000000000000/manifest.json: corrupt"):
        publish_report(store, node, "classifiers", suite_spec=spec, registry=reg)
    assert not dest.exists()
