"""Loads that read the model from storage: the model's file was not in the page cache when the server loaded it
(the seed's "carga desde disco"), against loads that found it there (memory). Waste only where storage made the
loads materially slower than loads from memory; a load that read from storage and was no slower (a fast disk)
confirms nothing, and the report says so. Host evidence (collect/host.py): the file's share in the page cache
before the request, the bytes the server read from storage. Planted on the real servers: slow storage (the page
cache dropped, reads throttled by a cgroup), and its control (dropped, not throttled)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import pandas as pd

from latencylab.analyse.causes.base import Cause, Context, count, key_of, median, mib, missing, ms, share
from latencylab.analyse.findings import Phrase, Quantity, Values, Verdict
from latencylab.analyse.stats import numeric

FROM_STORAGE = 0.5  # a load that found less than half of the model's file in the page cache read it from storage


def loads(data: pd.DataFrame) -> pd.DataFrame:
    """The real loads (not waits for another's) with host evidence, each with `from_storage`, its read rate
    (`read_rate`, bytes/s) and, for a load from memory, the rate of its file (`file_rate`)."""
    known = data[data["loaded"].fillna(False).astype(bool) & numeric(data["cached_share"]).notna()].copy()
    load_s = numeric(known["load_ms"]) / 1000
    known["from_storage"] = numeric(known["cached_share"]) < FROM_STORAGE
    known["read_rate"] = (numeric(known["read_bytes"]) / load_s).where(load_s > 0)
    known["file_rate"] = (numeric(known["model_file_bytes"]) / load_s).where(load_s > 0)
    return known


def from_memory(files: pd.Series, data: pd.DataFrame) -> pd.DataFrame:
    """The report's loads of the model files `files` that found them in the page cache."""
    every = loads(data)
    return every[~every["from_storage"] & every["model_file"].isin(files.dropna().unique())]


def slower(read: pd.DataFrame, data: pd.DataFrame, metric: str) -> tuple[float, float, float, float]:
    """How much slower the loads `read` from storage were than the report's loads of the same file from memory:
    (the median load from storage, the median from memory, their difference, the median `metric` of the requests
    that read); NaN where nothing from memory compares."""
    storage_ms, memory_ms = median(read["load_ms"]), median(from_memory(read["model_file"], data)["load_ms"])
    return storage_ms, memory_ms, storage_ms - memory_ms, median(read[metric])


@dataclass(frozen=True)
class StorageValues(Values):
    """The scenario's loads with host evidence (`n`), those from storage with the share of the file they found
    cached, the bytes read, the read rate and their median load; the report's loads of the same file from memory
    (`memory_n`: every scenario's, the scenario's own among them) with their rate and median load; how much slower
    storage made a load and its share of the metric."""

    n: int = 0
    storage_n: int = 0
    memory_n: int = 0
    cached: float = math.nan
    read_bytes: float = math.nan
    read_rate: float = math.nan
    storage_ms: float = math.nan
    memory_rate: float = math.nan
    memory_ms: float = math.nan
    extra_ms: float = math.nan
    share: float = math.nan
    threshold_ms: float = math.nan
    threshold_share: float = math.nan

    def quantities(self) -> dict[str, float]:
        return {"loads_host": self.n, "loads_storage": self.storage_n, "loads_memory_report": self.memory_n}

    def phrase(self, verdict: str, reason: str) -> Phrase:
        if verdict == "no_evidence":
            return Phrase(f"dx_none_{reason}")
        if verdict == "refuted":  # its own loads, every one from memory: the report's others compare nothing here
            return Phrase("dx_storage_refuted", {"n": count(self.n, "loads_host"), "memory": None})
        memory = Phrase("dx_storage_memory", {"n": count(self.memory_n, "loads_memory_report"),
                                               "rate": Quantity(self.memory_rate, "gbps"),
                                               "load": ms(self.memory_ms)}) if self.memory_n else None
        key = f"dx_storage_{verdict}" if not missing(self.memory_ms) else "dx_storage_uncompared"
        return Phrase(key, {
            "storage_n": count(self.storage_n, "loads_storage"), "n": count(self.n, "loads_host"),
            "cached": share(self.cached),
            "read": mib(self.read_bytes), "rate": Quantity(self.read_rate, "mbps"), "load": ms(self.storage_ms),
            "memory": memory, "extra": ms(self.extra_ms), "share": share(self.share)})


class Storage(Cause):
    name = "storage"
    host = True
    words = ("dx_h_storage", "dx_waste_storage", "dx_storage_confirmed", "dx_storage_present", "dx_storage_refuted",
             "dx_storage_uncompared", "dx_storage_memory", "dx_none_no_host_loads")
    findings = {"confirmed": "storage"}

    def judge(self, g: pd.DataFrame, context: Context) -> Verdict:
        """Confirmed when the loads that read the model from storage took longer than loads of the same file from
        the page cache by a material part of the scenario's mean first byte (spread over its requests)."""
        every = loads(g)
        if every.empty:
            return Verdict(self.name, key_of(g), "no_evidence", StorageValues(), "no_host_loads")
        read = every[every["from_storage"]]
        memory = from_memory(every["model_file"], context.data)
        values = StorageValues(n=len(every), storage_n=len(read), memory_n=len(memory),
                               memory_rate=median(memory["file_rate"]), memory_ms=median(memory["load_ms"]),
                               threshold_ms=context.scale.ms, threshold_share=context.scale.share)
        if read.empty:
            return Verdict(self.name, key_of(g), "refuted", values)
        storage_ms, _, extra, latency = slower(read, context.data, context.metric)
        values = replace(values, cached=median(read["cached_share"]), read_bytes=median(read["read_bytes"]),
                         read_rate=median(read["read_rate"]), storage_ms=storage_ms, extra_ms=extra,
                         share=extra / latency if latency else math.nan)
        # material as a reload is: over the scenario's requests (a load from storage once in thirty is not why
        # its requests are slow), against its mean first byte
        requests = numeric(g[context.metric]).dropna()
        spread_ms = extra * len(read) / len(requests) if len(requests) and not missing(extra) else math.nan
        material = not missing(spread_ms) and context.scale.material(spread_ms, float(requests.mean()))
        return Verdict(self.name, key_of(g), "confirmed" if material else "present", values)
