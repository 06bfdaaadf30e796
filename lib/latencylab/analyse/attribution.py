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

from latencylab.analyse.stats import numeric as _float
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
    value = _float(data[metric])
    state = data["state"].astype(str)
    paid = state.isin(PAID)
    reported = _float(data["load_ms"])
    from_server = data["load_ms_source"].astype(str) == "server"
    prompt = _float(data["prompt_eval_ms"])
    total, eval_ms = _float(data["total_ms"]), _float(data["eval_ms"]).fillna(0.0)
    # The scheduler's time on a request that loaded nothing is waiting, not loading (Ollama's load_duration).
    # A resident model loaded nothing; where residency is unknown, so is the load.
    warm = state == "warm"
    load = reported.where(paid, pd.Series(0.0, index=data.index).where(warm))
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


def _load_events(data: pd.DataFrame, value: pd.Series) -> pd.DataFrame:
    """Which requests made the server load: requests of one model that found it unloaded while another's load
    was under way waited for that load (Ollama reports the load to each of them); only the first loaded."""
    events = pd.DataFrame({"load_event": -1, "loaded": False, "cold_start": False, "reload_reason": None},
                          index=data.index)
    starts = _float(data["started_at"])
    ends = starts + _float(data["e2e_ms"]).fillna(0.0) / 1000
    first_byte = starts + value.fillna(0.0) / 1000
    event = 0
    for _, group in data.groupby(["run_id", "model"], sort=False, dropna=False):
        order = group.index[np.argsort(starts[group.index].to_numpy(), kind="stable")]
        open_until = -math.inf
        for i in order:
            if data.at[i, "state"] not in PAID:
                continue
            if starts[i] < open_until:  # it arrived while this model's load was under way
                events.at[i, "load_event"] = event
                continue
            event += 1
            open_until = first_byte[i]
            events.loc[i, ["load_event", "loaded"]] = [event, True]
            events.at[i, "reload_reason"] = _reason(data, i, starts, ends)
    for _, group in data.groupby(["run", "scenario"], sort=False):
        first = group[group["phase"] == "first"]
        if len(first) and events.at[first.index[0], "load_event"] > 0:
            cold = events.loc[group.index, "load_event"] == events.at[first.index[0], "load_event"]
            events.loc[cold[cold].index, "cold_start"] = True
    events.loc[events["cold_start"], "reload_reason"] = None
    return events


def _reason(data: pd.DataFrame, i: object, starts: pd.Series, ends: pd.Series) -> str:
    """Why the server loaded for request `i`: its runner options changed, its keep_alive ran out during the idle
    gap, or another model was served in between (and evicted it); else unknown."""
    if data.at[i, "state"] == "reload":
        return "options"
    same = data[(data["run_id"] == data.at[i, "run_id"]) & (data["model"] == data.at[i, "model"])]
    before = ends[same.index][ends[same.index] <= starts[i]]
    if before.empty:
        return "unknown"
    last = before.idxmax()
    keep, expired = keep_alive_s(data.at[last, "keep_alive"]), "keep_alive"
    if math.isnan(keep) and "server_keep_alive" in data:  # the request gave none: the server's default, if known
        keep, expired = keep_alive_s(data.at[last, "server_keep_alive"]), "server_keep_alive"
    if not math.isnan(keep) and starts[i] - ends[last] > keep:
        return expired
    run = data[data["run_id"] == data.at[i, "run_id"]]
    other = run["model"] != data.at[i, "model"]
    between = run[(starts[run.index] < starts[i]) & (ends[run.index] > ends[last]) & other]
    return "evicted" if len(between) else "unknown"


def exemplars(data: pd.DataFrame, keys: list[tuple[str, str]]) -> pd.DataFrame:
    """Per key, the requests a waterfall shows: the cold start (when there was one), the typical request after
    it (the one nearest the median) and the slowest after it; indexed by run, scenario and `which`."""
    rows = {}
    for key in keys:
        g = data[(data["run"] == key[0]) & (data["scenario"] == key[1]) & data["metric_ms"].notna()]
        if g.empty:
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
