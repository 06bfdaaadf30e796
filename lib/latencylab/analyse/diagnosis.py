"""Every measured figure beside the latency metric, and the diagnosis: each cause of slow first bytes put to
the test per scenario, with a verdict (confirmed / refuted / no_evidence) and the numbers behind it.

Numbers and flags only; `document` and the catalogs word them. Tables are keyed by (run, scenario) like
`analysis`'s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from latencylab.analyse import stats
from latencylab.analyse.findings import Diagnosis, Key, Modes, Step, Verdict
from latencylab.plan.check import Finding, confirm

KEY = ["run", "scenario"]
# The figures of "Every measured figure", in the table's order.
FIGURES = ("decode_tps", "prefill_tps", "tpot_ms", "itl_ms", "e2e_ms", "output_tokens")
RESIDENT = 0.995  # a GPU share at or above this is the whole model on the GPU
ITL_BOOTSTRAP_MAX = 100_000  # more pooled gaps: the interval comes from a seeded subsample (wider, never narrower)
PREFILL_SHARE = 0.5  # prompt processing this share of the TTFT is the main cause…
PREFILL_MATERIAL = 0.2  # …and, when the TTFT grows with prompt tokens, a cause from this share on
ALPHA = 0.05
SLOPE_POINTS_MAX = 1000
CV_LIMIT = 0.25  # variance is a finding above this CV, unless the study sets its own CV goal
TAIL = 0.10  # the slowest tenth of the requests
TAIL_OVER = 1.5  # a factor explains the tail when it is at least half of it and this many times its share overall
QUEUE_SHARE = 0.1  # client queueing this share of the median latency is a cause
OVERLAP_FACTOR = 1.5  # requests in flight together this much slower than those alone: the server queues them
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


def _reloads(g: pd.DataFrame, metric: str) -> Verdict:
    key = (g["run"].iloc[0], g["scenario"].iloc[0])
    if (g["state"] == "unknown").all():
        return Verdict("reloads", key, "no_evidence", {}, "no_state")
    paid = g[g["state"].isin(["cold", "reload"])]
    later = g[g["phase"] == "subsequent"]
    later_paid = int(later["state"].isin(["cold", "reload"]).sum())
    load = _float(paid["load_ms"])
    total, ttft = _float(g[metric]).sum(), _float(g["ttft_ms"]).sum()
    values = {"later_paid": later_paid, "later_n": len(later), "paid": len(paid), "n": len(g),
              "share": len(paid) / len(g), "load_ms": float(load.mean()) if load.notna().any() else math.nan,
              "explained": float(load.sum() / total) if total and load.notna().any() else math.nan,
              "explained_ttft": float(load.sum() / ttft) if ttft and load.notna().any() else math.nan,
              "paid_median": _median(paid[metric]), "warm_median": _median(g.loc[g["state"] == "warm", metric])}
    return Verdict("reloads", key, "confirmed" if later_paid else "refuted", values)


def _offload(g: pd.DataFrame, data: pd.DataFrame, prediction: tuple[int, str] | None) -> Verdict:
    key = (g["run"].iloc[0], g["scenario"].iloc[0])
    shares = _float(g["gpu_share"]).dropna()
    if shares.empty:
        cpu_build = (g["gpu_layers_source"] == "cpu-build").any()
        return Verdict("offload", key, "no_evidence", {}, "cpu_build" if cpu_build else "not_reported")
    share = float(shares.median())
    same = data[data["model"] == g["model"].iloc[-1]]
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
    return Verdict("offload", key, "confirmed" if share < RESIDENT else "refuted", values)


def _prompt(g: pd.DataFrame) -> Verdict:
    key = (g["run"].iloc[0], g["scenario"].iloc[0])
    warm = g[g["state"] == "warm"]
    base = warm if len(warm) else g
    both = base[_float(base["prompt_eval_ms"]).notna() & _float(base["ttft_ms"]).notna()]
    ttft_sum = _float(both["ttft_ms"]).sum()
    share = float(_float(both["prompt_eval_ms"]).sum() / ttft_sum) if len(both) and ttft_sum else math.nan
    points = base[_float(base["prompt_tokens"]).notna() & _float(base["ttft_ms"]).notna()]
    x, y = _float(points["prompt_tokens"]).to_numpy(), _float(points["ttft_ms"]).to_numpy()
    values: dict[str, Any] = {"share": share, "warm_only": bool(len(warm)), "rho": math.nan, "p": math.nan,
                              "slope": math.nan, "added_ms": math.nan, "tokens_min": math.nan, "tokens_max": math.nan}
    if len(x) >= 3 and len(np.unique(x)) >= 2:
        rho, p = sps.spearmanr(x, y)
        if len(x) > SLOPE_POINTS_MAX:  # Theil–Sen takes every pair: a seeded subsample bounds its cost
            pick = np.random.default_rng(stats.SEED).choice(len(x), SLOPE_POINTS_MAX, replace=False)
            x, y = x[pick], y[pick]
        fit = sps.theilslopes(y, x)  # the median of pairwise slopes: requests slowed by other work barely move it
        values.update(rho=float(rho), p=float(p), slope=float(fit.slope), intercept=float(fit.intercept),
                      tokens_min=float(x.min()), tokens_max=float(x.max()),
                      added_ms=float(fit.slope * (x.max() - x.min())))
    cached = g[_float(g["cached_tokens"]).notna()]
    values["cache_known"] = len(cached)
    values["cache_hits"] = float((_float(cached["cached_tokens"]) > 0).mean()) if len(cached) else math.nan
    prompt_sum = _float(cached["prompt_tokens"]).sum()
    values["cached_share"] = float(_float(cached["cached_tokens"]).sum() / prompt_sum) if prompt_sum else math.nan
    grows = not math.isnan(values["p"]) and values["p"] < ALPHA and values["rho"] > 0
    if math.isnan(share) and not grows:
        return Verdict("prompt", key, "no_evidence", values, "no_prompt")
    main = not math.isnan(share) and share >= PREFILL_SHARE
    material = math.isnan(share) or share >= PREFILL_MATERIAL
    return Verdict("prompt", key, "confirmed" if main or (grows and material) else "refuted", values)


def _queueing(g: pd.DataFrame, metric: str, serialised: set[Key]) -> Verdict:
    key = (g["run"].iloc[0], g["scenario"].iloc[0])
    if _float(g["started_at"]).isna().all() or not (_float(g["started_at"]) > 0).any():
        return Verdict("queueing", key, "no_evidence", {}, "no_times")
    queue = _median(g["client_queue_ms"])
    wait = _median(g["client_wait_ms"]) if "client_wait_ms" in g.columns else math.nan
    overlapped = g["overlapped"].astype(bool)
    together, alone = _median(g.loc[overlapped, metric]), _median(g.loc[~overlapped, metric])
    median = _median(g[metric])
    values = {"queue_ms": queue, "wait_ms": wait, "concurrency": _median(g["concurrency"]),
              "overlap_share": float(overlapped.mean()), "together": together, "alone": alone,
              "serialised": key in serialised}
    client = sum(v for v in (queue, wait) if not math.isnan(v))
    slower = not math.isnan(together) and not math.isnan(alone) and alone and together / alone >= OVERLAP_FACTOR
    confirmed = key in serialised or slower or (median and client >= QUEUE_SHARE * median)
    return Verdict("queueing", key, "confirmed" if confirmed else "refuted", values)


def _variance(g: pd.DataFrame, metric: str, goal: float | None) -> Verdict:
    key = (g["run"].iloc[0], g["scenario"].iloc[0])
    g = g[_float(g[metric]).notna()]
    if len(g) < MIN_MODES_N:
        return Verdict("variance", key, "no_evidence", {"n": len(g)}, "too_few")
    v = _float(g[metric])
    cv = float(v.std(ddof=1) / v.mean())
    limit = float(goal) if goal else CV_LIMIT
    tail = g.loc[v.sort_values(ascending=False).index[:math.ceil(TAIL * len(g))]]
    tokens = _float(g["prompt_tokens"])
    factors = {"loads": g["state"].isin(["cold", "reload"]), "spilled": g["residency"].isin(["partial", "cpu"]),
               "overlap": g["overlapped"].astype(bool)}
    if tokens.nunique() >= 2:
        factors["long_prompt"] = tokens > tokens.median()
    explains, best = None, 0.0
    shares = {}
    for name, flag in factors.items():
        in_tail, overall = float(flag[tail.index].mean()), float(flag.mean())
        shares[name] = (in_tail, overall)
        if in_tail >= 0.5 and in_tail >= TAIL_OVER * overall and in_tail > best:
            explains, best = name, in_tail
    values = {"cv": cv, "goal": limit, "n": len(g), "tail_n": len(tail), "tail_from": float(_float(tail[metric]).min()),
              "explains": explains, "tail_share": shares[explains][0] if explains else math.nan,
              "overall_share": shares[explains][1] if explains else math.nan}
    return Verdict("variance", key, "confirmed" if cv > limit else "refuted", values)


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
    """The prompt-token threshold that best sorts requests into the slow mode, and the share it sorts right."""
    agreement, threshold = math.nan, math.nan
    known = np.isfinite(tokens)
    if known.sum() >= MIN_MODES_N and len(np.unique(tokens[known])) >= 2:
        for t in np.unique(tokens[known])[:-1]:
            agree = float(((tokens[known] > t) == in_high[known]).mean())
            if math.isnan(agreement) or agree > agreement:
                agreement, threshold = agree, float(t)
    return agreement, threshold


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
    derived columns (`samples` keyed and labelled, all of them)."""
    ok = samples[samples["ok"].fillna(False)]
    data = per_request(ok)
    data = data[~data["warmup"].fillna(False)]
    checks = checks or {}
    predicted: dict[Key, tuple[int, str]] = {}
    for run, found in checks.items():
        measured_shares = data[data["run"] == run].groupby("scenario")["gpu_share"].median().dropna()
        shares = {s: float(v) for s, v in measured_shares.items()}
        for c in confirm(found, shares):
            predicted[(run, c.scenario)] = (c.predicted_pct, c.verdict)
    serialised = {s.key for s in steps if s.kind == "serialised"}
    groups = dict(list(data.groupby(KEY, sort=False)))
    verdicts, found_modes = [], []
    for key in keys:
        g = groups.get(key)
        if g is None:
            continue
        verdicts += [_reloads(g, metric), _offload(g, data, predicted.get(key)), _prompt(g),
                     _queueing(g, metric, serialised), _variance(g, metric, goals.get("cv"))]
        if (m := modes(g, metric)) is not None:
            found_modes.append(m)
    residency = {r: _median(data.loc[data["residency"] == r, "decode_tps"]) for r in ("gpu", "partial", "cpu")}
    return figures_table(data, keys), Diagnosis(verdicts, found_modes, residency, check_items(checks), predicted), data
