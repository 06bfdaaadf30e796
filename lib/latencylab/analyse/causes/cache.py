"""The cache was not reused: a turn of a conversation made the server process again a history it had just seen
(waste: the server could have kept it). Why: another session took the slot in between (the sessions evict each
other's cache), or the server does not cache at all (it reports no cached token on any turn). A reload empties the
cache too, but that is the reloads' and the think time's to say; a history cut to fit the context, the overflow's.
Planted: chat-eviction."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from latencylab.analyse.causes.base import Cause, Context, count, gain_step, key_of, later, mean, missing, ms, share
from latencylab.analyse.conversation import MIN_REUSABLE, is_conversation
from latencylab.analyse.findings import Phrase, Phrases, Step, Values, Verdict
from latencylab.analyse.stats import numeric


@dataclass(frozen=True)
class CacheValues(Values):
    """`missed_n` of `turns_n` turns that could reuse the previous one's history processed it again: `tokens` in
    all, `amount_ms` a request on average (`share` of the mean metric), each miss `miss_ms`; why (`reasons`)."""

    turns_n: int | None = None
    missed_n: int | None = None
    tokens: float = math.nan
    miss_ms: float = math.nan
    amount_ms: float = math.nan
    share: float = math.nan
    reasons: dict[str, int] = field(default_factory=dict)  # evicted, no_cache, unknown

    def phrase(self, verdict: str, reason: str) -> Phrase:
        if verdict == "no_evidence":
            return Phrase(f"dx_none_{reason}")
        reasons = Phrases(tuple(Phrase(f"dx_cache_reason_{r}", {"n": count(n)}) for r, n in self.reasons.items()),
                          ", ")
        return Phrase(f"dx_cache_{verdict}", {
            "missed": count(self.missed_n), "turns": count(self.turns_n), "tokens": count(self.tokens),
            "each": ms(self.miss_ms), "amount": ms(self.amount_ms), "share": share(self.share),
            "reasons": Phrase("dx_reasons", {"reasons": reasons}) if self.reasons else None})


def _costs(g: pd.DataFrame) -> pd.Series:
    """Per turn, the prompt time spent on reusable tokens it processed again (its prompt time × their share)."""
    processed = numeric(g["processed"])
    return (numeric(g["prompt_eval_ms"]) * numeric(g["missed"]) / processed).where(processed > 0).fillna(0.0)


def _eligible(g: pd.DataFrame) -> pd.DataFrame:
    """The turns that could reuse the previous turn, whose reuse is known, with nothing else emptying the cache."""
    if "reusable" not in g:
        return g.iloc[:0]
    loaded = g["loaded"].fillna(False).astype(bool) if "loaded" in g else False
    return g[(numeric(g["reusable"]) >= MIN_REUSABLE) & numeric(g["cached"]).notna()
             & ~g["truncated"].fillna(False).astype(bool) & ~loaded]


def _missed(eligible: pd.DataFrame) -> pd.DataFrame:
    """The eligible turns that processed most of their reusable history again."""
    return eligible[numeric(eligible["missed"]) > numeric(eligible["reusable"]) / 2]


def _evicted(g: pd.DataFrame, data: pd.DataFrame, turn: pd.Series) -> bool:
    """Whether another session's request of the run started between this session's previous turn and this one."""
    mine = g[(g["session"] == turn["session"]) & (g["turn"] == turn["turn"] - 1)]
    if mine.empty:
        return False
    since, until = float(mine["started_at"].iloc[0]), float(turn["started_at"])
    run = data[(data["run"] == turn["run"]) & data["session"].notna()]
    others = run[(run["session"] != turn["session"]) | (run["scenario"] != turn["scenario"])]
    started = numeric(others["started_at"])
    return bool(((started > since) & (started < until)).any())


class CacheMiss(Cause):
    name = "cache"
    words = ("dx_h_cache", "dx_waste_cache", "dx_cache_confirmed", "dx_cache_present", "dx_cache_refuted",
             "dx_cache_reason_evicted", "dx_cache_reason_no_cache", "dx_cache_reason_unknown", "dx_reasons",
             "dx_none_no_turns", "dx_none_no_cache_figure", "next_predict_cache")
    findings = {"confirmed": "cache"}
    part = "prompt_ms"

    def applies(self, g: pd.DataFrame) -> bool:
        return is_conversation(g)

    def owns(self, g: pd.DataFrame) -> pd.Index:
        """The turns that processed their reusable history again."""
        return _missed(_eligible(g)).index

    def judge(self, g: pd.DataFrame, context: Context) -> Verdict:
        """Confirmed when the turns that processed their reusable history again cost a material amount on
        average."""
        if "reusable" not in g or not (numeric(g["reusable"]) > 0).any():
            return Verdict(self.name, key_of(g), "no_evidence", CacheValues(), "no_turns")
        eligible = _eligible(g)
        if eligible.empty:
            return Verdict(self.name, key_of(g), "no_evidence", CacheValues(), "no_cache_figure")
        missed = _missed(eligible)
        costs = _costs(missed)
        after = later(g)
        latency = mean(after[context.metric])
        amount = float(costs.sum() / len(after)) if len(after) else math.nan
        no_cache = bool(eligible["cache_source"].isin(["server", "counters"]).all()  # the server's own count
                        and (numeric(eligible["cached"]) == 0).all())
        reasons: dict[str, int] = {}
        for _, turn in missed.iterrows():
            why = "no_cache" if no_cache else "evicted" if _evicted(g, context.data, turn) else "unknown"
            reasons[why] = reasons.get(why, 0) + 1
        values = CacheValues(turns_n=len(eligible), missed_n=len(missed), tokens=float(numeric(missed["missed"]).sum()),
                             miss_ms=mean(costs) if len(missed) else math.nan, amount_ms=amount,
                             share=amount / latency if latency and not missing(latency) else math.nan, reasons=reasons)
        if missed.empty:
            return Verdict(self.name, key_of(g), "refuted", values)
        return Verdict(self.name, key_of(g), "confirmed" if context.scale.material(amount, latency) else "present",
                       values)

    def gain(self, g: pd.DataFrame, metric: str) -> Step | None:
        """The median with each missed turn's re-processing taken off."""
        missed = _missed(_eligible(g))
        after = later(g)
        saved = pd.Series(0.0, index=after.index)
        saved.loc[missed.index.intersection(after.index)] = _costs(missed)
        return gain_step("predict_cache", g, metric, float(np.nanmedian(numeric(after[metric]) - saved)))
