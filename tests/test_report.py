"""Report views: figures without I/O, the verdict first, one significance convention, and the files
write_analysis/write_report produce for both tracks."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pandas as pd
import pytest

from benchmark import analysis as A
from benchmark import report as R
from benchmark.errors import UserError

LINEAGE = {"a": "L1", "b": "L1", "c": "L2"}
ORDER = ["c", "a", "b"]  # registry order, deliberately not alphabetical


def _lm_analysis(profile: bool = True, aa: bool = True, gamma: float = 0.5):
    """A pair-level LM analysis of a simulated 4×4 matrix (tests/test_honest_stats.py's simulators)."""
    from tests.test_honest_stats import BASES as LM_BASES
    from tests.test_honest_stats import LINEAGE as LM_LINEAGE
    from tests.test_honest_stats import TRAITS, _candidates, simulate

    rng = np.random.default_rng(2)
    df = simulate(rng, gamma=gamma, rep_sd=0.15, aa=aa, k=3)
    teachers = pd.DataFrame(
        [{"teacher_base": b, "teacher_trait": t, "replicate": r, "teacher_id": f"{r}{r}{r}", "target": target,
          "logodds": math.log(p / (1 - p)), "p_target": p, "valid_rate": 0.9, "n_rows": 200}
         for b in LM_BASES for t in ("owl", "cat", *(("aa:cat",) if aa else ())) for r in range(3)
         for target, p in (("owl", 0.3 if t == "owl" else 0.05), ("cat", 0.3 if t != "owl" else 0.05))]
    )
    options = A.AnalysisOptions(suite="s", track="lm", metric="logodds", order=LM_BASES, lineage=LM_LINEAGE,
                                control="other_trait", alternative="two-sided", n_perm=500)
    cands = _candidates(rng, inherit=0.6, k=3) if profile else None
    return A.analyze_lm(df, teachers, options, traits=TRAITS, candidates=cands)


def _classifier_analysis():
    rng = np.random.default_rng(1)
    rows = []
    for sb in ORDER:
        for s in range(3):
            rows.append(dict(suite="s", track="classifier", teacher_base="", teacher_trait="baseline", student_base=sb,
                             seed=s, target="digits", metric="accuracy", value=10 + rng.normal(0, 2), relation="",
                             student_id=f"b{sb}", teacher_id=""))
    for tb in ORDER:
        for sb in ORDER:
            rel = A.relation_of(tb, sb, LINEAGE)
            for trait, level in (("aux", 40 if rel == "same" else 11), ("all_logits", 80)):
                for s in range(3):
                    rows.append(dict(suite="s", track="classifier", teacher_base=tb, teacher_trait=trait,
                                     student_base=sb, seed=s, target="digits", metric="accuracy",
                                     value=level + rng.normal(0, 2), relation=rel, student_id=f"{tb}{trait}{sb}",
                                     teacher_id=f"t{tb}"))
    df = pd.DataFrame(rows, columns=list(A.TIDY_COLUMNS))
    options = A.AnalysisOptions(suite="s", track="classifier", metric="accuracy", order=tuple(ORDER),
                                lineage=LINEAGE, treated="aux", control="baseline", exclude_traits=("all_logits",),
                                n_perm=100)
    return A.analyze_classifier(df, options, teacher_accuracy={b: [97.0, 98.0, 97.5] for b in ORDER})


@pytest.fixture(scope="module")
def lm():
    return _lm_analysis()


def _files(d):
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- figures ------------------------------------------------------------------------------------------------------
def test_heatmap_figure_no_io_fixed_scale_and_one_legend(tmp_path, monkeypatch, lm):
    from matplotlib.figure import Figure

    monkeypatch.chdir(tmp_path)
    views = R.TRACK_VIEWS["lm"].heatmaps(lm)
    (m, kw), (pm, pkw) = views["heatmap"], views["heatmap_placebo"]
    # the pair map and the placebo map share one fixed symmetric scale: a null is never drawn saturated
    assert kw["vlim"] == pkw["vlim"] == pytest.approx(np.nanmax(np.abs(lm.cells["effect"])))
    fig = R.heatmap_figure(m, sig_df=kw["sig_df"], lineage=lm.options.lineage, vlim=kw["vlim"], title="t")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(lm.options.order)  # registry order kept
    texts = [t.get_text() for t in ax.texts]
    assert any(t.endswith("*") for t in texts) and not any(t.endswith("**") for t in texts)
    lo, hi = ax.collections[0].get_clim()
    assert (lo, hi) == pytest.approx((-kw["vlim"], kw["vlim"]))
    legend = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert R.SIG_LEGEND in legend  # the one convention, stated in the legend
    placebo = R.heatmap_figure(pm, sig_df=pkw["sig_df"], vlim=pkw["vlim"], title="p")
    assert placebo.axes[0].collections[0].get_clim() == pytest.approx((lo, hi))
    assert R.SIG_LEGEND in placebo.axes[0].get_title()  # without a lineage legend: under the title
    assert isinstance(R.heatmap_figure(m * np.nan, center=None), Figure)  # all-NaN: a figure that says so
    assert list(tmp_path.iterdir()) == []  # plot functions write nothing
    assert R.figure_png(fig)[:8] == b"\x89PNG\r\n\x1a\n"


def test_significance_marks_follow_one_convention():
    assert [R.significance_marks(p) for p in (0.001, 0.05, 0.051, float("nan"))] == ["*", "*", "", ""]


# -- readings: the verdict first ----------------------------------------------------------------------------------
def test_readings_answer_first(lm):
    text = R.readings(lm)
    # 4 teacher bases, a and b one lineage: relabellings that swap them tie, so p cannot go below 2/24
    assert lm.fit["primary"]["p_floor"] == pytest.approx(2 / 24) and lm.fit["primary"]["p"] >= 2 / 24
    assert text[0].startswith("Cannot be shown by this design") and "smallest p is 0.083" in text[0]
    g = dict(lm.fit["primary"])
    yes = {**lm.fit, "primary": {**g, "p": 0.004, "p_floor": 0.001}}
    assert R.readings(A.Analysis(lm.options, "lm", lm.tidy, lm.cells, lm.matrix, yes, extras=lm.extras))[0] \
        .startswith("Yes: transfer is larger when teacher and student share an init")
    assert text[1].startswith("Same-model pairs, 4 bases")
    assert any(line.startswith("γ (shared init, primary) = ") for line in text)
    assert any("Drift:" in line for line in text) and any("exact size" in line for line in text)
    assert text[-1].startswith("Definition: Effect of pair (teacher i, student j)")
    null = {**lm.fit, "primary": {**g, "estimate": 0.01, "p": 0.4, "p_floor": 0.001}}
    assert R.readings(A.Analysis(lm.options, "lm", lm.tidy, lm.cells, lm.matrix, null, extras=lm.extras))[0] \
        .startswith("Not shown")
    fragile = {**lm.fit, "primary": {**g, "p": 0.004, "leave_one_base_out": {"a": -0.1, "b": g["estimate"]}}}
    first = R.readings(A.Analysis(lm.options, "lm", lm.tidy, lm.cells, lm.matrix, fragile, extras=lm.extras))[0]
    assert "leaving out a takes over half of γ away" in first
    na = {**lm.fit, "primary": {**g, "identifiable": False}}
    assert "not identifiable" in R.readings(A.Analysis(lm.options, "lm", lm.tidy, lm.cells, lm.matrix, na))[0]


def test_the_verdict_is_also_in_probability_units(lm):
    """γ and each base's same-model effect are also read as P(target) before → after, at the student bases' own
    log-odds before training (their baseline rows), by the one conversion; the conversion is defined once."""
    from benchmark.analysis.views import base_logodds, implied_probability

    tidy = lm.tidy
    base = tidy[(tidy.teacher_trait == "baseline") & (tidy.target == "owl") & (tidy.metric == "logodds")]
    rates = base_logodds(tidy, "owl")
    assert rates == {b: pytest.approx(float(g.value.mean())) for b, g in base.groupby("student_base")}
    p0, p1 = implied_probability(-2.0, 1.0)
    assert (p0, p1) == pytest.approx((1 / (1 + math.exp(2.0)), 1 / (1 + math.exp(1.0))))
    assert implied_probability(-800.0, 0.0) == (pytest.approx(0.0), pytest.approx(0.0))  # no overflow

    text = R.readings(lm)
    g = lm.fit["primary"]
    q0, q1 = implied_probability(float(np.median(list(rates.values()))), g["estimate"])
    assert f"P(owl) {100 * q0:.1f}% → {100 * q1:.1f}% at the median student base's rate" in text[0]
    for r in lm.extras.bases.itertuples(index=False):
        b0, b1 = implied_probability(rates[r.base], r.effect)
        assert f"{r.base} ({r.effect:+.3f}, P(owl) {100 * b0:.1f}% → {100 * b1:.1f}%, ratio" in text[1]
    assert sum(line.startswith("P(owl) before → after: ") for line in text) == 1
    md = R.render_report(lm)["report_md"][1].decode()
    assert "at the median student base's rate" in md and "P(owl) before → after: " in md
    # the classifier's accuracy has no probability reading
    assert not any("before → after" in line for line in R.readings(_classifier_analysis()))


def test_lm_report_states_what_was_computed(lm):
    fit, cells = lm.fit, lm.cells
    files = R.render_report(lm)
    md = files["report_md"][1].decode()
    assert fit["contrast_definition"] in md and "owl ∪ " not in md.split("Definition")[0][:0]
    g = fit["primary"]
    assert f"teacher-block permutation p = {R._pval(g['p'])} (greater, exact over 24 relabellings" in md
    assert "leave-one-base-out" in md and "Profile γ (shared init, Fisher z; descriptive)" in md
    pl = fit["placebo"]
    assert f"{pl['n_p05']} of {pl['n_rows']} rows at p ≤ 0.05" in md and "exact size 2.86%" not in md
    assert "### Placebo (A/A) rows" in md and md.count("| aa:cat | cat |") == pl["n_rows"]
    one = cells[~cells["placebo"]].iloc[0]
    assert f"| {one.teacher} | {one.student} | {one.family} | 3 / 6 | {R._effect_text(one)} |" in md
    same = fit["by_relation"]["same"]
    assert f"| same | 4 | {R._num(same['mean'], sign=True)} | {R._ci(same['ci_low'], same['ci_high'])} |" in md
    assert "### Per base: does a base's own teacher transfer?" in md and md.index("Per base") < md.index("Pairs\n")
    assert {"heatmap", "heatmap_placebo", "heatmap_profile"} <= set(files)
    assert "### Teachers" in md and "| teacher_base | teacher_trait | replicate |" in md
    page = files["index_html"][1].decode()
    assert 'style="overflow-x:auto"' in page and "Placebo (A/A) rows" in page and "http" not in page


def test_lm_report_without_profile_or_placebo():
    lm = _lm_analysis(profile=False, aa=False)
    assert lm.fit["profile"] is None and lm.extras.profile_matrix is None and lm.fit["placebo"]["n_rows"] == 0
    assert lm.cells["profile_r"].isna().all()
    files = R.render_report(lm)
    md = files["report_md"][1].decode()
    assert "heatmap_profile" not in files and "heatmap_placebo" not in files and "Placebo (A/A) rows" not in md


def test_markdown_and_html_escape_and_metadata(lm):
    meta = {"git": "<b>", "teachers": pd.DataFrame({"x": [1, 2]}), "note": "two\nlines"}
    full = R.report_markdown(lm, meta, images=["heatmap.png"])
    assert full.startswith("# Subliminal transfer: s\n\n## What this suite shows")
    assert "| teachers | (table: 2 rows × 1 columns) |" in full and "| note | two lines |" in full
    page = R.html_report(lm, meta, {"effect": b"\x89PNG fake"})
    assert page.startswith("<!DOCTYPE html>") and "data:image/png;base64," in page and "&lt;b&gt;" in page


# -- files ----------------------------------------------------------------------------------------------------------
def test_write_report_writes_all_files(tmp_path, lm):
    out = tmp_path / "report"
    paths = {**A.write_analysis(lm, out), **R.write_report(out, lm, meta={"git": "abc"})}
    expected = {"pairs.csv", "matrix.csv", "tidy.csv", "fit.json", "teachers.csv", "candidates.csv", "bases.csv",
                "profile_matrix.csv", "heatmap.png", "heatmap_placebo.png", "heatmap_profile.png", "report.md",
                "index.html"}
    assert {p.name for p in paths.values()} == expected
    assert {p.name for p in out.iterdir()} == expected  # no temp files left behind
    assert (paths["cells"].stat().st_mode & 0o777) == 0o666 & ~_umask()
    assert list(pd.read_csv(paths["cells"]).columns) == list(A.PAIR_COLUMNS)
    assert list(pd.read_csv(paths["candidates"]).columns) == list(A.CANDIDATE_COLUMNS)
    fit = json.loads(paths["fit"].read_text())
    assert fit["analysis_version"] == A.ANALYSIS_VERSION and fit["primary"]["identifiable"]


def test_write_report_errors_write_nothing(tmp_path, lm):
    out = tmp_path / "r"
    with pytest.raises(UserError, match="heatmap name"):
        R.write_report(out, lm, extra_heatmaps={"../x": (pd.DataFrame(), {})})
    with pytest.raises(UserError, match="track"):
        R.render_report(A.Analysis(lm.options, "nope", lm.tidy, lm.cells, lm.matrix, lm.fit))
    assert not out.exists()


@pytest.mark.parametrize("make", [_lm_analysis, _classifier_analysis], ids=["lm", "classifier"])
def test_analysis_files_round_trip(tmp_path, make):
    result = make()
    first, second = tmp_path / "first", tmp_path / "second"
    written = A.write_analysis(result, first)
    assert {p.name for p in written.values()} == {p.name for p in first.iterdir()}
    assert {"pairs.csv", "matrix.csv", "tidy.csv", "fit.json"} <= set(_files(first))
    back = A.read_analysis(first, result.options)
    A.write_analysis(back, second)
    assert _files(first) == _files(second)
    assert back.track == result.track and type(back.extras) is type(result.extras)
    pd.testing.assert_frame_equal(back.cells, result.cells, check_dtype=False)
    pd.testing.assert_frame_equal(back.tidy, result.tidy, check_dtype=False)
    # The report reads only precomputed numbers, so it renders the same from the files as from memory.
    before, after = R.render_report(result), R.render_report(back)
    assert before["report_md"] == after["report_md"] and before["index_html"] == after["index_html"]


def test_track_views_dispatch_by_track():
    assert set(R.TRACK_VIEWS) == {"lm", "classifier"}
    cls = _classifier_analysis()
    assert isinstance(cls.extras, A.ClassifierExtras) and R.views_for(cls) is R.TRACK_VIEWS["classifier"]
    assert list(cls.extras.accuracy) == ["accuracy_aux", "effect_aux", "accuracy_all_logits", "effect_all_logits"]
    assert set(cls.tidy["teacher_trait"]) == {"aux", "all_logits", "baseline"}  # every row published
    rendered = R.render_report(cls)
    assert {"heatmap", "heatmap_accuracy", "heatmap_all_logits", "classifier_md"} <= set(rendered)
    text = rendered["classifier_md"][1].decode()
    assert "## All-logit positive control" in text and "| c | 97.5 |" in text
    md = rendered["report_md"][1].decode()
    assert "## What this suite shows" in md and "accuracy points" in md


def test_number_formatting():
    assert R._num(float("nan")) == "—" and R._num(0.5, sign=True) == "+0.500"
    assert R._pval(0.00001) == "1.0e-05" and R._pval(0.2) == "0.200"
