"""Preemptions: the server put requests back for want of KV-cache memory on the GPU and computed them again (vLLM's
recompute), so that the requests it preempted during paid for it (waste: memory pressure on the GPU). The evidence
is the server's own counter (vLLM's `num_preemptions`, scraped during the run: `analyse.server_metrics`), its rise
from the scrape before each request to the scrape after it; llama-server counts none. Planted on the vLLM double
(tests/doubles/vllm.py, `preempt_every`: tests/integration/test_vllm_double.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from latencylab.analyse.causes.base import Cause, Context, count, gain_step, key_of, later, median, ms, share
from latencylab.analyse.findings import Phrase, Quantity, Step, Values, Verdict
from latencylab.analyse.server_metrics import PREEMPTED, PREEMPTED_SOURCE
from latencylab.analyse.stats import numeric

MIN_COUNTED = 3  # later requests with a scrape before and after them: fewer say nothing of the counter


@dataclass(frozen=True)
class PreemptionValues(Values):
    """During `preempted_n` of `counted_n` later requests (those with a scrape before and after) the server's counter
    (`counter`) rose, by up to `most` in one; their median metric (`slow_ms`) against that of the others
    (`quiet_ms`), the difference (`extra_ms`) and its share of theirs."""

    counter: str = ""
    counted_n: int = 0
    preempted_n: int = 0
    most: float = math.nan
    slow_ms: float = math.nan
    quiet_ms: float = math.nan
    extra_ms: float = math.nan
    share: float = math.nan
    threshold_ms: float = math.nan
    threshold_share: float = math.nan

    def phrase(self, verdict: str, reason: str) -> Phrase:
        if verdict == "no_evidence":
            return Phrase(f"dx_none_{reason}", {"metric_name": Quantity(self.counter or None, "text")})
        said = {"preempted": count(self.preempted_n), "n": count(self.counted_n), "most": count(self.most),
                "counter": Quantity(self.counter, "text"), "slow": ms(self.slow_ms), "quiet": ms(self.quiet_ms),
                "extra": ms(self.extra_ms), "share": share(self.share)}
        if verdict == "present" and reason == "uncompared":
            return Phrase("dx_preemption_uncompared", said)
        return Phrase(f"dx_preemption_{verdict}", said)


def _rises(g: pd.DataFrame) -> pd.Series:
    """The counter's rise around each later request, where a scrape fell before and after it."""
    return numeric(later(g).get(PREEMPTED, pd.Series(dtype=float))).dropna()


class Preemption(Cause):
    name = "preemption"
    words = ("dx_h_preemption", "dx_waste_preemption", "dx_preemption_confirmed", "dx_preemption_present",
             "dx_preemption_uncompared", "dx_preemption_refuted",
             "dx_none_few_preemption_scrapes", "next_predict_preemption")
    findings = {"confirmed": "preemption"}
    # vLLM times nothing of a request: what a recompute costs lies in no part the server gives figures for
    part = "unattributed_ms"

    def applies(self, g: pd.DataFrame) -> bool:
        """Only where the server publishes a preemption count (vLLM): llama-server and Ollama have no such thing to
        say "no evidence" of, in every report of theirs."""
        return PREEMPTED_SOURCE in g and bool(g[PREEMPTED_SOURCE].notna().any())

    def owns(self, g: pd.DataFrame) -> pd.Index:
        """The requests during which the server preempted."""
        rises = _rises(g)
        return rises[rises > 0].index

    def judge(self, g: pd.DataFrame, context: Context) -> Verdict:
        """Confirmed when the later requests during which the server preempted are materially slower (the difference
        of medians, against their median) than those during which it did not."""
        key, metric = key_of(g), context.metric
        scale = context.scale
        rises = _rises(g)
        counter = str(g[PREEMPTED_SOURCE].dropna().iloc[0])  # there is one: `applies`
        if len(rises) < MIN_COUNTED:
            return Verdict(self.name, key, "no_evidence", PreemptionValues(counter=counter),
                           "few_preemption_scrapes")
        after = later(g).loc[rises.index]
        hit = rises > 0
        slow, quiet = median(after.loc[hit, metric]), median(after.loc[~hit, metric])
        values = PreemptionValues(counter=counter, counted_n=len(rises), preempted_n=int(hit.sum()),
                                  most=float(rises.max()), slow_ms=slow, quiet_ms=quiet, extra_ms=slow - quiet,
                                  share=(slow - quiet) / slow if slow else math.nan,
                                  threshold_ms=scale.ms, threshold_share=scale.share)
        if not hit.any():
            return Verdict(self.name, key, "refuted", values)
        if hit.all():
            return Verdict(self.name, key, "present", values, "uncompared")
        return Verdict(self.name, key, "confirmed" if scale.material(slow - quiet, slow) else "present", values)

    def gain(self, g: pd.DataFrame, metric: str) -> Step | None:
        """The median with each request the server preempted during at the median of those it did not; none where
        they are fewer than half: the median is then one of the others already (the fix shows in the tail)."""
        rises = _rises(g)
        hit = rises[rises > 0].index
        if 2 * len(hit) < len(rises):
            return None
        value = numeric(later(g)[metric]).copy()
        value.loc[hit] = median(value.loc[rises[rises == 0].index])
        return gain_step("predict_preemption", g, metric, median(value))
