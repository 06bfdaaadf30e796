"""Statistics for small samples of latencies: the percentiles n can support, seeded bootstrap intervals,
and before/after comparisons (Mann–Whitney U and Cliff's delta, or on pairs of requests sent the same prompt the
Wilcoxon signed-rank test and Cliff's delta within the pairs; a plain-words verdict)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

CONFIDENCE = 0.95
RESAMPLES = 2000
# At most this many resampled values per interval: 2000 resamples up to 10 000 samples, fewer above (400 for
# 50 000), never under 200. A big sample's sampling distribution is narrow and smooth, so fewer resamples
# move its interval's ends by a fraction of a percent, and a 100 000-sample report stays under a minute.
RESAMPLED_VALUES = 20_000_000
MIN_RESAMPLES = 200
# Resampled values held in memory at once: past this, resamples are drawn and summarised in batches (the 200
# resamples of 500 000 values at once took 1.5 GB, in batches 0.1 GB). One sample's batches draw the same resamples
# as one batch would; two samples' are drawn in another order, so a comparison batches only past RESAMPLED_VALUES
# (over 10⁵ values: there, another draw of the same bootstrap).
BATCH_VALUES = 5_000_000
SEED = 20241219  # fixed, so that a rerun of a report gives the same intervals
ALPHA = 0.05
NEGLIGIBLE_DELTA = 0.147  # |Cliff's delta| below this is a negligible effect (Romano et al., 2006)
PERCENTILES = {"p90": 0.90, "p95": 0.95, "p99": 0.99}


def numeric(series: pd.Series) -> pd.Series:
    """A column as floats: NaN where a value is missing or not a number."""
    return pd.to_numeric(series, errors="coerce").astype(float)


def min_n(q: float) -> int:
    """Fewest samples for which the q-quantile is an observation rather than an extrapolation."""
    return math.ceil(round(1 / (1 - q), 9))


def percentile(values: np.ndarray, q: float) -> float | None:
    """The q-quantile, or None when there are fewer than `min_n(q)` values (p99 needs 100)."""
    return float(np.quantile(values, q)) if len(values) >= min_n(q) else None


def resamples(n: int) -> int:
    """How many bootstrap resamples an interval of n values gets (see RESAMPLED_VALUES)."""
    return max(MIN_RESAMPLES, min(RESAMPLES, RESAMPLED_VALUES // max(n, 1)))


def batch(n: int, limit: int = BATCH_VALUES) -> int | None:
    """Resamples of n values drawn at once (None: all of them), so that a batch holds at most `limit` values."""
    return None if resamples(n) * n <= limit else max(1, BATCH_VALUES // n)


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


def _median(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.median(x, axis=axis)


def _p95(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.quantile(x, 0.95, axis=axis)


def _mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis)


def _cv(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.std(x, axis=axis, ddof=1) / np.mean(x, axis=axis)


STATISTICS: dict[str, Callable[..., np.ndarray]] = {"median": _median, "p95": _p95, "mean": _mean, "cv": _cv}


def bootstrap_ci(values: np.ndarray, statistic: str = "median") -> Interval | None:
    """Seeded percentile-bootstrap 95 % interval of `statistic` (median, p95, mean, cv); None if it cannot be had."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2 or (statistic == "p95" and len(values) < min_n(0.95)):
        return None
    result = sps.bootstrap(
        (values,),
        STATISTICS[statistic],
        confidence_level=CONFIDENCE,
        n_resamples=resamples(len(values)),
        batch=batch(len(values)),
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(SEED),
    )
    return Interval(float(result.confidence_interval.low), float(result.confidence_interval.high))


def bootstrap_cis(values: np.ndarray, names: tuple[str, ...] = ("median", "p95")) -> dict[str, Interval | None]:
    """`bootstrap_ci` of several statistics from one set of resamples: the same intervals, resampled once."""
    values = np.asarray(values, dtype=float)
    wanted = [n for n in names if len(values) >= 2 and not (n == "p95" and len(values) < min_n(0.95))]
    out: dict[str, Interval | None] = dict.fromkeys(names)
    if not wanted:
        return out
    functions = [STATISTICS[n] for n in wanted]
    result = sps.bootstrap(
        (values,),
        lambda x, axis=-1: np.stack([fn(x, axis=axis) for fn in functions]),
        confidence_level=CONFIDENCE,
        n_resamples=resamples(len(values)),
        batch=batch(len(values)),
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(SEED),
    )
    for i, name in enumerate(wanted):
        out[name] = Interval(float(result.confidence_interval.low[i]), float(result.confidence_interval.high[i]))
    return out


def cliffs_delta(before: np.ndarray, after: np.ndarray) -> float:
    """P(after > before) − P(after < before): −1 means every after value is lower (faster)."""
    u = sps.mannwhitneyu(after, before, alternative="two-sided").statistic
    return float(2 * u / (len(after) * len(before)) - 1)


@dataclass(frozen=True)
class Comparison:
    """`after` against `before` (the baseline): sizes, medians, change, its interval, test and effect size."""

    n_before: int
    n_after: int
    median_before: float
    median_after: float
    change_pct: float
    ratio: float
    ratio_ci: Interval | None
    p_value: float | None
    cliffs_delta: float | None  # paired: within the pairs, the share of pairs where after is higher less lower
    verdict: str  # faster | slower | no_difference | too_few
    test: str | None = None  # "wilcoxon" (signed-rank, on the pairs) or "mann-whitney" (independent); None: too few
    pairs: int = 0  # the pairs the test and the interval rest on (0: unpaired)


def compare(before: np.ndarray, after: np.ndarray, pairs: tuple[np.ndarray, np.ndarray] | None = None) -> Comparison:
    """Compare two samples of a latency; `verdict` is decided by both the test and the effect.

    The medians are those of `before` and `after`. Given `pairs` (the values of requests sent the same prompt, in
    matching order), the interval resamples the pairs, the test is Wilcoxon's signed-rank test on their differences
    and the effect Cliff's delta within the pairs (Feng & Cliff's d_w): a difference that the prompts' own spread
    hides from a test of independent samples shows. Else the two are independent: Mann–Whitney U, Cliff's delta.
    """
    before, after = np.asarray(before, dtype=float), np.asarray(after, dtype=float)
    median_before, median_after = float(np.median(before)), float(np.median(after))
    ratio = median_after / median_before if median_before else math.nan
    if len(before) < 2 or len(after) < 2:
        return Comparison(
            len(before), len(after), median_before, median_after, (ratio - 1) * 100, ratio, None, None, None, "too_few"
        )
    paired = pairs is not None
    one, other = (np.asarray(p, dtype=float) for p in pairs) if pairs is not None else (before, after)
    ci = sps.bootstrap(
        (one, other),
        lambda b, a, axis=-1: np.median(a, axis=axis) / np.median(b, axis=axis),
        paired=paired,
        confidence_level=CONFIDENCE,
        n_resamples=resamples(len(one) + len(other)),
        batch=batch(len(one) + len(other), RESAMPLED_VALUES),
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(SEED),
    ).confidence_interval
    if paired:
        differences = other - one
        # all pairs equal: no difference at all (the test is undefined on zeros alone)
        p_value = float(sps.wilcoxon(differences).pvalue) if differences.any() else 1.0
        delta = float(np.mean(np.sign(differences)))
    else:
        p_value = float(sps.mannwhitneyu(after, before, alternative="two-sided").pvalue)
        delta = cliffs_delta(before, after)
    if p_value < ALPHA and abs(delta) >= NEGLIGIBLE_DELTA:
        verdict = "faster" if median_after < median_before else "slower"
    else:
        verdict = "no_difference"
    return Comparison(
        len(before),
        len(after),
        median_before,
        median_after,
        (ratio - 1) * 100,
        ratio,
        Interval(float(ci.low), float(ci.high)),
        p_value,
        delta,
        verdict,
        "wilcoxon" if paired else "mann-whitney",
        len(one) if paired else 0,
    )
