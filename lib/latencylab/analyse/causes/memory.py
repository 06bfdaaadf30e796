"""Memory pressure: the page cache could not keep the model, so a load read it from storage again after it had
been loaded (waste, where that made the loads materially slower), with the machine short of memory (what the
server could still use below the model file's size: MemAvailable, or its memory cgroup's room) or swapping.
Planted on the real servers: a memory cgroup limit on the server below what the model and its file need."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from latencylab.analyse.causes.base import Cause, Context, count, key_of, median, mib, missing, ms, share
from latencylab.analyse.causes.storage import loads, slower
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

    def phrase(self, verdict: str, reason: str) -> Phrase:
        swap = Phrase("dx_swap", {"n": count(self.swapped_n), "pages": count(self.swapped_pages)}) \
            if self.swapped_n else None
        slower = None if missing(self.extra_ms) else \
            Phrase("dx_memory_slower", {"extra": ms(self.extra_ms), "share": share(self.share)})
        return Phrase(f"dx_memory_{verdict}", {
            "reread": count(self.reread_n), "slower": slower, "available": mib(self.available),
            "size": mib(self.file_bytes), "swap": swap})


class Memory(Cause):
    name = "memory"
    host = True
    words = ("dx_h_memory", "dx_waste_memory", "dx_memory_confirmed", "dx_memory_present", "dx_memory_refuted",
             "dx_memory_slower", "dx_swap")
    findings = {"confirmed": "memory"}

    def judge(self, g: pd.DataFrame, context: Context) -> Verdict:
        """Confirmed when loads read the model from storage again, materially slower than from memory, while the
        server could use less memory than the model's file takes, or the machine swapped."""
        local = g[g["host"] == "local"]
        again = reread(g, context.data)
        available = numeric(local["mem_available_bytes"])
        file_bytes = numeric(local["model_file_bytes"])
        short = bool((available < file_bytes).any())
        swapped = numeric(local["swap_in_pages"]).fillna(0) + numeric(local["swap_out_pages"]).fillna(0)
        extra, latency = math.nan, math.nan
        if len(again):
            _, _, extra, latency = slower(again, context.data, context.metric)
        values = MemoryValues(
            reread_n=len(again), extra_ms=extra, share=extra / latency if latency else math.nan,
            available=float(available.min()) if available.notna().any() else math.nan, file_bytes=median(file_bytes),
            short=short, swapped_n=int((swapped > 0).sum()), swapped_pages=float(swapped.sum()),
            threshold_ms=context.scale.ms)
        if not len(again) and not values.swapped_n and not short:
            return Verdict(self.name, key_of(g), "refuted", values)
        material = not missing(extra) and context.scale.material(extra, latency)
        pressed = short or values.swapped_n > 0
        return Verdict(self.name, key_of(g), "confirmed" if len(again) and material and pressed else "present", values)
