"""Scenarios against a baseline, runs against a reference run, and what differs between runs' servers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from latencylab.analyse import stats
from latencylab.analyse.findings import Key, RunInfo
from latencylab.analyse.tables import KEY, _sorted, keyed, measured, scenario_order
from latencylab.core.errors import BadBaseline


# Two scenarios' requests are paired by prompt where at least this share of each found its prompt in the other:
# a few lost to errors still pair, prompts that run on across the run (`prompt_order: continue`) never do.
PAIRED_SHARE = 0.5


def prompt_pairs(before: pd.DataFrame, after: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """`metric` of the requests of `before` and of `after` that were sent the same prompt, matched by
    `prompt_index`; None where they cannot be paired: an index not recorded (a run from before it) or sent twice
    (pooled runs), or fewer than two pairs, or too few of either's requests matched (`PAIRED_SHARE`)."""
    if "prompt_index" not in before or "prompt_index" not in after:
        return None
    one, other = (frame.set_index("prompt_index")[metric] for frame in (before, after))
    if one.index.hasnans or other.index.hasnans or not (one.index.is_unique and other.index.is_unique):
        return None
    common = one.index.intersection(other.index, sort=True)
    if len(common) < 2 or len(common) < PAIRED_SHARE * max(len(one), len(other)):
        return None
    return one[common].to_numpy(float), other[common].to_numpy(float)


def compare_to(samples: pd.DataFrame, baseline: Key, metric: str = "ttfb_ms") -> pd.DataFrame:
    """Every other key against `baseline`: medians, change, ratio and its interval, test, effect, verdict; paired by
    prompt (`prompt_pairs`) where the two were sent the same prompts, the test used (`test`) and its `pairs` said."""
    samples = keyed(samples)
    data = measured(samples, [*KEY, metric, *(["prompt_index"] if "prompt_index" in samples else [])])
    data = data[data[metric].notna()]
    groups = dict(list(data.groupby(KEY, sort=False)))
    rows = []
    for key in scenario_order(samples):
        if key == baseline or baseline not in groups or key not in groups:
            continue
        before, after = groups[baseline], groups[key]
        c = stats.compare(before[metric].to_numpy(float), after[metric].to_numpy(float),
                          prompt_pairs(before, after, metric))
        rows.append({"run": key[0], "scenario": key[1], "n_before": c.n_before, "n_after": c.n_after,
                     "median_before": c.median_before, "median_after": c.median_after, "change_pct": c.change_pct,
                     "ratio": c.ratio, "ratio_low": c.ratio_ci.low if c.ratio_ci else np.nan,
                     "ratio_high": c.ratio_ci.high if c.ratio_ci else np.nan, "p_value": c.p_value,
                     "cliffs_delta": c.cliffs_delta, "verdict": c.verdict, "test": c.test, "pairs": c.pairs})
    columns = ["run", "scenario", "n_before", "n_after", "median_before", "median_after", "change_pct", "ratio",
               "ratio_low", "ratio_high", "p_value", "cliffs_delta", "verdict", "test", "pairs"]
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


def labelled_baseline(runs: Sequence[RunInfo], baseline: str | None) -> str | None:
    """`RUN_ID:scenario` written with the run's label (`before:scenario`), so that either names the key."""
    head, colon, name = (baseline or "").partition(":")
    ids = {r.run_id: r.label for r in runs}
    return f"{ids[head]}:{name}" if colon and head in ids else baseline


def across_runs(samples: pd.DataFrame, reference: str, metric: str = "ttfb_ms") -> pd.DataFrame:
    """Each scenario of every other run against the same scenario of run `reference` (a label): medians,
    change, ratio and its interval, test, verdict. Empty with one run (or pooled runs)."""
    samples = keyed(samples)
    data = measured(samples, [*KEY, metric])
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
    data = measured(keyed(samples), [*KEY, "run_id", metric])
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
CONFIG_UNKNOWN = "unknown"  # an Ollama server's configuration where its start log was not readable (publish words it)


def server_facts(run: RunInfo) -> dict[tuple[str, str], dict[str, Any]]:
    """A run's server facts by subject, (kind, name) → field → value: each server (version, engine build), an
    Ollama server's configuration (`config`), each model, each GPU and the host; from facts.json (`before`, else `after`) and run.json."""
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
        if kind == "ollama":  # its start log's settings (the bundled server's), else unknown: never the defaults
            facts[("config", name)] = {"config": server.get("config") or CONFIG_UNKNOWN}
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
                if old.get(name) in (None, CONFIG_UNKNOWN) or new.get(name) in (None, CONFIG_UNKNOWN):
                    continue  # one run's record says nothing of it: unknown, not a difference
                rows.append((run, reference, *subject, name, old.get(name), new.get(name)))
    return pd.DataFrame(rows, columns=["run", "reference", "kind", "name", "field", "before", "after"])
