"""The classifier track's statistics (issue 19 point 9): seed-level pairs with the LM pair table's vocabulary, a
sign-flip test whose interval agrees with p, BH within families, and a γ that holds its size under pair drift."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark import analysis as A
from benchmark.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ROOT / "results" / "suites" / "classifiers"
# The published classifiers zoo: one init lineage of three (a model, an ε-perturbed and a pretrained sibling) and
# three unrelated bases.
BASES = ("mlp-a", "mlp-b", "mlp-c", "cnn-d", "mlp-a-eps10", "mlp-a-pre256")
LINEAGE = {"mlp-a": "A", "mlp-a-eps10": "A", "mlp-a-pre256": "A", "mlp-b": "B", "mlp-c": "C", "cnn-d": "D"}
SEEDS = 8


def make_tidy(same: float = 50.0, sibling: float = 30.0, seed_sd: float = 4.0, tau: float = 0.0,
              rng_seed: int = 0, seeds: int = SEEDS, bases: tuple[str, ...] = BASES) -> pd.DataFrame:
    """A classifier tidy table: reference ~10 % per (base, seed); aux-only student = its seed's reference + the
    relation's transfer + pair drift (τ, recurring in every seed) + seed noise; all-logit students near 90 %."""
    rng = np.random.default_rng(rng_seed)
    common = {"suite": "s", "track": "classifier", "target": "digits", "metric": "accuracy"}
    ref = {(b, s): 10 + rng.normal(0, 1.5) for b in bases for s in range(seeds)}
    rows = [{**common, "teacher_base": "", "teacher_trait": "baseline", "student_base": b, "seed": s,
             "value": ref[(b, s)], "relation": "", "student_id": f"ref-{b}", "teacher_id": ""}
            for b in bases for s in range(seeds)]
    for t in bases:
        for b in bases:
            rel = A.relation_of(t, b, LINEAGE)
            shift = {"same": same, "sibling": sibling}.get(rel, 0.0) + rng.normal(0, tau)
            for s in range(seeds):
                for trait, value in (("aux", ref[(b, s)] + shift + rng.normal(0, seed_sd)),
                                     ("all_logits", 90 + rng.normal(0, 2))):
                    rows.append({**common, "teacher_base": t, "teacher_trait": trait, "student_base": b, "seed": s,
                                 "value": value, "relation": rel, "student_id": f"{t}.{b}.{trait}",
                                 "teacher_id": f"t-{t}"})
    return pd.DataFrame(rows, columns=list(A.TIDY_COLUMNS))


def options(**kw) -> A.AnalysisOptions:
    base = dict(suite="s", track="classifier", metric="accuracy", order=BASES, lineage=LINEAGE, treated="aux",
                control="baseline", alternative="two-sided", exclude_traits=("all_logits",), n_perm=A.N_PERM_MIN)
    return A.AnalysisOptions(**{**base, **kw})


def analyze(tidy: pd.DataFrame, **kw) -> A.Analysis:
    return A.analyze_classifier(tidy, options(**kw), teacher_accuracy={b: [97.0] * SEEDS for b in BASES})


# ---------------------------------------------------------------- the sign-flip test


def test_sign_flip_exact_values():
    # 6 positive differences: only the identity and its mirror are as extreme, p = 2/64
    p, lo, hi = A.sign_flip([1.0, 2, 3, 4, 5, 6])
    assert p == pytest.approx(2 / 64)
    assert 0 < lo < 3.5 < hi
    assert A.sign_flip([1.0, 2, 3, 4, 5, 6], "greater")[0] == pytest.approx(1 / 64)
    assert A.sign_flip([1.0, 2, 3, 4, 5, 6], "less")[0] == pytest.approx(1.0)
    # five seeds cannot reject anything at 5 % (2/32 > 0.05): no interval
    p5, lo5, hi5 = A.sign_flip([1.0, 2, 3, 4, 5])
    assert p5 == pytest.approx(2 / 32) and math.isnan(lo5) and math.isnan(hi5)
    # equal differences: the interval shrinks to the value
    assert A.sign_flip([2.0] * 8) == pytest.approx((2 / 256, 2.0, 2.0))
    assert all(math.isnan(v) for v in A.sign_flip([]))
    assert A.sign_flip_size(8) == pytest.approx(12 / 256) and A.sign_flip_size(3) == 0.0
    # beyond 2^14 sign vectors: Monte Carlo, deterministic given the generator
    d = np.random.default_rng(0).normal(0.5, 1, 16)
    one = A.sign_flip(d, rng=np.random.default_rng(1))
    assert one == A.sign_flip(d, rng=np.random.default_rng(1)) and one[1] < d.mean() < one[2]


def test_sign_flip_interval_agrees_with_p():
    rng = np.random.default_rng(3)
    for _ in range(150):
        n = int(rng.integers(6, 10))
        d = rng.normal(rng.normal(0, 1.5), 1.0, n)
        p, lo, hi = A.sign_flip(d)
        assert (p <= 0.05) == (not lo < 0 < hi), (d, p, lo, hi)
        assert A.sign_flip(d - (lo + hi) / 2)[0] > 0.05  # the middle of the interval is not rejected
        assert lo <= d.mean() <= hi


# ---------------------------------------------------------------- the pair table


def test_seed_differences_pair_each_seed_with_its_reference():
    df = make_tidy()
    diffs = A.seed_differences(df[df.teacher_trait != "all_logits"], "accuracy")
    assert len(diffs) == len(BASES) ** 2 * SEEDS
    one = diffs[(diffs.teacher_base == "mlp-b") & (diffs.student_base == "mlp-c") & (diffs.replicate == 3)].iloc[0]
    aux = df[(df.teacher_trait == "aux") & (df.teacher_base == "mlp-b") & (df.student_base == "mlp-c") & (df.seed == 3)]
    ref = df[(df.teacher_trait == "baseline") & (df.student_base == "mlp-c") & (df.seed == 3)]
    assert one.lift == pytest.approx(aux.value.iloc[0] - ref.value.iloc[0])
    # a seed without its reference is left out, not paired with another seed's
    fewer = A.seed_differences(df[~((df.teacher_trait == "baseline") & (df.seed == 0))], "accuracy")
    assert set(fewer.replicate) == set(range(1, SEEDS))
    with pytest.raises(UserError, match="control"):
        A.seed_differences(df, "accuracy", control="neutral")
    with pytest.raises(UserError, match="no 'aux' student"):
        A.seed_differences(df, "loss")
    with pytest.raises(UserError, match="untrained reference"):
        A.seed_differences(df[df.teacher_trait != "baseline"], "accuracy")


def test_pair_table_speaks_the_lm_vocabulary():
    a = analyze(make_tidy(rng_seed=1))
    pairs = a.cells
    assert list(pairs.columns) == list(A.SEED_PAIR_COLUMNS)
    # every LM pair-table name present here comes first, in the LM table's order; the extras come after
    shared = [c for c in A.SEED_PAIR_COLUMNS if c in A.PAIR_COLUMNS]
    assert shared == [c for c in A.PAIR_COLUMNS if c in shared]
    assert list(A.SEED_PAIR_COLUMNS[: len(shared)]) == shared
    assert {"teacher", "student", "relation", "family", "target", "placebo", "effect", "ci_low", "ci_high", "p", "q",
            "n_treated", "n_control", "se", "p_min", "exact_size", "mean_treated", "mean_control", "metric", "suite",
            "track"} <= set(shared)
    assert len(pairs) == len(BASES) ** 2 and not pairs["placebo"].any()
    assert set(pairs["family"]) <= set(A.FAMILIES) and (pairs["family"] == pairs["relation"]).all()
    assert (pairs["track"] == "classifier").all() and (pairs["n_seeds"] == SEEDS).all()
    assert pairs["p_min"].eq(2 / 256).all() and pairs["exact_size"].eq(12 / 256).all()
    # registry order, teacher then student
    assert pairs["teacher"].tolist() == [t for t in BASES for _ in BASES]
    # one row by hand: mean seed difference, its SE, the inverted sign-flip test
    diffs = A.seed_differences(a.tidy[a.tidy.teacher_trait != "all_logits"], "accuracy")
    row = pairs[(pairs.teacher == "cnn-d") & (pairs.student == "mlp-a")].iloc[0]
    d = diffs[(diffs.teacher_base == "cnn-d") & (diffs.student_base == "mlp-a")]["lift"].to_numpy()
    assert row.effect == pytest.approx(d.mean()) and row.se == pytest.approx(d.std(ddof=1) / math.sqrt(SEEDS))
    assert (row.p, row.ci_low, row.ci_high) == pytest.approx(A.sign_flip(d))
    assert row.mean_treated - row.mean_control == pytest.approx(row.effect)
    # the matrix is the pair effects, teacher × student in registry order
    assert a.matrix.loc["cnn-d", "mlp-a"] == pytest.approx(row.effect)
    assert list(a.matrix.index) == list(BASES) and list(a.matrix.columns) == list(BASES)
    # every same and sibling pair transfers; p_drift only for those families
    strong = pairs[pairs.family.isin(["same", "sibling"])]
    assert (strong.q <= 0.05).all() and strong.p_drift.notna().all()
    assert pairs[pairs.family == "unrelated"].p_drift.isna().all()


def test_bh_runs_within_each_family():
    pairs = analyze(make_tidy(same=6.0, sibling=3.0, seed_sd=4.0, tau=2.0, rng_seed=5)).cells
    for fam, sub in pairs.groupby("family"):
        assert sub["q"].to_numpy() == pytest.approx(A.bh_adjust(sub["p"].to_numpy()), abs=0), fam
    pooled = A.bh_adjust(pairs["p"].to_numpy())
    assert not np.allclose(pooled, pairs["q"].to_numpy())  # one BH over all 36 pairs would differ
    assert (pairs["q"] >= pairs["p"] - 1e-15).all()


def test_fit_has_the_lm_tracks_keys():
    tidy = make_tidy(rng_seed=2)
    a = analyze(tidy)
    fit = a.fit
    assert {"analysis_version", "metric", "families", "primary", "same", "drift", "by_relation",
            "contrast_definition", "unit"} <= set(fit)
    assert fit["analysis_version"] == A.ANALYSIS_VERSION and fit["families"]["primary"] == "same"
    diffs = A.seed_differences(tidy[tidy.teacher_trait != "all_logits"], "accuracy")
    want = A.pair_fit(diffs, order=BASES, lineage=LINEAGE, n_perm=A.N_PERM_MIN, seed=0)
    assert set(fit["primary"]) == set(want)
    for key in ("estimate", "ci_low", "ci_high", "p", "p_cr2"):
        assert fit["primary"][key] == pytest.approx(want[key]), key
    assert fit["primary"]["exact"] and fit["primary"]["n_perm_used"] == math.factorial(len(BASES))
    assert set(fit["primary"]["leave_one_base_out"]) == set(BASES)
    assert fit["primary"]["estimate"] == pytest.approx(42.0, abs=3)  # (6·50 + 6·30) / 12 shared pairs
    assert fit["same"]["indicator"] == "same"
    rel = fit["by_relation"]
    assert rel["same"]["mean"] == pytest.approx(50, abs=2) and rel["unrelated"]["n_pairs"] == 24
    for r in rel.values():
        assert r["ci_low"] <= r["mean"] <= r["ci_high"] and r["base_ci_low"] <= r["mean"] <= r["base_ci_high"]
    # files round-trip with the same names the LM track writes
    assert A.SHARED_FILES["cells"] == "pairs.csv"


def test_classifier_analysis_files_round_trip(tmp_path):
    a = analyze(make_tidy(rng_seed=4))
    first, second = tmp_path / "first", tmp_path / "second"
    A.write_analysis(a, first)
    assert (first / "pairs.csv").exists() and not (first / "cells.csv").exists()
    back = A.read_analysis(first, a.options)
    pd.testing.assert_frame_equal(back.cells, a.cells, check_dtype=False)
    A.write_analysis(back, second)
    assert {p.name: p.read_bytes() for p in first.iterdir()} == {p.name: p.read_bytes() for p in second.iterdir()}


# ---------------------------------------------------------------- γ's size under pair drift


def _null_design(bases: tuple[str, ...], seeds: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The rows of a seed-level fit (teacher, student, seed) and every teacher-block relabelling's indicator,
    exactly as :func:`benchmark.analysis.pair_fit` enumerates them (sorted teacher names, all k! orders)."""
    rows = [(t, s, r) for t in bases for s in bases for r in range(seeds)]
    tb = np.array([t for t, _, _ in rows], dtype=object)
    sb = np.array([s for _, s, _ in rows], dtype=object)
    z = np.hstack([np.ones((len(rows), 1))] + [(tb == b).astype(float)[:, None] for b in bases[1:]]
                  + [(sb == b).astype(float)[:, None] for b in bases[1:]])
    names = sorted(bases)
    pos = {b: k for k, b in enumerate(names)}
    shared = np.array([[A.relation_of(a, b, LINEAGE) in ("same", "sibling") for b in names] for a in names], float)
    t_idx, s_idx = np.array([pos[t] for t in tb]), np.array([pos[s] for s in sb])
    xs = np.column_stack([shared[np.array(p)[t_idx], s_idx] for p in itertools.permutations(range(len(names)))])
    return z, xs, tb, sb


def _block_p(z: np.ndarray, xs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """One-sided teacher-block p of every column of y (many matrices at once; column 0 of xs is the identity)."""
    r = xs - z @ (np.linalg.pinv(z) @ xs)
    rr = np.einsum("ij,ij->j", r, r)
    ok = rr > 1e-9 * np.maximum(1.0, np.einsum("ij,ij->j", xs, xs))
    g = (r[:, ok].T @ y) / rr[ok][:, None]  # (relabellings, matrices)
    obs = (r[:, 0] @ y) / rr[0]
    tol = 1e-9 * np.maximum(1.0, np.abs(obs))
    return (g >= obs - tol).mean(axis=0)


def _null_matrices(tb: np.ndarray, sb: np.ndarray, n: int, tau: float, rng: np.random.Generator,
                   gamma: float = 0.0) -> np.ndarray:
    """n seed-level matrices (rows × n): base effects, pair drift τ recurring in every seed, each seed's teacher
    run and reference shifting all their pairs, seed noise 4 points; plus γ on shared-init pairs."""
    bases = list(dict.fromkeys(tb))
    ti, si = np.array([bases.index(t) for t in tb]), np.array([bases.index(s) for s in sb])
    seeds = len(tb) // len(bases) ** 2
    ri = np.tile(np.arange(seeds), len(bases) ** 2)
    k = len(bases)
    alpha, beta = rng.normal(0, 2, (k, n)), rng.normal(0, 2, (k, n))
    drift = rng.normal(0, tau, (k, k, n))
    teacher_run, reference = rng.normal(0, 1, (k, seeds, n)), rng.normal(0, 1.5, (k, seeds, n))
    y = (alpha[ti] + beta[si] + drift[ti, si] + teacher_run[ti, ri] - reference[si, ri]
         + rng.normal(0, 4, (len(tb), n)))
    if gamma:
        shared = np.array([A.relation_of(t, s, LINEAGE) in ("same", "sibling") for t, s in zip(tb, sb, strict=True)])
        y = y + gamma * shared[:, None]
    return y


@pytest.mark.parametrize("tau", [2.0, 6.0])
def test_gamma_holds_its_size_under_pair_drift(tau):
    """γ = 0 with pair drift recurring in every seed (τ = 2 and 6 accuracy points against seed noise 4): the
    teacher-block permutation rejects at most 6.5 % at nominal 5 % over 2,000 seeded null matrices. The vectorised
    p equals :func:`benchmark.analysis.pair_fit`'s on the first matrices."""
    z, xs, tb, sb = _null_design(BASES, SEEDS)
    rng = np.random.default_rng([19, int(tau * 10)])
    y = _null_matrices(tb, sb, 2000, tau, rng)
    p = _block_p(z, xs, y)
    for m in range(3):
        rows = pd.DataFrame({"teacher_base": tb, "student_base": sb, "replicate": np.tile(np.arange(SEEDS), 36),
                             "relation": [A.relation_of(t, s, LINEAGE) for t, s in zip(tb, sb, strict=True)],
                             "lift": y[:, m]})
        assert A.pair_fit(rows, order=BASES, lineage=LINEAGE, n_perm=A.N_PERM_MIN)["p"] == pytest.approx(p[m])
    size = float(np.mean(p <= 0.05))
    print(f"tau={tau}: size {size:.4f} over {len(p)} null matrices")
    assert size <= 0.065
    # planted γ = 6 points on the 12 shared-init pairs: the test finds it most of the time
    power = float(np.mean(_block_p(z, xs, _null_matrices(tb, sb, 400, tau, rng, gamma=6.0)) <= 0.05))
    print(f"tau={tau}: power {power:.3f} at gamma = 6")
    assert power > 0.5


# ---------------------------------------------------------------- the published suite


def test_the_published_suite_is_this_analysis_version():
    """ANALYSIS_VERSION enters the report node's spec: planning the classifiers suite gives exactly the published
    report (this analysis version) and every base, teacher, dataset and student node the published tidy.csv names."""
    from benchmark.classifier.plan import build_plan
    from benchmark.registry import Registry

    reg = Registry(root=ROOT)
    spec, settings, _ = reg.suite("classifiers")
    nodes = build_plan(spec, settings, reg)
    report = nodes[-1]
    manifest = json.loads((PUBLISHED / "manifest.json").read_text())
    assert report.kind == "report" and report.spec["analysis_version"] == A.ANALYSIS_VERSION
    assert sorted(report.deps) == sorted(manifest["deps"])  # every upstream node unchanged
    assert report.id == manifest["id"] and manifest["spec"]["analysis_version"] == A.ANALYSIS_VERSION
    tidy = pd.read_csv(PUBLISHED / "tidy.csv", keep_default_na=False, dtype=str)
    ids = {n.id for n in nodes}
    assert set(tidy["student_id"]) <= ids and set(tidy["teacher_id"]) - {""} <= ids


def test_published_classifier_numbers():
    """The published tidy table through the analysis gives the published fit.json (the numbers the README quotes)."""
    from benchmark.classifier.plan import build_plan
    from benchmark.classifier.stages.report import analyze as report_analyze
    from benchmark.registry import Registry

    reg = Registry(root=ROOT)
    spec, settings, _ = reg.suite("classifiers")
    tidy = pd.read_csv(PUBLISHED / "tidy.csv", keep_default_na=False,
                       dtype={"teacher_base": str, "relation": str, "student_id": str, "teacher_id": str})
    a = report_analyze(tidy, build_plan(spec, settings, reg)[-1].spec)
    primary = a.fit["primary"]
    published = json.loads((PUBLISHED / "fit.json").read_text())["primary"]
    for key in ("estimate", "ci_low", "ci_high", "p"):
        assert primary[key] == pytest.approx(published[key], rel=1e-9), key
    assert 41 < primary["ci_low"] < primary["estimate"] < primary["ci_high"] < 56  # the README's +48.1 [41.3, 54.8]
    # exact over 6! relabellings; the 3! orders of the mlp-a lineage leave the indicator unchanged: p ≥ 6/720
    assert primary["p"] == pytest.approx(6 / 720) and primary["exact"]
    assert a.fit["same"]["p"] == pytest.approx(1 / 720)
    pairs = a.cells
    assert (pairs[pairs.family.isin(["same", "sibling"])]["q"] <= 0.05).all()
    assert not (pairs[pairs.family == "unrelated"]["q"] <= 0.05).any()
