"""The benchmark's statistics against independent computations (scipy's own tests, simulation)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sp

from reference_impl.harness import stats

TREATMENT = [0.812, 0.835, 0.801, 0.829, 0.840, 0.818]
REFERENCE = [0.800, 0.810, 0.805, 0.811, 0.822, 0.809]


def test_interval_and_difference_test_match_scipy():
    t = stats.paired_test(TREATMENT, REFERENCE, sesoi=0.01)
    d = np.subtract(TREATMENT, REFERENCE)
    n = len(d)
    assert t.mean == pytest.approx(d.mean(), abs=1e-15)
    assert t.sd == pytest.approx(d.std(ddof=1), rel=1e-12)  # n - 1, not n
    low, high = sp.t.interval(0.95, n - 1, loc=d.mean(), scale=sp.sem(d))  # t quantile, n - 1 df, sd/√n
    assert (t.ci_low, t.ci_high) == (pytest.approx(low, rel=1e-12), pytest.approx(high, rel=1e-12))
    assert t.p_value == pytest.approx(sp.ttest_rel(TREATMENT, REFERENCE).pvalue, rel=1e-10)  # paired, two-sided
    assert t.p_value != pytest.approx(sp.ttest_ind(TREATMENT, REFERENCE).pvalue, rel=1e-3)  # not unpaired


def test_equivalence_is_two_one_sided_tests():
    t = stats.paired_test(TREATMENT, REFERENCE, sesoi=0.02)
    d = np.subtract(TREATMENT, REFERENCE)
    lower = sp.ttest_1samp(d, -0.02, alternative="greater").pvalue  # H0: δ ≤ -Δ
    upper = sp.ttest_1samp(d, 0.02, alternative="less").pvalue  # H0: δ ≥ +Δ
    assert t.equivalence_p_value == pytest.approx(max(lower, upper), rel=1e-10)


def test_fewer_than_three_seeds_is_an_error():
    with pytest.raises(ValueError, match="at least 3 seeds"):
        stats.paired_test([0.9, 0.8], [0.7, 0.6], sesoi=0.01)
    with pytest.raises(ValueError, match="at least 3 seeds"):
        stats.paired_test([0.9], [0.7], sesoi=0.01)
    with pytest.raises(ValueError, match="same seeds"):
        stats.paired_test([0.9, 0.8, 0.7], [0.7, 0.6], sesoi=0.01)
    with pytest.raises(ValueError, match="must be > 0"):
        stats.paired_test([0.9, 0.8, 0.7], [0.7, 0.6, 0.5], sesoi=0)
    with pytest.raises(ValueError, match="finite"):
        stats.paired_test([0.9, float("nan"), 0.7], [0.7, 0.6, 0.5], sesoi=0.01)


def test_zero_spread_is_handled_explicitly():
    same = stats.paired_test([0.8, 0.9, 0.7], [0.8, 0.9, 0.7], sesoi=0.01)  # identical arms
    assert (same.mean, same.sd, same.ci_low, same.ci_high, same.p_value, same.equivalence_p_value) == (0, 0, 0, 0, 1, 0)
    assert stats.verdict(same.mean, same.p_value, same.equivalence_p_value) == "no practical effect"
    shifted = stats.paired_test([0.85, 0.95, 0.75], [0.8, 0.9, 0.7], sesoi=0.01)  # +5 points on every seed
    assert shifted.mean == pytest.approx(0.05) and shifted.sd == 0 and shifted.p_value == 0
    assert shifted.equivalence_p_value == 1 and shifted.ci_low == shifted.ci_high == shifted.mean
    assert stats.verdict(shifted.mean, shifted.p_value, shifted.equivalence_p_value) == "held"
    small = stats.paired_test([0.805, 0.905, 0.705], [0.8, 0.9, 0.7], sesoi=0.01)  # +0.5 < SESOI, exact
    assert small.p_value == 0 and small.equivalence_p_value == 0


def test_holm_against_a_hand_computed_example():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4·0.005, 3·0.01, 2·0.03, 1·0.04 = 0.02, 0.03, 0.06, 0.06 (monotone)
    assert stats.holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert stats.holm([0.001]) == [0.001]
    assert stats.holm([]) == []


def test_verdict_rule_has_four_outcomes():
    assert stats.verdict(0.02, 0.01, 0.9) == "held"
    assert stats.verdict(-0.02, 0.01, 0.9) == "contradicted"
    assert stats.verdict(0.002, 0.6, 0.01) == "no practical effect"
    assert stats.verdict(0.002, 0.6, 0.2) == "inconclusive"
    assert stats.verdict(0.02, 0.05, 0.9) == "inconclusive"  # the boundary: p must be below α
    # a raw p below α that Holm lifts above it is no longer decisive
    raw = [0.02, 0.03, 0.5]
    assert [stats.verdict(0.01, p, 1.0) for p in stats.holm(raw)] == ["inconclusive"] * 3


def test_power_matches_known_values_and_simulation():
    # one-sample t, d = 1, n = 10, α = 0.05 two-sided: power 0.803 (Cohen 1988, table 2.3.5; G*Power)
    assert stats.power(10, 1.0, 1.0) == pytest.approx(0.8031, abs=5e-4)
    rng = np.random.default_rng(0)
    n, sd, effect, alpha = 6, 0.02, 0.025, 0.01
    samples = rng.normal(effect, sd, size=(40_000, n))
    simulated = float((sp.ttest_1samp(samples, 0.0, axis=1).pvalue < alpha).mean())
    assert stats.power(n, sd, effect, alpha) == pytest.approx(simulated, abs=0.01)


def test_seeds_needed_and_minimal_detectable_effect_agree():
    n = stats.seeds_needed(0.01, 0.01, family_size=1)  # d = 1 at α = 0.05: 10 pairs (see above)
    assert n == 10
    assert stats.seeds_needed(0.01, 0.01, family_size=20) > n  # the Bonferroni level needs more
    assert stats.seeds_needed(0.0001, 0.01, family_size=20) == stats.MIN_SEEDS
    assert stats.seeds_needed(1.0, 0.01, family_size=20, cap=50) == 51  # more than the cap can give
    mde = stats.minimal_detectable_effect(10, 0.01, family_size=1)
    assert stats.power(10, 0.01, mde) == pytest.approx(stats.POWER, abs=1e-6)
    assert mde == pytest.approx(0.01, rel=0.01)
    assert stats.minimal_detectable_effect(10, 0.0, family_size=1) == 0.0
    assert math.isclose(stats.power(1, 0.01, 0.01), 0.0)
    with pytest.raises(ValueError, match="at least 2 seeds"):
        stats.minimal_detectable_effect(1, 0.01, family_size=1)


def test_planning_sd_is_the_pilots_upper_confidence_limit():
    # χ² with 2 degrees of freedom is exponential with mean 2: its 20% quantile is −2 ln 0.8
    assert stats.planning_sd(0.01, 3) == pytest.approx(0.01 * math.sqrt(2 / (-2 * math.log(0.8))), rel=1e-9)
    # with many pilot seeds the limit approaches the estimate itself
    assert 0.01 < stats.planning_sd(0.01, 200) < 0.0106
    assert stats.planning_sd(0.01, 3, confidence=0.95) > stats.planning_sd(0.01, 3)
    assert stats.planning_sd(0.0, 3) == 0.0
    for bad in ({"pilot_sd": 0.01, "pilot_n": 1}, {"pilot_sd": -0.01, "pilot_n": 3},
                {"pilot_sd": 0.01, "pilot_n": 3, "confidence": 1.0}):
        with pytest.raises(ValueError):
            stats.planning_sd(**bad)


def test_equivalence_power_matches_a_simulation_of_tost():
    rng = np.random.default_rng(7)
    n, sd, sesoi, alpha = 12, 0.01, 0.01, 0.05
    for effect in (0.0, 0.004):
        draws = rng.normal(effect, sd, size=(20000, n))
        mean, s = draws.mean(axis=1), draws.std(axis=1, ddof=1)
        se = s / math.sqrt(n)
        critical = sp.t.ppf(1 - alpha, n - 1)
        simulated = np.mean(((mean + sesoi) / se > critical) & ((mean - sesoi) / se < -critical))
        computed = stats.equivalence_power(n, sd, effect, sesoi, alpha)
        assert computed <= simulated + 0.01  # a lower bound ...
        assert computed == pytest.approx(simulated, abs=0.03)  # ... and a tight one at these powers
    assert stats.equivalence_power(12, 0.0, 0.005, 0.01) == 1.0
    assert stats.equivalence_power(12, 0.0, 0.02, 0.01) == 0.0


def test_seeds_for_a_decisive_verdict_takes_the_easier_of_the_two_tests():
    # a clear effect: the difference test alone decides, as seeds_needed says
    assert stats.seeds_for_a_decisive_verdict(0.01, 0.02, 0.01, family_size=1) == \
        stats.seeds_needed(0.01, 0.02, family_size=1)
    # no effect at all: only equivalence can decide, and it needs more seeds at a stricter level
    at_zero = stats.seeds_for_a_decisive_verdict(0.01, 0.0, 0.01, family_size=1)
    assert stats.equivalence_power(at_zero, 0.01, 0.0, 0.01) >= 0.8 > \
        stats.equivalence_power(at_zero - 1, 0.01, 0.0, 0.01)
    assert stats.seeds_for_a_decisive_verdict(0.01, 0.0, 0.01, family_size=22) > at_zero
    # half the SESOI is the hard case: too small to detect cheaply, too close to ±SESOI for equivalence
    half = stats.seeds_for_a_decisive_verdict(0.01, 0.005, 0.01, family_size=1)
    assert half > at_zero and half > stats.seeds_for_a_decisive_verdict(0.01, 0.01, 0.01, family_size=1)
    assert stats.seeds_for_a_decisive_verdict(0.05, 0.005, 0.01, family_size=22, cap=40) == 41
