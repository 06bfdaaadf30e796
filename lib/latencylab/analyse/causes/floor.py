"""Prompt processing: the floor. Prefilling the prompt tokens the server had not cached, and its first token, is
the work the server must do — never waste, so never "confirmed". It is reported as this server's floor for these
prompts, with what would lower it (shorter prompts, prompt caching, faster hardware) and the gain predicted for
prompts half as long; it is a finding against the study only where the floor alone is above the study's target.
Planted: long-prompts (its target below the floor), healthy-long-prompts (its target above it)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from latencylab.analyse import stats
from latencylab.analyse.causes.base import (
    Cause,
    Context,
    count,
    key_of,
    later,
    median,
    missing,
    ms,
    own_work,
    prefill_rate,
    processed_tokens,
    share,
    tps,
)
from latencylab.analyse.findings import Phrase, Quantity, Values, Verdict
from latencylab.analyse.stats import numeric

SLOPE_POINTS_MAX = 1000
MIN_GROWTH_N = 3  # fewer prompt times than this: the growth is the metric's


@dataclass(frozen=True)
class FloorValues(Values):
    """The floor of a typical request after the cold start that no cause named above owns (its prompt time plus
    its first token's) and the prefill behind it (tokens processed, tokens/s); how the first byte grows with prompt
    tokens (Spearman, Theil–Sen); the cache reused; the median now and with prompts half as long; the target the
    floor is held to."""

    typical_ms: float = math.nan  # median prompt time
    floor_ms: float = math.nan  # median prompt time plus first token
    share: float = math.nan  # of the median metric
    new_tokens: float = math.nan  # median prompt tokens processed (cached ones left out)
    # new_tokens / typical_ms: the pair a sentence states says tokens / rate = time (a median of per-request rates
    # would not; the measured figures' prefill speed is that median, over every request)
    prefill_tps: float = math.nan
    rho: float = math.nan
    p: float = math.nan
    significant: bool = False
    slope: float = math.nan  # ms per prompt token processed, of `growth_of`
    growth_of: str = ""  # what grows: prompt_ms (the server's prompt time) or the metric where the server has none
    intercept: float = math.nan
    added_ms: float = math.nan  # the slope over the prompts sent
    tokens_min: float = math.nan
    tokens_max: float = math.nan
    grows: bool = False  # significant, and adds a material amount
    material: bool = False  # the floor is a material part of the first byte, or it grows by a material amount
    cache_known: int = 0  # requests that report their cached tokens
    cache_hits: float = math.nan
    cached_share: float = math.nan
    now_ms: float = math.nan  # the median metric after the cold start
    half_ms: float = math.nan  # …predicted with prompts half as long (prompt time taken as proportional)
    target: str | None = None  # the target the floor is held to, and its goal (ms)
    goal: float | None = None
    threshold_ms: float = math.nan
    threshold_share: float = math.nan

    def quantities(self) -> dict[str, float]:
        return {"prompt_median": self.typical_ms, "tokens_median": self.new_tokens, "prefill_rate": self.prefill_tps,
                "growth_slope": self.slope}

    def phrase(self, verdict: str, reason: str) -> Phrase:
        if verdict == "no_evidence":
            return Phrase(f"dx_none_{reason}")
        prefill = None if missing(self.new_tokens) or missing(self.prefill_tps) else \
            Phrase("dx_prefill", {"tokens": count(self.new_tokens, "tokens_median"),
                                  "tps": tps(self.prefill_tps, "prefill_rate")})
        growth = None
        if not missing(self.p):
            key = "dx_no_growth" if not self.significant else "dx_growth" if self.grows else "dx_growth_small"
            growth = Phrase(key, {"slope": Quantity(self.slope, "slope", "growth_slope"), "added": ms(self.added_ms),
                                  "rho": Quantity(self.rho, "rho"), "p": Quantity(self.p, "p"),
                                  "min": count(self.tokens_min), "max": count(self.tokens_max)})
        cache = None if not self.cache_known else \
            Phrase("dx_cache", {"hits": share(self.cache_hits), "cached": share(self.cached_share)})
        said = self.material or verdict == "floor_above_target"  # what would lower it, where it matters
        lower = said and not missing(self.half_ms) and self.half_ms < self.now_ms
        levers = Phrase("dx_floor_levers", {"after": ms(self.half_ms), "now": ms(self.now_ms, "metric_median_later"),
                                            "saved": ms(self.now_ms - self.half_ms)}) if lower else None
        # a typical request's prompt time beside the rate it is the time of; where the floor alone is above the
        # target, the floor (with the first token's) that the verdict held to it
        floor = ms(self.floor_ms) if verdict == "floor_above_target" else ms(self.typical_ms, "prompt_median")
        return Phrase(f"dx_prompt_{verdict}", {
            "floor": floor, "share": share(self.share), "prefill": prefill,
            "growth": growth, "cache": cache, "levers": levers, "goal": ms(self.goal),
            "target": Phrase(f"t_{self.target}") if self.target else None})


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


class Floor(Cause):
    name = "prompt"
    words = ("dx_h_prompt", "dx_prompt_floor", "dx_prompt_floor_above_target", "dx_verdict_floor",
             "dx_verdict_floor_above_target", "dx_prefill", "dx_growth", "dx_growth_small", "dx_no_growth",
             "dx_cache", "dx_floor_levers", "dx_none_no_prompt", "t_subsequent_ms", "t_mean_ms", "t_first_ms")
    findings = {"floor_above_target": "floor_above_target"}

    def judge(self, g: pd.DataFrame, context: Context) -> Verdict:
        """The floor of a typical request; above the target the study holds a typical request to, a finding."""
        scale, metric = context.scale, context.metric
        after = later(g)
        latency = median(after[metric])
        prompt = numeric(after["prompt_ms"])
        # the server's own work: the requests no cause named above owns (a cut or evicted history is waste)
        work = own_work(after, context)
        floor = median(numeric(work["prompt_ms"]) + numeric(work["first_token_ms"]))
        # Growth is the server's prompt time on the tokens it processed, where it times the prompt: the first byte
        # adds loads and waits that hide it (the metric only where the server reports no prompt time). Theil–Sen's
        # slope is robust to the minority of requests slowed by a stall, whatever their prompt length.
        timed_after = numeric(after["prompt_ms"]).notna().sum() >= MIN_GROWTH_N
        y = numeric(after["prompt_ms"] if timed_after else after[metric])
        x = processed_tokens(after)
        fit = x.notna() & y.notna()
        growth = _growth(x[fit].to_numpy(), y[fit].to_numpy())
        significant = bool(growth.get("p", math.nan) < stats.ALPHA and growth.get("rho", math.nan) > 0)
        added = growth.get("added_ms", math.nan)
        grows = significant and scale.material(added, max(latency, added))
        cached = g[numeric(g["cached_tokens"]).notna()]
        prompt_sum = numeric(cached["prompt_tokens"]).sum()
        half = float((numeric(after[metric]) - prompt.fillna(0.0) / 2).median()) if prompt.notna().any() else math.nan
        tokens, typical, rate = prefill_rate(work)
        values = FloorValues(
            typical_ms=typical, floor_ms=floor, share=floor / latency if latency else math.nan,
            new_tokens=tokens, prefill_tps=rate, **growth,
            growth_of="prompt_ms" if timed_after else metric,
            significant=significant, grows=grows,
            material=grows or (not math.isnan(floor) and scale.material(floor, latency)), cache_known=len(cached),
            cache_hits=float((numeric(cached["cached_tokens"]) > 0).mean()) if len(cached) else math.nan,
            cached_share=float(numeric(cached["cached_tokens"]).sum() / prompt_sum) if prompt_sum else math.nan,
            now_ms=latency, half_ms=half, target=scale.target, goal=scale.goal, threshold_ms=scale.ms,
            threshold_share=scale.share)
        if math.isnan(values.typical_ms) and math.isnan(values.p):
            return Verdict(self.name, key_of(g), "no_evidence", values, "no_prompt")
        above = scale.goal is not None and floor > scale.goal
        return Verdict(self.name, key_of(g), "floor_above_target" if above else "floor", values)
