"""Every measured figure beside the latency metric, and the diagnosis: each cause of slow first bytes put to
the test per scenario, with a verdict (confirmed / refuted / no_evidence) and the numbers behind it.

Numbers and flags only; `document` and the catalogs word them. Tables are keyed by (run, scenario) like
`analysis`'s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from latencylab.analyse import stats
from latencylab.analyse.attribution import PARTS, attribute
from latencylab.analyse.findings import Diagnosis, Key, Modes, Step, Verdict
from latencylab.plan.check import Finding, confirm

KEY = ["run", "scenario"]
# The figures of "Every measured figure", in the table's order.
FIGURES = ("decode_tps", "prefill_tps", "tpot_ms", "itl_ms", "e2e_ms", "output_tokens")
RESIDENT = 0.995  # a GPU share at or above this is the whole model on the GPU
ITL_BOOTSTRAP_MAX = 100_000  # more pooled gaps: the interval comes from a seeded subsample (wider, never narrower)
ALPHA = 0.05
SLOPE_POINTS_MAX = 1000
CV_LIMIT = 0.25  # spread is a finding above this CV, unless the study sets its own CV goal
TAIL = 0.10  # the slowest tenth of the requests
# A part of the first byte is material — a cause worth fixing — when it is both a sizeable share of the
# scenario's latency and a sizeable amount of time. A quarter: removing less changes a median by less than
# the run-to-run spread of medians we see on a shared machine (10–20 %). 50 ms: half of the 0.1 s under
# which a response feels instantaneous (Card, Robertson & Mackinlay 1991; Nielsen 1993) — below it no user
# notices the fix. Where the study sets a target, a fifth of that target instead: the part then takes a
# fifth of the budget the study allows.
MATERIAL_SHARE = 0.25
MATERIAL_MS = 50.0
TARGET_SHARE = 0.2
TARGET_ORDER = ("subsequent_ms", "mean_ms", "first_ms")  # the target a scenario's typical request is held to
PRESENT_MS = 1.0  # a median wait under a millisecond is no wait at all
STALL_RATE = 3.0  # the slowest requests' prompt time per token this many times a typical one's: the server stalled
LONGER_PROMPT = 1.2  # the slowest requests' prompts this much longer than a typical one: they are the long ones
MIN_MODES_N = 10
ASHMAN_D = 2.0  # Ashman's D above 2: two clearly separated modes (Ashman, Bird & Zepf 1994)…
MODE_RATIO = 1.5  # …whose medians are this far apart (two modes 10 % apart are noise to a reader)
PROMPT_AGREEMENT = 0.9  # prompt length explains two modes when a token threshold sorts this share of requests


def _float(series: pd.Series) -> pd.Series:
    return pd.to_numeric(series, errors="coerce").astype(float)


def per_request(samples: pd.DataFrame) -> pd.DataFrame:
    """The samples with decode_tps and its source (server's eval figures, else the client's), prefill_tps,
    residency (gpu / partial / cpu / unknown) and `overlapped` (another request of its run was in flight)."""
    data = samples.copy()
    tokens, eval_ms = _float(data["output_tokens"]), _float(data["eval_ms"])
    by_server = (data["output_tokens_source"] == "server") & (eval_ms > 0) & (tokens > 0)
    span = _float(data["e2e_ms"]) - _float(data["ttft_ms"])
    client = ((tokens - 1) / span * 1000).where((tokens > 1) & (span > 0))
    data["decode_tps"] = (tokens / eval_ms * 1000).where(by_server, client)
    data["decode_source"] = np.where(by_server, "server", np.where(client.notna(), "client", None))
    processed = _float(data["prompt_tokens"]) - _float(data["cached_tokens"]).fillna(0)
    prompt_ms = _float(data["prompt_eval_ms"])
    data["prefill_tps"] = (processed / prompt_ms * 1000).where((processed > 0) & (prompt_ms > 0))
    share = _float(data["gpu_share"])
    data["residency"] = np.select([share >= RESIDENT, share > 0, share == 0], ["gpu", "partial", "cpu"], "unknown")
    data["overlapped"] = _overlapped(data)
    return data


def _overlapped(data: pd.DataFrame) -> pd.Series:
    """Whether each request was in flight while another of its run was (from started_at and e2e_ms)."""
    out = pd.Series(False, index=data.index)
    for _, group in data.groupby("run_id", sort=False):
        start = _float(group["started_at"]).to_numpy()
        end = start + _float(group["e2e_ms"]).fillna(0).to_numpy() / 1000
        order = np.argsort(start, kind="stable")
        s, e = start[order], end[order]
        before = np.maximum.accumulate(np.concatenate(([-np.inf], e[:-1])))  # latest end of those sent earlier
        after = np.concatenate((s[1:], [np.inf]))  # the next one's start
        hit = (s < before) | (after < e)
        out.loc[group.index[order]] = hit
    return out


def _itl(group: pd.DataFrame) -> np.ndarray:
    gaps = [g for gaps in group["itl_ms"] if isinstance(gaps, list | np.ndarray) for g in gaps]
    return np.asarray(gaps, dtype=float)


def _values(group: pd.DataFrame, name: str) -> np.ndarray:
    values = _itl(group) if name == "itl_ms" else _float(group[name]).to_numpy()
    return values[np.isfinite(values)]


def figures_table(data: pd.DataFrame, keys: Sequence[Key]) -> pd.DataFrame:
    """Per key and figure: source, n, median and p95 with their 95 % intervals, and the median of the first and
    of the later requests. `data` is `per_request` of the measured samples."""
    groups = dict(list(data.groupby(KEY, sort=False)))
    rows = {}
    for key in keys:
        group = groups.get(key)
        if group is None:
            continue
        for name in FIGURES:
            values = _values(group, name)
            if not len(values):
                continue
            sampled = values
            if len(values) > ITL_BOOTSTRAP_MAX:
                sampled = np.random.default_rng(stats.SEED).choice(values, ITL_BOOTSTRAP_MAX, replace=False)
            cis = stats.bootstrap_cis(sampled, ("median", "p95"))
            median_ci, p95_ci = cis["median"], cis["p95"]
            first = _values(group[group["phase"] == "first"], name)
            later = _values(group[group["phase"] == "subsequent"], name)
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


def _median(series: pd.Series) -> float:
    values = _float(series).dropna()
    return float(values.median()) if len(values) else math.nan


@dataclass(frozen=True)
class Scale:
    """What makes a part of the first byte material in one scenario: a share of its latency and an amount of
    time (a fraction of its target where the study sets one, else MATERIAL_MS)."""

    share: float
    ms: float
    target: str | None  # the target the amount comes from
    goal: float | None  # that target's value (ms)

    def material(self, amount: float, latency: float) -> bool:
        return bool(amount >= self.ms and latency > 0 and amount / latency >= self.share)


def scale_of(goals: dict[str, Any]) -> Scale:
    """The materiality thresholds of a study's scenarios (see MATERIAL_SHARE, MATERIAL_MS, TARGET_SHARE)."""
    for name in TARGET_ORDER:
        if goals.get(name):
            return Scale(MATERIAL_SHARE, TARGET_SHARE * float(goals[name]), name, float(goals[name]))
    return Scale(MATERIAL_SHARE, MATERIAL_MS, None, None)


def _key(g: pd.DataFrame) -> Key:
    return g["run"].iloc[0], g["scenario"].iloc[0]


def _later(g: pd.DataFrame) -> pd.DataFrame:
    """The requests after the scenario's cold start (all of them when there was none, or nothing after it)."""
    later = g[~g["cold_start"]]
    return later if len(later) else g


def _reloads(g: pd.DataFrame, metric: str, scale: Scale) -> Verdict:
    if (g["state"] == "unknown").all():
        return Verdict("reloads", _key(g), "no_evidence", {}, "no_state")
    later = _later(g)
    loaded = later[later["loaded"]]
    waited = int((later["load_event"] > 0).sum() - len(loaded))
    cold = g[g["cold_start"]]
    latency = _mean(later[metric])
    amount = float(later["loading_ms"].fillna(0.0).mean()) if len(loaded) else 0.0
    reasons = {str(k): int(v) for k, v in loaded["reload_reason"].fillna("unknown").value_counts().items()}
    values = {"later_paid": len(loaded), "later_n": len(later), "waited": waited, "amount_ms": amount,
              "share": amount / latency if latency else math.nan, "load_ms": _mean(loaded["load_ms"]),
              "cold_start": bool(len(cold)), "cold_start_ms": _mean(cold.loc[cold["loaded"], "load_ms"]),
              "reasons": reasons, "threshold_ms": scale.ms, "threshold_share": scale.share}
    if not len(loaded):
        return Verdict("reloads", _key(g), "refuted", values)
    return Verdict("reloads", _key(g), "confirmed" if scale.material(amount, latency) else "present", values)


def _offload(g: pd.DataFrame, data: pd.DataFrame, by_model: dict[Any, pd.DataFrame], by_run: dict[Any, pd.Series],
             prediction: tuple[int, str] | None) -> Verdict:
    """Where the model sat; a server with every model on the CPU did not use a GPU, which is not "does not fit"
    (unless the check predicted that nothing fits). `by_model`: `data` per model; `by_run`: its GPU shares per run."""
    key = _key(g)
    shares = _float(g["gpu_share"]).dropna()
    cpu_build = bool((g["gpu_layers_source"] == "cpu-build").any())
    if shares.empty:
        if cpu_build:
            return Verdict("offload", key, "no_gpu", {"why": "cpu_build", "predicted_pct": None, "check": None})
        return Verdict("offload", key, "no_evidence", {}, "not_reported")
    share = float(shares.median())
    same = by_model.get(g["model"].iloc[-1], data.iloc[:0])
    scope = "model"
    if not ((same["residency"] == "gpu").any() and same["residency"].isin(["partial", "cpu"]).any()):
        same, scope = data, "report"
    values = {"share": share, "size": _median(g["model_size_bytes"]), "vram": _median(g["vram_bytes"]),
              "layers": _median(g["gpu_layers"]), "layers_total": _median(g["gpu_layers_total"]),
              "decode": _median(g["decode_tps"]),
              "decode_gpu": _median(same.loc[same["residency"] == "gpu", "decode_tps"]),
              "decode_spilled": _median(same.loc[same["residency"].isin(["partial", "cpu"]), "decode_tps"]),
              "decode_scope": scope, "predicted_pct": prediction[0] if prediction else None,
              "check": prediction[1] if prediction else None}
    run_shares = _float(by_run[key[0]]).dropna()
    nothing_fits = prediction is not None and prediction[0] == 0
    if share == 0 and (run_shares == 0).all() and not nothing_fits:
        why = "fits" if prediction is not None else "every_model"
        return Verdict("offload", key, "no_gpu", {**values, "why": why,
                                                  "check": "not_testable" if prediction else None})
    return Verdict("offload", key, "confirmed" if share < RESIDENT else "refuted", values)


def _growth(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Spearman's test of y growing with x, and the Theil–Sen slope (robust to requests slowed by other work)."""
    if len(x) < 3 or len(np.unique(x)) < 2:
        return {}
    rho, p = sps.spearmanr(x, y)
    if len(x) > SLOPE_POINTS_MAX:  # Theil–Sen takes every pair: a seeded subsample bounds its cost
        pick = np.random.default_rng(stats.SEED).choice(len(x), SLOPE_POINTS_MAX, replace=False)
        x, y = x[pick], y[pick]
    fit = sps.theilslopes(y, x)
    return {"rho": float(rho), "p": float(p), "slope": float(fit.slope), "intercept": float(fit.intercept),
            "tokens_min": float(x.min()), "tokens_max": float(x.max()),
            "added_ms": float(fit.slope * (x.max() - x.min()))}


def _prompt(g: pd.DataFrame, metric: str, scale: Scale) -> Verdict:
    """Prompt processing is a cause when it is material in a typical request, or when the first byte grows with
    prompt length by a significant slope that adds a material amount over the prompts sent."""
    later = _later(g)
    latency = _median(later[metric])
    typical = _median(later["prompt_ms"])
    # Growth is the TTFT's (what the prefill figure draws): Theil–Sen's slope is robust to the minority of
    # requests slowed by a wait or a stall, whatever their prompt length.
    known = later[_float(later["prompt_tokens"]).notna()]
    y = known["ttft_ms"]
    values: dict[str, Any] = {"typical_ms": typical, "share": typical / latency if latency else math.nan,
                              "rho": math.nan, "p": math.nan, "slope": math.nan, "added_ms": math.nan,
                              "tokens_min": math.nan, "tokens_max": math.nan, "grows": False,
                              "threshold_ms": scale.ms, "threshold_share": scale.share}
    points = _float(y).notna()
    values.update(_growth(_float(known["prompt_tokens"])[points].to_numpy(), _float(y)[points].to_numpy()))
    cached = g[_float(g["cached_tokens"]).notna()]
    values["cache_known"] = len(cached)
    values["cache_hits"] = float((_float(cached["cached_tokens"]) > 0).mean()) if len(cached) else math.nan
    prompt_sum = _float(cached["prompt_tokens"]).sum()
    values["cached_share"] = float(_float(cached["cached_tokens"]).sum() / prompt_sum) if prompt_sum else math.nan
    values["significant"] = bool(values["p"] < ALPHA and values["rho"] > 0)
    values["grows"] = values["significant"] and scale.material(values["added_ms"], max(latency, values["added_ms"]))
    if math.isnan(typical) and math.isnan(values["p"]):
        return Verdict("prompt", _key(g), "no_evidence", values, "no_prompt")
    material = not math.isnan(typical) and scale.material(typical, latency)
    return Verdict("prompt", _key(g), "confirmed" if material or values["grows"] else "present", values)


def _slots(g: pd.DataFrame, metric: str) -> int:
    """The most requests the server worked on at once: from each one's prompt start (its first byte less its
    prompt time) to its last byte, overlaps under a millisecond not counted."""
    start = _float(g["started_at"]) + (_float(g[metric]) - g["prompt_ms"].fillna(0.0)) / 1000
    end = _float(g["started_at"]) + _float(g["e2e_ms"]) / 1000
    starts, ends = start.dropna().to_numpy() + 0.001, end.dropna().to_numpy()
    times, steps = np.concatenate([starts, ends]), np.repeat([1, -1], [len(starts), len(ends)])
    busy = np.cumsum(steps[np.lexsort((steps, times))])  # at equal times, ends before starts
    return int(max(0, busy.max())) if len(busy) else 0


def _queueing(g: pd.DataFrame, metric: str, scale: Scale, serialised: set[Key]) -> Verdict:
    """Queueing is a cause when a typical request waits a material time: on the server (Ollama's time held
    without work, or derived), or on the client; a server that works on one request at a time while several
    are in flight is named with the requests it served at once."""
    key = _key(g)
    later = _later(g)
    latency = _median(later[metric])
    wait = _median(later["server_wait_ms"])
    client = sum(v for v in (_median(later["client_queue_ms"]), _median(later.get("client_wait_ms", pd.Series(
        dtype=float)))) if not math.isnan(v))
    concurrency = _median(g["concurrency"])
    values = {"wait_ms": wait, "client_ms": client, "share": wait / latency if latency else math.nan,
              "concurrency": concurrency, "slots": _slots(g, metric) if concurrency > 1 else math.nan,
              "source": "+".join(sorted(later["wait_source"].dropna().unique())),
              "overlap_share": float(g["overlapped"].astype(bool).mean()), "serialised": key in serialised,
              "threshold_ms": scale.ms, "threshold_share": scale.share}
    if math.isnan(wait) and not values["serialised"]:
        return Verdict("queueing", key, "no_evidence", values, "no_wait")
    amount = max(0.0 if math.isnan(wait) else wait, client)
    if values["serialised"] or scale.material(amount, latency):
        return Verdict("queueing", key, "confirmed", values)
    return Verdict("queueing", key, "present" if amount >= PRESENT_MS else "refuted", values)


def _variance(g: pd.DataFrame, metric: str, goal: float | None, scale: Scale, causes: set[str]) -> Verdict:
    """Spread after the cold start, and what makes the slowest requests slow: the part whose excess over a typical
    request is largest; a prompt or a wait that grew without a longer prompt or a cause to show for it is the
    server stalling. A cause of its own only when it is material and no confirmed cause explains it."""
    key = _key(g)
    later = _later(g)
    later = later[_float(later[metric]).notna()]
    cold = g[g["cold_start"] & _float(g[metric]).notna()]
    values: dict[str, Any] = {"n": len(later), "cold_start_ms": _median(cold[metric]) if len(cold) else math.nan,
                              "threshold_ms": scale.ms}
    if len(later) < MIN_MODES_N:
        return Verdict("variance", key, "no_evidence", values, "too_few")
    v = _float(later[metric])
    median = float(v.median())
    cv = float(v.std(ddof=1) / v.mean())
    tail = later.loc[v.sort_values(ascending=False).index[:math.ceil(TAIL * len(later))]]
    excess = float(_float(tail[metric]).mean() - median)
    parts = {p: float(tail[p].mean() - later[p].median()) for p in ("server_wait_ms", "loading_ms", "prompt_ms",
                                                                      "client_network_ms", "unattributed_ms")
             if tail[p].notna().any()}
    part = max(parts, key=parts.get) if parts else None
    # Long prompts explain a slow prompt time only when the slowest requests' prompts are longer and were not
    # processed much slower per token; otherwise the server stalled on prompts of ordinary length.
    tokens = _float(later["prompt_tokens"])
    rate = later["prompt_ms"] / tokens
    longer = bool(rate.notna().any() and rate[tail.index].median() <= STALL_RATE * rate.median()
                  and tokens[tail.index].median() >= LONGER_PROMPT * tokens.median())
    explains = {"loading_ms": "loads", "client_network_ms": "network", "unattributed_ms": "unattributed",
                "server_wait_ms": "wait" if "queueing" in causes else "stall_wait",
                "prompt_ms": "long_prompt" if longer else "stall_prompt"}.get(part or "", None)
    values.update(cv=cv, goal=float(goal) if goal else CV_LIMIT, tail_n=len(tail),
                  tail_from=float(_float(tail[metric]).min()), excess_ms=excess, median=median, explains=explains,
                  explains_ms=float(tail[part].mean()) if part else math.nan,
                  typical_ms=float(later[part].median()) if part else math.nan)
    owned = {"loads": "reloads", "wait": "queueing", "long_prompt": "prompt"}.get(explains or "")
    spread = cv > values["goal"] and scale.material(excess, median + excess)
    if not spread:
        return Verdict("variance", key, "refuted", values)
    return Verdict("variance", key, "present" if owned in causes else "confirmed", values)


def _mean(series: pd.Series) -> float:
    values = _float(series).dropna()
    return float(values.mean()) if len(values) else math.nan


def attribution_table(groups: dict[Key, pd.DataFrame], keys: Sequence[Key], metric: str) -> pd.DataFrame:
    """Per key, the mean of each part of the first byte over the requests after the cold start (means add up
    as the parts do), how many, and where the wait came from."""
    rows = {}
    for key in keys:
        if (g := groups.get(key)) is None or "metric_ms" not in g:
            continue
        later = _later(g)
        rows[key] = {"n": len(later), "metric_ms": _mean(later["metric_ms"]),
                     **{p: _mean(later[p]) for p in PARTS},
                     "wait_source": "+".join(sorted(later["wait_source"].dropna().unique())) or None}
    table = pd.DataFrame.from_dict(rows, orient="index")
    if rows:
        table.index = pd.MultiIndex.from_tuples(list(rows), names=KEY)
    return table


def predictions(g: pd.DataFrame, metric: str, confirmed: set[str]) -> list[Step]:
    """What each confirmed cause's fix would leave of the scenario's median first byte, from the attribution:
    no loads (the requests that paid none), no server wait, a prompt half as long."""
    later = _later(g)
    value = _float(later[metric])
    now = float(value.median())
    after = {}
    if "reloads" in confirmed:  # the requests that paid none; where every one paid, each one less its load
        unloaded = later.loc[later["load_event"] < 0, metric]
        after["reloads" if len(unloaded) else "reloads_each"] = _median(unloaded) if len(unloaded) else float(
            (value - later["loading_ms"].fillna(0.0)).median())
    if "queueing" in confirmed and later["server_wait_ms"].notna().any():
        after["queueing"] = float((value - later["server_wait_ms"].fillna(0.0)).median())
    if "prompt" in confirmed and later["prompt_ms"].notna().any():
        after["prompt"] = float((value - later["prompt_ms"].fillna(0.0) / 2).median())
    return [Step(f"predict_{cause}", _key(g), {"now": now, "after": ms, "saved": now - ms})
            for cause, ms in after.items() if not math.isnan(ms) and ms < now]

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
    prompt-token threshold sorts the requests into them; None when the distribution is not bimodal.

    When prompt length does not explain the two modes but does explain two modes within the faster one, those
    are the modes named, and the slower requests beyond them are counted apart (other work on the machine,
    loads)."""
    v = _float(g[metric])
    g = g[v.notna() & (v > 0)]
    if len(g) < MIN_MODES_N:
        return None
    values = _float(g[metric]).to_numpy()
    order = np.argsort(values, kind="stable")
    values, tokens = values[order], _float(g["prompt_tokens"]).to_numpy()[order]
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
                 low_tokens=_median(pd.Series(kept_tokens[~in_high])),
                 high_tokens=_median(pd.Series(kept_tokens[in_high])), by_prompt=bool(agreement >= PROMPT_AGREEMENT),
                 beyond_n=len(values) - size, beyond_from=float(values[size]) if size < len(values) else math.nan)


def check_items(checks: dict[str, list[dict[str, Any]]]) -> list[Finding]:
    """check.json's findings of each run, each with its run label."""
    return [Finding.from_dict(f, run) for run, found in checks.items() for f in found]


def diagnose(samples: pd.DataFrame, keys: Sequence[Key], metric: str, goals: dict[str, Any], steps: list[Step],
             checks: dict[str, list[dict[str, Any]]] | None = None) -> tuple[pd.DataFrame, Diagnosis, pd.DataFrame]:
    """Every measured figure per key, each cause put to the test per key, and the measured requests with their
    derived columns and the attribution of their first byte (`attribution.PARTS`, load events)."""
    ok = samples[samples["ok"].fillna(False)]
    data = per_request(ok)
    data = data[~data["warmup"].fillna(False)]
    data = data.join(attribute(data, metric)) if len(data) else data
    checks = checks or {}
    predicted: dict[Key, tuple[int, str]] = {}
    for run, found in checks.items():
        measured_shares = data[data["run"] == run].groupby("scenario")["gpu_share"].median().dropna()
        shares = {s: float(v) for s, v in measured_shares.items()}
        for c in confirm(found, shares):
            predicted[(run, c.scenario)] = (c.predicted_pct, c.verdict)
    serialised = {s.key for s in steps if s.kind == "serialised"}
    groups = dict(list(data.groupby(KEY, sort=False)))
    by_model = dict(list(data.groupby("model", sort=False)))
    by_run = dict(list(data.groupby("run", sort=False)["gpu_share"]))
    scale = scale_of(goals)
    verdicts, found_modes, gains = [], [], []
    for key in keys:
        g = groups.get(key)
        if g is None:
            continue
        found = [_reloads(g, metric, scale), _offload(g, data, by_model, by_run, predicted.get(key)),
                 _prompt(g, metric, scale), _queueing(g, metric, scale, serialised)]
        causes = {v.cause for v in found if v.verdict == "confirmed"}
        found.append(_variance(g, metric, goals.get("cv"), scale, causes))
        verdicts += found
        gains += predictions(g, metric, causes)
        if (m := modes(g, metric)) is not None:
            found_modes.append(m)
        if key in predicted and any(v.verdict == "no_gpu" for v in found):
            predicted[key] = (predicted[key][0], "not_testable")
    residency = {r: _median(data.loc[data["residency"] == r, "decode_tps"]) for r in ("gpu", "partial", "cpu")}
    thresholds = {"share": scale.share, "ms": scale.ms, "target": scale.target, "goal": scale.goal,
                  "target_share": TARGET_SHARE}
    diagnosis = Diagnosis(verdicts, found_modes, residency, check_items(checks), predicted, thresholds,
                          sorted(gains, key=lambda s: -s.values["saved"]), attribution_table(groups, keys, metric))
    return figures_table(data, keys), diagnosis, data
