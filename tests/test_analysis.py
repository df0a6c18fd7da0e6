"""Statistics on synthetic tidy tables with known answers (fast tier)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from benchmark import analysis as A
from benchmark.errors import UserError

BASES = ("a", "b", "c", "d")
LINEAGE = {"a": "L1", "b": "L1", "c": "L2", "d": "L3"}  # a and b share an init


def make_tidy(
    gamma: float = 0.5,
    sd: float = 0.05,
    seeds: int = 3,
    targets: tuple[str, ...] = ("owl",),
    rng_seed: int = 1,
    bases: tuple[str, ...] = BASES,
    teachers: tuple[str, ...] | None = None,
) -> pd.DataFrame:
    """Full teacher × student matrix: value = base level + noise, plus for treated students
    α_teacher + β_student + γ·1[shared init]. Every trait in ``targets`` is both a teacher trait and
    a readout, so other-trait students exist when there are several targets."""
    rng = np.random.default_rng(rng_seed)
    alpha = dict(zip(bases, rng.normal(0, 0.1, len(bases)), strict=True))
    beta = dict(zip(bases, rng.normal(0, 0.1, len(bases)), strict=True))
    level = dict(zip(bases, rng.normal(0, 1, len(bases)), strict=True))
    rows = []

    def add(tb: str, trait: str, sb: str, seed: int, target: str, value: float) -> None:
        rel = "" if trait == "baseline" else A.relation_of(tb, sb, LINEAGE)
        rows.append(
            dict(
                suite="s",
                track="lm",
                teacher_base=tb,
                teacher_trait=trait,
                student_base=sb,
                seed=seed,
                target=target,
                metric="logodds",
                value=value,
                relation=rel,
                student_id=f"{tb}/{trait}/{sb}/{seed}",
                teacher_id=f"{tb}/{trait}",
            )
        )

    for sb in bases:
        for t in targets:
            add("", "baseline", sb, 0, t, level[sb])
    for tb in teachers or bases:
        for sb in bases:
            shared = A.relation_of(tb, sb, LINEAGE) != "unrelated"
            for s in range(seeds):
                for t in targets:
                    add(tb, "neutral", sb, s, t, level[sb] + rng.normal(0, sd))
                for trait in targets:
                    for t in targets:
                        v = level[sb] + rng.normal(0, sd)
                        if trait == t:
                            v += alpha[tb] + beta[sb] + gamma * shared
                        add(tb, trait, sb, s, t, v)
    return pd.DataFrame(rows)


def tiny(values: dict[tuple[str, int], float], target: str = "owl") -> pd.DataFrame:
    """One cell a→a; keys are (teacher_trait, seed)."""
    rows = [
        dict(
            suite="s",
            track="lm",
            teacher_base="" if tr == "baseline" else "a",
            teacher_trait=tr,
            student_base="a",
            seed=s,
            target=target,
            metric="m",
            value=v,
            relation="" if tr == "baseline" else "same",
            student_id="",
            teacher_id="",
        )
        for (tr, s), v in values.items()
    ]
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- validation


def test_missing_column_is_user_error_naming_it():
    df = make_tidy().drop(columns=["relation", "seed"])
    with pytest.raises(UserError, match="seed, relation"):
        A.validate_tidy(df)
    with pytest.raises(UserError, match="missing column"):
        A.cell_table(df, "logodds")


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("track", "vision", "allowed"),
        ("relation", "cousin", "allowed"),
        ("value", np.inf, "finite"),
        ("seed", 1.5, "integers"),
    ],
)
def test_bad_values_are_user_errors(column, value, message):
    df = make_tidy()
    df[column] = df[column].astype(object)
    df.loc[5, column] = value
    with pytest.raises(UserError, match=message):
        A.validate_tidy(df)


def test_duplicates_and_contradicting_relation_rejected():
    df = make_tidy()
    with pytest.raises(UserError, match="duplicate"):
        A.validate_tidy(pd.concat([df, df.iloc[[7]]]))
    unlabeled = df.copy()
    unlabeled.loc[unlabeled.index[unlabeled.teacher_trait == "owl"][0], "relation"] = ""
    with pytest.raises(UserError, match="relation is empty"):
        A.validate_tidy(unlabeled)
    bad = df.copy()
    i = bad.index[(bad.teacher_base == "a") & (bad.student_base == "c")][0]
    bad.loc[i, "relation"] = "same"
    with pytest.raises(UserError, match="contradicts"):
        A.validate_tidy(bad)


def test_csv_roundtrip_empty_strings():
    df = make_tidy()
    df2 = A.validate_tidy(df.assign(teacher_base=df.teacher_base.replace("", np.nan)))
    assert (df2.loc[df2.teacher_trait == "baseline", "teacher_base"] == "").all()


def test_relation_of():
    assert A.relation_of("a", "a", LINEAGE) == "same"
    assert A.relation_of("a", "b", LINEAGE) == "sibling"
    assert A.relation_of("a", "c", LINEAGE) == "unrelated"
    assert A.relation_of("x", "y") == "unrelated"


# ---------------------------------------------------------------- small-sample statistics


def test_permutation_exact_3_vs_3():
    assert A.permutation_test([4, 5, 6], [1, 2, 3]) == pytest.approx(1 / 20)
    assert A.permutation_test([4, 5, 6], [1, 2, 3], "two-sided") == pytest.approx(2 / 20)
    assert A.permutation_test([4, 5, 6], [1, 2, 3], "less") == pytest.approx(1.0)
    # ties count as extreme: identical groups give p = 1
    assert A.permutation_test([1, 1, 1], [1, 1, 1]) == pytest.approx(1.0)
    assert math.isnan(A.permutation_test([], [1.0]))


def test_permutation_monte_carlo_branch():
    x, y = np.arange(20.0) + 10, np.arange(20.0)  # C(40, 20) > 20,000 -> Monte Carlo
    p = A.permutation_test(x, y, n_mc=2000)
    assert p == pytest.approx(1 / 2001)
    assert A.permutation_test(x, y, n_mc=2000) == p  # deterministic


def test_welch_matches_scipy():
    x, y = [1.0, 2.5, 3.1, 2.2], [0.1, 0.9, 1.4]
    # golden values from scipy.stats.ttest_ind(x, y, equal_var=False, alternative=...) (scipy 1.17)
    expect = {"greater": 0.0306078766543826, "less": 0.9693921233456174, "two-sided": 0.0612157533087652}
    for alt, p in expect.items():
        assert A.welch_test(x, y, alt) == pytest.approx(p, rel=1e-9)
    assert math.isnan(A.welch_test([1.0], [2.0, 3.0]))


def test_bootstrap_ci():
    lo, hi = A.bootstrap_ci([1.0, 2.0, 3.0, 4.0], rng=np.random.default_rng(0))
    assert 1.0 <= lo < 2.5 < hi <= 4.0
    assert all(math.isnan(v) for v in A.bootstrap_ci([1.0]))


# ---------------------------------------------------------------- paired lifts


def test_paired_lifts_controls():
    df = tiny(
        {
            ("owl", 0): 5.0,
            ("owl", 1): 6.0,
            ("neutral", 0): 1.0,
            ("neutral", 1): 3.0,
            ("baseline", 0): 0.5,
            ("cat", 0): 2.0,
            ("cat", 1): 2.0,
            ("fox", 0): 4.0,
        }
    )
    neutral = A.paired_lifts(df, "m")
    assert list(neutral.columns) == list(A.LIFT_COLUMNS)
    assert neutral["lift"].tolist() == [4.0, 3.0]
    # baseline evaluated once (seed 0) serves every seed
    assert A.paired_lifts(df, "m", control="baseline")["lift"].tolist() == [4.5, 5.5]
    # other-trait: mean of cat and fox per seed (seed 1 has only cat)
    assert A.paired_lifts(df, "m", control="other_trait")["lift"].tolist() == [2.0, 4.0]
    with pytest.raises(UserError, match="control"):
        A.paired_lifts(df, "m", control="nope")
    with pytest.raises(UserError, match="metric"):
        A.paired_lifts(df, "logodds")
    with pytest.raises(UserError, match="no treated"):
        A.paired_lifts(df.assign(target="digits"), "m")
    with pytest.raises(UserError, match="no \\(treated, control\\) pairs"):
        A.paired_lifts(df[df.teacher_trait != "neutral"], "m")


# ---------------------------------------------------------------- cell table


def test_cell_table_values_and_flags():
    df = make_tidy(targets=("owl", "cat"))
    cells = A.cell_table(df, "logodds", n_boot=200)
    assert list(cells.columns) == list(A.CELL_COLUMNS)
    assert len(cells) == 4 * 4 * 2
    lifts = A.paired_lifts(df, "logodds")
    one = cells[(cells.teacher_base == "a") & (cells.student_base == "b") & (cells.target == "owl")].iloc[0]
    sel = lifts[(lifts.teacher_base == "a") & (lifts.student_base == "b") & (lifts.target == "owl")]
    assert one.effect == pytest.approx(sel.lift.mean())
    assert one.relation == "sibling" and one.n_seeds == 3 and one.n_other == 3
    assert one.ci_low <= one.effect <= one.ci_high
    # 3 vs 3, perfectly separated: the smallest attainable p, which is not < 0.05
    assert one.p_perm == pytest.approx(0.05) and one.p_min == pytest.approx(0.05)
    assert not one.significant
    assert one.effect_vs_other > 0.3 and one.mean_baseline == pytest.approx(one.mean_control, abs=0.2)
    pooled = A.cell_table(df, "logodds", n_boot=50, pool_controls=True)
    one_p = pooled.iloc[int(one.name)]
    assert one_p.n_control == 6 and one_p.p_perm == pytest.approx(1 / math.comb(9, 3))
    assert one_p.significant and not one_p.significant_01  # 1/84 > 0.01
    # deterministic given the seed
    pd.testing.assert_frame_equal(cells, A.cell_table(df, "logodds", n_boot=200))


# ---------------------------------------------------------------- shared-base fit


def test_shared_base_fit_recovers_known_gamma():
    lifts = A.paired_lifts(make_tidy(gamma=0.5), "logodds")
    fit = A.shared_base_fit(lifts, order=list(BASES), n_perm=500)
    assert fit["identifiable"]
    assert fit["ci_low"] <= fit["gamma"] <= fit["ci_high"]
    assert fit["ci_low"] <= 0.5 <= fit["ci_high"]
    assert fit["ci_low"] > 0
    assert fit["p_perm"] < 0.01
    assert fit["n_cells"] == 16 and fit["n_clusters"] == 16 and fit["n_rows"] == 48
    assert fit["n_shared_clusters"] == 6
    assert 0.3 < fit["loo_min"] <= fit["gamma"] <= fit["loo_max"] < 0.7
    rel = fit["by_relation"]
    assert (
        rel["same"]["n_cells"] == 4 and rel["sibling"]["n_cells"] == 2 and rel["unrelated"]["n_cells"] == 10
    )
    assert rel["same"]["mean"] > 0.3 and abs(rel["unrelated"]["mean"]) < 0.15
    pairs = A.shared_base_fit(lifts, n_boot=300, n_perm=10, ci_method="pairs")
    assert pairs["ci_low"] <= 0.5 <= pairs["ci_high"] and pairs["n_boot_used"] > 250
    # same-base-only indicator: siblings then count as "not shared", γ shrinks but stays positive
    assert 0 < A.shared_base_fit(lifts, indicator="same", n_perm=10)["gamma"] < fit["gamma"]


def test_shared_base_fit_null_covers_zero():
    lifts = A.paired_lifts(make_tidy(gamma=0.0, rng_seed=3), "logodds")
    fit = A.shared_base_fit(lifts, n_perm=500)
    assert fit["ci_low"] <= 0 <= fit["ci_high"]
    assert fit["p_perm"] > 0.05


def test_label_permutation_is_exact_and_coarse():
    lifts = A.paired_lifts(make_tidy(gamma=0.5), "logodds")
    fit = A.shared_base_fit(lifts, perm="labels", lineage=LINEAGE)
    # 4! = 24 relabelings, enumerated; swapping the siblings a<->b keeps the pattern: p = 2/24
    assert fit["n_perm_used"] == 24 and fit["p_perm"] == pytest.approx(2 / 24)
    inferred = A.shared_base_fit(lifts, perm="labels")  # lineage inferred from the sibling rows
    assert inferred["p_perm"] == pytest.approx(fit["p_perm"])


def test_shared_base_fit_degenerate_designs():
    # one teacher base: the indicator is a function of the student base -> not identifiable
    one_teacher = A.paired_lifts(make_tidy(teachers=("a",)), "logodds")
    fit = A.shared_base_fit(one_teacher, n_perm=10)
    assert not fit["identifiable"] and math.isnan(fit["gamma"]) and fit["n_cells"] == 4
    # no shared cells at all
    lifts = A.paired_lifts(make_tidy(), "logodds")
    unrelated = lifts[lifts.relation == "unrelated"]
    assert not A.shared_base_fit(unrelated, n_perm=10)["identifiable"]
    # a single student base: β has one level and the indicator is a function of the teacher -> NaN, no crash
    assert not A.shared_base_fit(lifts[lifts.student_base == "a"], n_perm=10)["identifiable"]
    # a rectangular zoo (2 teachers × 4 students) still identifies γ
    rect = A.shared_base_fit(lifts[lifts.teacher_base.isin(["a", "c"])], n_perm=10)
    assert rect["identifiable"] and rect["n_cells"] == 8 and 0.3 < rect["gamma"] < 0.7
    with pytest.raises(UserError, match="several track"):
        A.shared_base_fit(pd.concat([lifts, lifts.assign(track="classifier")]))
    with pytest.raises(UserError, match="indicator"):
        A.shared_base_fit(lifts, indicator="cousin")


def test_multi_target_fit_with_target_effects():
    lifts = A.paired_lifts(make_tidy(targets=("owl", "cat")), "logodds")
    fit = A.shared_base_fit(lifts, n_perm=200)
    assert fit["n_cells"] == 32 and fit["n_clusters"] == 16
    assert fit["ci_low"] <= 0.5 <= fit["ci_high"]
    by_cell = A.shared_base_fit(lifts, n_perm=10, cluster="cell")
    assert by_cell["n_clusters"] == 32


# ---------------------------------------------------------------- views


def test_matrix_keeps_registry_order():
    cells = A.cell_table(make_tidy(targets=("owl", "cat")), "logodds", n_boot=20)
    order = ["d", "b", "a", "c"]
    m = A.matrix(cells, "effect", order)
    assert list(m.index) == order and list(m.columns) == order
    assert m.index.name == "teacher_base" and m.columns.name == "student_base"
    owl = A.matrix(cells, "effect", order, target="owl")
    cat = A.matrix(cells, "effect", order, target="cat")
    pd.testing.assert_frame_equal(m, (owl + cat) / 2)
    partial = A.matrix(cells, "effect", ["c", "a"])  # bases missing from the order go last, sorted
    assert list(partial.index) == ["c", "a", "b", "d"]
    with pytest.raises(UserError, match="target"):
        A.matrix(cells, "effect", order, target="eagle")
    with pytest.raises(UserError, match="unknown column"):
        A.matrix(cells, "nope")


def test_summary_by_relation():
    cells = A.cell_table(make_tidy(), "logodds", n_boot=20)
    s = A.summary_by_relation(cells)
    assert s["relation"].tolist() == ["same", "sibling", "unrelated"]
    assert s["n_cells"].tolist() == [4, 2, 10]
    assert s.loc[0, "mean_effect"] > 0.3 > abs(s.loc[2, "mean_effect"])
