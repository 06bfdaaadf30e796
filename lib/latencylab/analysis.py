"""Pure functions of a samples DataFrame: which samples count, and per-scenario summaries."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

SUMMARY_COLUMNS = ["n", "errors", "mean", "median", "min", "max", "std", "cv"]


def measured(samples: pd.DataFrame) -> pd.DataFrame:
    """Samples that count in latency figures: successful and not warm-up."""
    return samples[samples["ok"].fillna(False) & ~samples["warmup"].fillna(False)]


def summary(samples: pd.DataFrame, metric: str = "ttfb_ms", by: Sequence[str] = ("scenario",)) -> pd.DataFrame:
    """n, errors, mean, median, min, max, std and CV (std/mean) of `metric` per group.

    Failed requests never enter a latency figure; they are counted in `errors`.
    """
    by = list(by)
    attempted = samples[~samples["warmup"].fillna(False)]
    values = measured(samples).sort_values("seq").groupby(by, observed=True, sort=False)[metric]
    table = values.agg(["count", "mean", "median", "min", "max", "std"]).rename(columns={"count": "n"})
    failed = ~attempted["ok"].fillna(False)
    table["errors"] = failed.groupby([attempted[c] for c in by], observed=True).sum()
    table["errors"] = table["errors"].fillna(0).astype("Int64")
    table["cv"] = table["std"] / table["mean"]
    table = table.reindex(columns=SUMMARY_COLUMNS)
    table["n"] = table["n"].astype("Int64")
    return table


def scenario_order(samples: pd.DataFrame) -> list[str]:
    """Scenarios in the order they first appear in the run (the study's order)."""
    return list(dict.fromkeys(samples.sort_values("seq")["scenario"].dropna()))
