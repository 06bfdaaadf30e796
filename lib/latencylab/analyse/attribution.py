"""Every millisecond of each request's first byte attributed: client and network, server wait, load, prompt
processing, first token — parts that add up to the measured value (TTFB or TTFT, the study's metric).

What each server's own figures cover (read from their sources):

- Ollama (server/routes.go): `load_duration` runs from the handler's entry to the moment the scheduler hands
  over a runner — a real load, or waiting behind another request's load of the same model, or only the
  scheduler's own few milliseconds when the model was resident. `total_duration` runs to the final chunk;
  the runner's slot wait (llm/server.go `s.sem.Acquire`) is in it and in no other duration, so
  `total − load − prompt_eval − eval` is time the server held the request without working on it.
- The first token is sampled from the prompt's own logits, with no decode step before it: Ollama's runner
  (llama/runner/runner.go) ends `prompt_eval_duration` when the prompt's batch is decoded and samples the
  first token from it; llama-server (tools/server) ends `timings.prompt_ms` when the first token is sampled.
  `eval_count` / `predicted_n` count that token, but their durations hold one decode step fewer. So the
  first-token part is 0 wherever the server times the prompt, and its delivery is in the client's part.
- llama-server reports no load and no wait: a load is derived by the runner (TTFT − prompt), and the wait
  is derived here as what is left beyond the scenario's quickest delivery (`wait_source` = "derived").

Unknown stays unknown (NaN), never 0: where a server gives no figures, the first byte is `unattributed_ms`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from latencylab.analyse.stats import numeric
from latencylab.core.durations import keep_alive_seconds

PARTS = ("client_network_ms", "server_wait_ms", "loading_ms", "prompt_ms", "first_token_ms", "unattributed_ms")
PAID = ("cold", "reload")


def keep_alive_s(value: object) -> float:
    """A sample's keep_alive in seconds (a number as given, or a Go duration); NaN when unset or unreadable."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.nan
    try:
        return keep_alive_seconds(float(value))  # "2" as the study's number 2 was stored
    except (TypeError, ValueError):
        try:
            return keep_alive_seconds(str(value))
        except ValueError:
            return math.nan


def attribute(data: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per request of `data` (measured, successful samples with `run` and `scenario`), a column per part
    of `metric` (PARTS, ms; NaN where unknown), where the wait came from (`wait_source`), and the load events:
    `load_event` (-1: none), `loaded` (this request made the server load), `cold_start` (the scenario's first
    load, which its first request paid) and `reload_reason` (keep_alive, server_keep_alive, evicted, options,
    unknown)."""
    value = numeric(data[metric])
    state = data["state"].astype(str)
    reported = numeric(data["load_ms"])
    from_server = data["load_ms_source"].astype(str) == "server"
    prompt = numeric(data["prompt_eval_ms"])
    total, eval_ms = numeric(data["total_ms"]), numeric(data["eval_ms"]).fillna(0.0)
    warm = state == "warm"
    load = loading(state, reported)
    # the scheduler's time on a request that loaded nothing is waiting (Ollama's load_duration on a resident model)
    scheduler = reported.where(warm & from_server, 0.0).fillna(0.0)
    held = (total - reported.fillna(0.0) - prompt - eval_ms).clip(lower=0.0)
    wait = (held + scheduler).where(total.notna() & prompt.notna())
    first = pd.Series(0.0, index=data.index).where(prompt.notna())
    out = pd.DataFrame({"metric_ms": value, "server_wait_ms": wait, "loading_ms": load, "prompt_ms": prompt,
                        "first_token_ms": first}, index=data.index)
    out["wait_source"] = np.where(wait.notna(), "server", None)
    _derive_waits(out, data)
    _close(out)
    out = out.join(_load_events(data, value))
    return out


def loading(state: pd.Series, reported: pd.Series) -> pd.Series:
    """The load each request paid, one definition for every table: the server's figure where the model was not
    resident (cold, reload); 0 where it was (warm): Ollama's load_duration of a few ms on a resident model is the
    scheduler's time, waiting, not a load; unknown (NaN) where residency is unknown."""
    return reported.where(state.isin(PAID), pd.Series(0.0, index=state.index).where(state == "warm"))


def later(g: pd.DataFrame) -> pd.DataFrame:
    """The requests after the scenario's first and its cold start (the phase table's `subsequent`; a load that
    several requests waited for is the cold start of each): all of them where nothing is left."""
    after = ~g["cold_start"].to_numpy(dtype=bool)
    if "phase" in g:
        after &= (g["phase"] != "first").to_numpy(dtype=bool, na_value=True)
    after = g[after]
    return after if len(after) else g


def load_figures(g: pd.DataFrame, metric: str) -> dict[str, float]:
    """One scenario's loads (`attribute`'s rows of it), the quantities `findings.LABELS` names: the later requests
    and those that made the server load, the mean load over those, the mean over every later request and its share
    of their mean `metric`; the cold start's load and its `metric`. The load table and the reloads cause read these,
    so that a load said twice is said with one value."""
    g = g[[c for c in ("phase", "cold_start", "loaded", "loading_ms", metric) if c in g]]  # a copy of these only
    after = later(g)
    loaded = after[after["loaded"].to_numpy(dtype=bool)]
    latency = _mean(after[metric])
    amount = float(after["loading_ms"].fillna(0.0).mean()) if len(loaded) else 0.0
    cold = g[g["cold_start"].to_numpy(dtype=bool)]
    return {"requests_later": len(after), "loads_later": len(loaded), "load_mean_loaded": _mean(loaded["loading_ms"]),
            "load_per_request": amount, "metric_mean_later": latency,
            "load_share": amount / latency if latency else math.nan,
            "load_cold_start": _mean(cold.loc[cold["loaded"].to_numpy(dtype=bool), "loading_ms"]),
            "metric_cold_start": float(numeric(cold[metric]).median()) if len(cold) else math.nan}


def _mean(values: pd.Series) -> float:
    known = numeric(values).dropna()
    return float(known.mean()) if len(known) else math.nan


def _derive_waits(out: pd.DataFrame, data: pd.DataFrame) -> None:
    """Where the server times the prompt but not the whole request (llama-server), the wait is what is left
    beyond the scenario's quickest delivery: that floor is client and network, the rest waited."""
    for _, index in data.groupby(["run", "scenario"], sort=False).groups.items():
        part = out.loc[index]
        todo = part["server_wait_ms"].isna() & part["prompt_ms"].notna() & part["loading_ms"].notna()
        if not todo.any():
            continue
        rest = (part["metric_ms"] - part["loading_ms"] - part["prompt_ms"] - part["first_token_ms"]).clip(lower=0.0)
        floor = float(rest[todo].min())
        out.loc[rest[todo].index, "server_wait_ms"] = rest[todo] - floor
        out.loc[rest[todo].index, "wait_source"] = "derived"


def _close(out: pd.DataFrame) -> None:
    """Client and network = the measured value less the server's parts; a server part that ran past the first
    byte (TTFB before the first token, clock differences) is cut so that the parts still add up."""
    server = ["server_wait_ms", "loading_ms", "prompt_ms", "first_token_ms"]
    known = out[server].notna().all(axis=1) & out["metric_ms"].notna()
    left = out["metric_ms"].where(known)
    for name in server:  # in the order they happen
        cut = out[name].where(known).clip(upper=left.clip(lower=0.0))
        out.loc[known, name] = cut[known]
        left = left - cut
    out["client_network_ms"] = left.where(known)
    # Without the server's figures the first byte stays whole: what is known of it (a load of 0 on a resident
    # model) is kept, the rest is unattributed.
    unknown = ~known & out["metric_ms"].notna()
    parts = out.loc[unknown, server].fillna(0.0).sum(axis=1)
    out["unattributed_ms"] = (out["metric_ms"] - parts).where(unknown)


def _codes(data: pd.DataFrame, columns: list[str], dropna: bool) -> np.ndarray:
    """Each row's group number under `columns`, groups numbered as they first appear (-1: a missing key, when
    `dropna`)."""
    return data.groupby(columns, sort=False, dropna=dropna).ngroup().fillna(-1).to_numpy(dtype=int)


def _seconds(values: pd.Series) -> np.ndarray:
    """`keep_alive_s` of each value, computed once per distinct value."""
    codes, distinct = pd.factorize(values)
    return np.array([*(keep_alive_s(v) for v in distinct), math.nan])[codes]  # code -1 (missing): NaN


def _load_events(data: pd.DataFrame, value: pd.Series) -> pd.DataFrame:
    """Which requests made the server load: requests of one model that found it unloaded while another's load
    was under way waited for that load (Ollama reports the load to each of them); only the first loaded."""
    starts = numeric(data["started_at"]).to_numpy()
    ends = starts + numeric(data["e2e_ms"]).fillna(0.0).to_numpy() / 1000
    first_byte = starts + value.fillna(0.0).to_numpy() / 1000
    state = data["state"].astype(str).to_numpy()
    model = _codes(data, ["run_id", "model"], dropna=False)
    event, loaded = np.full(len(data), -1), np.zeros(len(data), dtype=bool)
    # One pass over the paid requests of each (run, model), in the order they were sent: whether a request
    # waited depends on the load the previous event opened, so this chain is walked, not vectorised.
    order = np.lexsort((starts, model))  # stable: equal start times keep the frame's order
    order = order[np.isin(state[order], PAID)]
    count, group, open_until = 0, None, -math.inf
    for i, g, start in zip(order.tolist(), model[order].tolist(), starts[order].tolist(), strict=True):
        if g != group:
            group, open_until = g, -math.inf
        if start < open_until:  # it arrived while this model's load was under way
            event[i] = count
            continue
        count += 1
        open_until = first_byte[i]
        event[i], loaded[i] = count, True
    cold = _cold_starts(data, event)
    reason = _reasons(data, loaded & ~cold, starts, ends, model, state)
    return pd.DataFrame({"load_event": event, "loaded": loaded, "cold_start": cold,
                         "reload_reason": pd.Series(reason, index=data.index, dtype=object)}, index=data.index)


def _cold_starts(data: pd.DataFrame, event: np.ndarray) -> np.ndarray:
    """The requests of each scenario's first load: the load its first request (phase `first`) was part of."""
    key = _codes(data, ["run", "scenario"], dropna=True)
    first = np.flatnonzero((data["phase"] == "first").to_numpy(dtype=bool, na_value=False) & (key >= 0))
    groups, at = np.unique(key[first], return_index=True)  # each scenario's first `first` request
    of_key = np.full(key.max() + 2 if len(key) else 1, 0)
    of_key[groups] = event[first[at]]
    opened = of_key[key]  # key -1 reads the last slot: 0, no event
    return (key >= 0) & (opened > 0) & (event == opened)


def _reasons(data: pd.DataFrame, loaded: np.ndarray, starts: np.ndarray, ends: np.ndarray, model: np.ndarray,
             state: np.ndarray) -> np.ndarray:
    """Why the server loaded for each `loaded` request: its runner options changed, its keep_alive ran out during
    the idle gap, or another model was served in between (and evicted it); else unknown. None elsewhere.

    Per (run, model), vectorised: the previous request is the one that ended last at or before the load began
    (the first in the frame's order among equal ends), and another model was served in between when a request
    of it sent before the load ended after that previous one."""
    reason = np.full(len(data), None, dtype=object)
    reason[loaded & (state == "reload")] = "options"
    known = (data["run_id"].notna() & data["model"].notna()).to_numpy()
    asked = loaded & (state != "reload")
    reason[asked & ~known] = "unknown"  # a request without its run or model has no previous one
    keep, expired = _seconds(data["keep_alive"]), np.full(len(data), "keep_alive", dtype=object)
    if "server_keep_alive" in data:  # the request gave none: the server's default, if known
        default = np.isnan(keep)
        keep = np.where(default, _seconds(data["server_keep_alive"]), keep)
        expired[default] = "server_keep_alive"
    runs = data.groupby("run_id", sort=False).indices  # each run's rows (a missing run id has none)
    position = np.arange(len(data))
    timed = ~np.isnan(starts)
    for g in np.unique(model[asked & known]):
        members = np.flatnonzero((model == g) & timed)
        queries = np.flatnonzero((model == g) & asked & known)
        by_end = members[np.lexsort((-position[members], ends[members]))]
        previous = np.searchsorted(ends[by_end], starts[queries], side="right") - 1
        found = (previous >= 0) & timed[queries]
        reason[queries[~found]] = "unknown"
        queries, last = queries[found], by_end[previous[found]]
        gone = ~np.isnan(keep[last]) & (starts[queries] - ends[last] > keep[last])
        reason[queries[gone]] = expired[last[gone]]
        queries, last = queries[~gone], last[~gone]
        if not len(queries):
            continue
        # another model's requests of this run sent before the load (compared as pandas compares: a missing
        # model is another one only where its dtype says so): the latest end among them
        in_run = runs[data["run_id"].iat[queries[0]]]
        others = in_run[(data["model"].iloc[in_run] != data["model"].iat[queries[0]]).to_numpy(dtype=bool,
                                                                                            na_value=False)]
        others = others[timed[others]]
        others = others[np.argsort(starts[others], kind="stable")]
        latest = np.maximum.accumulate(ends[others]) if len(others) else np.array([-math.inf])
        before = np.searchsorted(starts[others], starts[queries], side="left") - 1
        served = (before >= 0) & (latest[np.maximum(before, 0)] > ends[last])
        reason[queries] = np.where(served, "evicted", "unknown")
    return reason


def exemplars(data: pd.DataFrame, keys: list[tuple[str, str]]) -> pd.DataFrame:
    """Per key, the requests a waterfall shows: the cold start (when there was one), the typical request after
    it (the one nearest the median) and the slowest after it; indexed by run, scenario and `which`."""
    rows = {}
    shown = data.loc[data["metric_ms"].notna(), ["run", "scenario", "metric_ms", "cold_start", *PARTS]]
    groups = dict(list(shown.groupby(["run", "scenario"], sort=False)))  # the columns a waterfall reads only
    for key in keys:
        if (g := groups.get(key)) is None:
            continue
        later = g[~g["cold_start"]] if (~g["cold_start"]).any() else g
        picks = {"median": (later["metric_ms"] - later["metric_ms"].median()).abs().idxmin(),
                 "slowest": later["metric_ms"].idxmax()}
        if g["cold_start"].any():
            picks = {"cold_start": g.loc[g["cold_start"], "metric_ms"].idxmax(), **picks}
        for which, i in picks.items():
            rows[(*key, which)] = {"metric_ms": g.at[i, "metric_ms"], **{p: g.at[i, p] for p in PARTS}}
    table = pd.DataFrame.from_dict(rows, orient="index", columns=["metric_ms", *PARTS])
    table.index = pd.MultiIndex.from_tuples(list(rows), names=["run", "scenario", "which"])
    return table
