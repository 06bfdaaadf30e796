"""Every measured figure beside the latency metric, and the diagnosis: each cause of slow first bytes
(`analyse.causes.CAUSES`) put to the test per scenario, with a verdict and the numbers behind it.

Numbers and flags only; `document` and the catalogs word them. Tables are keyed by (run, scenario), like
those of `tables`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from latencylab.analyse import stats
from latencylab.analyse.attribution import PARTS, attribute
from latencylab.analyse.causes import CAUSES, base
from latencylab.analyse.causes.base import MIN_MODES_N, RESIDENT, TAIL, TARGET_SHARE, Context, scale_of
from latencylab.analyse.conversation import turns
from latencylab.analyse.findings import Diagnosis, Key, Modes, Step, Verdict
from latencylab.analyse.stats import numeric
from latencylab.analyse.tables import KEY, Groups
from latencylab.plan.check import GIB, MEMORY_RULES, Finding, confirm

# The figures of "Every measured figure", in the table's order.
FIGURES = ("decode_tps", "prefill_tps", "tpot_ms", "itl_ms", "e2e_ms", "output_tokens")
ITL_BOOTSTRAP_MAX = 100_000  # more pooled gaps: the interval comes from a seeded subsample (wider, never narrower)
ASHMAN_D = 2.0  # Ashman's D above 2: two clearly separated modes (Ashman, Bird & Zepf 1994)…
MODE_RATIO = 1.5  # …whose medians are this far apart (two modes 10 % apart are noise to a reader)
PROMPT_AGREEMENT = 0.9  # prompt length explains two modes when a token threshold sorts this share of requests


def per_request(samples: pd.DataFrame, in_flight: pd.DataFrame | None = None) -> pd.DataFrame:
    """The samples with decode_tps and its source (server's eval figures, else the client's), prefill_tps (of the
    tokens the server says it did not have cached; a conversation's turns are counted again in `diagnose`),
    residency (gpu / partial / cpu / unknown) and `overlapped` (another request of its run was in flight: of
    `in_flight`, the requests that may overlap them, where given; else of `samples`)."""
    data = samples.copy(deep=False)  # copy-on-write: the columns added here are its own, the rest is shared
    tokens, eval_ms = numeric(data["output_tokens"]), numeric(data["eval_ms"])
    by_server = (data["output_tokens_source"] == "server") & (eval_ms > 0) & (tokens > 0)
    span = numeric(data["e2e_ms"]) - numeric(data["ttft_ms"])
    client = ((tokens - 1) / span * 1000).where((tokens > 1) & (span > 0))
    data["decode_tps"] = (tokens / eval_ms * 1000).where(by_server, client)
    data["decode_source"] = np.where(by_server, "server", np.where(client.notna(), "client", None))
    data["prefill_tps"] = prefill_tps(numeric(data["prompt_tokens"]) - numeric(data["cached_tokens"]).fillna(0),
                                      numeric(data["prompt_eval_ms"]))
    share = numeric(data["gpu_share"])
    data["residency"] = np.select([share >= RESIDENT, share > 0, share == 0], ["gpu", "partial", "cpu"], "unknown")
    data["overlapped"] = _overlapped(data if in_flight is None else in_flight).reindex(data.index)
    return data


def prefill_tps(processed: pd.Series, prompt_ms: pd.Series) -> pd.Series:
    """Prompt tokens processed per second of prompt time (NaN where either is not above 0)."""
    return (processed / prompt_ms * 1000).where((processed > 0) & (prompt_ms > 0))


def _overlapped(data: pd.DataFrame) -> pd.Series:
    """Whether each request was in flight while another of its run was (from started_at and e2e_ms)."""
    out = pd.Series(False, index=data.index)
    for _, group in data.groupby("run_id", sort=False):
        start = numeric(group["started_at"]).to_numpy()
        end = start + numeric(group["e2e_ms"]).fillna(0).to_numpy() / 1000
        order = np.argsort(start, kind="stable")
        s, e = start[order], end[order]
        before = np.maximum.accumulate(np.concatenate(([-np.inf], e[:-1])))  # latest end of those sent earlier
        after = np.concatenate((s[1:], [np.inf]))  # the next one's start
        hit = (s < before) | (after < e)
        out.loc[group.index[order]] = hit
    return out


def _itl(group: pd.DataFrame) -> np.ndarray:
    """Every gap of the group's requests, pooled (straight into one array: no Python float per gap)."""
    lists = (gaps for gaps in group["itl_ms"] if isinstance(gaps, list | np.ndarray))
    return np.fromiter(itertools.chain.from_iterable(lists), dtype=float)


def _values(group: pd.DataFrame, name: str) -> np.ndarray:
    values = _itl(group) if name == "itl_ms" else numeric(group[name]).to_numpy()
    return values[np.isfinite(values)]


def figures_table(data: pd.DataFrame, keys: Sequence[Key]) -> pd.DataFrame:
    """Per key and figure: source, n, median and p95 with their 95 % intervals, and the median of the first and
    of the later requests. `data` is `per_request` of the measured samples."""
    groups = Groups(data[[*KEY, "phase", "decode_source", *FIGURES]], KEY)  # the columns read here, a group at a time
    rows = {}
    for key in keys:
        group = groups.get(key)
        if group is None:
            continue
        first_rows, later_rows = group["phase"] == "first", group["phase"] == "subsequent"
        for name in FIGURES:
            values = _values(group, name)
            if not len(values):
                continue
            sampled = values
            if len(values) > ITL_BOOTSTRAP_MAX:
                sampled = np.random.default_rng(stats.SEED).choice(values, ITL_BOOTSTRAP_MAX, replace=False)
            cis = stats.bootstrap_cis(sampled, ("median", "p95"))
            median_ci, p95_ci = cis["median"], cis["p95"]
            first = _values(group.loc[first_rows, [name]], name)
            later = _values(group.loc[later_rows, [name]], name)
            source = ""
            if name == "decode_tps":
                source = "+".join(sorted(group["decode_source"].dropna().unique()))
            rows[(*key, name)] = {
                "source": source, "n": len(values), "median": float(np.median(values)),
                "median_low": median_ci.low if median_ci else np.nan,
                "median_high": median_ci.high if median_ci else np.nan,
                "p95": stats.percentile(values, 0.95), "p95_low": p95_ci.low if p95_ci else np.nan,
                "p95_high": p95_ci.high if p95_ci else np.nan,
                "first": float(np.median(first)) if len(first) else np.nan,
                "subsequent": float(np.median(later)) if len(later) else np.nan,
            }
    columns = ["source", "n", "median", "median_low", "median_high", "p95", "p95_low", "p95_high", "first",
               "subsequent"]
    table = pd.DataFrame.from_dict(rows, orient="index", columns=columns)
    table.index = pd.MultiIndex.from_tuples(list(rows), names=[*KEY, "figure"]) if rows else \
        pd.MultiIndex.from_tuples([], names=[*KEY, "figure"])
    return table.astype({c: "Float64" for c in columns[2:]})


def attribution_table(groups: Mapping[Key, pd.DataFrame], keys: Sequence[Key], metric: str) -> pd.DataFrame:
    """Per key, the mean of each part of the first byte over the requests after the cold start (means add up
    as the parts do), how many, and where the wait came from."""
    rows = {}
    for key in keys:
        if (g := groups.get(key)) is None or "metric_ms" not in g:
            continue
        after = base.later(g)
        rows[key] = {"n": len(after), "metric_ms": base.mean(after["metric_ms"]),
                     **{p: base.mean(after[p]) for p in PARTS},
                     "wait_source": "+".join(sorted(after["wait_source"].dropna().unique())) or None}
    table = pd.DataFrame.from_dict(rows, orient="index")
    if rows:
        table.index = pd.MultiIndex.from_tuples(list(rows), names=KEY)
    return table


def _split(s: np.ndarray, smallest: int) -> tuple[int, float] | None:
    """Where sorted log values split into two modes (least spread), and Ashman's D; None unless bimodal."""
    n = len(s)
    cut = np.arange(max(2, smallest), n - max(2, smallest) + 1)
    if not len(cut):
        return None
    total, squares = np.concatenate(([0.0], np.cumsum(s))), np.concatenate(([0.0], np.cumsum(s**2)))
    low_sse = squares[cut] - total[cut] ** 2 / cut
    high_sse = (squares[n] - squares[cut]) - (total[n] - total[cut]) ** 2 / (n - cut)
    split = int(cut[np.argmin(low_sse + high_sse)])
    low, high = s[:split], s[split:]
    spread = math.sqrt(low.var(ddof=1) + high.var(ddof=1))
    d = math.inf if spread == 0 else math.sqrt(2) * (high.mean() - low.mean()) / spread
    if d < ASHMAN_D or np.median(high) - np.median(low) < math.log(MODE_RATIO):
        return None
    return split, float(d)


def _by_prompt(tokens: np.ndarray, in_high: np.ndarray) -> tuple[float, float]:
    """The prompt-token threshold that best sorts requests into the slow mode, and the share it sorts right
    (the lowest such threshold where several do as well)."""
    known = np.isfinite(tokens)
    if known.sum() < MIN_MODES_N or len(np.unique(tokens[known])) < 2:
        return math.nan, math.nan
    values, where = np.unique(tokens[known], return_inverse=True)
    high = in_high[known]
    # threshold values[k] sorts right the slow requests above it and the fast ones at or below it
    slow = np.bincount(where[high], minlength=len(values))
    fast = np.bincount(where[~high], minlength=len(values))
    right = (slow.sum() - np.cumsum(slow)[:-1]) + np.cumsum(fast)[:-1]
    best = int(np.argmax(right))
    return float(right[best] / len(where)), float(values[best])


def modes(g: pd.DataFrame, metric: str) -> Modes | None:
    """Two modes of `metric` (the split of log values with the least spread, Ashman's D ≥ 2), and whether a
    threshold on the prompt tokens processed (the floor's growth is on those too) sorts the requests into them;
    None when the distribution is not bimodal.

    When prompt length does not explain the two modes but does explain two modes within the faster one, those
    are the modes named, and the slower requests beyond them are counted apart (other work on the machine,
    loads)."""
    v = numeric(g[metric])
    g = g[v.notna() & (v > 0)]
    if len(g) < MIN_MODES_N:
        return None
    values = numeric(g[metric]).to_numpy()
    order = np.argsort(values, kind="stable")
    values, tokens = values[order], base.processed_tokens(g).to_numpy(dtype=float, na_value=np.nan)[order]
    smallest = math.ceil(TAIL * len(values))
    found = _split(np.log(values), smallest)
    if found is None:
        return None
    split, d = found
    size = len(values)
    in_high = np.arange(size) >= split
    agreement, threshold = _by_prompt(tokens, in_high)
    if not agreement >= PROMPT_AGREEMENT and (inner := _split(np.log(values[:split]), smallest)) is not None:
        inner_high = np.arange(split) >= inner[0]
        inner_agreement, inner_threshold = _by_prompt(tokens[:split], inner_high)
        if inner_agreement >= PROMPT_AGREEMENT:
            size, d, in_high, agreement, threshold = split, inner[1], inner_high, inner_agreement, inner_threshold
    kept, kept_tokens = values[:size], tokens[:size]
    return Modes(key=(g["run"].iloc[0], g["scenario"].iloc[0]), low_median=float(np.median(kept[~in_high])),
                 high_median=float(np.median(kept[in_high])), low_n=int((~in_high).sum()),
                 high_n=int(in_high.sum()), ashman_d=d, agreement=agreement, threshold=threshold,
                 low_tokens=base.median(pd.Series(kept_tokens[~in_high])),
                 high_tokens=base.median(pd.Series(kept_tokens[in_high])),
                 by_prompt=bool(agreement >= PROMPT_AGREEMENT),
                 beyond_n=len(values) - size, beyond_from=float(values[size]) if size < len(values) else math.nan)


def check_items(checks: dict[str, list[dict[str, Any]]]) -> list[Finding]:
    """check.json's findings of each run, each with its run label."""
    return [Finding.from_dict(f, run) for run, found in checks.items() for f in found]


def met_targets(targets: pd.DataFrame | None) -> frozenset[Key]:
    """The scenarios that pass every target they are judged against (at least one)."""
    if targets is None or targets.empty:
        return frozenset()
    return frozenset(key for key, group in targets.groupby(KEY, sort=False) if (group["status"] == "pass").all())


def host_reasons(g: pd.DataFrame) -> str | None:
    """Why a scenario has no host evidence (remote, not_found, overlap), where none of its requests has any and
    the run asked for it (runs before issue 26 did not: None)."""
    said = g["host"].dropna() if "host" in g else pd.Series(dtype=object)
    if said.empty or (said == "local").any():
        return None
    return str(said.mode().iloc[0])


def diagnose(samples: pd.DataFrame, keys: Sequence[Key], metric: str, goals: dict[str, Any], steps: list[Step],
             checks: dict[str, list[dict[str, Any]]] | None = None,
             targets: pd.DataFrame | None = None) -> tuple[pd.DataFrame, Diagnosis, pd.DataFrame]:
    """Every measured figure per key, each cause put to the test per key, and the measured requests with their
    derived columns and the attribution of their first byte (`attribution.PARTS`, load events). A cause whose
    part is material in a scenario that meets every target it is judged against (`targets`, the evaluated table)
    is present, not confirmed: its targets are met."""
    ok = samples["ok"].fillna(False)
    # one copy of the measured requests; whether each overlapped another is asked of every successful one, warm-ups
    # included (their columns only)
    data = per_request(samples[ok & ~samples["warmup"].fillna(False)],
                       in_flight=samples.loc[ok, ["run_id", "started_at", "e2e_ms"]])
    if len(data):  # side by side, on the same rows: the columns of `data` are not copied (copy-on-write)
        data = pd.concat([data, attribute(data, metric)], axis=1)
        data = pd.concat([data, turns(data)], axis=1)  # a conversation's turns: reuse, truncation (issue 27)
    if "processed" in data:  # a turn processed only what it had not cached, whether or not the server says so
        turned = numeric(data["processed"]).notna()
        data.loc[turned, "prefill_tps"] = prefill_tps(numeric(data["processed"]), numeric(data["prompt_eval_ms"]))
    checks = checks or {}
    predicted: dict[Key, tuple[int, str]] = {}
    for run, found in checks.items():
        measured_shares = data[data["run"] == run].groupby("scenario")["gpu_share"].median().dropna()
        shares = {s: float(v) for s, v in measured_shares.items()}
        for c in confirm(found, shares):
            predicted[(run, c.scenario)] = (c.predicted_pct, c.verdict)
    groups, by_model = Groups(data, KEY), Groups(data, "model")
    by_run = dict(list(data.groupby("run", sort=False)["gpu_share"]))
    scale = scale_of(goals)
    needs = {(f.run, f.scenario): float(f.evidence["need_gb"]) * GIB for f in check_items(checks)
             if f.rule in MEMORY_RULES and f.evidence.get("need_gb") is not None}
    context = Context(metric, scale, goals, data, predicted, frozenset(s.key for s in steps if s.kind == "serialised"),
                      by_model=by_model, by_run=by_run, needs=needs)
    met = met_targets(targets)
    verdicts: list[Verdict] = []
    found_modes, gains = [], []
    no_host: dict[Key, str] = {}
    for key in keys:
        g = groups.get(key)
        if g is None:
            continue
        if (reason := host_reasons(g)) is not None:
            no_host[key] = reason
        judged = replace(context, confirmed=frozenset())
        for cause in (c for c in CAUSES if c.applies(g)):
            verdict = cause.judge(g, judged)
            if verdict.verdict == "confirmed":
                judged = replace(judged, confirmed=judged.confirmed | {cause.name})
                if key in met:
                    verdict = replace(verdict, verdict="present", reason="targets_met")
                elif (gain := cause.gain(g, metric)) is not None:
                    gains.append(gain)
            if verdict.verdict in ("confirmed", "present") and cause.part and len(owned := cause.owns(g)):
                judged = replace(judged, owned={**judged.owned, cause.name: (cause.part, owned)})
            verdicts.append(verdict)
            if verdict.verdict == "no_gpu" and key in predicted:
                predicted[key] = (predicted[key][0], "not_testable")
        if (m := modes(g, metric)) is not None:
            found_modes.append(m)
        del g, judged  # a group is a copy of its rows: let it go before the next is taken (two at once: +400 MB at 10⁶)
    residency = {r: base.median(data.loc[data["residency"] == r, "decode_tps"]) for r in ("gpu", "partial", "cpu")}
    # the attribution's columns only, a group at a time (each group of every column would be a copy of it)
    parts = Groups(data[[*KEY, "metric_ms", "cold_start", *PARTS, "wait_source"]], KEY) if "metric_ms" in data else {}
    thresholds = {"share": scale.share, "ms": scale.ms, "target": scale.target, "goal": scale.goal,
                  "target_share": TARGET_SHARE}
    diagnosis = Diagnosis(verdicts, found_modes, residency, check_items(checks), predicted, thresholds,
                          sorted(gains, key=lambda s: -s.values["saved"]), attribution_table(parts, keys, metric),
                          no_host=no_host)
    return figures_table(data, keys), diagnosis, data
