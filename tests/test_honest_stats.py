"""The LM track's pair-level statistics on simulated tidy tables with known answers.

Every matrix is simulated the way the pipeline makes one: teacher replicates (each its own teacher and dataset,
with a replicate effect shared by all its students and a part specific to each student base), students of one
replicate that differ only by seed, and a per-cell drift common to every arm of the cell (the student base reacts
to fine-tuning on teacher i's data whatever the teacher's trait). Tests ask what the statistics must do: hold
their nominal level when nothing transfers, and find what was planted.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from benchmark import analysis as A
from benchmark.errors import UserError

BASES = ("a", "b", "c", "d")
LINEAGE = {"a": "L1", "b": "L1", "c": "L2", "d": "L3"}  # a and b share an init
TRAITS = ("owl", "cat")


def simulate(
    rng: np.random.Generator,
    *,
    bases: tuple[str, ...] = BASES,
    traits: tuple[str, ...] = TRAITS,
    k: int = 4,
    seeds: int = 2,
    aa: bool = True,
    neutral: bool = False,
    gamma: float = 0.0,
    base_sd: float = 0.0,
    rep_sd: float = 0.3,
    seed_sd: float = 0.05,
    drift_sd: float = 0.2,
) -> pd.DataFrame:
    """One suite's LM tidy table (columns ``LM_TIDY_COLUMNS``) with planted effects.

    Args:
        rng: Generator.
        bases: Teacher and student bases (a full matrix).
        traits: Trait arms; ``aa`` adds ``aa:<last trait>``, ``neutral`` a neutral arm.
        k: Teacher replicates per (base, arm).
        seeds: Students per replicate and student base.
        aa: Add the A/A placebo arm.
        neutral: Add a neutral arm.
        gamma: Extra log-odds of the teacher's trait in students sharing an init with the teacher.
        base_sd: SD of the teacher- and student-base parts of the transfer (α_i, β_j), absorbed by γ's model.
        rep_sd: SD of a replicate's effect (half shared by all its students, half per student base).
        seed_sd: SD between the students of one replicate.
        drift_sd: SD of the per-cell drift common to every arm.
    """
    arms = [*traits, *([f"aa:{traits[-1]}"] if aa else []), *(["neutral"] if neutral else [])]
    level = {(j, t): rng.normal(-2.0, 0.5) for j in bases for t in traits}
    drift = {(i, j, t): rng.normal(0.0, drift_sd) for i in bases for j in bases for t in traits}
    alpha = {b: rng.normal(0.0, base_sd) for b in bases}
    beta = {b: rng.normal(0.0, base_sd) for b in bases}
    rows: list[tuple] = []

    def add(i, arm, r, j, s, rel, target, metric, value):
        sid = f"{i}/{arm}/{r}/{j}/{s}"
        rows.append(("s", "lm", i, arm, r, j, s, sid, f"{i}/{arm}/{r}" if i else "", rel, target, metric, value))

    for j in bases:
        for t in traits:
            add("", "baseline", -1, j, 0, "", t, "logodds", level[(j, t)])
    half = rep_sd / math.sqrt(2)
    for i, arm, r in itertools.product(bases, arms, range(k)):
        trait = arm.removeprefix("aa:")
        shared_u = {t: rng.normal(0.0, half) for t in traits}  # the replicate's own teacher and dataset
        for j in bases:
            rel = A.relation_of(i, j, LINEAGE)
            shared = rel != "unrelated"
            own_u = {t: rng.normal(0.0, half) for t in traits}
            for s in range(seeds):
                for t in traits:
                    v = level[(j, t)] + drift[(i, j, t)] + shared_u[t] + own_u[t] + rng.normal(0.0, seed_sd)
                    if trait == t:
                        v += alpha[i] + beta[j] + gamma * shared
                    add(i, arm, r, j, s, rel, t, "logodds", v)
    return pd.DataFrame(rows, columns=list(A.LM_TIDY_COLUMNS))


def options(**kw) -> A.AnalysisOptions:
    base = dict(
        suite="s", track="lm", metric="logodds", order=BASES, lineage=LINEAGE, control="other_trait",
        alternative="two-sided", n_perm=A.N_PERM_MIN,
    )
    return A.AnalysisOptions(**{**base, **kw})


def pairs_of(tidy: pd.DataFrame) -> pd.DataFrame:
    design = A.pair_design(tidy["teacher_trait"].unique(), "other_trait", TRAITS)
    values = A.contrast_values(A.validate_tidy(tidy), "logodds", design)
    return A.pair_table(values, design, metric="logodds", order=BASES)


def student_level_p(tidy: pd.DataFrame) -> list[float]:
    """The pseudo-replicated test the audit caught: every student counted as an independent run (Welch)."""
    d = tidy[(tidy["metric"] == "logodds") & (tidy["teacher_trait"] != "baseline")]
    w = d.pivot_table(index=["student_id", "teacher_base", "teacher_trait", "student_base"], columns="target",
                      values="value").reset_index()
    w["w"] = w["owl"] - w["cat"]
    out = []
    for (_i, _j), g in w.groupby(["teacher_base", "student_base"]):
        out.append(A.welch_test(g.loc[g["teacher_trait"] == "owl", "w"], g.loc[g["teacher_trait"] != "owl", "w"],
                                "two-sided"))
    return out


# ---------------------------------------------------------------- (1) nothing transfers: the exact size


@pytest.fixture(scope="module")
def null_runs():
    """100 matrices where no arm differs from another: each pair's p, placebo rows' p, and (first 40 matrices)
    student-level p."""
    rng = np.random.default_rng(20240601)
    trait_p, placebo_p, student_p = [], [], []
    for n in range(100):
        tidy = simulate(rng, k=4, seeds=2)
        pairs = pairs_of(tidy)
        trait_p += pairs.loc[~pairs["placebo"], "p"].tolist()
        placebo_p += pairs.loc[pairs["placebo"], "p"].tolist()
        if n < 40:
            student_p += student_level_p(tidy)
    return np.array(trait_p), np.array(placebo_p), np.array(student_p)


def test_pair_test_holds_its_exact_size_when_nothing_transfers(null_runs):
    trait_p, placebo_p, _ = null_runs
    assert len(trait_p) == 100 * 16 and len(placebo_p) == 100 * 16
    # 4 vs 8 (owl vs cat ∪ aa:cat): exact size 24/495 = 4.85 %; 4 vs 4 placebo: 2/70 = 2.86 %
    for p, size in ((trait_p, 24 / 495), (placebo_p, 2 / 70)):
        assert np.isfinite(p).all()
        fpr = float(np.mean(p <= 0.05))
        assert 0.4 * size < fpr <= size + 0.02, (fpr, size)


def test_counting_students_as_runs_would_not_hold_it(null_runs):
    # The same matrices tested with students as the unit: replicate noise is then read as a treatment effect.
    _, _, student_p = null_runs
    assert float(np.mean(np.array(student_p) <= 0.05)) > 0.07


def test_placebo_rows_and_summary():
    pairs = pairs_of(simulate(np.random.default_rng(3)))
    placebo = pairs[pairs["placebo"]]
    assert len(placebo) == 16 and set(placebo["target"]) == {"placebo:cat"}
    assert (placebo["treated_arm"] == "aa:cat").all() and (placebo["control_arms"] == "cat").all()
    summary = A.placebo_summary(pairs)
    assert summary["n_rows"] == 16 and summary["exact_size"] == pytest.approx(2 / 70)
    assert summary["rate"] == pytest.approx(float(np.mean(placebo["p"] <= 0.05)))
    # BH is applied within each family: the placebo rows never share a family with the trait pairs
    np.testing.assert_allclose(placebo["q"].to_numpy(), A.bh_adjust(placebo["p"].to_numpy()))


# ---------------------------------------------------------------- (2) a planted shared-base effect


@pytest.fixture(scope="module")
def planted():
    tidy = simulate(np.random.default_rng(11), gamma=0.6, base_sd=0.1, rep_sd=0.15, k=4)
    return tidy, A.analyze_lm(tidy, pd.DataFrame(), options(), traits=TRAITS)


def test_planted_shared_base_effect_is_found(planted):
    _, res = planted
    g = res.fit["primary"]
    # W = L_owl - L_cat: the owl arm gains γ on owl, the control arms γ on cat, so the pair effect is 2γ
    assert g["identifiable"] and g["exact"] and g["n_perm_used"] == 24  # 4! teacher relabellings
    assert g["p"] <= 2 / 24 and g["ci_low"] > 0 and g["ci_low"] <= 1.2 <= g["ci_high"]
    assert g["n_pairs"] == 16 and g["n_rows"] == 16 * 4
    assert set(g["leave_one_base_out"]) == set(BASES)
    assert res.fit["same"]["identifiable"] and res.fit["same"]["estimate"] > 0
    diag = res.cells[(res.cells["family"] == "same")]
    assert len(diag) == 4 and (diag["p"] <= 0.05).all()
    by_rel = res.fit["by_relation"]
    # base effects (α_i + β_j) move every pair alike; shared-init pairs stand above the unrelated ones
    assert by_rel["same"]["ci_low"] > by_rel["unrelated"]["ci_high"]
    assert by_rel["same"]["n_reps"] == 4 and by_rel["same"]["n_bases"] == 4


def test_one_effect_definition_everywhere(planted):
    tidy, res = planted
    pairs = res.cells[~res.cells["placebo"]]
    # pair effect = mean(treated) - mean(control) over replicate values = mean of the replicate-level lifts
    np.testing.assert_allclose(pairs["effect"], pairs["mean_treated"] - pairs["mean_control"])
    design = A.pair_design(tidy["teacher_trait"].unique(), "other_trait", TRAITS)
    lifts = A.pair_lifts(A.contrast_values(A.validate_tidy(tidy), "logodds", design), design)
    mean_lift = lifts.groupby(["teacher_base", "student_base"])["lift"].mean()
    keyed = pairs.set_index(["teacher", "student"])["effect"]
    np.testing.assert_allclose(keyed.sort_index().to_numpy(), mean_lift.sort_index().to_numpy())
    # the heatmap value is the same number, and the relation mean is the mean of its pairs' effects
    assert res.matrix.loc["a", "c"] == pytest.approx(keyed.loc[("a", "c")])
    same = pairs[pairs["relation"] == "same"]["effect"].mean()
    assert res.fit["by_relation"]["same"]["mean"] == pytest.approx(same)


def test_pair_row_by_hand():
    tidy = simulate(np.random.default_rng(5), k=3, seeds=2, aa=False)
    row = pairs_of(tidy).query("teacher == 'c' and student == 'a'").iloc[0]
    d = tidy[(tidy["teacher_base"] == "c") & (tidy["student_base"] == "a") & (tidy["metric"] == "logodds")]
    w = d.pivot_table(index=["student_id", "teacher_trait", "replicate"], columns="target", values="value")
    w = (w["owl"] - w["cat"]).groupby(level=["teacher_trait", "replicate"]).mean()
    x, y = w["owl"].to_numpy(), w["cat"].to_numpy()
    assert row["n_treated"] == 3 and row["n_control"] == 3
    assert row["effect"] == pytest.approx(x.mean() - y.mean())
    assert row["p"] == pytest.approx(A.permutation_test(x, y, "two-sided"))
    # 3 vs 3 cannot reach p <= 0.05 two-sided (2/20 = 0.1): no interval, and the size says so
    assert math.isnan(row["ci_low"]) and row["exact_size"] == 0.0 and row["p_min"] == pytest.approx(0.1)
    assert row["relation"] == "unrelated" and row["control_arms"] == "cat" and not row["placebo"]


# ---------------------------------------------------------------- arms and controls


def test_neutral_controls_and_arm_errors():
    tidy = simulate(np.random.default_rng(9), traits=("owl",), aa=False, neutral=True, k=3)
    res = A.analyze_lm(tidy, pd.DataFrame(), options(control="neutral", n_perm=200), traits=("owl",))
    assert (res.cells["control_arms"] == "neutral").all() and len(res.cells) == 16
    assert "neutral replicates" in res.fit["contrast_definition"]
    with pytest.raises(UserError, match="single-trait suite needs controls: neutral"):
        A.analyze_lm(tidy, pd.DataFrame(), options(n_perm=200), traits=("owl",))
    with pytest.raises(UserError, match="no neutral arm"):
        A.pair_design(["owl", "cat"], "neutral")
    with pytest.raises(UserError, match="replicate"):
        A.analyze_lm(tidy.drop(columns=["replicate"]), pd.DataFrame(), options(), traits=("owl",))


def test_unbalanced_replicates_use_the_arm_mean():
    tidy = simulate(np.random.default_rng(4), k=3, aa=False)
    tidy = tidy[~((tidy["teacher_trait"] == "cat") & (tidy["replicate"] == 2))]  # one control replicate failed
    design = A.pair_design(tidy["teacher_trait"].unique(), "other_trait", TRAITS)
    values = A.contrast_values(A.validate_tidy(tidy), "logodds", design)
    lifts = A.pair_lifts(values, design)
    one = lifts[(lifts.teacher_base == "a") & (lifts.student_base == "d")].set_index("replicate")["lift"]
    owl = values[(values.teacher_base == "a") & (values.student_base == "d") & (values.arm == "owl")]
    cat = values[(values.teacher_base == "a") & (values.student_base == "d") & (values.arm == "cat")]
    assert one.loc[2] == pytest.approx(owl.set_index("replicate")["w"].loc[2] - cat["w"].mean())
    row = A.pair_table(values, design, metric="logodds").query("teacher == 'a' and student == 'd'").iloc[0]
    assert row["n_treated"] == 3 and row["n_control"] == 2


def test_bh_adjust():
    q = A.bh_adjust([0.01, 0.04, np.nan, 0.03, 0.5])
    np.testing.assert_allclose(q[[0, 1, 3, 4]], [0.04, 0.16 / 3, 0.16 / 3, 0.5])
    assert math.isnan(q[2])


# ---------------------------------------------------------------- (3) the whole-profile readout


def _candidates(rng: np.random.Generator, inherit: float, k: int = 4) -> pd.DataFrame:
    """A per-candidate table: each teacher replicate shifts 15 animals at random; its students inherit
    ``inherit`` × that shift on a shared-init base and nothing elsewhere."""
    animals = [f"c{n}" for n in range(15)]
    rows = []
    for i in BASES:
        for arm in ("owl", "cat"):
            for r in range(k):
                shift = rng.normal(0, 1, 15)
                rows += [dict(role="teacher", teacher_base=i, teacher_trait=arm, replicate=r, student_base="",
                              seed=0, model_id=f"T{i}{arm}{r}", candidate=c, logodds=float(v), base_logodds=0.0)
                         for c, v in zip(animals, shift, strict=True)]
                for j in BASES:
                    gain = inherit if A.relation_of(i, j, LINEAGE) != "unrelated" else 0.0
                    vals = gain * shift + rng.normal(0, 0.5, 15)
                    rows += [dict(role="student", teacher_base=i, teacher_trait=arm, replicate=r, student_base=j,
                                  seed=0, model_id=f"S{i}{arm}{r}{j}", candidate=c, logodds=float(v),
                                  base_logodds=0.0) for c, v in zip(animals, vals, strict=True)]
    return pd.DataFrame(rows, columns=list(A.CANDIDATE_COLUMNS))


def test_profile_is_matched_by_replicate_and_stays_in_range():
    rng = np.random.default_rng(8)
    rel = {(i, j): A.relation_of(i, j, LINEAGE) for i in BASES for j in BASES}
    rows = A.profile_rows(_candidates(rng, inherit=0.8), "owl", ("cat",), rel)
    assert len(rows) == 16 * 4 and rows["r"].between(-1, 1).all()
    pairs = A.profile_pairs(rows)
    same = [pairs[(b, b)][0] for b in BASES]
    unrelated = [v[0] for (i, j), v in pairs.items() if rel[(i, j)] == "unrelated"]
    assert min(same) > 0.5 and abs(float(np.mean(unrelated))) < 0.2
    assert all(-1 <= lo <= r <= hi <= 1 for r, lo, hi in pairs.values())


def test_profile_enters_the_pair_table_and_its_gamma():
    rng = np.random.default_rng(6)
    tidy = simulate(rng, k=4, aa=False)
    res = A.analyze_lm(tidy, pd.DataFrame(), options(n_perm=200), traits=TRAITS,
                       candidates=_candidates(rng, inherit=0.8))
    prof = res.fit["profile"]
    assert prof["descriptive"] and prof["primary"]["identifiable"] and prof["primary"]["estimate"] > 0
    assert res.cells["profile_r"].notna().sum() == 16
    assert res.extras.profile_matrix.loc["a", "a"] == pytest.approx(
        res.cells.query("teacher == 'a' and student == 'a'")["profile_r"].iloc[0])
