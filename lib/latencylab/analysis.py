"""Pure functions of a samples DataFrame: which samples count, per-scenario tables, and `findings()`.

A scenario is keyed by (run label, scenario name): tables are indexed by `run` and `scenario`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from . import stats
from .errors import LatencyLabError
from .findings import FigureFacts, Findings, Headline, Key, RunInfo, Step

KEY = ["run", "scenario"]
SUMMARY_COLUMNS = ["n", "errors", "mean", "median", "min", "max", "std", "cv", "p90", "p95", "p99"]
TARGET_KEYS = ("first_ms", "subsequent_ms", "mean_ms", "mean_stretch_ms", "cv", "fits_in_vram")
STEP_ORDER = ("errors", "keep_loaded", "vram", "minor_errors", "serialised", "variance", "more_samples", "all_met")
PAID_LOAD_STEP = 0.2  # this share of requests paying a load (or failing) makes a step, and ranks it first


def keyed(samples: pd.DataFrame, labels: dict[str, str] | None = None) -> pd.DataFrame:
    """The samples with a `run` column: each sample's run label (`labels[run_id]`, else its run id)."""
    if "run" in samples.columns and not labels:
        return samples
    run_ids = samples["run_id"].astype("string").fillna("")
    frame = samples.copy()
    frame["run"] = (run_ids.map(labels).fillna(run_ids) if labels else run_ids).astype(str)
    return frame


def measured(samples: pd.DataFrame) -> pd.DataFrame:
    """Samples that count in latency figures: successful and not warm-up."""
    return samples[samples["ok"].fillna(False) & ~samples["warmup"].fillna(False)]


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


def phase_summary(samples: pd.DataFrame, metric: str = "ttfb_ms") -> pd.DataFrame:
    """`summary` per key for the phases `first`, `subsequent` and `all`."""
    samples = keyed(samples)
    both = pd.concat([samples, samples.assign(phase="all")], ignore_index=True)
    table = summary(both, metric, by=[*KEY, "phase"])
    return _sorted(table, samples, {"phase": {"first": 0, "subsequent": 1, "all": 2}})


def intervals(samples: pd.DataFrame, metric: str = "ttfb_ms") -> pd.DataFrame:
    """Seeded bootstrap 95 % intervals of the median and p95 of `metric` per key (<NA> where n is too small)."""
    samples = keyed(samples)
    data = measured(samples)
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

    A load is unknown (NaN), not zero, unless the server reported it or the model was resident (warm).
    The rest (queueing, network, client) is computed, never measured: `rest_negative` flags samples where
    the server's figures add up to more than the client saw (clock or reporting differences).
    """
    ok = keyed(samples)
    ok = ok[ok["ok"].fillna(False)]
    first_token = ok["eval_ms"] / ok["output_tokens"].where(ok["output_tokens"] > 0)
    load = ok["load_ms"].astype("Float64").where(ok["load_ms"].notna() | (ok["state"] != "warm"), 0.0)
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


def load_share(samples: pd.DataFrame, metric: str = "ttfb_ms") -> pd.DataFrame:
    """Per key: how many measured requests paid a model load, their mean load, cold vs warm medians."""
    data = measured(keyed(samples))
    rows = {}
    for key, group in data.groupby(KEY, sort=False):
        paid = group[group["state"].isin(["cold", "reload"])]
        warm = group[group["state"] == "warm"]
        total = group[metric].sum()
        rows[key] = {
            "n": len(group),
            "cold": int((group["state"] == "cold").sum()),
            "reload": int((group["state"] == "reload").sum()),
            "paid": len(paid),
            "unknown": int((group["state"] == "unknown").sum()),
            "external": bool((group["backend"] == "external").all()),
            "paid_load_share": len(paid) / len(group) if len(group) else np.nan,
            "mean_load_ms": paid["load_ms"].mean() if len(paid) else np.nan,
            "load_source": ", ".join(sorted(paid["load_ms_source"].dropna().unique())),
            "median_paid": paid[metric].median() if len(paid) else np.nan,
            "median_warm": warm[metric].median() if len(warm) else np.nan,
            "load_share_of_total": paid["load_ms"].sum() / total if total else np.nan,
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
    data = measured(keyed(samples))
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


def sweep(samples: pd.DataFrame, metric: str = "ttfb_ms") -> pd.DataFrame:
    """Per keep_alive × idle gap: share of measured requests that paid a load, and mean `metric`.

    Empty unless the run varies keep_alive or the idle gap (a sweep study).
    """
    data = measured(samples).copy()
    if data.empty or (data["keep_alive"].nunique() < 2 and data["idle_gap_s"].nunique() < 2):
        return pd.DataFrame()
    data["paid_load"] = data["state"].isin(["cold", "reload"])
    grouped = data.groupby(["keep_alive", "idle_gap_s"], sort=True)
    return pd.DataFrame({"n": grouped.size(), "cold_share": grouped["paid_load"].mean(),
                         "mean": grouped[metric].mean()})


def compare_to(samples: pd.DataFrame, baseline: Key, metric: str = "ttfb_ms") -> pd.DataFrame:
    """Every other key against `baseline`: medians, change, ratio and its interval, test, effect, verdict."""
    samples = keyed(samples)
    data = measured(samples)
    groups = dict(list(data.groupby(KEY, sort=False)[metric]))
    before = groups[baseline].dropna().to_numpy(float) if baseline in groups else np.array([])
    rows = []
    for key in scenario_order(samples):
        after = groups[key].dropna().to_numpy(float) if key in groups else np.array([])
        if key == baseline or len(before) == 0 or len(after) == 0:
            continue
        c = stats.compare(before, after)
        rows.append({"run": key[0], "scenario": key[1], "n_before": c.n_before, "n_after": c.n_after,
                     "median_before": c.median_before, "median_after": c.median_after, "change_pct": c.change_pct,
                     "ratio": c.ratio, "ratio_low": c.ratio_ci.low if c.ratio_ci else np.nan,
                     "ratio_high": c.ratio_ci.high if c.ratio_ci else np.nan, "p_value": c.p_value,
                     "cliffs_delta": c.cliffs_delta, "verdict": c.verdict})
    columns = ["run", "scenario", "n_before", "n_after", "median_before", "median_after", "change_pct", "ratio",
               "ratio_low", "ratio_high", "p_value", "cliffs_delta", "verdict"]
    return pd.DataFrame(rows, columns=columns)


RESULT_MEASURES = (("stat_first", "first", "max"), ("stat_subsequent", "subsequent", "median"),
                   ("stat_mean", "all", "mean"),
                   ("stat_median", "all", "median"), ("stat_p95", "all", "p95"), ("stat_cv", "all", "cv"))


def results(phases: pd.DataFrame, baseline: Key, keys: Sequence[Key]) -> pd.DataFrame:
    """Each figure of every other key beside the baseline's, with its relative change (−0.6 is 60 % less)."""
    rows = []
    for key in keys:
        for measure, phase, column in RESULT_MEASURES if key != baseline else ():
            if (*baseline, phase) not in phases.index or (*key, phase) not in phases.index:
                continue
            old, new = phases.loc[(*baseline, phase), column], phases.loc[(*key, phase), column]
            change = (new - old) / old if pd.notna(old) and pd.notna(new) and old else np.nan
            rows.append((*key, measure, old, new, change))
    return pd.DataFrame(rows, columns=["run", "scenario", "measure", "before", "after", "change"])


def figure_facts(phases: pd.DataFrame, samples: pd.DataFrame, decomposition: pd.DataFrame, targets: pd.DataFrame,
                 goals: dict[str, Any]) -> FigureFacts:
    """The numbers the figures' titles state."""
    everything = phases.xs("all", level="phase")
    medians = {k: float(v) for k, v in everything["median"].dropna().items()}
    cv = everything["cv"].dropna().astype(float)
    data = measured(samples)
    share = None
    if not decomposition.empty and decomposition["load"].notna().any():
        means = decomposition.groupby(level=KEY, sort=False)[["load", "ttft"]].mean()
        weight = (means["load"] / means["ttft"]).dropna()
        share = (weight.idxmax(), float(weight.max())) if len(weight) and weight.max() > 0 else None
    return FigureFacts(
        fastest=min(medians, key=medians.get) if medians else None,
        slowest=max(medians, key=medians.get) if medians else None,
        medians=medians,
        paid=int(data["state"].isin(["cold", "reload"]).sum()),
        measured=len(data),
        paid_share=float(data["state"].isin(["cold", "reload"]).mean()) if len(data) else None,
        cv_below_goal=int((cv < goals["cv"]).sum()) if goals.get("cv") else None,
        cv_count=len(cv),
        targets_passed=int((targets["status"] == "pass").sum()),
        targets_judged=len(targets),
        load_share_of_ttft=share,
        has_ttft=bool(samples["ttft_ms"].notna().any()),
        targets_measured=bool(targets["measured"].notna().any()),
        rest_negative=int(decomposition["rest_negative"].sum()) if not decomposition.empty else 0,
    )


def concurrency_table(samples: pd.DataFrame, metric: str = "ttft_ms") -> pd.DataFrame:
    """Per key and concurrency level: n, p50/p90/p95 of `metric` (where n supports them), client queueing.

    Empty unless the run swept concurrency.
    """
    data = measured(keyed(samples))
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


def setting_changes(runs: Sequence[RunInfo], keys: Sequence[Key], baseline: Key) -> pd.DataFrame:
    """Runner settings (model, keep_alive, options…) of each key that differ from the baseline's."""
    settings = {(r.label, name): s for r in runs for name, s in r.scenarios.items()}
    base = settings.get(baseline)
    rows = []
    for key in keys:
        if base is None or key == baseline or key not in settings:
            continue
        mine = settings[key]
        for name in mine:
            if name == "options":
                old_options, new_options = base.get("options") or {}, mine.get("options") or {}
                rows += [(*key, option, old_options.get(option), new_options.get(option))
                         for option in sorted(set(old_options) | set(new_options))
                         if old_options.get(option) != new_options.get(option)]
            elif base.get(name) != mine.get(name):
                rows.append((*key, name, base.get(name), mine.get(name)))
    return pd.DataFrame(rows, columns=["run", "scenario", "setting", "before", "after"])


def next_steps(load: pd.DataFrame, residency_table: pd.DataFrame, targets: pd.DataFrame, comparisons: pd.DataFrame,
               concurrency: pd.DataFrame, errors: pd.DataFrame, attempted: pd.Series) -> list[Step]:
    """What the data calls for, most important first (errors, loads, VRAM, serialising, variance, samples)."""
    steps = []
    for key, count in errors.groupby(KEY, sort=False)["count"].sum().items():
        kinds = errors[(errors["run"] == key[0]) & (errors["scenario"] == key[1])].set_index("kind")["count"]
        steps.append(Step("errors", key, {"share": count / attempted[key], "kinds": kinds.to_dict()}))
    for key, row in load.iterrows():
        if row["paid_load_share"] >= PAID_LOAD_STEP:
            steps.append(Step("keep_loaded", key, {"share": row["paid_load_share"], "load": row["mean_load_ms"],
                                                   "explained": row["load_share_of_total"]}))
    for key, row in residency_table.iterrows():
        if pd.notna(row["gpu_share"]) and row["gpu_share"] < 1:
            steps.append(Step("vram", key, {"share": row["gpu_share"]}))
    if not concurrency.empty:
        for key, group in concurrency.reset_index().groupby(KEY, sort=False):
            low, high = group.iloc[0], group.iloc[-1]
            if low["p50"] and high["p50"] / low["p50"] > 2:
                steps.append(Step("serialised", key, {"factor": high["p50"] / low["p50"],
                                                      "low": int(low["concurrency"]), "high": int(high["concurrency"])}))
    for row in targets[(targets["target"] == "cv") & (targets["status"] == "fail")].itertuples():
        steps.append(Step("variance", (row.run, row.scenario), {"cv": row.measured, "goal": row.goal}))
    for row in comparisons[comparisons["verdict"].isin(["no_difference", "too_few"])].itertuples():
        steps.append(Step("more_samples", (row.run, row.scenario), {"n": min(row.n_before, row.n_after)}))
    for key, group in targets.groupby(KEY, sort=False):
        if (group["status"] == "pass").all():
            steps.append(Step("all_met", key))
    def rank(step: Step) -> int:
        minor = step.kind == "errors" and step.values["share"] < PAID_LOAD_STEP  # a few failures rank after the cause
        return STEP_ORDER.index("minor_errors" if minor else step.kind)

    return sorted(steps, key=rank)


def headline(baseline: Key, comparisons: pd.DataFrame, changes: pd.DataFrame, targets: pd.DataFrame,
             steps: list[Step]) -> Headline:
    """The summary's facts: the fastest scenario against the baseline, targets passed, the main finding."""
    passed = {key: (int((group["status"] == "pass").sum()), len(group))
              for key, group in targets.groupby(KEY, sort=False)}
    finding = steps[0] if steps else None
    if comparisons.empty:
        return Headline(None, None, None, None, None, None, None, [], passed, finding)
    best = comparisons.loc[comparisons["ratio"].astype(float).idxmin()]
    key = (best["run"], best["scenario"])
    changed = changes[(changes["run"] == key[0]) & (changes["scenario"] == key[1])]["setting"].tolist()

    def number(value: Any) -> float | None:
        return None if value is None or pd.isna(value) else float(value)

    return Headline(key, number(best["ratio"]), number(best["ratio_low"]), number(best["ratio_high"]),
                    str(best["verdict"]), number(best["median_before"]), number(best["median_after"]), changed,
                    passed, finding)


class BadBaseline(LatencyLabError, ValueError):
    """A baseline that names no scenario of the runs reported (or names one ambiguously)."""


def resolve_baseline(keys: Sequence[Key], baseline: str | None) -> Key:
    """The key a baseline names: `RUN:scenario` (a run's label or id), or a scenario name when only one run
    has it; default the first key."""
    if not keys:
        raise ValueError("no samples: there is nothing to report")
    if not baseline:
        return keys[0]
    exact = [k for k in keys if baseline in (f"{k[0]}:{k[1]}", f"{k[0]}/{k[1]}")]
    named = [k for k in keys if k[1] == baseline]
    if exact or len(named) == 1:
        return (exact or named)[0]
    if named:
        choices = ", ".join(f"{k[0]}:{k[1]}" for k in named)
        raise BadBaseline(f"baseline {baseline!r} is a scenario of several runs: name one as RUN:scenario ({choices})")
    names = ", ".join(dict.fromkeys(f"{k[0]}:{k[1]}" if len({r for r, _ in keys}) > 1 else k[1] for k in keys))
    raise BadBaseline(f"baseline {baseline!r} is not a scenario of these runs ({names})")


# runs compared, server facts (issue 11)

def labelled_baseline(runs: Sequence[RunInfo], baseline: str | None) -> str | None:
    """`RUN_ID:scenario` written with the run's label (`before:scenario`), so that either names the key."""
    head, colon, name = (baseline or "").partition(":")
    ids = {r.run_id: r.label for r in runs}
    return f"{ids[head]}:{name}" if colon and head in ids else baseline

def across_runs(samples: pd.DataFrame, reference: str, metric: str = "ttfb_ms") -> pd.DataFrame:
    """Each scenario of every other run against the same scenario of run `reference` (a label): medians,
    change, ratio and its interval, test, verdict. Empty with one run (or pooled runs)."""
    samples = keyed(samples)
    data = measured(samples)
    groups = dict(list(data.groupby(KEY, sort=False)[metric]))
    rows = []
    for run, scenario in scenario_order(samples):
        base = (reference, scenario)
        if run == reference or base not in groups or (run, scenario) not in groups:
            continue
        before = groups[base].dropna().to_numpy(float)
        after = groups[(run, scenario)].dropna().to_numpy(float)
        if len(before) == 0 or len(after) == 0:
            continue
        c = stats.compare(before, after)
        rows.append({"run": run, "scenario": scenario, "reference": reference, "n_before": c.n_before,
                     "n_after": c.n_after, "median_before": c.median_before, "median_after": c.median_after,
                     "change_pct": c.change_pct, "ratio": c.ratio,
                     "ratio_low": c.ratio_ci.low if c.ratio_ci else np.nan,
                     "ratio_high": c.ratio_ci.high if c.ratio_ci else np.nan, "p_value": c.p_value,
                     "verdict": c.verdict})
    columns = ["run", "scenario", "reference", "n_before", "n_after", "median_before", "median_after", "change_pct",
               "ratio", "ratio_low", "ratio_high", "p_value", "verdict"]
    return pd.DataFrame(rows, columns=columns)


def spread(samples: pd.DataFrame, metric: str = "ttfb_ms") -> pd.DataFrame:
    """Per key that pools several runs: the median of `metric` in each run, their min, max, max/min and CV.

    Empty unless some key's samples come from more than one run id (`--pool`).
    """
    data = measured(keyed(samples))
    rows = {}
    for key, group in data.groupby(KEY, sort=False):
        per_run = group.groupby("run_id", sort=False)[metric].median().dropna().astype(float)
        if group["run_id"].nunique() < 2:
            continue
        values = per_run.to_numpy(float)
        rows[key] = {"runs": len(per_run), "medians": {str(k): float(v) for k, v in per_run.items()},
                     "low": values.min() if len(values) else np.nan, "high": values.max() if len(values) else np.nan,
                     "range_ratio": values.max() / values.min() if len(values) and values.min() > 0 else np.nan,
                     "cv": values.std(ddof=1) / values.mean() if len(values) > 1 and values.mean() else np.nan}
    columns = ["runs", "medians", "low", "high", "range_ratio", "cv"]
    table = pd.DataFrame.from_dict(rows, orient="index", columns=columns)
    if rows:
        table.index = pd.MultiIndex.from_tuples(list(rows), names=KEY)
    return _sorted(table, keyed(samples))


MODEL_FIELDS = ("family", "parameter_size", "quantization_level", "context_length", "block_count", "size_bytes",
                "digest")
UNCOMPARED = {("gpu", "memory_used_bytes")}  # shown, never a difference: it changes from minute to minute


def server_facts(run: RunInfo) -> dict[tuple[str, str], dict[str, Any]]:
    """A run's server facts by subject, (kind, name) → field → value: each server (version, engine build),
    each model, each GPU and the host; from facts.json (`before`, else `after`) and run.json."""
    moment = run.facts.get("before") or run.facts.get("after") or {}
    facts: dict[tuple[str, str], dict[str, Any]] = {}
    engine = {"version": run.server_version.removeprefix("version: ") or None,  # run.json's, for the embedded engine
              **({"backend": run.engine_backend} if run.engine_backend else {})}
    servers = moment.get("servers") or []
    kinds = [s.get("kind") for s in servers]
    for server in servers:
        kind = str(server.get("kind"))
        name = kind if kinds.count(kind) == 1 else f"{kind} {server.get('base_url') or ''}".strip()
        facts[("server", name)] = {"version": server.get("version"), "reachable": server.get("reachable")}
        if kind == "embedded":  # facts.json has its GGUF files; run.json the engine's version and build
            facts[("server", name)].update({**engine, "version": server.get("version") or engine["version"]})
        for model in server.get("models") or []:
            facts[("model", str(model.get("name")))] = {k: model.get(k) for k in MODEL_FIELDS}
    if not servers and run.server:  # a run without facts.json: its server as run.json names it
        facts[("server", "embedded" if run.server.startswith("embedded") else run.server)] = engine
    gpus = [{"name": g.get("name"), "memory_total_bytes": g.get("memory_total_bytes"),
             "memory_used_bytes": g.get("memory_used_bytes"), "driver": g.get("driver_version")} for g in run.gpus]
    if not gpus and moment.get("gpu"):
        g = moment["gpu"]
        gpus = [{"name": g.get("name"), "memory_total_bytes": g.get("total_bytes"),
                 "memory_used_bytes": g.get("used_bytes"), "driver": g.get("driver")}]
    for index, gpu in enumerate(gpus):
        facts[("gpu", str(index))] = gpu
    host = moment.get("host") or {}
    facts[("host", "")] = {"hostname": run.hostname or None, "system": host.get("system") or run.platform or None,
                           "cpu": host.get("cpu"), "cores": host.get("cores_logical") or run.cpu_count,
                           "ram_bytes": host.get("ram_bytes") or run.ram_bytes}
    return facts


def fact_differences(facts: dict[str, dict[tuple[str, str], dict[str, Any]]], reference: str) -> pd.DataFrame:
    """Every server fact of each run (label → `server_facts`) that differs from run `reference`'s: a server's
    version, a model's quantization or digest under the same name, the GPU, the host; one row per fact."""
    base = facts.get(reference, {})
    rows = []
    for run, mine in facts.items():
        if run == reference:
            continue
        for subject in dict.fromkeys([*base, *mine]):
            old, new = base.get(subject), mine.get(subject)
            if old is None or new is None:  # a model only one run used is another scenario, not a change
                if subject[0] != "model":
                    rows.append((run, reference, *subject, "present", old is not None, new is not None))
                continue
            for name in dict.fromkeys([*old, *new]):
                if (subject[0], name) in UNCOMPARED or old.get(name) == new.get(name):
                    continue
                if old.get(name) is None or new.get(name) is None:
                    continue  # one run's record says nothing of it: unknown, not a difference
                rows.append((run, reference, *subject, name, old.get(name), new.get(name)))
    return pd.DataFrame(rows, columns=["run", "reference", "kind", "name", "field", "before", "after"])


def findings(samples: pd.DataFrame, runs: Sequence[RunInfo], *, baseline: str | None = None,
             targets: dict[str, Any] | None = None, external: str | None = None,
             checks: dict[str, list[dict[str, Any]]] | None = None) -> Findings:
    """Everything a report states about `samples` (from `runs`), computed once; `targets` decide the metric;
    `checks` are the findings of each run's check.json, by run id."""
    from .diagnosis import diagnose  # diagnosis builds on this module's tables
    targets = dict(targets or {})
    metric = targets.get("metric") or "ttfb_ms"
    frame = keyed(samples, {r.run_id: r.label for r in runs})
    keys = scenario_order(frame)
    base = resolve_baseline(keys, labelled_baseline(runs, baseline))
    names = [k[1] for k in keys]
    labels = {k: k[1] if names.count(k[1]) == 1 else f"{k[1]} · {k[0]}" for k in keys}
    frame["label"] = pd.Series(list(zip(frame["run"], frame["scenario"], strict=True)), index=frame.index).map(labels)
    target_table = evaluate_targets(frame, targets, metric) if targets else evaluate_targets(frame.iloc[:0], {})
    comparisons = compare_to(frame, base, metric)
    changes = setting_changes(runs, keys, base)
    load, where = load_share(frame, metric), residency(frame)
    concurrency, errors = concurrency_table(frame), errors_table(frame)
    attempted = frame[~frame["warmup"].fillna(False)].groupby(KEY, sort=False).size()
    steps = next_steps(load, where, target_table, comparisons, concurrency, errors, attempted)
    phases, decomposition = phase_summary(frame, metric), decomposition_table(frame)
    reference = base[0] if external is None or len(runs) == 0 else runs[0].label
    by_run = {r.run_id if r.pooled else r.label: server_facts(r) for r in runs}  # pooled runs: each by its id
    fact_reference = next((r.run_id if r.pooled else r.label for r in runs if r.label == reference),
                          runs[0].label if runs else "")
    labelled = {r.label: (checks or {})[r.run_id] for r in runs if r.run_id in (checks or {})}
    measured_figures, diagnosis, requests = diagnose(frame, keys, metric, targets, steps, labelled)
    return Findings(
        metric=metric, goals=targets, baseline=base, keys=keys, labels=labels, runs=list(runs), external=external,
        phases=phases, intervals=intervals(frame, metric), load=load, residency=where,
        decomposition=decomposition, changes=changes, comparisons=comparisons, results=results(phases, base, keys),
        targets=target_table, facts=figure_facts(phases, frame, decomposition, target_table, targets),
        concurrency=concurrency, sweep=sweep(frame, metric) if any(r.sweep for r in runs) else pd.DataFrame(),
        errors=errors, steps=steps, headline=headline(base, comparisons, changes, target_table, steps), samples=frame,
        across_runs=across_runs(frame, reference, metric), spread=spread(frame, metric), server_facts=by_run,
        differences=fact_differences(by_run, fact_reference),
        measured_figures=measured_figures, diagnosis=diagnosis, requests=requests,
    )
