"""What the server said of each request, from its own metrics scraped during the run (`runs.server_metrics`): the
most requests it held waiting for a slot while the request waited for its first byte, and whether it preempted
requests (vLLM: for want of KV-cache memory on the GPU) while the request was in flight."""

from __future__ import annotations

import numpy as np
import pandas as pd

from latencylab.analyse.stats import numeric

# the columns `per_request` adds: NaN where no scrape of the request's server fell in its window
WAITING, WAITING_SOURCE, SCRAPES = "server_waiting", "server_waiting_source", "server_scrapes"
PREEMPTED, PREEMPTED_SOURCE = "server_preempted", "server_preempted_source"


def _windows(g: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each request's start, first byte (its wait) and end, in Unix seconds."""
    start = numeric(g["started_at"]).to_numpy(float)
    first = start + numeric(g[metric] if metric in g else g["e2e_ms"]).to_numpy(float) / 1000
    end = start + numeric(g["e2e_ms"]).to_numpy(float) / 1000
    return start, first, end


def per_request(samples: pd.DataFrame, series: pd.DataFrame, metric: str = "ttfb_ms") -> pd.DataFrame:
    """`samples` with the server's own account of each request (`WAITING`, `SCRAPES`, `PREEMPTED`)."""
    if series.empty or samples.empty:  # no server published any: the samples as they are, not a copy
        return samples
    out = samples.copy(deep=False)  # copy-on-write: the columns added here are its own, the rest is shared
    for column, empty in ((WAITING, np.nan), (SCRAPES, 0.0), (PREEMPTED, np.nan), (WAITING_SOURCE, None),
                          (PREEMPTED_SOURCE, None)):
        out[column] = empty
    by_key = {key: rows for key, rows in series.groupby(["run", "scenario", "quantity"], sort=False)}
    for (run, scenario), g in samples.groupby(["run_id", "scenario"], sort=False):
        start, first, end = _windows(g, metric)
        if (waiting := by_key.get((run, scenario, "waiting"))) is not None:
            t, value = waiting["t"].to_numpy(float), waiting["value"].to_numpy(float)
            order = np.argsort(t)
            t, value = t[order], value[order]
            lo, hi = np.searchsorted(t, start), np.searchsorted(t, first, side="right")
            most = np.array([value[a:b].max() if b > a else np.nan for a, b in zip(lo, hi, strict=True)])
            out.loc[g.index, WAITING] = most
            out.loc[g.index, SCRAPES] = hi - lo
            out.loc[g.index, WAITING_SOURCE] = str(waiting["source"].iloc[0])
        if (preemptions := by_key.get((run, scenario, "preemptions"))) is not None:
            t, value = preemptions["t"].to_numpy(float), preemptions["value"].to_numpy(float)
            order = np.argsort(t)
            t, value = t[order], value[order]
            before, after = np.searchsorted(t, start) - 1, np.searchsorted(t, end)  # the scrapes around it
            known = (before >= 0) & (after < len(t))
            rise = np.full(len(g), np.nan)
            rise[known] = value[after[known]] - value[before[known]]
            out.loc[g.index, PREEMPTED] = rise
            out.loc[g.index, PREEMPTED_SOURCE] = str(preemptions["source"].iloc[0])
    return out
