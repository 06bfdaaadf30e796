"""Spread: what makes the slowest requests slow, after the cold start. A cause of its own (waste: the server
stalled, or loads or waits no confirmed cause owns) only when it is material and no confirmed cause explains it;
longer prompts are the floor's, never waste. A conversation's turns are slow for reasons a cause named above owns
(the turns after the overflow, those that missed the cache, those that paid a load after a think time): a tail made
of them is that cause's, not a stall. Planted: occasional-stalls (and, never confirmed, the chat conditions)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

import pandas as pd

from latencylab.analyse.causes.base import (
    MIN_MODES_N,
    TAIL,
    Cause,
    Context,
    count,
    key_of,
    later,
    median,
    ms,
    processed_tokens,
    share,
)
from latencylab.analyse.findings import Phrase, Values, Verdict
from latencylab.analyse.stats import numeric

CV_LIMIT = 0.25  # spread is a finding above this CV, unless the study sets its own CV goal
STALL_RATE = 3.0  # the slowest requests' prompt time per token this many times a typical one's: the server stalled
LONGER_PROMPT = 1.2  # the slowest requests' prompts this much longer than a typical one: they are the long ones
# What explains the slowest requests, by the part whose excess is largest (a wait or a prompt time is resolved
# further in `judge`), and the cause that owns it where that cause is confirmed.
EXPLAINS = {"loading_ms": "loads", "client_network_ms": "network", "unattributed_ms": "unattributed"}
OWNED = {"loads": "reloads", "wait": "queueing"}


@dataclass(frozen=True)
class VarianceValues(Values):
    """CV after the cold start against its goal; the slowest 10 % (`tail_n`, from `tail_from`), their excess over
    the median, the part that explains it (`explains`: loads, wait, long_prompt, stall_prompt, stall_wait,
    network, unattributed, the conversation cause whose turns they are — overflow, cache, think — or None) with its
    mean in the tail and in a typical request; the cold start's metric."""

    n: int = 0
    cold_start_ms: float = math.nan
    threshold_ms: float = math.nan
    cv: float = math.nan
    goal: float = math.nan
    tail_n: int = 0
    tail_from: float = math.nan
    excess_ms: float = math.nan
    median: float = math.nan
    explains: str | None = None
    explains_ms: float = math.nan
    typical_ms: float = math.nan

    def phrase(self, verdict: str, reason: str) -> Phrase:
        if verdict == "no_evidence":
            cold = None if math.isnan(self.cold_start_ms) else \
                Phrase("dx_cold_start_ms", {"ms": ms(self.cold_start_ms)})
            return Phrase(f"dx_none_{reason}", {"cold": cold})
        explains = Phrase("dx_tail_none") if self.explains is None else \
            Phrase(f"dx_tail_{self.explains}", {"part": ms(self.explains_ms), "typical": ms(self.typical_ms)})
        key = "dx_variance_floor" if verdict == "present" and self.explains == "long_prompt" else \
            f"dx_variance_{verdict}"
        return Phrase(key, {"cv": share(self.cv), "goal": share(self.goal), "tail_n": count(self.tail_n),
                            "tail_from": ms(self.tail_from), "excess": ms(self.excess_ms), "median": ms(self.median),
                            "explains": explains})


def _owner(tail: pd.Index, part: str | None, owned: Mapping[str, tuple[str, pd.Index]]) -> str | None:
    """The cause named above whose requests the slowest ones all are, slow in the part it owns (of several that own
    that part, the one owning most of them); None when any of them is no such cause's."""
    causes = {name: requests for name, (paid, requests) in owned.items() if paid == part}
    if not causes or not tail.isin(pd.Index([]).append(list(causes.values()))).all():
        return None
    return max(causes, key=lambda name: int(tail.isin(causes[name]).sum()))


class Variance(Cause):
    name = "variance"
    words = ("dx_h_variance", "dx_waste_variance", "dx_variance_confirmed", "dx_variance_present",
             "dx_variance_floor", "dx_variance_refuted", "dx_tail_loads", "dx_tail_wait", "dx_tail_long_prompt",
             "dx_tail_stall_prompt", "dx_tail_stall_wait", "dx_tail_network", "dx_tail_unattributed",
             "dx_tail_overflow", "dx_tail_cache", "dx_tail_think", "dx_tail_preemption", "dx_tail_none",
             "dx_none_too_few", "dx_cold_start_ms")
    findings = {"confirmed": "stalls"}

    def judge(self, g: pd.DataFrame, context: Context) -> Verdict:
        """Spread after the cold start, and what makes the slowest requests slow: the part whose excess over a
        typical request is largest; a prompt or a wait that grew without a longer prompt or a cause to show for
        it is the server stalling."""
        key, metric = key_of(g), context.metric
        after = later(g)
        after = after[numeric(after[metric]).notna()]
        cold = g[g["cold_start"] & numeric(g[metric]).notna()]
        base = VarianceValues(n=len(after), cold_start_ms=median(cold[metric]) if len(cold) else math.nan,
                              threshold_ms=context.scale.ms)
        if len(after) < MIN_MODES_N:
            return Verdict(self.name, key, "no_evidence", base, "too_few")
        v = numeric(after[metric])
        middle = float(v.median())
        cv = float(v.std(ddof=1) / v.mean())
        tail = after.loc[v.sort_values(ascending=False).index[:math.ceil(TAIL * len(after))]]
        excess = float(numeric(tail[metric]).mean() - middle)
        parts = {p: float(tail[p].mean() - after[p].median()) for p in ("server_wait_ms", "loading_ms", "prompt_ms",
                                                                        "client_network_ms", "unattributed_ms")
                 if tail[p].notna().any()}
        part = max(parts, key=parts.get) if parts else None
        # Long prompts explain a slow prompt time only when the slowest requests' prompts are longer and were not
        # processed much slower per token; otherwise the server stalled on prompts of ordinary length. Counted in
        # the tokens the server processed: a conversation's turn resends a history it mostly had cached.
        tokens = processed_tokens(after)
        rate = after["prompt_ms"] / tokens
        longer = bool(rate.notna().any() and rate[tail.index].median() <= STALL_RATE * rate.median()
                      and tokens[tail.index].median() >= LONGER_PROMPT * tokens.median())
        owner = _owner(tail.index, part, context.owned)
        explains = owner or {**EXPLAINS, "server_wait_ms": "wait" if "queueing" in context.confirmed else "stall_wait",
                             "prompt_ms": "long_prompt" if longer else "stall_prompt"}.get(part or "", None)
        goal = context.goals.get("cv")
        values = replace(
            base, cv=cv, goal=float(goal) if goal else CV_LIMIT, tail_n=len(tail),
            tail_from=float(numeric(tail[metric]).min()), excess_ms=excess, median=middle, explains=explains,
            explains_ms=float(tail[part].mean()) if part else math.nan,
            typical_ms=float(after[part].median()) if part else math.nan)
        if not (cv > values.goal and context.scale.material(excess, middle + excess)):
            return Verdict(self.name, key, "refuted", values)
        # Longer prompts are the server's own work (the floor), never waste.
        explained = explains == "long_prompt" or owner is not None or OWNED.get(explains or "") in context.confirmed
        return Verdict(self.name, key, "present" if explained else "confirmed", values)
