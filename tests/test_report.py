"""Report views: figures without I/O, readings from numbers, and the files write_analysis/write_report produce."""

from __future__ import annotations

import json
import math
import os
import re

import numpy as np
import pandas as pd
import pytest

from benchmark import analysis as A
from benchmark import report as R
from benchmark.errors import UserError

LINEAGE = {"a": "L1", "b": "L1", "c": "L2"}
ORDER = ["c", "a", "b"]  # registry order, deliberately not alphabetical


def make_tidy(gamma: float = 0.5, seeds: int = 3, rng_seed: int = 0) -> pd.DataFrame:
    """3×3 matrix, one target; treated = neutral + γ·1[shared init] + noise."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for sb in ORDER:
        rows.append(
            dict(
                suite="s",
                track="lm",
                teacher_base="",
                teacher_trait="baseline",
                student_base=sb,
                seed=0,
                target="owl",
                metric="logodds",
                value=0.0,
                relation="",
                student_id="",
                teacher_id="",
            )
        )
    for tb in ORDER:
        for sb in ORDER:
            rel = A.relation_of(tb, sb, LINEAGE)
            for s in range(seeds):
                for trait, shift in (("neutral", 0.0), ("owl", gamma * (rel != "unrelated")), ("cat", 0.0)):
                    rows.append(
                        dict(
                            suite="s",
                            track="lm",
                            teacher_base=tb,
                            teacher_trait=trait,
                            student_base=sb,
                            seed=s,
                            target="owl",
                            metric="logodds",
                            value=shift + rng.normal(0, 0.05),
                            relation=rel,
                            student_id=f"{tb}{trait}{sb}{s}",
                            teacher_id="",
                        )
                    )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def analysed():
    df = make_tidy()
    cells = A.cell_table(df, "logodds", n_boot=100)
    fit = A.shared_base_fit(A.paired_lifts(df, "logodds"), order=ORDER, n_perm=200)
    return df, cells, fit


def as_analysis(cells, fit):
    """Cells and a fit as the Analysis the text views render (drift summary recomputed from the cells)."""
    options = A.AnalysisOptions(suite="s", metric="logodds", order=tuple(ORDER))
    mat = A.matrix(cells, "effect", ORDER)
    return A.Analysis(options, "lm", pd.DataFrame(), cells, mat, fit, drift=A.drift_summary(cells))


def test_heatmap_figure_no_io(tmp_path, monkeypatch, analysed):
    from matplotlib.figure import Figure

    monkeypatch.chdir(tmp_path)
    _, cells, _ = analysed
    m = A.matrix(cells, "effect", ORDER)
    p = A.matrix(cells, "p_perm", ORDER, target="owl")
    fig = R.heatmap_figure(m, sig_df=p.where(p > 0.06, 0.001), lineage=LINEAGE, title="t", cbar_label="lift")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ORDER  # registry order kept
    assert [t.get_text() for t in ax.get_xticklabels()] == ORDER
    texts = [t.get_text() for t in ax.texts]
    assert any(t.endswith("**") for t in texts)  # significance marks drawn
    assert fig.legends  # lineage legend
    # shared-init cells are boxed: diagonal (3) + a<->b (2)
    assert len(ax.patches) == 5
    empty = R.heatmap_figure(m * np.nan, center=None)  # all-NaN: a figure that says so
    assert isinstance(empty, Figure)
    assert list(tmp_path.iterdir()) == []  # plot functions write nothing
    png = R.figure_png(fig)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_significance_marks():
    assert [R.significance_marks(p) for p in (0.001, 0.02, 0.2, float("nan"))] == ["**", "*", "", ""]


def test_readings_positive_and_negative(analysed):
    _, cells, fit = analysed
    text = " ".join(R.readings(as_analysis(cells, fit)))
    assert re.search(r"Same-base cells: mean lift \+0\.[45]\d\d \[", text)
    assert "transfer depends on a shared base" in text
    assert "smallest attainable p is 0.050" in text
    null = {**fit, "gamma": 0.01, "ci_low": -0.03, "ci_high": 0.05, "p_perm": 0.4}
    text = " ".join(R.readings(as_analysis(cells, null)))
    assert "CI covers 0" in text and "depends on a shared base." not in text
    opposite = {**fit, "gamma": -0.3, "ci_low": -0.4, "ci_high": -0.2, "p_perm": 0.99}
    assert any("*less*" in r for r in R.readings(as_analysis(cells, opposite)))
    fragile = {**fit, "loo_min": -0.1}
    assert any("flips the sign" in r for r in R.readings(as_analysis(cells, fragile)))
    assert any("not identifiable" in r for r in R.readings(as_analysis(cells, {**fit, "identifiable": False})))


def test_markdown_and_html(analysed):
    _, cells, fit = analysed
    md = R.markdown_tables(as_analysis(cells, fit))
    assert "| teacher \\ student | c | a | b |" in md
    assert (
        re.search(r"γ \(shared_init\) = \+0\.[45]", md)
        and "permutation p" in md
        and "leave-one-cell-out range" in md
    )
    meta = {"git": "abc123", "teachers": pd.DataFrame({"x": [1, 2]}), "note": "two\nlines"}
    full = R.report_markdown(as_analysis(cells, fit), meta, images=["heatmap.png"])
    assert "| teachers | (table: 2 rows × 1 columns) |" in full and "| note | two lines |" in full
    assert (
        full.startswith("# Subliminal transfer: s") and "![heatmap](heatmap.png)" in full and "abc123" in full
    )
    page = R.html_report(as_analysis(cells, fit), {"git": "<b>"}, {"effect": b"\x89PNG fake"})
    assert page.startswith("<!DOCTYPE html>") and "data:image/png;base64," in page
    assert "&lt;b&gt;" in page and "http" not in page  # escaped, self-contained


def test_write_report_writes_all_files(tmp_path, analysed):
    df, cells, _ = analysed
    acc = A.matrix(cells, "mean_treated", ORDER)
    out = tmp_path / "report"
    options = A.AnalysisOptions(
        suite="s", metric="logodds", order=tuple(ORDER), lineage=LINEAGE, n_boot=100, n_perm=100
    )
    result = A.analyze(df, options)
    extra = {"raw": (acc, {"center": None, "title": "raw"})}
    paths = {**A.write_analysis(result, out), **R.write_report(out, result, meta={"git": "abc"}, extra_heatmaps=extra)}
    expected = {
        "cells.csv",
        "matrix.csv",
        "tidy.csv",
        "fit.json",
        "heatmap.png",
        "heatmap_raw.png",
        "report.md",
        "index.html",
    }
    assert {p.name for p in paths.values()} == expected
    assert {p.name for p in out.iterdir()} == expected  # no temp files left behind
    assert all(p.stat().st_size > 0 for p in paths.values())
    assert (paths["cells"].stat().st_mode & 0o777) == 0o666 & ~_umask()
    assert list(pd.read_csv(paths["cells"]).columns) == list(A.CELL_COLUMNS)
    assert list(pd.read_csv(paths["matrix"], index_col=0).index) == ORDER
    assert len(pd.read_csv(paths["tidy"])) == len(df)
    fit = json.loads(paths["fit"].read_text())
    assert fit["ci_low"] > 0 and fit["identifiable"]
    # the text views also work from the files (NaN comes back from JSON as null)
    from_files = as_analysis(pd.read_csv(paths["cells"]), {**fit, "se": None})
    assert any("shared base" in r for r in R.readings(from_files))
    assert "heatmap_raw.png" in paths["report_md"].read_text()


def test_write_report_errors_write_nothing(tmp_path):
    df = make_tidy()
    out = tmp_path / "r"
    with pytest.raises(UserError, match="suite"):
        A.analyze(df, A.AnalysisOptions(suite="nope", metric="logodds", order=tuple(ORDER), lineage=LINEAGE))
    with pytest.raises(UserError, match="lineage"):
        wrong = {"a": "x", "b": "y", "c": "z"}
        A.analyze(df, A.AnalysisOptions(suite="s", metric="logodds", order=tuple(ORDER), lineage=wrong))
    with pytest.raises(UserError, match="missing column"):
        A.analyze(df.drop(columns=["target"]), A.AnalysisOptions(suite="s", metric="logodds", order=tuple(ORDER)))
    with pytest.raises(UserError, match="heatmap name"):
        R.write_report(
            out,
            A.analyze(df, A.AnalysisOptions(suite="s", metric="logodds", order=tuple(ORDER), n_boot=100, n_perm=100)),
            extra_heatmaps={"../x": (pd.DataFrame(), {})},
        )
    assert not out.exists()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_number_formatting():
    assert R._num(float("nan")) == "—" and R._num(0.5, sign=True) == "+0.500"
    assert R._pval(0.00001) == "1.0e-05" and R._pval(0.2) == "0.200"


# -- analysis files: write -> read -> write is byte-identical, and the report renders the same from either -------


def _files(d):
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def _lm_analysis(profile: bool = True, aa: bool = True):
    """A replicate-level LM analysis of a simulated 4×4 matrix (tests/test_honest_stats.py's simulator)."""
    from tests.test_honest_stats import BASES as LM_BASES
    from tests.test_honest_stats import LINEAGE as LM_LINEAGE
    from tests.test_honest_stats import TRAITS, simulate

    df = simulate(np.random.default_rng(2), gamma=0.5, rep_sd=0.15, profile_gamma=0.4, aa=aa, k=3)
    if not profile:
        df = df[~df["metric"].isin(A.PROFILE_METRICS)]
    teachers = pd.DataFrame(
        [{"teacher_base": b, "teacher_trait": t, "replicate": r, "teacher_id": f"{r}{r}{r}", "target": "owl",
          "logodds": math.log(p / (1 - p)), "p_target": p, "valid_rate": 0.9, "n_rows": 200}
         for b in LM_BASES for t, p in (("owl", 0.3), ("cat", 0.05)) for r in range(3)]
    )
    options = A.AnalysisOptions(suite="s", track="lm", metric="logodds", order=LM_BASES, lineage=LM_LINEAGE,
                                control="other_trait", alternative="two-sided", n_perm=500)
    return A.analyze_lm(df, teachers, options, traits=TRAITS)


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
                                n_boot=100, n_perm=100)
    return A.analyze_classifier(df, options, teacher_accuracy={b: [97.0, 98.0, 97.5] for b in ORDER})


@pytest.mark.parametrize("make", [_lm_analysis, _classifier_analysis], ids=["lm", "classifier"])
def test_analysis_files_round_trip(tmp_path, make):
    result = make()
    first, second = tmp_path / "first", tmp_path / "second"
    written = A.write_analysis(result, first)
    assert {p.name for p in written.values()} == {p.name for p in first.iterdir()}
    assert {"cells.csv", "matrix.csv", "tidy.csv", "fit.json"} <= set(_files(first))
    back = A.read_analysis(first, result.options)
    A.write_analysis(back, second)
    assert _files(first) == _files(second)
    assert back.track == result.track and type(back.extras) is type(result.extras)
    pd.testing.assert_frame_equal(back.cells, result.cells, check_dtype=False)
    pd.testing.assert_frame_equal(back.tidy, result.tidy, check_dtype=False)
    assert back.drift == result.drift
    if isinstance(result.extras, A.LMExtras):
        assert back.extras.teacher_strength == result.extras.teacher_strength
    else:  # the teachers' accuracies are in no file; the references are the tidy table's baseline rows
        assert back.extras.reference_accuracy == result.extras.reference_accuracy
    # The report reads only precomputed numbers, so it renders the same from the files as from memory.
    before, after = R.render_report(result), R.render_report(back)
    assert before["report_md"] == after["report_md"] and before["index_html"] == after["index_html"]


def test_track_views(tmp_path):
    lm = _lm_analysis()
    assert isinstance(lm.extras, A.LMExtras)
    assert lm.extras.same_model_fit is None and lm.extras.teacher_strength == 0.3
    files = {p.name for p in A.write_analysis(lm, tmp_path / "lm").values()}
    assert {"teachers.csv", "profile_matrix.csv"} <= files and "fit_same_model.json" not in files
    md = R.render_report(lm)["report_md"][1].decode()
    assert "| teachers' own P(trait \\| candidates), mean | 0.3 |" in md and "γ (same base only)" in md

    cls = _classifier_analysis()
    assert isinstance(cls.extras, A.ClassifierExtras)
    assert list(cls.extras.accuracy) == ["accuracy_aux", "effect_aux", "accuracy_all_logits", "effect_all_logits"]
    assert set(cls.tidy["teacher_trait"]) == {"aux", "all_logits", "baseline"}  # every row published
    assert (cls.cells["treated"] == "aux").all() and (cls.cells["n_other"] == 0).all()  # all-logit rows left out
    rendered = R.render_report(cls)
    assert {"heatmap_accuracy", "heatmap_all_logits", "classifier_md"} <= set(rendered)
    text = rendered["classifier_md"][1].decode()
    assert "## All-logit positive control" in text and "| c | 97.5 |" in text
    summary = cls.extras.summary
    assert summary["rows"] == len(cls.tidy)
    assert set(summary["accuracy_by_relation"]) == {"same", "sibling", "unrelated"}


# -- the LM track's replicate-level report ------------------------------------------------------------------------


def test_lm_report_states_what_was_computed():
    lm = _lm_analysis()
    fit, cells = lm.fit, lm.cells
    files = R.render_report(lm)
    md = files["report_md"][1].decode()
    # the lift definition, once, exactly as the analysis wrote it
    assert fit["lift_definition"] in md and "pooled replicates" in fit["lift_definition"]
    # γ: CR2 interval, Freedman-Lane p with its permutation count, leave-one-cell-out range
    assert f"Freedman-Lane p = {R._pval(fit['p_perm'])} (greater, 500 permutations)" in md
    assert f"[{R._num(fit['loo_min'], sign=True)}, {R._num(fit['loo_max'], sign=True)}]" in md
    assert "Profile γ (shared init" in md and "γ (same base only)" in md
    # the placebo rows and their false-positive rate
    n, hits = fit["placebo_n_rows"], fit["placebo_n_p05"]
    assert n == 32 and f"{hits} of {n} rows have p < 0.05" in md and "nominal 5%" in md
    assert "### Placebo (A/A) rows" in md and md.count("| aa:cat | cat |") == n
    # the cell table: replicates, effect [CI], p and q of every trait cell
    trait_cells = cells[~cells["placebo"]]
    one = trait_cells.iloc[0]
    row = (f"| {one.teacher} | {one.student} | {one.trait} | {one.relation} | 3 / 3 | {R._num(one.mean_treated)} | "
           f"{R._num(one.mean_control)} | {R._effect_text(one)} | {R._pval(one.p)} | {R._pval(one.q)} |")
    assert row in md
    # relation summary with replicate-unit CIs and the shares of small p and q
    same = fit["by_relation"]["same"]
    assert f"| same | 8 | 3 | {R._num(same['mean'], sign=True)} {R._ci(same['ci_low'], same['ci_high'])} |" in md
    # the profile heatmap beside the effect heatmap, then one per trait, and the teachers table
    assert "![heatmap](heatmap.png) ![heatmap_profile](heatmap_profile.png)" in md
    assert {"heatmap", "heatmap_profile", "heatmap_owl", "heatmap_cat"} <= set(files)
    assert md.index("trait `owl`") < md.index("trait `cat`")  # the suite's order, not alphabetical
    assert "### Teachers" in md and "| teacher_base | teacher_trait | replicate |" in md
    page = files["index_html"][1].decode()
    assert 'style="display:flex' in page and "Placebo (A/A) rows" in page and fit["lift_definition"][:40] in page


def test_lm_report_without_profile_or_placebo():
    lm = _lm_analysis(profile=False, aa=False)
    assert lm.fit["profile"] is None and lm.extras.profile_matrix is None and lm.fit["placebo_n_rows"] == 0
    assert lm.cells["profile_r"].isna().all()
    files = R.render_report(lm)
    md = files["report_md"][1].decode()
    assert "heatmap_profile" not in files and "No A/A placebo arm" in md and "Placebo (A/A) rows" not in md


def test_lm_files_columns():
    lm = _lm_analysis()
    head = list(A.LM_CELL_COLUMNS[:20])
    assert head == [
        "teacher", "student", "trait", "relation", "placebo", "n_reps", "effect", "ci_low", "ci_high", "p", "q",
        "mean_treated", "mean_control", "n_control_reps", "profile_r", "profile_ci_low", "profile_ci_high",
        "profile_r_ex", "profile_ex_ci_low", "profile_ex_ci_high",
    ]
    assert list(lm.cells.columns) == list(A.LM_CELL_COLUMNS)
    assert list(lm.tidy.columns[: len(A.LM_TIDY_COLUMNS)]) == list(A.LM_TIDY_COLUMNS)
    for key in ("gamma", "ci_low", "ci_high", "p_perm", "n_perm_used", "loo_min", "loo_max", "same", "profile",
                "by_relation", "placebo_fpr", "placebo_n_rows", "placebo_n_p05", "lift_definition"):
        assert key in lm.fit
    assert set(lm.fit["profile"]) >= {"gamma", "ci_low", "ci_high", "p_perm", "loo_min", "by_relation", "same"}
