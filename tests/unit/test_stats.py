"""Statistics against hand-computed values and scipy."""

import numpy as np
import pytest
from scipy import stats as sps

from latencylab.analyse import stats


def test_a_percentile_needs_enough_samples_to_be_an_observation():
    assert (stats.min_n(0.90), stats.min_n(0.95), stats.min_n(0.99)) == (10, 20, 100)
    values = np.arange(1, 20, dtype=float)  # 19 values
    assert stats.percentile(values, 0.90) == pytest.approx(np.quantile(values, 0.90))
    assert stats.percentile(values, 0.95) is None and stats.percentile(values, 0.99) is None


def test_bootstrap_intervals_are_seeded_and_bracket_the_statistic():
    values = np.random.default_rng(7).lognormal(5, 0.4, 40)
    first, again = stats.bootstrap_ci(values, "median"), stats.bootstrap_ci(values, "median")
    assert first == again  # a rerun of the report gives the same numbers
    assert first.low < np.median(values) < first.high
    p95 = stats.bootstrap_ci(values, "p95")
    assert p95.low <= np.quantile(values, 0.95) <= p95.high
    assert stats.bootstrap_ci(values[:10], "p95") is None and stats.bootstrap_ci(values[:1]) is None


def test_cliffs_delta_by_hand():
    before, after = np.array([10.0, 20.0, 30.0]), np.array([5.0, 25.0])
    # pairs (after > before): 25>10, 25>20 → 2; (after < before): 5<10,5<20,5<30,25<30 → 4; 6 pairs
    assert stats.cliffs_delta(before, after) == pytest.approx((2 - 4) / 6)
    assert stats.cliffs_delta(before, before + 100) == 1.0


def test_compare_uses_scipy_mann_whitney_and_the_ratio_of_medians():
    rng = np.random.default_rng(3)
    before, after = rng.normal(500, 50, 30), rng.normal(200, 30, 30)
    c = stats.compare(before, after)
    assert c.p_value == pytest.approx(sps.mannwhitneyu(after, before, alternative="two-sided").pvalue)
    assert c.ratio == pytest.approx(np.median(after) / np.median(before))
    assert c.change_pct == pytest.approx((c.ratio - 1) * 100)
    assert c.ratio_ci.low < c.ratio < c.ratio_ci.high


@pytest.mark.parametrize("shift, verdict", [(-300.0, "faster"), (300.0, "slower"), (0.5, "no_difference")])
def test_verdicts_on_clear_and_unclear_cases(shift, verdict):
    before = np.random.default_rng(11).normal(500, 50, 25)
    after = np.random.default_rng(12).normal(500 + shift, 50, 25)
    assert stats.compare(before, after).verdict == verdict


def test_too_few_samples_is_said_rather_than_tested():
    assert stats.compare(np.array([1.0]), np.array([2.0, 3.0])).verdict == "too_few"


def test_big_samples_get_fewer_resamples_within_a_budget():
    assert stats.resamples(30) == stats.RESAMPLES == stats.resamples(10_000)
    assert stats.resamples(50_000) == 400 and stats.resamples(10**7) == stats.MIN_RESAMPLES


@pytest.mark.parametrize("n", [5, 25, 3000])
def test_intervals_from_one_set_of_resamples_equal_those_computed_one_by_one(n):
    values = np.random.default_rng(3).lognormal(4, 0.5, n)
    both = stats.bootstrap_cis(values, ("median", "p95"))
    assert both == {"median": stats.bootstrap_ci(values, "median"), "p95": stats.bootstrap_ci(values, "p95")}
    assert (both["p95"] is None) == (n < 20)
