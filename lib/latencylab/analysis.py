"""Pure functions of a samples DataFrame: which samples count, and per-scenario summaries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from . import stats

SUMMARY_COLUMNS = ["n", "errors", "mean", "median", "min", "max", "std", "cv", "p90", "p95", "p99"]


def measured(samples: pd.DataFrame) -> pd.DataFrame:
    """Samples that count in latency figures: successful and not warm-up."""
    return samples[samples["ok"].fillna(False) & ~samples["warmup"].fillna(False)]


def summary(samples: pd.DataFrame, metric: str = "ttfb_ms", by: Sequence[str] = ("scenario",)) -> pd.DataFrame:
    """n, errors, mean, median, min, max, std, CV (std/mean) and p90/p95/p99 of `metric` per group.

    Failed requests never enter a latency figure; they are counted in `errors`. A percentile that n
    cannot support (p99 needs 100 requests) is <NA>, never extrapolated.
    """
    by = list(by)
    attempted = samples[~samples["warmup"].fillna(False)]
    values = measured(samples).sort_values("seq").groupby(by, observed=True, sort=False)[metric]
    table = values.agg(["count", "mean", "median", "min", "max", "std"]).rename(columns={"count": "n"})
    groups = attempted.sort_values("seq").groupby(by, observed=True, sort=False).size().index
    table = table.reindex(groups)  # a group whose every request failed keeps its row (n 0)
    table["n"] = table["n"].fillna(0)
    failed = ~attempted["ok"].fillna(False)
    table["errors"] = failed.groupby([attempted[c] for c in by], observed=True).sum()
    table["errors"] = table["errors"].fillna(0).astype("Int64")
    table["cv"] = table["std"] / table["mean"]
    for name, q in stats.PERCENTILES.items():
        table[name] = values.agg(lambda v, q=q: stats.percentile(v.dropna().to_numpy(float), q)).astype("Float64")
    table = table.reindex(columns=SUMMARY_COLUMNS)
    table["n"] = table["n"].astype("Int64")
    return table


def scenario_order(samples: pd.DataFrame) -> list[str]:
    """Scenarios in the order they first appear in the run (the study's order)."""
    return list(dict.fromkeys(samples.sort_values("seq")["scenario"].dropna()))


def decompose(samples: pd.DataFrame) -> pd.DataFrame:
    """Each successful sample's TTFT split into load, prompt processing, first token and the rest.

    The rest (queueing, network, client) is computed, never measured: `rest_negative` flags samples where
    the server's figures add up to more than the client saw (clock or reporting differences).
    """
    ok = samples[samples["ok"].fillna(False)].copy()
    first_token = ok["eval_ms"] / ok["output_tokens"].where(ok["output_tokens"] > 0)
    parts = pd.DataFrame(
        {
            "scenario": ok["scenario"],
            "state": ok["state"],
            "warmup": ok["warmup"],
            "load": ok["load_ms"].fillna(0.0),
            "prompt": ok["prompt_eval_ms"],
            "first_token": first_token,
            "ttft": ok["ttft_ms"],
        }
    )
    parts["rest"] = parts["ttft"] - parts["load"] - parts["prompt"] - parts["first_token"]
    parts["rest_negative"] = parts["rest"] < -1e-3  # below a microsecond is rounding, not a contradiction
    return parts


def decomposition_table(samples: pd.DataFrame) -> pd.DataFrame:
    """Mean of each TTFT component per scenario and state (ms), measured requests only."""
    parts = decompose(samples)
    parts = parts[~parts["warmup"].fillna(False)]
    columns = ["load", "prompt", "first_token", "rest", "ttft"]
    table = parts.groupby(["scenario", "state"], observed=True, sort=False)[columns].mean()
    table["n"] = parts.groupby(["scenario", "state"], observed=True, sort=False).size()
    table["rest_negative"] = parts.groupby(["scenario", "state"], observed=True, sort=False)["rest_negative"].sum()
    return table


def load_share(samples: pd.DataFrame, metric: str = "ttfb_ms") -> pd.DataFrame:
    """Per scenario: how many measured requests paid a model load, their mean load, and cold vs warm medians."""
    data = measured(samples)
    rows = {}
    for scenario, group in data.groupby("scenario", sort=False):
        paid = group[group["state"].isin(["cold", "reload"])]
        warm = group[group["state"] == "warm"]
        rows[scenario] = {
            "n": len(group),
            "cold": int((group["state"] == "cold").sum()),
            "reload": int((group["state"] == "reload").sum()),
            "unknown": int((group["state"] == "unknown").sum()),
            "paid_load_share": len(paid) / len(group) if len(group) else float("nan"),
            "mean_load_ms": paid["load_ms"].mean() if len(paid) else float("nan"),
            "load_source": ", ".join(sorted(paid["load_ms_source"].dropna().unique())),
            f"median_{metric}_paid": paid[metric].median() if len(paid) else float("nan"),
            f"median_{metric}_warm": warm[metric].median() if len(warm) else float("nan"),
            "load_share_of_mean": paid["load_ms"].sum() / group[metric].sum() if group[metric].sum() else float("nan"),
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("scenario")


def residency(samples: pd.DataFrame) -> pd.DataFrame:
    """Per scenario: where the model sat (size, GPU share, fits in VRAM, process memory), from the probes."""
    data = samples[samples["ok"].fillna(False)]
    mib = 2**20
    grouped = data.groupby("scenario", sort=False)
    table = pd.DataFrame(
        {
            "model": grouped["model"].last(),
            "model_size_mib": grouped["model_size_bytes"].max() / mib,
            "vram_mib": grouped["vram_bytes"].max() / mib,
            "gpu_share": grouped["gpu_share"].min(),
            "fits_in_vram": grouped["fits_in_vram"].agg(lambda s: s.dropna().all() if s.notna().any() else pd.NA),
            "context_length": grouped["context_length"].max(),
            "gpu_layers": grouped["gpu_layers"].max(),
            "server_rss_mib": grouped["server_rss_bytes"].max() / mib,
            "gpu_mem_used_mib": grouped["gpu_mem_used_bytes"].max() / mib,
        }
    )
    return table.rename_axis("scenario")


TARGET_LABELS = {
    "first_ms": "first request",
    "subsequent_ms": "subsequent (median)",
    "mean_ms": "mean",
    "mean_stretch_ms": "mean (stretch goal)",
    "cv": "variability (CV)",
    "fits_in_vram": "fits in VRAM",
}


def evaluate_targets(samples: pd.DataFrame, targets: dict[str, Any]) -> pd.DataFrame:
    """Each target per scenario: goal, measured value with its 95 % interval, passed (None without evidence)."""
    metric = targets.get("metric", "ttfb_ms")
    data = measured(samples)
    rows = []
    for scenario, group in data.groupby("scenario", sort=False):
        values = group[metric].dropna()
        first = group.loc[group["phase"] == "first", metric].dropna()
        subsequent = group.loc[group["phase"] == "subsequent", metric].dropna()
        fits = group["fits_in_vram"].dropna()
        intervals_of = {
            "subsequent_ms": stats.bootstrap_ci(subsequent.to_numpy(float), "median"),
            "mean_ms": stats.bootstrap_ci(values.to_numpy(float), "mean"),
            "mean_stretch_ms": stats.bootstrap_ci(values.to_numpy(float), "mean"),
        }
        measured_values = {
            "first_ms": first.max() if len(first) else None,
            "subsequent_ms": subsequent.median() if len(subsequent) else None,
            "mean_ms": values.mean() if len(values) else None,
            "mean_stretch_ms": values.mean() if len(values) else None,
            "cv": values.std() / values.mean() if len(values) > 1 else None,
            "fits_in_vram": bool(fits.all()) if len(fits) else None,
        }
        for key, label in TARGET_LABELS.items():
            goal = targets.get(key)
            if goal is None:
                continue
            value = measured_values[key]
            if key == "fits_in_vram":
                passed = None if value is None else value == goal
            else:
                passed = None if value is None or pd.isna(value) else bool(value < goal)
            interval = intervals_of.get(key)
            rows.append(
                {
                    "scenario": scenario,
                    "key": key,
                    "target": label,
                    "goal": goal,
                    "measured": value,
                    "ci_low": interval.low if interval else None,
                    "ci_high": interval.high if interval else None,
                    "passed": passed,
                }
            )
    return pd.DataFrame(rows, columns=["scenario", "key", "target", "goal", "measured", "ci_low", "ci_high", "passed"])


def sweep(samples: pd.DataFrame, metric: str = "ttfb_ms") -> pd.DataFrame:
    """Per keep_alive × idle gap: share of measured requests that paid a load, and mean `metric`.

    Empty unless the run varies keep_alive or the idle gap (a sweep study).
    """
    data = measured(samples).copy()
    if data.empty or (data["keep_alive"].nunique() < 2 and data["idle_gap_s"].nunique() < 2):
        return pd.DataFrame()
    data["paid_load"] = data["state"].isin(["cold", "reload"])
    grouped = data.groupby(["keep_alive", "idle_gap_s"], sort=True)
    return pd.DataFrame(
        {
            "n": grouped.size(),
            "cold_share": grouped["paid_load"].mean(),
            f"mean_{metric}": grouped[metric].mean(),
        }
    )


def phase_summary(samples: pd.DataFrame, metric: str = "ttfb_ms") -> pd.DataFrame:
    """`summary` per scenario for the phases `first`, `subsequent` and `all`."""
    both = pd.concat([samples, samples.assign(phase="all")], ignore_index=True)
    table = summary(both, metric, by=["scenario", "phase"])
    order = {"first": 0, "subsequent": 1, "all": 2}
    scenarios = {name: i for i, name in enumerate(scenario_order(samples))}
    return table.sort_index(key=lambda index: index.map(order) if index.name == "phase" else index.map(scenarios))


def intervals(samples: pd.DataFrame, metric: str = "ttfb_ms") -> pd.DataFrame:
    """Seeded bootstrap 95 % intervals of the median and p95 of `metric` per scenario (<NA> where n is too small)."""
    rows = {}
    data = measured(samples)
    for scenario in scenario_order(samples):  # a scenario whose every request failed keeps its (empty) row
        values = data.loc[data["scenario"] == scenario, metric].dropna().to_numpy(float)
        median_ci, p95_ci = stats.bootstrap_ci(values, "median"), stats.bootstrap_ci(values, "p95")
        rows[scenario] = {
            "median": float(np.median(values)) if len(values) else np.nan,
            "median_low": median_ci.low if median_ci else np.nan,
            "median_high": median_ci.high if median_ci else np.nan,
            "p95": stats.percentile(values, 0.95),
            "p95_low": p95_ci.low if p95_ci else np.nan,
            "p95_high": p95_ci.high if p95_ci else np.nan,
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("scenario").astype("Float64")


def compare_to(samples: pd.DataFrame, baseline: str, metric: str = "ttfb_ms") -> pd.DataFrame:
    """Every other scenario against `baseline`: medians, change, ratio and its interval, test, effect, verdict."""
    data = measured(samples)
    before = data.loc[data["scenario"] == baseline, metric].dropna().to_numpy(float)
    rows = []
    for scenario in scenario_order(samples):
        if scenario == baseline:
            continue
        after = data.loc[data["scenario"] == scenario, metric].dropna().to_numpy(float)
        if len(before) == 0 or len(after) == 0:
            continue
        c = stats.compare(before, after)
        rows.append(
            {
                "scenario": scenario,
                "n_before": c.n_before,
                "n_after": c.n_after,
                "median_before": c.median_before,
                "median_after": c.median_after,
                "change_pct": c.change_pct,
                "ratio": c.ratio,
                "ratio_low": c.ratio_ci.low if c.ratio_ci else np.nan,
                "ratio_high": c.ratio_ci.high if c.ratio_ci else np.nan,
                "p_value": c.p_value,
                "cliffs_delta": c.cliffs_delta,
                "verdict": c.verdict,
            }
        )
    return pd.DataFrame(rows)


def concurrency_table(samples: pd.DataFrame, metric: str = "ttft_ms") -> pd.DataFrame:
    """Per scenario and concurrency level: n, p50/p90/p95 of `metric` (where n supports them), client queueing.

    Empty unless the run swept concurrency.
    """
    data = measured(samples)
    if data["concurrency"].nunique() < 2:
        return pd.DataFrame()
    rows = {}
    for (scenario, level), group in data.groupby(["scenario", "concurrency"], sort=False):
        values = group[metric].dropna().to_numpy(float)
        rows[(scenario, int(level))] = {
            "n": len(values),
            "p50": float(np.median(values)) if len(values) else np.nan,
            "p90": stats.percentile(values, 0.90),
            "p95": stats.percentile(values, 0.95),
            "client_queue_ms": group["client_queue_ms"].mean(),
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index = pd.MultiIndex.from_tuples(table.index, names=["scenario", "concurrency"])
    return table.astype({"p90": "Float64", "p95": "Float64"})
