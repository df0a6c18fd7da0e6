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


def test_matrix_keeps_registry_order():
    rng = np.random.default_rng(0)
    bases = ["a", "b", "c", "d"]
    cells = pd.DataFrame([dict(teacher_base=t, student_base=s, target=tg, effect=rng.normal(), suite="s", track="lm")
                          for t in bases for s in bases for tg in ("owl", "cat")])
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
