"""Queueing: a typical request waited before the server worked on it — behind this run's other requests (too few
slots) or other clients' work — or in the client (waste). Where the server counts the requests it holds waiting for a
slot (llama-server's `requests_deferred`, vLLM's `num_requests_waiting`, scraped during the run), its count decides
whether a wait on the server was a queue. Planted: one-slot-concurrency-4, other-clients; real: a one-slot
llama-server at four requests at once (tests/integration/test_engine_metrics.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from latencylab.analyse.causes.base import (
    Cause,
    Context,
    count,
    fine_ms,
    gain_step,
    key_of,
    later,
    median,
    missing,
    share,
)
from latencylab.analyse.findings import Phrase, Quantity, Step, Values, Verdict
from latencylab.analyse.server_metrics import SCRAPES, WAITING, WAITING_SOURCE
from latencylab.analyse.stats import numeric

PRESENT_MS = 1.0  # a median wait under a millisecond is no wait at all
MIN_COUNTED = 3  # later requests with a scrape of the server's queue inside their wait: fewer say nothing


@dataclass(frozen=True)
class QueueingValues(Values):
    """The median server wait and client queueing, the wait's share of the median metric, the requests in flight
    and the most the server worked on at once (`slots`), where the wait came from (server, derived), the share of
    requests that overlapped another, whether the TTFT grows with the requests in flight (`serialised`)."""

    wait_ms: float = math.nan
    client_ms: float = 0.0
    share: float = math.nan
    concurrency: float = math.nan
    slots: float = math.nan
    source: str = ""
    overlap_share: float = math.nan
    serialised: bool = False
    faulted: float = math.nan  # the share of the waiting requests in which the server's processes faulted pages in
    # the server's own count of requests waiting for a slot, scraped inside later requests' waits: the most, the
    # share of those requests that saw one, how many scrapes, and the metric
    queued: float = math.nan
    queued_share: float = math.nan
    scrapes: int = 0
    queue_metric: str = ""
    threshold_ms: float = math.nan
    threshold_share: float = math.nan

    def phrase(self, verdict: str, reason: str) -> Phrase:
        if verdict == "no_evidence":
            return Phrase(f"dx_none_{reason}")
        who = None
        if not missing(self.slots):
            who = Phrase("dx_who_one_slot" if self.slots == 1 else "dx_who_slots",
                         {"concurrency": count(self.concurrency), "slots": count(self.slots)})
        elif verdict == "confirmed" and not missing(self.wait_ms):  # a few ms is the scheduler's own time
            who = Phrase("dx_who_others")
        return Phrase(f"dx_queueing_{verdict}", {
            "wait": fine_ms(self.wait_ms), "share": share(self.share),
            "source": Phrase("dx_wait_derived") if self.source == "derived" else None, "who": who,
            "client": Phrase("dx_client", {"client": fine_ms(self.client_ms)}) if self.client_ms >= 1 else None,
            "serialised": Phrase("dx_serialised") if self.serialised and not self.queued == 0 else None,
            "counted": self._counted(),
            "memory": Phrase("dx_wait_memory", {"faulted": share(self.faulted)}) if reason == "memory" else None})


    def _counted(self) -> Phrase | None:
        if missing(self.queued):
            return None
        if self.queued == 0:
            return Phrase("dx_counted_none", {"scrapes": count(self.scrapes), "gauge": Quantity(self.queue_metric,
                                                                                                 "text")})
        return Phrase("dx_counted_some", {"most": count(self.queued), "share": share(self.queued_share),
                                          "gauge": Quantity(self.queue_metric, "text")})


def _server_count(after: pd.DataFrame) -> dict[str, float | int | str]:
    """The server's own count of requests waiting for a slot during `after`'s waits, where enough was scraped."""
    seen = numeric(after.get(WAITING, pd.Series(dtype=float))).dropna()
    if len(seen) < MIN_COUNTED:
        return {}
    return {"queued": float(seen.max()), "queued_share": float((seen > 0).mean()),
            "scrapes": int(numeric(after[SCRAPES]).sum()), "queue_metric": str(after[WAITING_SOURCE].dropna().iloc[0])}


def _slots(g: pd.DataFrame, metric: str) -> int:
    """The most requests the server worked on at once: from each one's prompt start (its first byte less its
    prompt time) to its last byte, overlaps under a millisecond not counted."""
    start = numeric(g["started_at"]) + (numeric(g[metric]) - g["prompt_ms"].fillna(0.0)) / 1000
    end = numeric(g["started_at"]) + numeric(g["e2e_ms"]) / 1000
    starts, ends = start.dropna().to_numpy() + 0.001, end.dropna().to_numpy()
    times, steps = np.concatenate([starts, ends]), np.repeat([1, -1], [len(starts), len(ends)])
    busy = np.cumsum(steps[np.lexsort((steps, times))])  # at equal times, ends before starts
    return int(max(0, busy.max())) if len(busy) else 0


class Queueing(Cause):
    name = "queueing"
    words = ("dx_h_queueing", "dx_waste_queueing", "dx_queueing_confirmed", "dx_queueing_present",
             "dx_queueing_refuted", "dx_wait_derived", "dx_who_others", "dx_who_slots", "dx_who_one_slot",
             "dx_client", "dx_serialised", "dx_none_no_wait", "dx_wait_memory", "dx_counted_some", "dx_counted_none")
    findings = {"confirmed": "queueing"}

    def judge(self, g: pd.DataFrame, context: Context) -> Verdict:
        """Confirmed when a typical request waits a material time: on the server (Ollama's time held without
        work, or derived), or on the client; a server that works on one request at a time while several are in
        flight is named with the requests it served at once."""
        key, metric, scale = key_of(g), context.metric, context.scale
        after = later(g)
        latency = median(after[metric])
        wait = median(after["server_wait_ms"])
        client = sum(v for v in (median(after["client_queue_ms"]), median(after.get("client_wait_ms", pd.Series(
            dtype=float)))) if not math.isnan(v))
        concurrency = median(g["concurrency"])
        values = QueueingValues(
            wait_ms=wait, client_ms=client, share=wait / latency if latency else math.nan, concurrency=concurrency,
            slots=_slots(g, metric) if concurrency > 1 else math.nan,
            source="+".join(sorted(after["wait_source"].dropna().unique())),
            overlap_share=float(g["overlapped"].astype(bool).mean()), serialised=key in context.serialised,
            threshold_ms=scale.ms, threshold_share=scale.share, **_server_count(after))  # type: ignore[arg-type]
        if values.queued == 0:  # the server held none waiting: what it took beyond its work was no queue of its own
            values = replace(values, serialised=False)
            wait = 0.0
        elif math.isnan(wait) and values.queued > 0:
            # a server that times nothing of a request (vLLM's responses) but counted requests waiting for a slot:
            # the wait is what is left beyond the scenario's quickest delivery, as where it times only the prompt
            taken = numeric(after[metric])
            wait = float((taken - taken.min()).median())
            values = replace(values, wait_ms=wait, share=wait / latency if latency else math.nan, source="derived")
        if math.isnan(wait) and not values.serialised:
            return Verdict(self.name, key, "no_evidence", values, "no_wait")
        amount = max(0.0 if math.isnan(wait) else wait, client)
        if not values.serialised and scale.material(amount, latency) and "memory" in context.confirmed:
            # Where the machine is short of memory, a server that held a request without working on it was reading
            # its own pages back from storage (major faults in the window) or stalled for memory (the kernel's
            # memory pressure stall in its cgroup): memory pressure's time, not a queue.
            waited = after[numeric(after["server_wait_ms"]) >= scale.ms]
            faults = numeric(waited.get("major_faults", pd.Series(dtype=float)))
            stalled = numeric(waited.get("memory_stall_ms", pd.Series(dtype=float))).where(
                waited.get("psi_scope", pd.Series(dtype=object)) == "cgroup")
            known = faults.notna() | stalled.notna()
            paging = ((faults > 0) | (stalled > 0))[known]
            if len(paging) and paging.mean() >= 0.5 and client < scale.ms:
                return Verdict(self.name, key, "present", replace(values, faulted=float(paging.mean())), "memory")
        if values.serialised or scale.material(amount, latency):
            return Verdict(self.name, key, "confirmed", values)
        return Verdict(self.name, key, "present" if amount >= PRESENT_MS else "refuted", values)

    def gain(self, g: pd.DataFrame, metric: str) -> Step | None:
        """Each request's time less its wait."""
        after = later(g)
        if not after["server_wait_ms"].notna().any():
            return None
        return gain_step("predict_queueing", g, metric,
                         float((numeric(after[metric]) - after["server_wait_ms"].fillna(0.0)).median()))
