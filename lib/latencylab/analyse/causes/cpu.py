"""CPU taken by other processes: while the server processed a request, other processes on its machine used a
sizeable share of the cores, so its prompt processing ran slower than in quiet requests (waste: the server's work
took longer than it had to). Host evidence (collect/host.py): the CPU time every other process used in each
request's window, and the kernel's own accounting of the server's waiting (issue 33): the time its threads spent
runnable but waiting for a CPU (schedstat's run-queue wait), or where the kernel keeps none, the CPU pressure stall of
the server's own cgroup (a machine's counts every process's waits, so it is not the server's). That waiting is the
time the others cost, with or without a quiet request to compare with; quiet requests of the same model, where
there are some, are a second piece of evidence that must agree. Planted on the real servers: busy processes pinned
to the cores during a scenario, or for the whole run."""

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


def waiting(g: pd.DataFrame, metric: str) -> tuple[pd.Series, pd.Series, pd.Series, str]:
    """What the server waited for a CPU in each request (ms), the share of its runnable time that was, the time
    that cost the request's `metric`, and whose count it is: its thread that waited longest in a run queue
    ("runqueue"), else its own cgroup's CPU stall over the window ("cgroup"); NaN where the kernel says neither ("").
    The cost is that share of the metric, no more than the wait itself: a server that mostly sleeps (a double) may
    wait a large share of the little it runs, which costs a request no more than the wait."""
    nothing = pd.Series(math.nan, index=g.index)
    if "runqueue_ms" in g and numeric(g["runqueue_ms"]).notna().any():
        waits, shares, source = numeric(g["runqueue_ms"]), numeric(g["runqueue_share"]), "runqueue"
    elif "cpu_stall_ms" in g and (g["psi_scope"] == "cgroup").any():
        waits = numeric(g["cpu_stall_ms"]).where(g["psi_scope"] == "cgroup")
        shares, source = (waits / numeric(g["host_window_ms"])).clip(upper=1), "cgroup"
    else:
        return nothing, nothing, nothing, ""
    return waits, shares, pd.concat([waits, shares * numeric(g[metric])], axis=1).min(axis=1, skipna=False), source


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
    # the kernel's: what the server waited for a CPU in a contended request (median ms, and share of its runnable
    # time), whose count it is (`waiting`), and the time that cost a request on average (`waited_amount_ms`)
    waited_ms: float = math.nan
    waited_share: float = math.nan
    source: str = ""
    waited_amount_ms: float = math.nan

    def phrase(self, verdict: str, reason: str) -> Phrase:
        quiet = None if math.isnan(self.prefill_quiet) else Phrase("dx_cpu_quiet", {
            "prefill": tps(self.prefill), "quiet": tps(self.prefill_quiet), "quiet_n": count(self.quiet_n),
            "amount": ms(self.amount_ms)})
        if self.source and verdict != "refuted":
            return Phrase(f"dx_cpu_waited_{verdict}", {
                "others": share(self.contended_others), "cores": count(self.cores),
                "contended": count(self.contended_n), "n": count(self.n), "waited": ms(self.waited_ms),
                "waited_share": share(self.waited_share),
                "source": Phrase(f"dx_cpu_source_{self.source}"), "amount": ms(self.waited_amount_ms),
                "share": share(self.share), "quiet": quiet})
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
             "dx_cpu_decode", "dx_cpu_waited_confirmed", "dx_cpu_waited_present", "dx_cpu_quiet",
             "dx_cpu_source_runqueue", "dx_cpu_source_cgroup")
    findings = {"confirmed": "cpu"}

    def judge(self, g: pd.DataFrame, context: Context) -> Verdict:
        """Confirmed when the time other processes cost a request is material on average. Where the kernel counts the
        server's waiting for a CPU (`waiting`), that cost is the waiting's share of each contended request's metric,
        and where quiet requests exist their comparison must find a material cost too; else the prompt time of each
        contended request beyond what the quiet requests' prefill speed (same model, the whole report) needs; with
        neither, present: whether it slowed them is not guessed."""
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
        slowed = (numeric(contended["prompt_ms"]) - tokens / quiet_tps * 1000).clip(lower=0)
        amount = float(slowed.fillna(0).sum() / len(after)) if not math.isnan(quiet_tps) else math.nan
        latency = float(numeric(after[context.metric]).mean())
        values = replace(values, prefill=prefill_rate(contended)[2], prefill_quiet=quiet_tps,
                         decode=median(contended["decode_tps"]), decode_quiet=median(quiet["decode_tps"]),
                         amount_ms=amount, share=amount / latency if latency else math.nan)
        material = not math.isnan(amount) and context.scale.material(amount, latency)
        waits, shares, lost, source = waiting(contended, context.metric)
        if source and lost.notna().any():
            cost = float(lost.fillna(0).sum() / len(after))
            values = replace(values, waited_ms=median(waits), waited_share=median(shares), source=source,
                             waited_amount_ms=cost, share=cost / latency if latency else math.nan)
            # the quiet requests, where there are some, must agree: a second piece of evidence, not a substitute
            material = context.scale.material(cost, latency) and (math.isnan(amount) or material)
        return Verdict(self.name, key_of(g), "confirmed" if material else "present", values)
