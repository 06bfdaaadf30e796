"""The study's targets judged per scenario: pass, fail, inconclusive (the interval straddles the goal), no evidence."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from latencylab.analyse import stats
from latencylab.analyse.tables import KEY, keyed, measured

TARGET_KEYS = ("first_ms", "subsequent_ms", "mean_ms", "mean_stretch_ms", "cv", "fits_in_vram")


def judge(measured_value: float | None, goal: float, low: float | None = None, high: float | None = None) -> str:
    """pass / fail / inconclusive for a lower-is-better target, by its interval when there is one."""
    if measured_value is None or pd.isna(measured_value):
        return "no_evidence"
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return "pass" if measured_value < goal else "fail"
    if high < goal:
        return "pass"
    return "fail" if low >= goal else "inconclusive"


def evaluate_targets(samples: pd.DataFrame, targets: dict[str, Any], metric: str | None = None) -> pd.DataFrame:
    """Each target per key: goal, measured value, n, its 95 % interval and status (pass, fail, inconclusive,
    no_evidence). A target with no interval (one sample, the first request) is judged on its value."""
    metric = metric or targets.get("metric", "ttfb_ms")
    data = measured(keyed(samples), [*KEY, metric, "phase", "fits_in_vram"])
    rows = []
    for (run, scenario), group in data.groupby(KEY, sort=False):
        values = group[metric].dropna().to_numpy(float)
        first = group.loc[group["phase"] == "first", metric].dropna().to_numpy(float)
        later = group.loc[group["phase"] == "subsequent", metric].dropna().to_numpy(float)
        fits = group["fits_in_vram"].dropna()
        mean_ci = stats.bootstrap_ci(values, "mean")
        judged = {
            "first_ms": (first.max() if len(first) else None, len(first), None),
            "subsequent_ms": (float(np.median(later)) if len(later) else None, len(later),
                              stats.bootstrap_ci(later, "median")),
            "mean_ms": (float(values.mean()) if len(values) else None, len(values), mean_ci),
            "mean_stretch_ms": (float(values.mean()) if len(values) else None, len(values), mean_ci),
            "cv": (float(values.std(ddof=1) / values.mean()) if len(values) > 1 else None, len(values),
                   stats.bootstrap_ci(values, "cv") if targets.get("cv") is not None else None),
        }
        for key in TARGET_KEYS:
            goal = targets.get(key)
            if goal is None:
                continue
            if key == "fits_in_vram":
                value, n, interval = (bool(fits.all()) if len(fits) else None), len(fits), None
                status = "no_evidence" if value is None else "pass" if value == goal else "fail"
            else:
                value, n, interval = judged[key]
                status = judge(value, float(goal), interval.low if interval else None,
                               interval.high if interval else None)
            rows.append({"run": run, "scenario": scenario, "target": key, "goal": goal, "measured": value, "n": n,
                         "ci_low": interval.low if interval else None, "ci_high": interval.high if interval else None,
                         "status": status})
    columns = ["run", "scenario", "target", "goal", "measured", "n", "ci_low", "ci_high", "status"]
    table = pd.DataFrame(rows, columns=columns)
    for column in ("goal", "measured"):  # floats and booleans; None stays None (no evidence), never NaN
        table[column] = pd.Series([row[column] for row in rows], dtype=object)
    return table
