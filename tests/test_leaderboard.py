"""The static leaderboard site: built from fresh bundles of the default (LM) and classifiers suites (the published
inputs re-analysed by today's code, tests/bundle_fixtures.py), checked statically and in headless Chromium.

The browser test runs the Debian ``chromium`` package (``.ci/run`` installs it): the page loads without script
errors, a click on a header sorts the rows (read back from the DOM), the filters hide rows and every link
resolves. Without Chromium it is skipped on a developer's machine and fails under CI (``CI`` set).
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlparse
from urllib.request import urlopen

import numpy as np
import pytest

from benchmark.bundle import Bundle
from benchmark.leaderboard import COLUMNS, MARKER, build_site
from benchmark.leaderboard.browser import Chromium, find_chromium
from benchmark.leaderboard.svg import suite_scale
from tests.bundle_fixtures import fresh_bundle
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def bundle_paths(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("bundles")
    return [fresh_bundle(suite, root / suite) for suite in ("classifiers", "default")]


@pytest.fixture(scope="module")
def bundles(bundle_paths) -> list[Bundle]:
    return [Bundle.model_validate_json(p.read_bytes()) for p in bundle_paths]


@pytest.fixture(scope="module")
def site(bundles, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site") / "site"
    build_site(bundles, out)
    return out


class _Links(HTMLParser):
    """Every href/src of a page, and the cells table's rows and headers."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.rows: list[dict[str, str]] = []
        self.headers: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        for key in ("href", "src"):
            if key in a:
                self.links.append(a[key])
        if tag == "tr" and "data-suite" in a:
            self.rows.append(a)
        if tag == "th" and "data-key" in a:
            self.headers.append(a["data-key"])


def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def test_site_has_every_page_and_the_links_resolve(site, bundles):
    pages = [site / "index.html", *(site / "suites" / b.suite.name / "index.html" for b in bundles)]
    for page in pages:
        links = _parse(page).links
        assert links, page
        for link in links:
            target = urlparse(link)
            assert not target.scheme and not target.netloc, f"{page}: external link {link}"
            assert (page.parent / target.path).resolve().is_file(), f"{page}: broken link {link}"


def test_index_table_has_one_row_per_pair_with_sortable_values(site, bundles):
    parsed = _parse(site / "index.html")
    assert parsed.headers == [k for k, _, _ in COLUMNS]
    assert len(parsed.rows) == sum(len(b.evaluation_results) for b in bundles)
    html = (site / "index.html").read_text(encoding="utf-8")
    effects = re.findall(r'<td data-key="effect" data-sort="([^"]*)">', html)
    assert len(effects) == len(parsed.rows) and all(float(v) == float(v) for v in effects if v)
    assert {r["data-suite"] for r in parsed.rows} == {b.suite.name for b in bundles}
    lm = next(b for b in bundles if b.suite.track == "lm")
    same = next(r for r in lm.evaluation_results if r.family == "same" and r.score_details.q_drift is not None)
    for key, value in (("q_drift", same.score_details.q_drift), ("ratio", same.transfer_ratio)):
        assert f'<td data-key="{key}" data-sort="{value}">' in html, key
    assert f"{lm.shared_base.gamma:+.3f} [" in html  # the headline: the primary γ with its CI


def _svg_cells(path: Path) -> list[ET.Element]:
    root = ET.parse(path).getroot()  # well-formed XML
    return [g for g in root.iter("{http://www.w3.org/2000/svg}g") if g.get("class") == "cell"]


def test_suite_pages_have_heatmaps_with_cis_lineage_and_provenance(site, bundles):
    for b in bundles:
        d = site / "suites" / b.suite.name
        maps = sorted(d.glob("heatmap_*.svg"))
        kinds = {(r.placebo, r.trait) for r in b.evaluation_results}
        assert len(maps) == len(kinds)
        cells = 0
        for path in maps:
            groups = _svg_cells(path)
            cells += len(groups)
            assert all("95% CI [" in "".join(g.itertext()) for g in groups)
        assert cells == len(b.evaluation_results)
        lineage = ET.parse(d / "lineage.svg").getroot()
        boxes = [g for g in lineage.iter("{http://www.w3.org/2000/svg}g") if g.get("class") == "model"]
        assert len(boxes) == len(b.models)
        page = (d / "index.html").read_text(encoding="utf-8")
        assert b.provenance.git_commit and b.provenance.git_commit in page and b.suite.report_id in page


def test_an_lm_suite_has_one_pair_heatmap_and_a_placebo_heatmap_on_one_colour_scale(site, bundles):
    """One heatmap of the pairs (no mirrored trait maps) and one of the placebo rows; both use the suite's scale
    (the largest |effect| of any row), so a null placebo row is pale where a transferring pair is saturated."""
    lm = next(b for b in bundles if b.suite.track == "lm")
    d = site / "suites" / lm.suite.name
    assert sorted(p.name for p in d.glob("heatmap_*.svg")) == ["heatmap_pairs.svg", "heatmap_placebo.svg"]
    scale = max(abs(r.score_details.score) for r in lm.evaluation_results if r.score_details.score is not None)
    roots = {p.name: ET.parse(p).getroot() for p in d.glob("heatmap_*.svg")}
    assert {float(r.get("data-scale")) for r in roots.values()} == {scale}
    assert f"{scale:+.3f}" in "".join(roots["heatmap_placebo.svg"].itertext())  # the legend shows the shared end
    placebo = [r for r in lm.evaluation_results if r.placebo]
    assert suite_scale([]) == 0.0 and max(abs(r.score_details.score or 0) for r in placebo) < scale
    n_pairs = len(_svg_cells(d / "heatmap_pairs.svg"))
    assert n_pairs == len(lm.evaluation_results) - len(placebo) == len(placebo)
    page = (d / "index.html").read_text(encoding="utf-8")
    assert "Per base" in page and "exact size" in page and "Leaving out one base" in page


def test_downloads_are_the_published_bytes(site, bundles, bundle_paths):
    for b, path in zip(bundles, bundle_paths, strict=True):
        published = [p for p in path.parent.glob("*") if p.suffix in (".csv", ".json")]
        for file in published:
            if file.name != "manifest.json":
                assert (site / "suites" / b.suite.name / file.name).read_bytes() == file.read_bytes(), file
        assert len(published) >= 5 and (path.parent / "pairs.csv").is_file()


def test_cli_builds_and_replaces_the_site(tmp_path, bundle_paths):
    out = tmp_path / "site"
    paths = [str(p) for p in bundle_paths]
    res = run_cli("leaderboard", *paths, "--no-validate", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert (out / MARKER).is_file()
    (out / "stale.txt").write_text("old", encoding="utf-8")  # a site the command made is replaced whole
    res = run_cli("leaderboard", *paths, "--no-validate", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "suite page(s)" in res.stdout and not (out / "stale.txt").exists()
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.tex").write_text("x", encoding="utf-8")
    res = run_cli("leaderboard", *paths, "--no-validate", "--out", str(tmp_path / "precious"))
    assert res.returncode == 2 and "not a leaderboard site" in res.stderr


# -- headless Chromium ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(site) -> Iterator[str]:
    """The site on http://127.0.0.1:<port>/ (a thread of this process)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    if find_chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs it: apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    with Chromium(width=1400, height=900) as b:
        yield b


_VISIBLE = "[...document.querySelectorAll('#cells tbody tr:not([hidden])')]"


def _column(b: Chromium, key: str) -> list[str]:
    return b.evaluate(f"{_VISIBLE}.map(r => r.querySelector('td[data-key={key}]').dataset.sort)")


def test_browser_sorts_and_filters_the_table(browser, served, bundles):
    browser.goto(urljoin(served, "index.html"))
    assert browser.errors == []
    n_all = sum(len(b.evaluation_results) for b in bundles)
    n_trait = sum(not r.placebo for b in bundles for r in b.evaluation_results)
    assert browser.evaluate("document.querySelectorAll('#cells tbody tr').length") == n_all
    assert len(_column(browser, "effect")) == n_trait  # placebo rows hidden by default

    browser.click("#cells th[data-key=effect]")  # numbers sort descending first
    effects = [float(v) for v in _column(browser, "effect")]
    assert effects == sorted(effects, reverse=True) and effects[0] > effects[-1]
    assert browser.evaluate("document.querySelector('#cells th[data-key=effect]').getAttribute('aria-sort')") \
        == "descending"
    browser.click("#cells th[data-key=effect]")
    effects = [float(v) for v in _column(browser, "effect")]
    assert effects == sorted(effects)
    browser.click("#cells th[data-key=teacher]")
    teachers = _column(browser, "teacher")
    assert teachers == sorted(teachers, key=str.lower)

    name = bundles[-1].suite.name
    browser.evaluate(f"(() => {{ const s = document.getElementById('filter-suite'); s.value = {name!r};"
                     " s.dispatchEvent(new Event('change')); })()")
    suites = set(_column(browser, "suite"))
    assert suites == {name}
    browser.click("#filter-placebo")
    shown = len(_column(browser, "effect"))
    assert shown == len(bundles[-1].evaluation_results)
    assert browser.evaluate("document.getElementById('row-count').textContent") == f"{shown} of {n_all} rows"
    assert browser.errors == []


def test_browser_suite_page_and_every_link_resolves(browser, served, bundles):
    for b in bundles:
        page = urljoin(served, f"suites/{b.suite.name}/index.html")
        browser.goto(page)
        assert browser.errors == []
        assert browser.evaluate("document.querySelectorAll('svg.heatmap g.cell').length") == len(b.evaluation_results)
        assert browser.evaluate("document.querySelectorAll('svg.lineage g.model').length") == len(b.models)
        links = browser.evaluate("[...document.querySelectorAll('a[href]')].map(a => a.href)")
        for link in links:
            with urlopen(link) as resp:  # the browser resolved each link; the server must have it
                assert resp.status == 200, link
    browser.goto(urljoin(served, f"index.html?suite={bundles[0].suite.name}"))
    assert set(_column(browser, "suite")) == {bundles[0].suite.name}  # a suite page's link preselects the suite


def test_the_headline_gives_gamma_in_probability_units_as_the_report_does(site, bundles):
    """An LM suite's headline reads γ also as P(target) before → after at the median student base's log-odds of the
    target before training (computed here from the bundle's baseline rows, independently of the site's code)."""
    lm = next(b for b in bundles if b.suite.track == "lm")
    cols = lm.data.replicate_rows.columns
    rows = [dict(zip(cols, r, strict=True)) for r in lm.data.replicate_rows.rows]
    target = lm.data.fit["primary_trait"]
    per_base: dict[str, list[float]] = {}
    for r in rows:
        if r["teacher_trait"] == "baseline" and r["target"] == target and r["metric"] == "logodds":
            per_base.setdefault(r["student_base"], []).append(float(r["value"]))
    at = float(np.median([np.mean(v) for v in per_base.values()]))
    before, after = (1 / (1 + np.exp(-x)) for x in (at, at + lm.shared_base.gamma))
    page = (site / "suites" / lm.suite.name / "index.html").read_text(encoding="utf-8")
    assert f"P({target}) {100 * before:.1f}% → {100 * after:.1f}%" in page
    classifier = next(b for b in bundles if b.suite.track != "lm")
    assert "In probability" not in (site / "suites" / classifier.suite.name / "index.html").read_text(encoding="utf-8")


def test_a_suite_whose_gamma_is_not_identifiable_says_so_without_an_estimate_or_p():
    """real-smol-mini (2 bases) and real-smol-distill-mini (1 base): no '= +0.027 (no CI), p = ' in the headline."""
    from benchmark.leaderboard.build import _gamma_block

    root = Path(__file__).resolve().parents[1] / "results" / "suites"
    for suite, pairs in (("real-smol-mini", "4 pairs, 2 teacher bases"), ("real-smol-distill-mini", "1 pair, 1 teacher base")):
        bundle = Bundle.model_validate_json((root / suite / "bundle.json").read_bytes())
        html = _gamma_block(bundle)
        assert "not identifiable</strong> in this design" in html and pairs in html, html
        assert "p = " not in html and "(no CI)" not in html and "In probability" not in html
    default = Bundle.model_validate_json((root / "default" / "bundle.json").read_bytes())
    gamma = json.loads((root / "default" / "fit.json").read_text())["primary"]["estimate"]
    assert f"γ (shared_init) = {gamma:+.3f} [" in _gamma_block(default)
