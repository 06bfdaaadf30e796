"""Memory pressure: the page cache could not keep the model, so a load read it from storage again after it had
been loaded (waste, where that made the loads materially slower than loads from memory, or, with none in the
report, where they waited for storage most of the time: `storage.stalled`), with the machine short of memory (what the
server could still use below the model file's size: MemAvailable, or its memory cgroup's room) or swapping. Or, by
the kernel's own accounting (issue 33), with or without a load to compare: the server's requests waited for memory
(the memory pressure stall of its cgroup, or of the machine) for a material part of their first byte while its
processes faulted pages back from storage (major faults: the stall is theirs). Planted on the real servers: a
memory cgroup limit on the server below what the model and its file need."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import pandas as pd

from latencylab.analyse.causes.base import Cause, Context, count, key_of, median, mib, missing, ms, share
from latencylab.analyse.causes.storage import StorageValues, loads, slower, stalled
from latencylab.analyse.findings import Phrase, Values, Verdict
from latencylab.analyse.stats import numeric


def reread(g: pd.DataFrame, data: pd.DataFrame) -> pd.DataFrame:
    """The loads of `g` that read their model's file from storage although an earlier load of the run had read it."""
    every = loads(data)
    read = loads(g)
    read = read[read["from_storage"]]
    earlier = [bool(((every["run"] == r["run"]) & (every["model_file"] == r["model_file"])
                     & (numeric(every["started_at"]) < r["started_at"])).any()) for _, r in read.iterrows()]
    return read[pd.Series(earlier, index=read.index, dtype=bool)]


@dataclass(frozen=True)
class MemoryValues(Values):
    """Loads that read the model from storage again (`reread_n`), how much slower than from memory and the share of
    their metric; the least memory the server could still use against the model file's size; the requests during
    which the machine swapped, and the pages swapped in and out."""

    reread_n: int = 0
    extra_ms: float = math.nan
    share: float = math.nan
    available: float = math.nan
    file_bytes: float = math.nan
    short: bool = False
    swapped_n: int = 0
    swapped_pages: float = 0.0
    threshold_ms: float = math.nan
    # the kernel's: the memory stall a request waited on average, its share of the mean metric, the requests with
    # major faults and how many, whose stall it is (the server's cgroup, or the machine's)
    stall_ms: float = math.nan
    stall_share: float = math.nan
    faulted_n: int = 0
    faults: float = 0.0
    scope: str = ""
    stalled: bool = False  # material by the kernel's count alone

    def phrase(self, verdict: str, reason: str) -> Phrase:
        swap = Phrase("dx_swap", {"n": count(self.swapped_n), "pages": count(self.swapped_pages)}) \
            if self.swapped_n else None
        slower = None if missing(self.extra_ms) else \
            Phrase("dx_memory_slower", {"extra": ms(self.extra_ms), "share": share(self.share)})
        stall = None if missing(self.stall_ms) else Phrase("dx_memory_stall", {
            "stall": ms(self.stall_ms), "share": share(self.stall_share), "scope": Phrase(f"dx_psi_{self.scope}"),
            "faults": count(self.faults), "faulted": count(self.faulted_n)})
        key = "dx_memory_stalled" if self.stalled and verdict == "confirmed" else f"dx_memory_{verdict}"
        return Phrase(key, {
            "reread": count(self.reread_n), "slower": slower, "available": mib(self.available),
            "size": mib(self.file_bytes), "swap": swap, "stall": stall})


class Memory(Cause):
    name = "memory"
    host = True
    words = ("dx_h_memory", "dx_waste_memory", "dx_memory_confirmed", "dx_memory_present", "dx_memory_refuted",
             "dx_memory_slower", "dx_swap", "dx_memory_stall", "dx_memory_stalled", "dx_psi_cgroup", "dx_psi_system")
    findings = {"confirmed": "memory"}

    def judge(self, g: pd.DataFrame, context: Context) -> Verdict:
        """Confirmed when loads read the model from storage again, materially slower than from memory, while the
        server could use less memory than the model's file takes, or the machine swapped; or where the kernel's
        memory stall during the requests in which the server faulted pages back is material (`stalled`)."""
        local = g[g["host"] == "local"]
        again = reread(g, context.data)
        available = numeric(local["mem_available_bytes"])
        file_bytes = numeric(local["model_file_bytes"])
        short = bool((available < file_bytes).any())
        swapped = numeric(local["swap_in_pages"]).fillna(0) + numeric(local["swap_out_pages"]).fillna(0)
        extra, latency = math.nan, math.nan
        if len(again):
            _, _, extra, latency = slower(again, context.data, context.metric)
        if len(again) and missing(extra):  # no load from memory to compare with: what the kernel says they waited
            waited, _, _ = stalled(again, context.data, context.metric, StorageValues())
            extra, latency = waited.extra_ms, median(again[context.metric])
        values = MemoryValues(
            reread_n=len(again), extra_ms=extra, share=extra / latency if latency else math.nan,
            available=float(available.min()) if available.notna().any() else math.nan, file_bytes=median(file_bytes),
            short=short, swapped_n=int((swapped > 0).sum()), swapped_pages=float(swapped.sum()),
            threshold_ms=context.scale.ms)
        values = kernel(local, context, values)
        if values.stalled:
            return Verdict(self.name, key_of(g), "confirmed", values)
        if not len(again) and not values.swapped_n and not short:
            return Verdict(self.name, key_of(g), "refuted", values)
        material = not missing(extra) and context.scale.material(extra, latency)
        pressed = short or values.swapped_n > 0
        return Verdict(self.name, key_of(g), "confirmed" if len(again) and material and pressed else "present", values)


def kernel(local: pd.DataFrame, context: Context, values: MemoryValues) -> MemoryValues:
    """The kernel's memory stall in the requests `local` (host evidence taken): `values` with its figures, `stalled`
    where it is material on average in the requests in which the server's own processes took major faults (a
    machine's stall with none of them is someone else's)."""
    if "memory_stall_ms" not in local or numeric(local["memory_stall_ms"]).isna().all():
        return values
    metric = numeric(local[context.metric])
    faults = numeric(local["major_faults"]).fillna(0)
    stall = pd.concat([numeric(local["memory_stall_ms"]), metric], axis=1).min(axis=1)  # no more than the request
    cost = float(stall.where(faults > 0, 0.0).fillna(0).mean())
    latency = float(metric.mean())
    scope = local["psi_scope"].dropna()
    return replace(values, stall_ms=float(stall.mean()), stall_share=cost / latency if latency else math.nan,
                   faulted_n=int((faults > 0).sum()), faults=float(faults.sum()),
                   scope=str(scope.mode().iloc[0]) if len(scope) else "system",
                   stalled=context.scale.material(cost, latency))
