"""VRAM held by other processes: on the server's GPU, other processes held memory the model needed, so it did not
fit there wholly although it would have without them (waste: layers on the CPU for want of memory others took).
Host evidence (collect/host.py, NVML): the GPU's free memory and what its other processes held, before each
request; what the model needs is the check's estimate, else the server's own figure of its size. Tested only
against an NVML double: no GPU where it was written."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from latencylab.analyse.causes.base import RESIDENT, Cause, Context, key_of, median, mib, missing, share
from latencylab.analyse.findings import Phrase, Quantity, Values, Verdict
from latencylab.analyse.stats import numeric


@dataclass(frozen=True)
class VramValues(Values):
    """What other processes held on the server's GPU and who they were, its free memory, their utilisation, what the
    model needs (the check's estimate, or its size) and the share of it that sat on the GPU."""

    others: float = math.nan
    who: str | None = None
    util: float = math.nan
    free: float = math.nan
    need: float = math.nan
    own: float = math.nan  # what the model itself held there
    gpu_share: float = math.nan

    @property
    def would_fit(self) -> bool:
        """The model would have fitted wholly with the others' memory free."""
        return not missing(self.need) and self.need <= self.free + self.others + (0 if missing(self.own) else self.own)

    def phrase(self, verdict: str, reason: str) -> Phrase:
        fits = None if verdict != "present" else Phrase("dx_vram_fitted" if self.gpu_share >= RESIDENT
                                                         else "dx_vram_too_big")
        return Phrase(f"dx_vram_{verdict}", {
            "others": mib(self.others), "who": Quantity(self.who, "text"), "free": mib(self.free),
            "need": mib(self.need), "share": share(self.gpu_share), "fits": fits,
            "util": None if missing(self.util) else Phrase("dx_vram_util", {"util": share(self.util / 100)})})


class Vram(Cause):
    name = "vram"
    host = True
    words = ("dx_h_vram", "dx_waste_vram", "dx_vram_confirmed", "dx_vram_present", "dx_vram_refuted", "dx_vram_fitted",
             "dx_vram_too_big", "dx_vram_util")
    findings = {"confirmed": "vram"}

    def applies(self, g: pd.DataFrame) -> bool:
        """Only where NVML showed the server's GPU (a machine without one says nothing of VRAM)."""
        return super().applies(g) and bool(numeric(g["gpu_free_bytes"]).notna().any())

    def judge(self, g: pd.DataFrame, context: Context) -> Verdict:
        """Confirmed when other processes held memory on the server's GPU, the model was not wholly on it, and it
        would have fitted with their memory free."""
        on_gpu = g[numeric(g["gpu_free_bytes"]).notna()]
        named = on_gpu["gpu_others"].dropna()
        need = context.needs.get(key_of(g), median(g["model_size_bytes"]))
        values = VramValues(others=median(on_gpu["gpu_others_bytes"]), who=named.mode().iloc[0] if len(named) else None,
                            util=median(on_gpu["gpu_others_util_pct"]), free=median(on_gpu["gpu_free_bytes"]),
                            need=need, own=median(g["vram_bytes"]), gpu_share=median(g["gpu_share"]))
        if not values.others > 0:
            return Verdict(self.name, key_of(g), "refuted", values)
        spilled = not missing(values.gpu_share) and values.gpu_share < RESIDENT
        return Verdict(self.name, key_of(g), "confirmed" if spilled and values.would_fit else "present", values)
