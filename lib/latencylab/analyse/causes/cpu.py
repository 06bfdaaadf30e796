"""CPU taken by other processes: while the server processed a request, other processes on its machine used a
sizeable share of the cores, so its prompt processing ran slower than in quiet requests (waste: the server's work
took longer than it had to). Host evidence (collect/host.py): the CPU time every other process used in each
request's window. Planted on the real servers: busy processes pinned to the cores during a scenario."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import pandas as pd

from latencylab.analyse.causes.base import (
    Cause,
    Context,
    count,
    host_share,
    key_of,
    later,
    median,
    ms,
    prefill_rate,
    processed_tokens,
    share,
    tps,
)
from latencylab.analyse.findings import Phrase, Values, Verdict
from latencylab.analyse.stats import numeric

CONTENDED = 0.25  # other processes used at least a quarter of the machine's cores during the request (else: quiet)


@dataclass(frozen=True)
class CpuValues(Values):
    """The median share of the cores others used during the scenario's requests after the cold start, the cores,
    the contended requests (`contended_n` of `n`) and the quiet ones of the same model in the report; prefill and
    decode speeds of each; the prompt time others cost a request on average (`amount_ms`, against the quiet prefill
    speed; unknown without a quiet request to compare with) and its share."""

    n: int = 0
    contended_n: int = 0
    quiet_n: int = 0
    others: float = math.nan
    contended_others: float = math.nan
    cores: float = math.nan
    prefill: float = math.nan
    prefill_quiet: float = math.nan
    decode: float = math.nan
    decode_quiet: float = math.nan
    amount_ms: float = math.nan
    share: float = math.nan
    threshold_ms: float = math.nan
    threshold_share: float = math.nan

    def phrase(self, verdict: str, reason: str) -> Phrase:
        if verdict == "refuted":
            return Phrase("dx_cpu_refuted", {"others": share(self.others), "cores": count(self.cores),
                                             "n": count(self.n)})
        decode = None if math.isnan(self.decode) or math.isnan(self.decode_quiet) else \
            Phrase("dx_cpu_decode", {"contended": tps(self.decode), "quiet": tps(self.decode_quiet)})
        return Phrase("dx_cpu_uncompared" if math.isnan(self.prefill_quiet) else f"dx_cpu_{verdict}", {
            "others": share(self.contended_others), "cores": count(self.cores), "contended": count(self.contended_n),
            "n": count(self.n), "prefill": tps(self.prefill), "quiet": tps(self.prefill_quiet),
            "quiet_n": count(self.quiet_n), "amount": ms(self.amount_ms),
            "share": share(self.share), "decode": decode})


class Cpu(Cause):
    name = "cpu"
    host = True
    words = ("dx_h_cpu", "dx_waste_cpu", "dx_cpu_confirmed", "dx_cpu_present", "dx_cpu_refuted", "dx_cpu_uncompared",
             "dx_cpu_decode")
    findings = {"confirmed": "cpu"}

    def judge(self, g: pd.DataFrame, context: Context) -> Verdict:
        """Confirmed when the prompt time other processes cost a request is material on average: the prompt time of
        each contended request beyond what the quiet requests' prefill speed (same model, the whole report) needs;
        without a quiet request to compare with, present: whether it slowed them is not guessed."""
        after = later(g[g["host"] == "local"])
        others = host_share(after)
        contended = after[others >= CONTENDED]
        data = context.data[context.data["model"] == g["model"].iloc[0]]
        quiet = data[host_share(data) < CONTENDED]
        values = CpuValues(n=len(after), contended_n=len(contended), quiet_n=len(quiet), others=median(others),
                           contended_others=median(host_share(contended)), cores=median(after["host_cores"]),
                           threshold_ms=context.scale.ms, threshold_share=context.scale.share)
        if contended.empty:
            return Verdict(self.name, key_of(g), "refuted", values)
        quiet_tps = prefill_rate(quiet)[2]  # the floor's definition: a typical request's tokens over its time
        tokens = processed_tokens(contended)
        cost = (numeric(contended["prompt_ms"]) - tokens / quiet_tps * 1000).clip(lower=0)
        amount = float(cost.fillna(0).sum() / len(after)) if not math.isnan(quiet_tps) else math.nan
        latency = float(numeric(after[context.metric]).mean())
        values = replace(values, prefill=prefill_rate(contended)[2], prefill_quiet=quiet_tps,
                         decode=median(contended["decode_tps"]), decode_quiet=median(quiet["decode_tps"]),
                         amount_ms=amount, share=amount / latency if latency else math.nan)
        material = not math.isnan(amount) and context.scale.material(amount, latency)
        return Verdict(self.name, key_of(g), "confirmed" if material else "present", values)
