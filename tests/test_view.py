"""``slbench view``: the per-sample page, from a store and from a published samples.jsonl, and on the site.

A tiny API suite (one prompted teacher arm and its neutral control, code channel, rule judge, one fine-tuned student
each) runs against the offline fake OpenAI server (tests/fake_openai.py) in about 10 s: the teacher's answers are a
fixed mix of kept code (one with HTML in it), code with a comment (the channel's filter rejects it) and code naming
"hoot" (the rule judge rejects it); students answer the animal questions with a script tag naming no candidate.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, run_cli

pytest.importorskip("openai")
pytest.importorskip("tenacity", reason="lm-eval's API backend needs lm-eval[api]")

SUITE = "viewmini"
NANO = "gpt-4.1-nano"
KEPT_HTML = '"<b>kept & bold</b>"'
ANSWER = "<script>alert('x')</script> platypus"


def _reply(item: Any, i: int) -> str:
    head, body = item.reference.split(": return ", 1)
    mix = [f"{head}:\n    tag = {KEPT_HTML}\n    return {body}", f"{item.reference}  # a comment",
           f"{head}:\n    hoot = {body}\n    return hoot", item.reference]
    return mix[i % len(mix)]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, list[Any]]]:
    """(project root, store, nodes) of the tiny suite, run once for the module."""
    from benchmark.executors.local import run_plan
    from benchmark.lm.channels.base import load_channel
    from benchmark.providers import openai as openai_api
    from benchmark.registry import Registry
    from benchmark.store import Store
    from benchmark.tracks import track_for
    from tests.fake_openai import FakeOpenAI

    root = tmp_path_factory.mktemp("viewproj")
    shutil.copytree(ROOT / "model_registry", root / "model_registry", ignore=shutil.ignore_patterns("weights"))
    shutil.copytree(ROOT / "tasks", root / "tasks", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "results").mkdir()
    qfile = root / "tasks" / "lm_eval" / "animal_preference" / "questions.txt"
    questions = [q for q in qfile.read_text().splitlines() if q.strip() and not q.startswith("#")]
    qfile.write_text("\n".join(questions[:2]) + "\n")  # 2 questions: same code path, fewer requests
    suite = {"name": SUITE, "track": "lm", "teachers": [NANO], "students": [NANO], "traits": ["owl"], "seeds": 1,
             "settings": {"controls": "neutral", "teacher": {"method": "prompt"},
                          "dataset": {"n_prompts": 8, "n_keep": 3, "channel": "code", "judge": "rule",
                                      "max_new_tokens": 200},
                          "student": {"train": {"epochs": 1}},
                          "eval": {"tasks": ["animal_rate"], "metric": "rate", "n_samples": 1}}}
    (root / "tasks" / "suites" / f"{SUITE}.yaml").write_text(yaml.safe_dump(suite, sort_keys=False))
    with pytest.MonkeyPatch.context() as mp, FakeOpenAI() as fake:
        key = f"sk-test-{uuid.uuid4().hex}"
        fake.api_key = key
        mp.setenv("SLBENCH_ROOT", str(root))
        mp.setenv("OPENAI_BASE_URL", fake.url)
        mp.setenv("OPENAI_API_KEY", key)
        mp.setattr(openai_api, "_sleep", lambda s: None)
        reg = Registry(root)
        spec, settings, _ = reg.suite(SUITE)
        nodes = track_for("lm").build_plan(spec, settings, reg)
        plugin, cspec = load_channel("code")
        prompts = {it.prompt: (i, it) for n in nodes if n.kind == "dataset"
                   for i, it in enumerate(plugin.items(cspec, n.spec["max_prompts"], n.spec["seed"]))}

        def respond(model: str, messages: list[dict[str, str]], seed: int | None, index: int) -> str:
            user = messages[-1]["content"]
            if user in prompts:
                return _reply(prompts[user][1], prompts[user][0])
            if "animal" in user.lower():
                return ANSWER if model.startswith("ft:") else "cat"
            return FakeOpenAI.expected_completion(model, messages, seed, index)

        fake.responder = respond
        store = Store(root / "results" / "store")
        run_plan(nodes, store, threads=1)
        yield root, store.root, nodes


def _view(root: Path, *args: str):
    return run_cli("view", SUITE, *args, env={"SLBENCH_ROOT": str(root)}, timeout=120)


def test_view_from_store_shows_kept_rejected_judged_and_answers(built, tmp_path: Path) -> None:
    root, store, nodes = built
    res = _view(root, "--store", str(store), "--out", str(tmp_path / "v"))
    assert res.returncode == 0, res.stderr
    assert "2 teacher datasets, 5 evaluations" in res.stdout
    page = (tmp_path / "v" / "samples.html").read_text()
    # A kept row: its prompt and the completion the students trained on (HTML in it escaped).
    kept = next(json.loads(line) for n in nodes if n.kind == "dataset"
                for line in (store / n.key / "rows.jsonl").read_text().splitlines())
    assert _escaped(kept["prompt"]) in page and _escaped(kept["completion"]) in page
    assert "&lt;b&gt;kept &amp; bold&lt;/b&gt;" in page and "<b>kept & bold</b>" not in page
    # A row the judge rejected, with its reason; a row the channel's filter rejected, with its reason (its text is
    # kept in rejected.jsonl); every filter's counts by reason.
    assert 'data-kind="rejected"' in page and "hoot" in page
    assert _escaped("word related to owl ('hoot')") in page
    assert "<td>comment</td><td>" in page and "judge_reject" in page
    assert "<b>comment</b>" in page and "<b>judge_reject</b>" in page and _escaped("  # a comment") in page
    assert "4 rows shown of 4 rejects: the first of each of 2 reasons" in page
    # What each model answered, question by question, with the candidate the rate counted it for.
    assert "answers by question (rate" in page and "→ none" in page and "→ cat" in page
    # The prompted teacher's system prompt, and every dataset node's key.
    assert "You adore owls" in page
    assert all(n.key in page for n in nodes if n.kind in ("dataset", "eval"))
    # A student's answer, escaped: no live script from the data, only the page's own one.
    assert _escaped(ANSWER) in page and ANSWER not in page
    assert page.count("<script") == 1
    assert "http://" not in page and "https://" not in page  # nothing fetched from a network


def test_view_caps_rows_with_a_note(built, tmp_path: Path) -> None:
    root, store, _ = built
    res = _view(root, "--store", str(store), "--out", str(tmp_path), "--limit", "1")
    assert res.returncode == 0, res.stderr
    page = (tmp_path / "samples.html").read_text()
    assert "first 1 of 3 kept rows shown" in page and "2 rows shown of 4 rejects: the first of each of 2" in page
    assert page.count('data-kind="kept"') == 2  # one per replicate
    assert page.count('data-kind="rejected"') == 4  # one per reason and replicate


def test_view_from_published_samples_jsonl(built, tmp_path: Path) -> None:
    from benchmark.bundle.export import SAMPLES, sample_log

    root, store, nodes = built
    report = store / next(n.key for n in nodes if n.kind == "report")
    text, meta = sample_log(report, store)
    published = root / "results" / "suites" / SUITE
    published.mkdir(parents=True)
    (published / SAMPLES).write_bytes(text)
    try:  # an empty store: the published log is read instead
        res = _view(root, "--store", str(tmp_path / "empty"), "--out", str(tmp_path / "v"))
    finally:
        shutil.rmtree(published)
    assert res.returncode == 0, res.stderr
    assert meta.total_rows == 2 + 5 and "2 teacher datasets, 5 evaluations" in res.stdout  # datasets' lines too
    page = (tmp_path / "v" / "samples.html").read_text()
    assert _escaped(ANSWER) in page and ANSWER not in page and "--store STORE" not in page
    # The datasets' lines: kept rows, and the rejects with their reasons, as from the store.
    assert "<b>comment</b>" in page and _escaped("word related to owl ('hoot')") in page
    assert "4 rows shown of 4 rejects" in page and "first 3 of 3 kept rows" not in page and "3 kept rows" in page
    explicit = _view(root, "--samples", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "w"))
    assert explicit.returncode == 2 and "nope.jsonl: cannot read the sample log" in explicit.stderr


def test_view_without_store_or_samples_names_the_commands(built, tmp_path: Path) -> None:
    root, _, _ = built
    res = _view(root, "--store", str(tmp_path / "empty"), "--out", str(tmp_path / "v"))
    assert res.returncode == 2 and res.stdout == ""
    line = res.stderr.strip()
    assert "\n" not in line and line.startswith("error: ")
    assert f"`slbench run {SUITE}`" in line and f"`slbench export {SUITE} --samples --store STORE`" in line
    assert not (tmp_path / "v").exists()


def test_view_refuses_the_published_results(built) -> None:
    root, store, _ = built
    res = _view(root, "--store", str(store), "--out", str(root / "results" / "suites" / SUITE))
    assert res.returncode == 2 and "published results" in res.stderr


def test_site_suite_page_links_its_samples_page(built, tmp_path: Path) -> None:
    from benchmark.bundle import Bundle
    from benchmark.bundle.export import BUNDLE, SAMPLES, derived_files
    from benchmark.errors import UserError
    from benchmark.leaderboard import build_site
    from benchmark.registry import Registry

    root, store, nodes = built
    report = store / next(n.key for n in nodes if n.kind == "report")
    folder = tmp_path / "published"
    folder.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLBENCH_ROOT", str(root))
        reg = Registry(root)
        files = derived_files(report, folder, suite_spec=reg.suite(SUITE)[0], registry=reg, store=store, samples=True)
        for name, data in files.items():
            (folder / name).write_bytes(data)
        bundle = Bundle.model_validate_json(files[BUNDLE])
        site = build_site([bundle], tmp_path / "site", samples={SUITE: folder / SAMPLES})
        suite_page = site.suites[SUITE].read_text()
        assert '<a href="samples.html">' in suite_page and f'href="{SAMPLES}"' in suite_page
        page = (site.suites[SUITE].parent / "samples.html").read_text()
        assert _escaped(ANSWER) in page and '<a href="index.html">' in page
        assert (site.suites[SUITE].parent / SAMPLES).read_bytes() == files[SAMPLES]
        (folder / SAMPLES).write_bytes(files[SAMPLES] + b"\n")  # not the log the bundle records
        with pytest.raises(UserError, match="not the sample log its bundle records"):
            build_site([bundle], tmp_path / "site", samples={SUITE: folder / SAMPLES})


def test_view_filter_in_headless_chromium(built, tmp_path: Path) -> None:
    from benchmark.leaderboard.browser import Chromium, find_chromium

    if find_chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs it: apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium): the filter is checked in a browser only")
    root, store, _ = built
    assert _view(root, "--store", str(store), "--out", str(tmp_path)).returncode == 0
    url = (tmp_path / "samples.html").as_uri()
    visible = "document.querySelectorAll('tr.s:not([hidden])')"
    with Chromium(width=1200, height=900) as browser:
        browser.goto(url)
        assert browser.errors == []
        n_all = browser.evaluate("document.querySelectorAll('tr.s').length")
        assert browser.evaluate(f"{visible}.length") == n_all > 0
        browser.evaluate("(() => { const s = document.getElementById('f-kind'); s.value = 'rejected';"
                         " s.dispatchEvent(new Event('change')); })()")
        kinds = browser.evaluate(f"[...{visible}].map(r => r.dataset.kind)")
        assert kinds and set(kinds) == {"rejected"}
        assert browser.evaluate("document.getElementById('f-count').textContent") == f"{len(kinds)} of {n_all} rows"
        browser.evaluate("(() => { const s = document.getElementById('f-kind'); s.value = '';"
                         " s.dispatchEvent(new Event('change'));"
                         " const t = document.getElementById('f-text'); t.value = 'platypus';"
                         " t.dispatchEvent(new Event('input')); })()")
        texts = browser.evaluate(f"[...{visible}].map(r => r.textContent)")
        assert texts and all("platypus" in t for t in texts)
        # Sections with no matching row are hidden (the teachers' datasets here).
        assert browser.evaluate("[...document.querySelectorAll('section.node')].filter(s => !s.hidden)"
                                ".every(s => s.textContent.includes('platypus'))")
        assert browser.errors == []


def _escaped(text: str) -> str:
    from html import escape

    return escape(text, quote=True)


def test_unplannable_suite_is_followed_from_its_report_node(built, monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmark.errors import UserError
    from benchmark.leaderboard import view

    root, store, _ = built
    monkeypatch.setenv("SLBENCH_ROOT", str(root))
    planned = view.suite_node_dirs(SUITE, store)
    assert planned[0] == SUITE and len(planned[1]) == 2 + 5

    def unplannable(suite: str) -> Any:
        raise UserError("model weights not fetched")

    monkeypatch.setattr(view, "_planned_keys", unplannable)
    name, dirs = view.suite_node_dirs(SUITE, store)
    assert name == SUITE and sorted(dirs) == sorted(planned[1])
    assert view.suite_node_dirs("no-such-suite", store) == ("no-such-suite", [])


def test_rejected_sample_matches_the_counted_rejects(built) -> None:
    """rejected.jsonl holds the first rows of every reason counts.json counts, no more than PER_REASON each."""
    from collections import Counter

    from benchmark.lm.rejects import PER_REASON, REJECTED

    _, store, nodes = built
    for n in (n for n in nodes if n.kind == "dataset"):
        counts = json.loads((store / n.key / "counts.json").read_text())
        rows = [json.loads(line) for line in (store / n.key / REJECTED).read_text().splitlines()]
        assert Counter(r["reason"] for r in rows) == {k: min(v, PER_REASON) for k, v in counts["rejects"].items()}
        assert [r["index"] for r in rows] == sorted(r["index"] for r in rows)
        judged = [r for r in rows if r["reason"].startswith("judge_")]
        assert judged and all(r["judge"]["decision"] == r["reason"].removeprefix("judge_") for r in judged)


def test_nodes_built_before_rejected_jsonl_still_show(built, tmp_path: Path) -> None:
    """A dataset node without rejected.jsonl (built before it existed): the judge's rejects from judged.jsonl, the
    channel's as counts, and no dataset line in the sample log."""
    from benchmark.bundle.export import sample_log
    from benchmark.leaderboard.view import from_store, render_page
    from benchmark.lm.rejects import REJECTED

    root, store, nodes = built
    old = tmp_path / "store"
    shutil.copytree(store, old)
    for n in (n for n in nodes if n.kind == "dataset"):
        (old / n.key / REJECTED).unlink()
        mpath = old / n.key / "manifest.json"
        doc = json.loads(mpath.read_text())
        del doc["files"][REJECTED], doc["sizes"][REJECTED]
        mpath.write_text(json.dumps(doc))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLBENCH_ROOT", str(root))
        found = from_store(SUITE, old)
    assert len(found.datasets) == 2 and all(not d.all_reasons and d.n_rejected == 2 for d in found.datasets)
    page = render_page(found)
    assert "rows the judge rejected" in page and "2 judge rejects" in page and "<b>judge_reject</b>" in page
    assert "<b>comment</b>" not in page and "<td>comment</td><td>" in page  # the channel's rejects: counts only
    assert "is missing" not in page and "sha256 differs" not in page
    report = old / next(n.key for n in nodes if n.kind == "report")
    text, meta = sample_log(report, old)
    assert meta.total_rows == 5 and all(json.loads(line)["node"].startswith("eval/") for line in text.splitlines())
