"""The LM track's replicate-level statistics on simulated matrices with known answers.

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
    profile_gamma: float = 0.0,
    rep_sd: float = 0.3,
    seed_sd: float = 0.05,
    drift_sd: float = 0.2,
    profile_sd: float = 0.15,
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
        profile_gamma: Mean profile correlation (before tanh) of students sharing an init with the teacher.
        rep_sd: SD of a replicate's effect (half shared by all its students, half per student base).
        seed_sd: SD between the students of one replicate.
        drift_sd: SD of the per-cell drift common to every arm.
        profile_sd: Replicate-level SD of the profile correlation (before tanh).
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
        p_u = rng.normal(0.0, profile_sd)
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
                if arm in traits:
                    mu = profile_gamma * shared + p_u
                    add(i, arm, r, j, s, rel, arm, "profile_r", math.tanh(mu + rng.normal(0.0, 0.05)))
                    add(i, arm, r, j, s, rel, arm, "profile_r_ex", math.tanh(mu + rng.normal(0.0, 0.05)))
    return pd.DataFrame(rows, columns=list(A.LM_TIDY_COLUMNS))


def options(**kw) -> A.AnalysisOptions:
    base = dict(
        suite="s", track="lm", metric="logodds", order=BASES, lineage=LINEAGE, control="other_trait",
        alternative="two-sided", n_perm=A.N_PERM_MIN,
    )
    return A.AnalysisOptions(**{**base, **kw})


def cells_of(tidy: pd.DataFrame) -> pd.DataFrame:
    arms = A.lm_arms(tidy["teacher_trait"], "other_trait", TRAITS)
    values = A.replicate_values(A.validate_tidy(tidy), "logodds")
    return A.replicate_cells(values, arms, metric="logodds", order=BASES)


def student_level_p(tidy: pd.DataFrame) -> list[float]:
    """The pseudo-replicated test the audit caught: every student counted as an independent run (Welch)."""
    d = tidy[(tidy["metric"] == "logodds") & tidy["teacher_trait"].isin(TRAITS)]
    out = []
    for (_i, _j, t), g in d.groupby(["teacher_base", "student_base", "target"]):
        x = g.loc[g["teacher_trait"] == t, "value"].to_numpy()
        y = g.loc[g["teacher_trait"] != t, "value"].to_numpy()
        out.append(A.welch_test(x, y, "two-sided"))
    return out


# ---------------------------------------------------------------- (1) nothing transfers: nominal false positives


@pytest.fixture(scope="module")
def null_runs():
    """200 matrices where no arm differs from another: each cell's p, placebo rows' p, and (first 50 matrices)
    student-level p."""
    rng = np.random.default_rng(20240601)
    trait_p, placebo_p, student_p = [], [], []
    for n in range(200):
        tidy = simulate(rng, k=4, seeds=2)
        cells = cells_of(tidy)
        trait_p += cells.loc[~cells["placebo"], "p"].tolist()
        placebo_p += cells.loc[cells["placebo"], "p"].tolist()
        if n < 50:
            student_p += student_level_p(tidy)
    return np.array(trait_p), np.array(placebo_p), np.array(student_p)


def test_per_cell_test_holds_its_level_when_nothing_transfers(null_runs):
    trait_p, placebo_p, _ = null_runs
    assert len(trait_p) == 200 * 16 * 2 and len(placebo_p) == 200 * 16 * 2
    for p in (trait_p, placebo_p):
        assert np.isfinite(p).all()
        fpr = float(np.mean(p < 0.05))
        # 4 vs 4 replicates, two-sided exact test: the only p below 0.05 is 2/70, so the expected rate is 2.9%;
        # the lower bound shows the test can reject at all
        assert 0.01 < fpr <= 0.07, fpr


def test_counting_students_as_runs_would_not_hold_it(null_runs):
    # The same matrices tested with students as the unit: replicate noise is then read as a treatment effect.
    # This is what the statistics above must not do, and shows the null simulations can catch it.
    _, _, student_p = null_runs
    assert float(np.mean(student_p < 0.05)) > 0.07  # the bound the replicate-level test meets


def test_placebo_rows_and_summary():
    tidy = simulate(np.random.default_rng(3))
    cells = cells_of(tidy)
    placebo = cells[cells["placebo"]]
    assert len(placebo) == 16 * 2
    assert set(placebo["trait"]) == {"placebo:owl", "placebo:cat"}
    assert (placebo["treated_arm"] == "aa:cat").all() and (placebo["control_arms"] == "cat").all()
    assert placebo[["profile_r", "profile_ci_low", "profile_r_ex"]].isna().all().all()
    summary = A.placebo_summary(cells)
    assert summary["placebo_n_rows"] == 32
    assert summary["placebo_fpr"] == pytest.approx(float(np.mean(placebo["p"] < 0.05)))
    # BH is applied within each family: the placebo rows never share a family with the trait cells
    expect = A.bh_adjust(placebo["p"].to_numpy())
    np.testing.assert_allclose(placebo["q"].to_numpy(), expect)


# ---------------------------------------------------------------- (2) a planted shared-base effect


@pytest.fixture(scope="module")
def planted():
    tidy = simulate(np.random.default_rng(11), gamma=0.6, base_sd=0.1, rep_sd=0.15, k=4)
    return tidy, A.analyze_lm(tidy, pd.DataFrame(), options(), traits=TRAITS)


def test_planted_shared_base_effect_is_found(planted):
    _, res = planted
    fit = res.fit
    assert fit["identifiable"] and fit["n_perm_used"] == A.N_PERM_MIN
    assert fit["ci_low"] > 0 and fit["p_perm"] < 0.01
    assert fit["ci_low"] <= 0.6 <= fit["ci_high"]
    # clusters are (teacher base, replicate): 4 × 4; rows are (cell, replicate)
    assert fit["n_clusters"] == 16 and fit["n_rows"] == 16 * 2 * 4 and fit["n_cells"] == 32
    assert fit["loo_min"] <= fit["gamma"] <= fit["loo_max"] and fit["loo_min"] > 0.3
    assert fit["same"]["identifiable"] and fit["same"]["gamma"] > 0
    diag = res.cells[(res.cells["relation"] == "same") & ~res.cells["placebo"]]
    assert len(diag) == 8
    assert (diag["p"] < 0.05).mean() >= 0.75
    by_rel = fit["by_relation"]
    assert by_rel["same"]["ci_low"] > 0 and by_rel["unrelated"]["ci_low"] < 0 < by_rel["unrelated"]["ci_high"]
    assert by_rel["same"]["n_reps"] == 4


def test_one_lift_definition_everywhere(planted):
    tidy, res = planted
    cells = res.cells[~res.cells["placebo"]]
    # cell effect = mean(treated) - mean(control) over replicate values = mean of the replicate-level lifts
    np.testing.assert_allclose(cells["effect"], cells["mean_treated"] - cells["mean_control"])
    arms = A.lm_arms(tidy["teacher_trait"], "other_trait", TRAITS)
    lifts = A.replicate_lifts(A.replicate_values(A.validate_tidy(tidy), "logodds"), arms)
    mean_lift = lifts.groupby(["teacher_base", "student_base", "target"])["lift"].mean()
    keyed = cells.set_index(["teacher", "student", "trait"])["effect"]
    np.testing.assert_allclose(keyed.sort_index().to_numpy(), mean_lift.sort_index().to_numpy())
    # the heatmap value is the same number (averaged over traits)
    owl = cells[(cells["teacher"] == "a") & (cells["student"] == "c")]["effect"].mean()
    assert res.matrix.loc["a", "c"] == pytest.approx(owl)
    # the relation mean is the mean of its cells' effects
    same = cells[cells["relation"] == "same"]["effect"].mean()
    assert res.fit["by_relation"]["same"]["mean"] == pytest.approx(same)


def test_cell_row_by_hand():
    tidy = simulate(np.random.default_rng(5), k=3, seeds=2, aa=False)
    cells = cells_of(tidy)
    row = cells[(cells["teacher"] == "c") & (cells["student"] == "a") & (cells["trait"] == "owl")].iloc[0]
    d = tidy[(tidy["teacher_base"] == "c") & (tidy["student_base"] == "a") & (tidy["target"] == "owl")]
    d = d[d["metric"] == "logodds"].groupby(["teacher_trait", "replicate"])["value"].mean()
    x, y = d["owl"].to_numpy(), d["cat"].to_numpy()
    assert row["n_reps"] == 3 and row["n_control_reps"] == 3 and row["n_students"] == 6
    assert row["effect"] == pytest.approx(x.mean() - y.mean())
    assert row["p"] == pytest.approx(A.permutation_test(x, y, "two-sided"))
    lo, hi = A.welch_ci(x, y)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((lo, hi))
    assert row["relation"] == "unrelated" and row["control_arms"] == "cat" and not row["placebo"]


# ---------------------------------------------------------------- (3) the whole-profile readout


@pytest.mark.parametrize("planted_r", [0.0, 0.5])
def test_profile_gamma_over_seeds(planted_r):
    """Twenty independent matrices per setting, every one counted (no seed is picked)."""
    covers, above = 0, 0
    for seed in range(20):
        tidy = simulate(np.random.default_rng(100 + seed), profile_gamma=planted_r, k=4, aa=False)
        res = A.analyze_lm(tidy, pd.DataFrame(), options(n_perm=200), traits=TRAITS)
        prof = res.fit["profile"]
        assert prof["identifiable"] and prof["value"] == "lift" and prof["metric"] == "profile_r"
        covers += prof["ci_low"] <= 0 <= prof["ci_high"]
        above += prof["ci_low"] > 0
    if planted_r == 0:
        # a 95% interval: P(16 or fewer of 20 cover) is 1.6%
        assert covers >= 17, covers
    else:
        assert above == 20, above


def test_profile_columns_and_matrix(planted):
    tidy, res = planted
    cells = res.cells[~res.cells["placebo"]]
    one = cells[(cells["teacher"] == "b") & (cells["student"] == "a") & (cells["trait"] == "cat")].iloc[0]
    d = tidy[(tidy["teacher_base"] == "b") & (tidy["student_base"] == "a") & (tidy["metric"] == "profile_r")]
    per_rep = d[d["teacher_trait"] == "cat"].groupby("replicate")["value"].mean()
    mean, lo, hi = A.mean_ci(per_rep)
    assert (one["profile_r"], one["profile_ci_low"], one["profile_ci_high"]) == pytest.approx((mean, lo, hi))
    assert np.isfinite(one["profile_r_ex"]) and one["profile_ex_ci_low"] <= one["profile_r_ex"]
    pm = res.extras.profile_matrix
    assert list(pm.index) == list(BASES) and list(pm.columns) == list(BASES)
    pair = cells[(cells["teacher"] == "b") & (cells["student"] == "a")]
    assert pm.loc["b", "a"] == pytest.approx(pair["profile_r"].mean())


# ---------------------------------------------------------------- Freedman-Lane γ under the null


def test_gamma_permutation_test_holds_its_level():
    """γ's Freedman-Lane p and CR2 interval on 150 null matrices (teacher- and student-base effects present)."""
    rng = np.random.default_rng(7)
    p, cover = [], []
    for _ in range(150):
        tidy = simulate(rng, base_sd=0.2, aa=False, seeds=1)
        arms = A.lm_arms(tidy["teacher_trait"], "other_trait", TRAITS)
        lifts = A.replicate_lifts(A.replicate_values(A.validate_tidy(tidy), "logodds"), arms)
        fit = A.replicate_fit(lifts, order=BASES, n_perm=400, seed=1)
        p.append(fit["p_perm"])
        cover.append(fit["ci_low"] <= 0 <= fit["ci_high"])
    p_arr = np.array(p)
    assert float(np.mean(p_arr < 0.05)) <= 0.09
    assert 0.3 < float(np.mean(p_arr)) < 0.7  # roughly uniform, one-sided
    assert float(np.mean(cover)) >= 0.9


# ---------------------------------------------------------------- arms and controls


def test_neutral_controls_and_arm_errors():
    tidy = simulate(np.random.default_rng(9), traits=("owl",), aa=False, neutral=True, k=3)
    res = A.analyze_lm(tidy, pd.DataFrame(), options(control="neutral", n_perm=200), traits=("owl",))
    cells = res.cells
    assert (cells["control_arms"] == "neutral").all() and len(cells) == 16
    assert "neutral-teacher replicates" in res.fit["lift_definition"]
    with pytest.raises(UserError, match="single-trait suite needs controls: neutral"):
        A.analyze_lm(tidy, pd.DataFrame(), options(n_perm=200), traits=("owl",))
    with pytest.raises(UserError, match="no neutral arm"):
        A.lm_arms(["owl", "cat"], "neutral")
    with pytest.raises(UserError, match="placebo arm"):
        A.lm_arms(["owl", "cat", "aa:dog"], "other_trait")
    with pytest.raises(UserError, match="replicate"):
        A.analyze_lm(tidy.drop(columns=["replicate"]), pd.DataFrame(), options(), traits=("owl",))


def test_unbalanced_replicates_use_the_arm_mean():
    tidy = simulate(np.random.default_rng(4), k=3, aa=False)
    tidy = tidy[~((tidy["teacher_trait"] == "cat") & (tidy["replicate"] == 2))]  # one control replicate failed
    arms = A.lm_arms(tidy["teacher_trait"], "other_trait", TRAITS)
    values = A.replicate_values(A.validate_tidy(tidy), "logodds")
    lifts = A.replicate_lifts(values, arms)
    one = lifts[(lifts.teacher_base == "a") & (lifts.student_base == "d") & (lifts.target == "owl")]
    cat = values[(values.teacher_base == "a") & (values.student_base == "d") & (values.arm == "cat")
                 & (values.target == "owl")]
    assert one.loc[one.replicate == 2, "control_value"].item() == pytest.approx(cat["value"].mean())
    cells = A.replicate_cells(values, arms, metric="logodds")
    row = cells[(cells.teacher == "a") & (cells.student == "d") & (cells.trait == "owl")].iloc[0]
    assert row["n_reps"] == 3 and row["n_control_reps"] == 2


def test_bh_adjust():
    q = A.bh_adjust([0.01, 0.04, np.nan, 0.03, 0.5])
    np.testing.assert_allclose(q[[0, 1, 3, 4]], [0.04, 0.16 / 3, 0.16 / 3, 0.5])
    assert math.isnan(q[2])


def test_sibling_cells_are_also_summarised_per_pair(planted):
    """Each shared-init pair (both directions, both traits) gets its own mean and replicate-unit CI."""
    _, res = planted
    pairs = res.fit["by_sibling_pair"]
    sib = res.cells[(res.cells["relation"] == "sibling") & ~res.cells["placebo"]]
    expected = {" ↔ ".join(sorted(p)) for p in zip(sib["teacher"], sib["student"], strict=True)}
    assert set(pairs) == expected and expected
    for name, entry in pairs.items():
        a, b = name.split(" ↔ ")
        mine = sib[((sib["teacher"] == a) & (sib["student"] == b)) | ((sib["teacher"] == b) & (sib["student"] == a))]
        assert entry["n_cells"] == len(mine) and entry["mean"] == pytest.approx(mine["effect"].mean())
        assert entry["ci_low"] <= entry["mean"] <= entry["ci_high"] and entry["n_reps"] == 4
    assert sum(e["n_cells"] for e in pairs.values()) == res.fit["by_relation"]["sibling"]["n_cells"]
