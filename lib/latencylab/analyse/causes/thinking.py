"""The model was unloaded while the user was thinking: a turn of a conversation came after a think time longer than
the model's keep_alive, and paid a load (waste: a keep_alive longer than people think keeps it). The reloads say
that requests loaded; this says which ones the conversation's own pauses explain. Planted: chat-think-unload."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from latencylab.analyse.causes.base import Cause, Context, count, gain_step, key_of, later, mean, median, missing, ms
from latencylab.analyse.causes.base import share as share_of
from latencylab.analyse.conversation import is_conversation
from latencylab.analyse.findings import Phrase, Step, Values, Verdict
from latencylab.analyse.stats import numeric
from latencylab.core.durations import FOREVER, keep_alive_seconds


@dataclass(frozen=True)
class ThinkValues(Values):
    """`unloaded_n` of `turns_n` turns after a think time paid a load (`load_ms` each, `amount_ms` a request on
    average, `share` of the mean metric); the median think time and the keep_alive it is held against (s)."""

    turns_n: int | None = None
    unloaded_n: int | None = None
    think_s: float = math.nan
    keep_alive_s: float = math.nan
    load_ms: float = math.nan
    amount_ms: float = math.nan
    share: float = math.nan

    def phrase(self, verdict: str, reason: str) -> Phrase:
        if verdict == "no_evidence":
            return Phrase(f"dx_none_{reason}")
        keep = None if missing(self.keep_alive_s) else Phrase("dx_think_keep_alive", {
            "keep_alive": ms(self.keep_alive_s * 1000)})
        return Phrase(f"dx_think_{verdict}", {
            "unloaded": count(self.unloaded_n), "turns": count(self.turns_n), "think": ms(self.think_s * 1000),
            "keep": keep, "load": ms(self.load_ms), "amount": ms(self.amount_ms), "share": share_of(self.share)})


def keep_alive_of(g: pd.DataFrame) -> float:
    """The keep_alive (s) a scenario's requests were held to: their own, else the server's known default."""
    for column in ("keep_alive", "server_keep_alive"):
        given = g[column].dropna() if column in g else pd.Series(dtype=object)
        if len(given):
            value = given.iloc[0]
            try:
                return keep_alive_seconds(float(value) if _numeric(value) else str(value))
            except ValueError:
                return math.nan
    return math.nan


def _numeric(value: object) -> bool:
    try:
        float(str(value))
    except ValueError:
        return False
    return True


def _unloaded(turns: pd.DataFrame) -> pd.DataFrame:
    """The turns after a think time that made the server load the model."""
    loaded = turns["loaded"].fillna(False).astype(bool) if "loaded" in turns else False
    return turns[loaded & (numeric(turns["think_s"]) > 0)]


class ThinkUnload(Cause):
    name = "think"
    words = ("dx_h_think", "dx_waste_think", "dx_think_confirmed", "dx_think_present", "dx_think_refuted",
             "dx_think_keep_alive", "dx_none_no_think", "next_predict_think")
    findings = {"confirmed": "think"}
    part = "loading_ms"

    def applies(self, g: pd.DataFrame) -> bool:
        return is_conversation(g)

    def owns(self, g: pd.DataFrame) -> pd.Index:
        """The turns after a think time that paid a load."""
        return _unloaded(g[numeric(g["think_s"]).notna()]).index if "think_s" in g else g.index[:0]

    def judge(self, g: pd.DataFrame, context: Context) -> Verdict:
        """Confirmed when the loads of turns that came after a think time are material on average."""
        turns = g[(numeric(g["turn"]) > 0) & numeric(g["think_s"]).notna()] if "think_s" in g else g.iloc[:0]
        if turns.empty or not (numeric(turns["think_s"]) > 0).any():
            return Verdict(self.name, key_of(g), "no_evidence", ThinkValues(), "no_think")
        unloaded = _unloaded(turns)
        after = later(g)
        latency = mean(after[context.metric])
        amount = float(numeric(unloaded["loading_ms"]).fillna(0.0).sum() / len(after)) if len(after) else math.nan
        keep = keep_alive_of(g)
        values = ThinkValues(turns_n=len(turns), unloaded_n=len(unloaded), think_s=median(turns["think_s"]),
                             keep_alive_s=math.nan if keep >= FOREVER else keep, load_ms=mean(unloaded["load_ms"]),
                             amount_ms=amount, share=amount / latency if latency and not missing(latency) else math.nan)
        if unloaded.empty:
            return Verdict(self.name, key_of(g), "refuted", values)
        return Verdict(self.name, key_of(g), "confirmed" if context.scale.material(amount, latency) else "present",
                       values)

    def gain(self, g: pd.DataFrame, metric: str) -> Step | None:
        """The median with the loads after think times taken off (a keep_alive that outlasts the thinking)."""
        after = later(g)
        turns = after[(numeric(after["turn"]) > 0) & numeric(after["think_s"]).notna()]
        saved = pd.Series(0.0, index=after.index)
        unloaded = _unloaded(turns)
        saved.loc[unloaded.index] = numeric(unloaded["loading_ms"]).fillna(0.0)
        return gain_step("predict_think", g, metric, float(np.nanmedian(numeric(after[metric]) - saved)))
