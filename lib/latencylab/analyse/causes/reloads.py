"""Reloads between requests: the server loaded the model again after the scenario's cold start (waste: the model
could have stayed loaded). Planted: reload-every-request, keep-alive-expiry."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from latencylab.analyse.attribution import load_figures
from latencylab.analyse.causes.base import (
    Cause,
    Context,
    count,
    gain_step,
    key_of,
    later,
    median,
    missing,
    ms,
    share,
)
from latencylab.analyse.findings import Phrase, Phrases, Step, Values, Verdict
from latencylab.analyse.stats import numeric


@dataclass(frozen=True)
class ReloadValues(Values):
    """`later_paid` of `later_n` later requests made the server load (`waited`: those that waited for another's
    load), the mean load over those (`load_ms`), over every later request (`amount_ms`) and its share of their mean
    metric; the cold start and its load; why each reload happened. The load figures are `attribution.load_figures`'s,
    the load table's too."""

    later_paid: int | None = None
    later_n: int | None = None
    waited: int | None = None
    amount_ms: float = math.nan
    share: float = math.nan
    load_ms: float = math.nan
    cold_start: bool | None = None
    cold_start_ms: float = math.nan
    reasons: dict[str, int] = field(default_factory=dict)  # keep_alive, server_keep_alive, evicted, options, unknown
    threshold_ms: float = math.nan
    threshold_share: float = math.nan

    def phrase(self, verdict: str, reason: str) -> Phrase:
        if verdict == "no_evidence":
            return Phrase(f"dx_none_{reason}")
        cold = [Phrase("dx_cold_start", {"load": ms(self.cold_start_ms, "load_cold_start")})] \
            if self.cold_start and not missing(self.cold_start_ms) else []
        if self.waited:
            cold.append(Phrase("dx_cold_waited", {"n": count(self.waited)}))
        reasons = Phrases(tuple(Phrase(f"dx_reason_{r}", {"n": count(n)}) for r, n in self.reasons.items()), ", ")
        return Phrase(f"dx_reloads_{verdict}", {
            "later_paid": count(self.later_paid, "loads_later"), "later_n": count(self.later_n, "requests_later"),
            "load": ms(self.load_ms, "load_mean_loaded"), "amount": ms(self.amount_ms, "load_per_request"),
            "share": share(self.share, "load_share"),
            "reasons": Phrase("dx_reasons", {"reasons": reasons}) if self.reasons else None,
            "cold": Phrases(tuple(cold))})


class Reloads(Cause):
    name = "reloads"
    words = ("dx_h_reloads", "dx_waste_reloads", "dx_reloads_confirmed", "dx_reloads_present", "dx_reloads_refuted",
             "dx_cold_start", "dx_cold_waited", "dx_reasons", "dx_reason_keep_alive", "dx_reason_server_keep_alive",
             "dx_reason_evicted", "dx_reason_options", "dx_reason_unknown", "dx_none_no_state")
    findings = {"confirmed": "reloads"}

    def judge(self, g: pd.DataFrame, context: Context) -> Verdict:
        """Confirmed when the loads after the cold start (real loads, not waits for another's) are material on
        average."""
        if (g["state"] == "unknown").all():
            return Verdict(self.name, key_of(g), "no_evidence", ReloadValues(), "no_state")
        after = later(g)
        loaded = after[after["loaded"]]
        x = load_figures(g, context.metric)
        values = ReloadValues(
            later_paid=x["loads_later"], later_n=x["requests_later"],
            waited=int((after["load_event"] > 0).sum() - len(loaded)),
            amount_ms=x["load_per_request"], share=x["load_share"], load_ms=x["load_mean_loaded"],
            cold_start=bool(g["cold_start"].any()), cold_start_ms=x["load_cold_start"],
            reasons={str(k): int(v) for k, v in loaded["reload_reason"].fillna("unknown").value_counts().items()},
            threshold_ms=context.scale.ms, threshold_share=context.scale.share)
        if not len(loaded):
            return Verdict(self.name, key_of(g), "refuted", values)
        material = context.scale.material(x["load_per_request"], x["metric_mean_later"])
        return Verdict(self.name, key_of(g), "confirmed" if material else "present", values)

    def gain(self, g: pd.DataFrame, metric: str) -> Step | None:
        """The median of the requests that paid no load; where every one paid, of each one less its load."""
        after = later(g)
        unloaded = after.loc[after["load_event"] < 0, metric]
        if len(unloaded):
            return gain_step("predict_reloads", g, metric, median(unloaded))
        value = numeric(after[metric])
        return gain_step("predict_reloads_each", g, metric, float((value - after["loading_ms"].fillna(0.0)).median()))
