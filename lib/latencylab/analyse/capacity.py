"""How much load a server holds (issue 20): per level of a rate sweep, what was offered and achieved, how many
requests met the study's SLOs (attainment, goodput), the latency percentiles with intervals and the client's
own lag; then the saturation point: the highest offered rate the server held.

Pure functions of the samples (pandas in, numbers and flags out); words are the catalogs'.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from latencylab.analyse import stats
from latencylab.analyse.findings import RunInfo, Saturation
from latencylab.analyse.tables import KEY, keyed
from latencylab.plan.study import SloSpec

# Achieved ≈ offered: completions kept at least this share of the arrival rate. 0.9 tolerates the spread of a
# short Poisson level (30 arrivals: ±18 % in their own rate) since both rates are read over the same requests.
ACHIEVED_SHARE = 0.9
# The client kept the offered rate when it sent at least this share of it and its lag stayed small: the median
# of (sent − scheduled) under CLIENT_LAG_MS or under a quarter of the mean gap between arrivals, whichever is larger
# (its p95 is reported: a busy machine delays a few sends without losing the rate).
SENT_SHARE = 0.95
CLIENT_LAG_MS = 10.0
SLO_METRICS = ("ttft_ms", "tpot_ms", "e2e_ms")
LATENCIES = ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms")


def meets_slo(samples: pd.DataFrame, slo: SloSpec) -> pd.Series:
    """Per request: succeeded, and every limit of `slo` met (a figure that is missing does not meet it)."""
    good = samples["ok"].fillna(False).astype(bool)
    for metric in SLO_METRICS:
        if (limit := getattr(slo, metric)) is None:
            continue
        good &= samples[metric].le(limit).fillna(False).astype(bool)
    return good


def _rate(times: np.ndarray) -> float | None:
    """Events per second over their own span: (n − 1) / (last − first); None under two events."""
    times = np.sort(times[~np.isnan(times)])
    if len(times) < 2 or times[-1] <= times[0]:
        return None
    return (len(times) - 1) / (times[-1] - times[0])


def _quantiles(values: np.ndarray, prefix: str) -> dict[str, Any]:
    """p50, p95, p99 (where n supports them) and the intervals of the median and the p95."""
    out: dict[str, Any] = {f"{prefix}_p50": float(np.median(values)) if len(values) else None,
                           f"{prefix}_p95": stats.percentile(values, 0.95),
                           f"{prefix}_p99": stats.percentile(values, 0.99)}
    intervals = stats.bootstrap_cis(values)
    for name, key in (("median", "p50"), ("p95", "p95")):
        interval = intervals[name]
        out[f"{prefix}_{key}_low"] = None if interval is None else interval.low
        out[f"{prefix}_{key}_high"] = None if interval is None else interval.high
    return out


def levels(samples: pd.DataFrame, slo: SloSpec) -> pd.DataFrame:
    """One row per run, scenario and load level (a rate, or a sweep's synchronous or throughput pass).

    Rates are read over the level's own requests: offered from their scheduled arrivals, sent from when they
    reached the network, achieved from when they ended ((n − 1) / span); goodput is achieved × attainment
    (requests per second that met every limit), the DistServe and vLLM figure. Empty unless the run has
    levels (a rate list or a sweep).
    """
    data = keyed(samples)
    if "level" not in data or data["level"].isna().all():
        return pd.DataFrame()
    data = data[~data["warmup"].fillna(False).astype(bool)]  # failed requests count: as errors, as misses
    data = data[data["level"].notna()]
    rows = []
    for (run, scenario, level), group in data.groupby([*KEY, "level"], sort=False):
        ok = group[group["ok"].fillna(False).astype(bool)]
        ends = (ok["started_at"] + ok["e2e_ms"] / 1000).to_numpy(float)
        nominal = group["offered_rate_per_s"].dropna()
        throughput_pass = (group["sweep_pass"] == "throughput").any()  # sent all at once: no arrival rate
        offered = None if throughput_pass else _rate(group["scheduled_at"].to_numpy(float))
        achieved = _rate(ends)
        good = meets_slo(group, slo)
        attainment = float(good.mean()) if len(group) else None
        lag = group["client_queue_ms"].dropna().to_numpy(float)
        sent = _rate(group["started_at"].to_numpy(float))
        row: dict[str, Any] = {
            "run": run, "scenario": scenario, "level": int(level),
            "kind": str(group["sweep_pass"].dropna().iloc[0]) if group["sweep_pass"].notna().any() else "rate",
            "nominal_rate_per_s": float(nominal.iloc[0]) if len(nominal) else None,
            "concurrency": int(group["concurrency"].max()) if group["concurrency"].notna().any() else None,
            "requests": len(group), "errors": int((~group["ok"].fillna(False).astype(bool)).sum()),
            "offered_rate_per_s": offered, "sent_rate_per_s": sent, "achieved_rate_per_s": achieved,
            "output_tokens_per_s": None if not achieved or ok.empty else
            float(ok["output_tokens"].fillna(0).mean()) * achieved,
            "attainment": attainment,
            "goodput_per_s": None if achieved is None or attainment is None else achieved * attainment,
            "client_lag_p50_ms": float(np.median(lag)) if len(lag) else None,
            "client_lag_p95_ms": stats.percentile(lag, 0.95) if len(lag) >= 20 else (
                float(lag.max()) if len(lag) else None),
        }
        for metric in LATENCIES:
            series = ok[metric]
            values = (np.concatenate([np.asarray(v, float) for v in series if isinstance(v, list | np.ndarray)])
                      if metric == "itl_ms" and len(series) else series.dropna().to_numpy(float))
            row.update(_quantiles(values, metric.removesuffix("_ms")))
        if "server_wait_ms" in ok and ok["server_wait_ms"].notna().any():
            row["server_wait_p50_ms"] = float(ok["server_wait_ms"].median())
        row["client_limited"] = client_limited(row)
        rows.append(row)
    table = pd.DataFrame(rows)
    return _queueing(table)


def client_limited(row: dict[str, Any]) -> bool:
    """Whether the client could not keep the level's offered rate: it sent late or slower than scheduled."""
    offered, sent, lag = row["offered_rate_per_s"], row["sent_rate_per_s"], row["client_lag_p50_ms"]
    if row["kind"] != "rate" or offered is None:
        return False
    slow = sent is not None and sent < SENT_SHARE * offered
    late = lag is not None and lag > max(CLIENT_LAG_MS, 250.0 / offered)  # a quarter of the mean gap, in ms
    return bool(slow or late)


def _queueing(table: pd.DataFrame) -> pd.DataFrame:
    """`queue_p50_ms`: each level's median TTFT above the same key's single-request TTFT (its synchronous pass,
    else its lowest rate): the wait the load adds, where the server reports no wait of its own."""
    table = table.copy()
    table["queue_p50_ms"] = np.nan
    for _, group in table.groupby(KEY, sort=False):
        sync = group[group["kind"] == "synchronous"]
        rates = group[group["kind"] == "rate"].sort_values("offered_rate_per_s")
        base = sync if not sync.empty else rates.head(1)
        if base.empty or base["ttft_p50"].isna().all():
            continue
        table.loc[group.index, "queue_p50_ms"] = (group["ttft_p50"] - float(base["ttft_p50"].iloc[0])).clip(lower=0)
    return table


def held(row: pd.Series, goal: float) -> bool:
    """A level the server held: completions kept up with arrivals and enough requests met the SLO.

    Kept up: achieved ≥ ACHIEVED_SHARE × the lower of the level's nominal rate and the rate its arrivals came at.
    A short Poisson level can bunch its arrivals well above its nominal rate (30 arrivals at 15/s came at 25/s
    once here) and a server of 20/s did not fail the level for that; one whose arrivals came slower than
    nominal is judged on those.
    """
    offered, achieved, attainment = row["offered_rate_per_s"], row["achieved_rate_per_s"], row["attainment"]
    if pd.isna(offered) or pd.isna(achieved) or pd.isna(attainment):
        return False
    nominal = row["nominal_rate_per_s"]
    asked = offered if pd.isna(nominal) else min(offered, nominal)
    return bool(achieved >= ACHIEVED_SHARE * asked and attainment >= goal)


def saturation(table: pd.DataFrame, goal: float) -> list[Saturation]:
    """Per run and scenario, walking the rate levels upwards: the last one held before the first that broke."""
    found = []
    if table.empty:
        return found
    for (run, scenario), group in table.groupby(KEY, sort=False):
        rates = group[group["kind"] == "rate"].sort_values("nominal_rate_per_s")
        if rates.empty:
            continue
        last: pd.Series | None = None
        broke: pd.Series | None = None
        for _, row in rates.iterrows():
            if held(row, goal):
                last = row
                continue
            broke = row
            break
        rate = None if last is None else float(last["nominal_rate_per_s"])
        if broke is None:
            status, high = "held_all", None
        elif bool(broke["client_limited"]):
            status, high = "client_limited", None
        else:
            status, high = ("found" if last is not None else "none_held"), float(broke["nominal_rate_per_s"])
        grows = {}
        if last is not None and broke is not None:
            for column in ("queue_p50_ms", "client_lag_p50_ms", "server_wait_p50_ms", "ttft_p95"):
                if column in rates and pd.notna(last.get(column)) and pd.notna(broke.get(column)):
                    grows[column] = (float(last[column]), float(broke[column]))
        found.append(Saturation(str(run), str(scenario), status, rate, high, goal, grows))
    return found


def capacity(samples: pd.DataFrame, runs: Sequence[RunInfo]) -> tuple[pd.DataFrame, list[Saturation]]:
    """Every run's levels, judged against its own study's SLOs, and each key's saturation point."""
    tables, points = [], []
    for run in runs:
        slo = SloSpec.model_validate(run.slo) if run.slo else SloSpec()
        table = levels(samples[samples["run_id"] == run.run_id], slo)
        if not table.empty:
            tables.append(table)
            points += saturation(table, slo.goal)
    return (pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()), points
