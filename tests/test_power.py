"""benchmark.analysis.power: the pair test's simulated power and the effect it detects."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from benchmark.analysis.power import detectable_effect, pair_power, pooled_sd, power_table


def test_power_at_no_effect_is_the_exact_tests_size():
    # 3 vs 6: 84 assignments, each |difference| twice, so p <= 0.05 rejects 4 of 84 arrangements (size 0.0476)
    size = pair_power(0.0, 3, 6, n_sim=4000, seed=1)
    assert abs(size - 4 / 84) < 0.012


def test_a_design_that_cannot_reach_alpha_has_no_power_and_no_detectable_effect():
    # 3 vs 3: smallest two-sided p is 2/20 = 0.1 > 0.05
    assert pair_power(50.0, 3, 3, n_sim=200) == 0.0
    assert detectable_effect(3, 3, n_sim=200) == math.inf


def test_power_grows_with_the_effect_and_the_replicates():
    a = pair_power(1.0, 3, 6, n_sim=1000)
    b = pair_power(2.0, 3, 6, n_sim=1000)
    c = pair_power(1.0, 6, 12, n_sim=1000)
    assert a < b and a < c
    assert pair_power(1.0, 3, 6, n_sim=1000) == a  # same seed, same estimate


def test_large_designs_match_the_t_tests_power():
    # 8 vs 16 uses Monte Carlo relabellings; its power should be near the two-sample t test's at the same δ
    k, m, delta = 8, 16, 1.0
    df = k + m - 2
    nc = delta / math.sqrt(1 / k + 1 / m)
    crit = stats.t.ppf(0.975, df)
    t_power = 1 - stats.nct.cdf(crit, df, nc) + stats.nct.cdf(-crit, df, nc)
    sim = pair_power(delta, k, m, n_sim=600, n_mc=1000, seed=2)
    assert abs(sim - t_power) < 0.07, (sim, t_power)


def test_detectable_effect_is_where_power_reaches_80_percent():
    d = detectable_effect(4, 8, n_sim=600, tol=0.01)
    assert pair_power(d, 4, 8, n_sim=600) >= 0.8 > pair_power(d - 0.05, 4, 8, n_sim=600)


def test_pooled_sd_and_the_table_in_readout_units():
    assert pooled_sd(1.0, 1.0, 3, 6) == pytest.approx(1.0)
    assert pooled_sd(2.0, 0.0, 3, 3) == pytest.approx(math.sqrt(8 / 4))
    rows = power_table(0.5, {"x": 1.0}, [(3, 6)], n_sim=300)
    assert rows[0].power["x"] == pair_power(2.0, 3, 6, n_sim=300)
    assert rows[0].detectable == pytest.approx(detectable_effect(3, 6, n_sim=300) * 0.5)
