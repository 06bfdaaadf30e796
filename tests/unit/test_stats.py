"""Statistics against values computed by hand (the arithmetic in a comment beside each)."""

import numpy as np
import pytest

from latencylab.analyse import stats


def test_a_percentile_needs_enough_samples_to_be_an_observation():
    assert (stats.min_n(0.90), stats.min_n(0.95), stats.min_n(0.99)) == (10, 20, 100)
    values = np.arange(1, 20, dtype=float)  # 1 … 19
    # linear interpolation: position (19 − 1) × 0.90 = 16.2 → 17 + 0.2 × (18 − 17) = 17.2
    assert stats.percentile(values, 0.90) == pytest.approx(17.2)
    assert stats.percentile(values, 0.95) is None and stats.percentile(values, 0.99) is None
    # 1 … 20: position 19 × 0.95 = 18.05 → 19 + 0.05 × (20 − 19) = 19.05
    assert stats.percentile(np.arange(1, 21, dtype=float), 0.95) == pytest.approx(19.05)


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


def test_compare_by_hand_mann_whitney_and_the_ratio_of_medians():
    before, after = np.array([10.0, 20.0, 30.0, 40.0, 50.0]), np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    c = stats.compare(before, after)
    assert (c.n_before, c.n_after, c.median_before, c.median_after) == (5, 5, 30.0, 3.0)
    # medians 3 / 30 = 0.1: 90 % faster
    assert c.ratio == pytest.approx(0.1) and c.change_pct == pytest.approx(-90.0)
    # every after value is below every before value: U = 0; exact two-sided p = 2 × 1 / C(10, 5) = 2 / 252
    assert c.p_value == pytest.approx(2 / 252) and c.cliffs_delta == -1.0
    assert c.verdict == "faster" and c.ratio_ci.low <= 0.1 <= c.ratio_ci.high
    # 5 > 4.5 is the one pair where after is higher: U = 1; U = 0 and U = 1 are one arrangement each of the 252,
    # so p = 2 × 2 / 252; Cliff's delta (1 pair higher − 24 lower) / 25
    near = stats.compare(np.array([4.5, 20.0, 30.0, 40.0, 50.0]), after)
    assert near.p_value == pytest.approx(4 / 252) and near.cliffs_delta == pytest.approx(-23 / 25)


@pytest.mark.parametrize("shift, verdict", [(-300.0, "faster"), (300.0, "slower"), (0.5, "no_difference")])
def test_verdicts_on_clear_and_unclear_cases(shift, verdict):
    before = np.random.default_rng(11).normal(500, 50, 25)
    after = np.random.default_rng(12).normal(500 + shift, 50, 25)
    assert stats.compare(before, after).verdict == verdict


def test_too_few_samples_is_said_rather_than_tested():
    assert stats.compare(np.array([1.0]), np.array([2.0, 3.0])).verdict == "too_few"


def test_big_samples_get_fewer_resamples_within_a_budget():
    # 20 000 000 resampled values at most: 2000 resamples up to 10 000 values, 20 000 000 / 50 000 = 400, never < 200
    assert stats.resamples(30) == 2000 == stats.resamples(10_000)
    assert stats.resamples(50_000) == 400 and stats.resamples(10**7) == 200


@pytest.mark.parametrize("n", [5, 25, 3000])
def test_intervals_from_one_set_of_resamples_equal_those_computed_one_by_one(n):
    values = np.random.default_rng(3).lognormal(4, 0.5, n)
    both = stats.bootstrap_cis(values, ("median", "p95"))
    assert both == {"median": stats.bootstrap_ci(values, "median"), "p95": stats.bootstrap_ci(values, "p95")}
    assert (both["p95"] is None) == (n < 20)


def test_big_samples_are_resampled_in_batches_that_draw_the_same_resamples(monkeypatch):
    # 3001 values × 2000 resamples: 6 002 000 values, past a batch of 5 000 000 → batches of 1666 resamples
    assert stats.batch(2500) is None and stats.batch(3001) == 5_000_000 // 3001
    assert stats.batch(10**5, stats.RESAMPLED_VALUES) is None and stats.batch(10**6, stats.RESAMPLED_VALUES) == 5
    values = np.random.default_rng(3).lognormal(4, 0.5, 3001)
    batched = stats.bootstrap_cis(values, ("median", "p95", "cv"))
    monkeypatch.setattr(stats, "batch", lambda n, limit=0: None)
    assert batched == stats.bootstrap_cis(values, ("median", "p95", "cv"))
