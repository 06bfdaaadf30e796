"""Loads that read the model from storage: the model's file was not in the page cache when the server loaded it
(the seed's "carga desde disco"), against loads that found it there (memory). Waste only where storage made the
loads materially slower than loads from memory; a load that read from storage and was no slower (a fast disk)
confirms nothing, and the report says so. Host evidence (collect/host.py): the file's share in the page cache
before the request, the bytes the server read from storage. Where the run holds no load of the file from memory to
compare with (or where it shows more than they do), the kernel's own accounting judges (issue 33): a load that read
most of the file at a rate far below what the page cache gives (this machine's, measured once by latencylab; else a
stated physical reference), and waited for storage most of its time (the I/O pressure stall in its window), was
slowed by storage by that wait.
Planted on the real servers: slow storage (the page cache dropped, reads throttled by a cgroup), and its control
(dropped, not throttled)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import pandas as pd

from latencylab.analyse.causes.base import Cause, Context, count, key_of, median, mib, missing, ms, share
from latencylab.analyse.findings import Phrase, Quantity, Values, Verdict
from latencylab.analyse.stats import numeric

FROM_STORAGE = 0.5  # a load that found less than half of the model's file in the page cache read it from storage
MOST = 0.5  # most of the file read from storage, most of the load spent waiting for it: more than half
FAR_BELOW = 0.1  # a read rate under a tenth of the page cache's is far below what memory gives
# Where latencylab could not measure this machine's page cache (the file was never wholly cached in the run): memory
# gives a file at 1 GB/s at least (a copy from DRAM runs at several GB/s on any machine of the last fifteen years;
# this 2-core VM's page cache gives a 98 MB file at about 3 GB/s), so a rate far below 1 GB/s is far below memory's.
STATED_RATE = 1e9


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
    # the kernel's evidence (`stalled`): the I/O stall of a load from storage, the part of
    # the load it covers, the page cache's rate (`reference`: "measured" by latencylab, or "stated") and what the
    # load would take from memory; `scope`: whose stall it is (the server's cgroup, or the machine's)
    stall_ms: float = math.nan
    cover: float = math.nan
    reference_rate: float = math.nan
    reference: str = ""
    scope: str = ""
    by_stall: bool = False  # judged by the kernel's stall (no load from memory, or it showed more lost than they did)

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
        read = {"storage_n": count(self.storage_n, "loads_storage"), "n": count(self.n, "loads_host"),
                "cached": share(self.cached), "read": mib(self.read_bytes), "rate": Quantity(self.read_rate, "mbps"), "load": ms(self.storage_ms)}
        if self.by_stall:
            return Phrase("dx_storage_stalled" if verdict == "confirmed" else "dx_storage_unstalled", {
                **read, "stall": ms(self.stall_ms), "cover": share(self.cover), "scope": Phrase(f"dx_psi_{self.scope}"),
                "reference": Phrase(f"dx_storage_reference_{self.reference}",
                                    {"rate": Quantity(self.reference_rate, "gbps")}),
                "from_memory": ms(self.storage_ms - self.extra_ms), "extra": ms(self.extra_ms),
                "share": share(self.share)})
        key = f"dx_storage_{verdict}" if not missing(self.memory_ms) else "dx_storage_uncompared"
        return Phrase(key, {**read, "memory": memory, "extra": ms(self.extra_ms), "share": share(self.share)})


def reference_rate(files: pd.Series, data: pd.DataFrame) -> tuple[float, str]:
    """What the page cache gives the files `files` (bytes/s): as latencylab measured it on this machine during the
    report's runs ("measured"), else the stated physical reference ("stated")."""
    measured = numeric(data.loc[data["model_file"].isin(files.dropna().unique()), "page_cache_bps"]).dropna() \
        if "page_cache_bps" in data else pd.Series(dtype=float)
    return (float(measured.median()), "measured") if len(measured) else (STATED_RATE, "stated")


def stalled(read: pd.DataFrame, data: pd.DataFrame, metric: str,
            values: StorageValues) -> tuple[StorageValues, float, float]:
    """The kernel's verdict on loads from storage, which needs no load from memory to compare with: each load slowed by
    storage (most of its file read, at a rate far below the page cache's, waiting for storage most of its time) lost
    the time it waited (its I/O stall, no more than the load less what the page cache would take); `values` with the
    medians of those figures, the total lost, and the most storage can have cost them at all — the time they
    waited for it, every load counted (NaN where the kernel kept no stall: the cause is not guessed)."""
    stall = numeric(read["io_stall_ms"]) if "io_stall_ms" in read else pd.Series(math.nan, index=read.index)
    if stall.isna().all():
        return values, math.nan, math.nan
    rate, source = reference_rate(read["model_file"], data)
    load = numeric(read["load_ms"])
    from_memory_ms = numeric(read["read_bytes"]) / rate * 1000
    lost = pd.concat([stall, (load - from_memory_ms).clip(lower=0)], axis=1).min(axis=1)
    most = float(lost.sum())
    slowed = ((numeric(read["read_bytes"]) >= MOST * numeric(read["model_file_bytes"]))
              & (numeric(read["read_rate"]) <= FAR_BELOW * rate) & (stall >= MOST * load))
    lost = lost.where(slowed, 0.0)
    latency = median(read[metric])
    scope = read["psi_scope"].dropna()
    return replace(values, stall_ms=median(stall), cover=median(stall / load), reference_rate=rate, reference=source,
                   scope=str(scope.mode().iloc[0]) if len(scope) else "system", extra_ms=median(lost),
                   share=median(lost) / latency if latency else math.nan), float(lost.sum()), most


class Storage(Cause):
    name = "storage"
    host = True
    words = ("dx_h_storage", "dx_waste_storage", "dx_storage_confirmed", "dx_storage_present", "dx_storage_refuted",
             "dx_storage_uncompared", "dx_storage_memory", "dx_none_no_host_loads", "dx_storage_stalled",
             "dx_storage_unstalled", "dx_storage_reference_measured", "dx_storage_reference_stated", "dx_psi_cgroup",
             "dx_psi_system")
    findings = {"confirmed": "storage"}

    def judge(self, g: pd.DataFrame, context: Context) -> Verdict:
        """Confirmed when the loads that read the model from storage took longer than loads of the same file from
        the page cache by a material part of the scenario's mean first byte (spread over its requests), no more
        than they waited for storage where the kernel says; without such loads to compare with, or where it shows
        more, by the time the loads waited for storage (`stalled`)."""
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
        total = extra * len(read)
        kernel, waited, most = stalled(read, context.data, context.metric, values)
        # the kernel's wait for storage where nothing compares, or where it shows more lost than the loads from
        # memory do (a busy CPU slows those too, and the difference then hides what storage cost); and where it
        # says less, no more than it: what the loads did not wait for storage is not storage's (the first load after
        # the server started took twice as long from the page cache too, and a load from storage after it as long)
        if not missing(waited) and (memory.empty or missing(total) or waited > total):
            values, total = replace(kernel, by_stall=True), waited
        elif not missing(most) and not missing(total) and most < total:
            values, total = replace(values, extra_ms=most / len(read), share=most / len(read) / latency
                                    if latency else math.nan), most
        # material as a reload is: over the scenario's requests (a load from storage once in thirty is not why
        # its requests are slow), against its mean first byte
        requests = numeric(g[context.metric]).dropna()
        spread_ms = total / len(requests) if len(requests) and not missing(total) else math.nan
        material = not missing(spread_ms) and context.scale.material(spread_ms, float(requests.mean()))
        return Verdict(self.name, key_of(g), "confirmed" if material else "present", values)
