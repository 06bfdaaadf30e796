"""What the server said of each request, from its own metrics scraped during the run (`runs.server_metrics`): the
most requests it held waiting for a slot while the request waited for its first byte, whether it preempted
requests (vLLM: for want of KV-cache memory on the GPU) while the request was in flight, and the prompt tokens it
served from its cache where the request was alone in flight between two scrapes (its cached-tokens counter's rise is
then the request's own)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from latencylab.analyse.stats import numeric

# the columns `per_request` adds: NaN where no scrape of the request's server fell in its window
WAITING, WAITING_SOURCE, SCRAPES = "server_waiting", "server_waiting_source", "server_scrapes"
PREEMPTED, PREEMPTED_SOURCE = "server_preempted", "server_preempted_source"
CACHED, CACHED_SOURCE = "server_cached", "server_cached_source"


def _windows(g: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each request's start, first byte (its wait) and end, in Unix seconds."""
    start = numeric(g["started_at"]).to_numpy(float)
    first = start + numeric(g[metric] if metric in g else g["e2e_ms"]).to_numpy(float) / 1000
    end = start + numeric(g["e2e_ms"]).to_numpy(float) / 1000
    return start, first, end


def _sorted(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    t, value = rows["t"].to_numpy(float), rows["value"].to_numpy(float)
    order = np.argsort(t)
    return t[order], value[order]


def _around(t: np.ndarray, start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The scrapes around each window: the last before its start and the first after its end (index, and whether
    both exist)."""
    before, after = np.searchsorted(t, start) - 1, np.searchsorted(t, end)
    return np.stack([before, after]), (before >= 0) & (after < len(t))


def _rise(t: np.ndarray, value: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """A counter's rise from the scrape before each window to the scrape after it (NaN without both)."""
    (before, after), known = _around(t, start, end)
    rise = np.full(len(start), np.nan)
    rise[known] = value[after[known]] - value[before[known]]
    return rise


def _alone(t: np.ndarray, start: np.ndarray, end: np.ndarray, run: pd.DataFrame) -> np.ndarray:
    """Whether each window, widened to the scrapes around it, held no other request of `run` (every request of the
    run, any scenario: they share what the server counts)."""
    (before, after), known = _around(t, start, end)
    low, high = t[np.clip(before, 0, len(t) - 1)], t[np.clip(after, 0, len(t) - 1)]
    starts = numeric(run["started_at"]).dropna()
    ends = np.sort((starts + numeric(run["e2e_ms"]).reindex(starts.index).fillna(0.0) / 1000).to_numpy(float))
    starts = np.sort(starts.to_numpy(float))
    # requests in flight during [low, high]: those started before its end less those ended by its start (itself too)
    overlapping = np.searchsorted(starts, high) - np.searchsorted(ends, low, side="right")
    return known & (overlapping <= 1)


def per_request(samples: pd.DataFrame, series: pd.DataFrame, metric: str = "ttfb_ms") -> pd.DataFrame:
    """`samples` with the server's own account of each request (`WAITING`, `SCRAPES`, `PREEMPTED`, `CACHED`)."""
    out = samples.assign(**{WAITING: np.nan, SCRAPES: 0.0, PREEMPTED: np.nan, CACHED: np.nan,
                            WAITING_SOURCE: None, PREEMPTED_SOURCE: None, CACHED_SOURCE: None})
    if series.empty or samples.empty:
        return out
    by_key = {key: rows for key, rows in series.groupby(["run", "scenario", "quantity"], sort=False)}
    runs = dict(list(samples.groupby("run_id", sort=False)))
    for (run, scenario), g in samples.groupby(["run_id", "scenario"], sort=False):
        start, first, end = _windows(g, metric)
        if (waiting := by_key.get((run, scenario, "waiting"))) is not None:
            t, value = _sorted(waiting)
            lo, hi = np.searchsorted(t, start), np.searchsorted(t, first, side="right")
            most = np.array([value[a:b].max() if b > a else np.nan for a, b in zip(lo, hi, strict=True)])
            out.loc[g.index, WAITING] = most
            out.loc[g.index, SCRAPES] = hi - lo
            out.loc[g.index, WAITING_SOURCE] = str(waiting["source"].iloc[0])
        if (preemptions := by_key.get((run, scenario, "preemptions"))) is not None:
            out.loc[g.index, PREEMPTED] = _rise(*_sorted(preemptions), start, end)
            out.loc[g.index, PREEMPTED_SOURCE] = str(preemptions["source"].iloc[0])
        if (cached := by_key.get((run, scenario, "cached_tokens"))) is not None:
            t, value = _sorted(cached)
            own = _alone(t, start, end, runs[run])  # another request's hits would be counted with its own
            out.loc[g.index, CACHED] = np.where(own, _rise(t, value, start, end), np.nan)
            out.loc[g.index, CACHED_SOURCE] = np.where(own, str(cached["source"].iloc[0]), None)
    return out
