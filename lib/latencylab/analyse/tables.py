"""Per-scenario tables of a samples DataFrame: which samples count, summaries, phases, intervals, loads,
residency, the TTFT decomposition, sweeps, concurrency and errors.

A scenario is keyed by (run label, scenario name): tables are indexed by `run` and `scenario`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from latencylab.analyse import stats
from latencylab.analyse.attribution import later, load_figures, loading
from latencylab.analyse.findings import Key

KEY = ["run", "scenario"]
SUMMARY_COLUMNS = ["n", "errors", "mean", "median", "min", "max", "std", "cv", "p90", "p95", "p99"]


class Groups(Mapping[Any, pd.DataFrame]):
    """A frame's groups by `by`, each taken when asked for: a dict of them all would copy the whole frame at once
    (10⁶ requests: gigabytes), where one group at a time is held only while it is used."""

    def __init__(self, frame: pd.DataFrame, by: str | list[str]) -> None:
        self._frame, self._at = frame, frame.groupby(by, sort=False).indices

    def __getitem__(self, key: Any) -> pd.DataFrame:
        return self._frame.iloc[self._at[key]]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._at)

    def __len__(self) -> int:
        return len(self._at)


def keyed(samples: pd.DataFrame, labels: dict[str, str] | None = None) -> pd.DataFrame:
    """The samples with a `run` column: each sample's run label (`labels[run_id]`, else its run id)."""
    if "run" in samples.columns and not labels:
        return samples
    run_ids = samples["run_id"].astype("string").fillna("")
    frame = samples.copy(deep=False)  # copy-on-write: the new column is this frame's alone, the rest is shared
    frame["run"] = (run_ids.map(labels).fillna(run_ids) if labels else run_ids).astype(str)
    return frame


def measured(samples: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Samples that count in latency figures: successful and not warm-up; only `columns` where given (a row filter
    copies every column it keeps: of 10⁶ samples, gigabytes for the few a table reads)."""
    keep = samples["ok"].fillna(False) & ~samples["warmup"].fillna(False)
    return samples.loc[keep, list(columns)] if columns is not None else samples[keep]


def scenario_order(samples: pd.DataFrame) -> list[Key]:
    """(run, scenario) keys in the order their runs come and, within a run, as they first appear."""
    frame = keyed(samples)
    if frame.empty:
        return []
    first = frame.groupby(KEY, sort=False)["seq"].min()
    runs = {run: i for i, run in enumerate(dict.fromkeys(frame["run"]))}
    return sorted(first.index, key=lambda key: (runs[key[0]], first[key]))


def _sorted(table: pd.DataFrame, samples: pd.DataFrame, extra: dict[str, dict[Any, int]] | None = None
            ) -> pd.DataFrame:
    """`table` (indexed by run, scenario and maybe more) in the study's order of keys."""
    if table.empty:
        return table
    order = {key: i for i, key in enumerate(scenario_order(samples))}
    extra = extra or {}
    names = list(table.index.names)

    def rank(index: tuple[Any, ...]) -> tuple[Any, ...]:
        return (order.get(tuple(index[:2]), len(order)), *(extra.get(n, {}).get(v, v) for n, v in
                                                            zip(names[2:], index[2:], strict=True)))

    return table.reindex(sorted(table.index, key=rank))


def summary(samples: pd.DataFrame, metric: str = "ttfb_ms", by: Sequence[str] = KEY) -> pd.DataFrame:
    """n, errors, mean, median, min, max, std, CV (std/mean) and p90/p95/p99 of `metric` per group.

    Failed requests never enter a latency figure; they are counted in `errors`. A percentile that n
    cannot support (p99 needs 100 requests) is <NA>, never extrapolated.
    """
    samples, by = keyed(samples), list(by)
    attempted = samples[~samples["warmup"].fillna(False)]
    values = measured(samples, list(dict.fromkeys([*by, "seq", metric]))).sort_values("seq").groupby(
        by, observed=True, sort=False)[metric]
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


def phase_summary(samples: pd.DataFrame, metric: str = "ttfb_ms") -> pd.DataFrame:
    """`summary` per key for the phases `first`, `subsequent` and `all`."""
    samples = keyed(samples)
    read = samples[[*KEY, "phase", "seq", "ok", "warmup", metric]]  # only these: the table doubles the rows it reads
    both = pd.concat([read, read.assign(phase="all")], ignore_index=True)
    table = summary(both, metric, by=[*KEY, "phase"])
    return _sorted(table, samples, {"phase": {"first": 0, "subsequent": 1, "all": 2}})


def intervals(samples: pd.DataFrame, metric: str = "ttfb_ms") -> pd.DataFrame:
    """Seeded bootstrap 95 % intervals of the median and p95 of `metric` per key (<NA> where n is too small)."""
    samples = keyed(samples)
    data = measured(samples, [*KEY, metric])
    groups = dict(list(data.groupby(KEY, sort=False)[metric]))
    rows = {}
    for key in scenario_order(samples):  # a scenario whose every request failed keeps its (empty) row
        values = groups[key].dropna().to_numpy(float) if key in groups else np.array([])
        cis = stats.bootstrap_cis(values, ("median", "p95"))  # one set of resamples for both
        median_ci, p95_ci = cis["median"], cis["p95"]
        rows[key] = {
            "median": float(np.median(values)) if len(values) else np.nan,
            "median_low": median_ci.low if median_ci else np.nan,
            "median_high": median_ci.high if median_ci else np.nan,
            "p95": stats.percentile(values, 0.95),
            "p95_low": p95_ci.low if p95_ci else np.nan,
            "p95_high": p95_ci.high if p95_ci else np.nan,
        }
    table = pd.DataFrame.from_dict(rows, orient="index").astype("Float64")
    table.index = pd.MultiIndex.from_tuples(list(rows), names=KEY)
    return table


def decompose(samples: pd.DataFrame) -> pd.DataFrame:
    """Each successful sample's TTFT split into load, prompt processing, first token and the rest.

    A load is `attribution.loading`'s: the server's figure where the model was not resident, 0 where it was (the
    few ms Ollama reports then are the scheduler's, in the rest), unknown (NaN) where residency is unknown. The
    first token is sampled from the prompt's own logits (Ollama's runner and llama-server both end their prompt
    time there): no decode step comes before it, so it is 0 wherever the prompt time is known.
    The rest (queueing, network, client) is computed, never measured: `rest_negative` flags samples where
    the server's figures add up to more than the client saw (clock or reporting differences).
    """
    ok = keyed(samples)
    ok = ok[ok["ok"].fillna(False)]
    first_token = pd.Series(0.0, index=ok.index).where(ok["prompt_eval_ms"].notna())
    load = loading(ok["state"].astype(str), stats.numeric(ok["load_ms"]))  # the attribution's load: 0 when resident
    parts = pd.DataFrame(
        {
            "run": ok["run"],
            "scenario": ok["scenario"],
            "state": ok["state"],
            "warmup": ok["warmup"],
            "load": load,
            "prompt": ok["prompt_eval_ms"],
            "first_token": first_token,
            "ttft": ok["ttft_ms"],
        }
    )
    parts["rest"] = parts["ttft"] - parts["load"] - parts["prompt"] - parts["first_token"]
    parts["rest_negative"] = (parts["rest"] < -1e-3).fillna(False)  # below a µs is rounding, not a contradiction
    return parts


def decomposition_table(samples: pd.DataFrame) -> pd.DataFrame:
    """Mean of each TTFT component per key and state (ms; <NA> where unknown), measured requests only."""
    parts = decompose(samples)
    parts = parts[~parts["warmup"].fillna(False)]
    columns = ["load", "prompt", "first_token", "rest", "ttft"]
    grouped = parts.groupby([*KEY, "state"], observed=True, sort=False)
    table = grouped[columns].mean()
    table["n"] = grouped.size()
    table["rest_negative"] = grouped["rest_negative"].sum()
    return _sorted(table, keyed(samples))


def load_share(requests: pd.DataFrame, metric: str = "ttfb_ms") -> pd.DataFrame:
    """Per key, of the measured requests with their attribution (`diagnosis.diagnose`'s): how many found the model
    unloaded (cold, reload: `paid`, of `n`; `paid_load_share`), whether residency is unknown or the samples
    external, and the loads as `attribution.load_figures` counts them, the reloads cause's figures (the later
    requests, those that loaded, the mean load over those and over every later request, its share of their mean
    `metric`, the cold start's load and `metric`); the median `metric` of the later requests that loaded
    (`median_paid`) and of those that did not (`median_warm`)."""
    columns = [*KEY, "phase", "state", "backend", "load_ms_source", metric, "loaded", "cold_start", "loading_ms"]
    rows = {}  # a group at a time, of the columns read here only (each group is a copy of what it holds)
    for key, group in Groups(requests[[c for c in columns if c in requests]], KEY).items():
        paid = group["state"].isin(["cold", "reload"])
        after = later(group)
        loaded = after["loaded"].to_numpy(dtype=bool)
        rows[key] = {
            "n": len(group),
            "cold": int((group["state"] == "cold").sum()),
            "reload": int((group["state"] == "reload").sum()),
            "paid": int(paid.sum()),
            "unknown": int((group["state"] == "unknown").sum()),
            "external": bool((group["backend"] == "external").all()),
            "paid_load_share": float(paid.mean()) if len(group) else np.nan,
            "load_source": ", ".join(sorted(group.loc[paid, "load_ms_source"].dropna().unique())),
            **load_figures(group, metric),
            "median_paid": after.loc[loaded, metric].median() if loaded.any() else np.nan,
            "median_warm": after.loc[~loaded, metric].median() if (~loaded).any() else np.nan,
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    if rows:
        table.index = pd.MultiIndex.from_tuples(list(rows), names=KEY)
    return table


def residency(samples: pd.DataFrame) -> pd.DataFrame:
    """Per key: where the model sat (size, GPU share, fits in VRAM, process memory), from the probes."""
    data = keyed(samples)
    data = data[data["ok"].fillna(False)]
    mib = 2**20
    grouped = data.groupby(KEY, sort=False)
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
    return table


def sweep(samples: pd.DataFrame, metric: str = "ttfb_ms") -> pd.DataFrame:
    """Per keep_alive × idle gap: share of measured requests that paid a load, and mean `metric`.

    Empty unless the run varies keep_alive or the idle gap (a sweep study).
    """
    data = measured(samples, ["keep_alive", "idle_gap_s", "state", metric])
    if data.empty or (data["keep_alive"].nunique() < 2 and data["idle_gap_s"].nunique() < 2):
        return pd.DataFrame()
    data["paid_load"] = data["state"].isin(["cold", "reload"])
    grouped = data.groupby(["keep_alive", "idle_gap_s"], sort=True)
    return pd.DataFrame({"n": grouped.size(), "cold_share": grouped["paid_load"].mean(),
                         "mean": grouped[metric].mean()})


def concurrency_table(samples: pd.DataFrame, metric: str = "ttft_ms") -> pd.DataFrame:
    """Per key and concurrency level: n, p50/p90/p95 of `metric` (where n supports them), client queueing.

    Empty unless the run swept concurrency.
    """
    frame = keyed(samples)
    data = measured(frame, [c for c in (*KEY, metric, "concurrency", "client_queue_ms", "level") if c in frame])
    if "level" in data:  # a rate sweep's passes have their concurrency: they belong to the Capacity section
        data = data[data["level"].isna()]
    if data["concurrency"].nunique() < 2:
        return pd.DataFrame()
    rows = {}
    for (run, scenario, level), group in data.groupby([*KEY, "concurrency"], sort=False):
        values = group[metric].dropna().to_numpy(float)
        rows[(run, scenario, int(level))] = {
            "n": len(values),
            "p50": float(np.median(values)) if len(values) else np.nan,
            "p90": stats.percentile(values, 0.90),
            "p95": stats.percentile(values, 0.95),
            "client_queue_ms": group["client_queue_ms"].mean(),
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index = pd.MultiIndex.from_tuples(list(rows), names=[*KEY, "concurrency"])
    return table.astype({"p90": "Float64", "p95": "Float64"})


def errors_table(samples: pd.DataFrame) -> pd.DataFrame:
    """Failed requests per key and error kind: count and the first message (200 characters)."""
    data = keyed(samples)
    failed = data[~data["ok"].fillna(False)]
    rows = [{"run": run, "scenario": scenario, "kind": str(kind), "count": len(group),
             "example": str(group["error"].iloc[0])[:200]}
            for (run, scenario, kind), group in failed.groupby([*KEY, "error_kind"], sort=False, dropna=False)]
    return pd.DataFrame(rows, columns=["run", "scenario", "kind", "count", "example"])
