"""Nothing lost, nothing silently wrong (issue 25, points 1, 5 and 6): the leaderboard replaces only its own site,
publishing copies exactly the report node's manifest-listed files and keeps what ``export`` added, and manifests
record unknown provenance as unknown. docs/reliability.md cites these tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli

SUITES = ROOT / "results" / "suites"


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

    bundle = Bundle.model_validate_json((SUITES / "default" / "bundle.json").read_bytes())
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
