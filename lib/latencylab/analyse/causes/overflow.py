"""The conversation outgrew the context: from the turn where the history passed `num_ctx`, the server cut it to fit
(Ollama drops the oldest messages) and, the prompt no longer starting as the cached one did, processed the whole
prompt again on every later turn (waste: a context that holds the conversation, or a shorter history, keeps the
cache). Planted: chat-overflow."""

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


@dataclass(frozen=True)
class OverflowValues(Values):
    """The first turn whose history passed `num_ctx` (`turn`, the history then: `history`), the truncated turns
    (`truncated_n` of `turns_n`), the prompt time each paid beyond a turn that reused its history (`cost_ms`), that
    a request on average (`amount_ms`, `share` of the mean metric), and a context that would hold the longest
    history (`needed_ctx`)."""

    turns_n: int | None = None
    truncated_n: int | None = None
    turn: float = math.nan
    num_ctx: float = math.nan
    history: float = math.nan
    longest: float = math.nan
    cost_ms: float = math.nan
    amount_ms: float = math.nan
    share: float = math.nan
    needed_ctx: float = math.nan

    def phrase(self, verdict: str, reason: str) -> Phrase:
        if verdict == "no_evidence":
            return Phrase(f"dx_none_{reason}")
        ctx = None if missing(self.num_ctx) else Phrase("dx_overflow_ctx", {"num_ctx": count(self.num_ctx)})
        return Phrase(f"dx_overflow_{verdict}", {
            "turn": count(self.turn), "history": count(self.history), "ctx": ctx, "truncated": count(self.truncated_n),
            "turns": count(self.turns_n), "cost": ms(self.cost_ms), "amount": ms(self.amount_ms),
            "share": share_of(self.share), "longest": count(self.longest), "needed": count(self.needed_ctx)})


def _costs(g: pd.DataFrame) -> pd.Series:
    """Per truncated turn, its prompt time beyond what the scenario's turns that reused their history took (the
    new tokens' time); where none reused, beyond its estimated new tokens at the first turns' speed."""
    prompt_ms = numeric(g["prompt_eval_ms"])
    truncated = g["truncated"].fillna(False).astype(bool)
    reused = ~truncated & (numeric(g["reusable"]) > 0) & (numeric(g["missed"]) == 0)
    base = median(prompt_ms[reused])
    if missing(base):
        base = median(numeric(g["ms_per_token"]) * (numeric(g["prompt_tokens"]) - numeric(g["reusable"])))
    return (prompt_ms - (0.0 if missing(base) else base)).clip(lower=0.0).where(truncated).dropna()


def needed_context(longest: float, answer: float) -> float:
    """A context that holds a history of `longest` tokens and one more answer: the next power of two (Ollama's
    and llama.cpp's contexts are usually sized so; any size at least this large holds it)."""
    return float(2 ** math.ceil(math.log2(max(longest + answer, 1.0))))


class Overflow(Cause):
    name = "overflow"
    words = ("dx_h_overflow", "dx_waste_overflow", "dx_overflow_confirmed", "dx_overflow_present",
             "dx_overflow_refuted", "dx_overflow_ctx", "dx_none_no_turns", "next_predict_overflow")
    findings = {"confirmed": "overflow"}
    part = "prompt_ms"

    def applies(self, g: pd.DataFrame) -> bool:
        return is_conversation(g)

    def owns(self, g: pd.DataFrame) -> pd.Index:
        """The turns from the overflow on: their history cut, their whole prompt processed again."""
        return g.index[g["truncated"].fillna(False).astype(bool)] if "truncated" in g else g.index[:0]

    def judge(self, g: pd.DataFrame, context: Context) -> Verdict:
        """Confirmed when the truncated turns' extra prompt time is material on average."""
        if "truncated" not in g or numeric(g["turn"]).notna().sum() == 0:
            return Verdict(self.name, key_of(g), "no_evidence", OverflowValues(), "no_turns")
        turns = g[numeric(g["turn"]).notna()]
        truncated = turns[turns["truncated"].fillna(False).astype(bool)]
        first = turns[turns["overflow"].fillna(False).astype(bool)]
        costs = _costs(turns)
        after = later(g)
        latency = mean(after[context.metric])
        amount = float(costs.sum() / len(after)) if len(after) else math.nan
        longest = float(numeric(turns["history_tokens"]).max())
        answer = float(numeric(turns["output_tokens"]).max())
        values = OverflowValues(
            turns_n=len(turns), truncated_n=len(truncated), turn=float(numeric(first["turn"]).min()),
            num_ctx=float(numeric(turns["num_ctx"]).max()) if "num_ctx" in turns else math.nan,
            history=median(first["history_tokens"]), longest=longest, cost_ms=mean(costs),
            amount_ms=amount, share=amount / latency if latency and not missing(latency) else math.nan,
            needed_ctx=needed_context(longest, 0.0 if missing(answer) else answer))
        if truncated.empty:
            return Verdict(self.name, key_of(g), "refuted", values)
        return Verdict(self.name, key_of(g), "confirmed" if context.scale.material(amount, latency) else "present",
                       values)

    def gain(self, g: pd.DataFrame, metric: str) -> Step | None:
        """The median with each truncated turn's extra prompt time taken off: what a context that holds the
        conversation would leave (its turns reuse their history as the earlier ones did)."""
        turns = g[numeric(g["turn"]).notna()]
        after = later(g)
        saved = pd.Series(0.0, index=after.index)
        costs = _costs(turns)
        saved.loc[costs.index.intersection(after.index)] = costs
        return gain_step("predict_overflow", g, metric, float(np.nanmedian(numeric(after[metric]) - saved)))
