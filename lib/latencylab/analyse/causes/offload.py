"""The model not wholly in VRAM: layers on the CPU that the GPU would run faster (waste), or a server that used
no GPU at all. Planted: partial-offload, no-gpu."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import pandas as pd

from latencylab.analyse.causes.base import RESIDENT, Cause, Context, count, key_of, median, missing, share, tps
from latencylab.analyse.findings import Phrase, Quantity, Values, Verdict
from latencylab.analyse.stats import numeric


@dataclass(frozen=True)
class OffloadValues(Values):
    """The median GPU share, the model's size and the VRAM it took (bytes), its layers, the decode speeds (of the
    same model wholly on the GPU and spilled, or of the whole report: `decode_scope`), the check's prediction
    and its verdict (`not_testable` when no GPU was used), and for no_gpu `why` (cpu_build, every_model, fits)."""

    share: float = math.nan
    size: float = math.nan
    vram: float = math.nan
    layers: float = math.nan
    layers_total: float = math.nan
    decode: float = math.nan
    decode_gpu: float = math.nan
    decode_spilled: float = math.nan
    decode_scope: str | None = None  # model, report
    predicted_pct: int | None = None
    check: str | None = None  # confirmed, refuted, not_testable
    why: str | None = None

    def phrase(self, verdict: str, reason: str) -> Phrase:
        if verdict == "no_evidence":
            return Phrase(f"dx_none_{reason}")
        check = None if not self.check else Phrase("dx_check_prediction", {
            "predicted": share(None if self.predicted_pct is None else self.predicted_pct / 100),
            "verdict": Phrase(f"dx_check_{self.check}")})
        if verdict == "no_gpu":
            look = "dx_look_cpu_build" if self.why == "cpu_build" else "dx_look_server"
            return Phrase("dx_offload_no_gpu", {"why": Phrase(f"dx_no_gpu_{self.why}"), "look": Phrase(look),
                                                "check": check})
        layers = None if missing(self.layers) or missing(self.layers_total) else \
            Phrase("dx_layers", {"layers": count(int(self.layers)), "total": count(int(self.layers_total))})
        compare = None if missing(self.decode_gpu) or missing(self.decode_spilled) else \
            Phrase(f"dx_decode_compare_{self.decode_scope}", {"gpu": tps(self.decode_gpu),
                                                              "spilled": tps(self.decode_spilled)})
        return Phrase(f"dx_offload_{verdict}", {
            "share": share(self.share), "vram": Quantity(self.vram, "mib"), "size": Quantity(self.size, "mib"),
            "layers": layers, "decode": tps(self.decode), "compare": compare, "check": check})


class Offload(Cause):
    name = "offload"
    words = ("dx_h_offload", "dx_waste_offload", "dx_offload_confirmed", "dx_offload_refuted", "dx_offload_no_gpu",
             "dx_verdict_no_gpu", "dx_look_cpu_build", "dx_look_server", "dx_no_gpu_cpu_build",
             "dx_no_gpu_every_model", "dx_no_gpu_fits", "dx_layers", "dx_decode_compare_model",
             "dx_decode_compare_report", "dx_check_prediction", "dx_check_confirmed", "dx_check_refuted",
             "dx_check_not_testable", "dx_none_not_reported")
    findings = {"confirmed": "offload", "no_gpu": "no_gpu"}

    def judge(self, g: pd.DataFrame, context: Context) -> Verdict:
        """Where the model sat; a server with every model on the CPU did not use a GPU, which is not "does not
        fit" (unless the check predicted that nothing fits)."""
        key, data = key_of(g), context.data
        prediction = context.predicted.get(key)
        shares = numeric(g["gpu_share"]).dropna()
        if shares.empty:
            if (g["gpu_layers_source"] == "cpu-build").any():
                return Verdict(self.name, key, "no_gpu", OffloadValues(why="cpu_build"))
            return Verdict(self.name, key, "no_evidence", OffloadValues(), "not_reported")
        measured = float(shares.median())
        same = context.by_model.get(g["model"].iloc[-1], data.iloc[:0])
        scope = "model"
        if not ((same["residency"] == "gpu").any() and same["residency"].isin(["partial", "cpu"]).any()):
            same, scope = data, "report"
        values = OffloadValues(
            share=measured, size=median(g["model_size_bytes"]), vram=median(g["vram_bytes"]),
            layers=median(g["gpu_layers"]), layers_total=median(g["gpu_layers_total"]), decode=median(g["decode_tps"]),
            decode_gpu=median(same.loc[same["residency"] == "gpu", "decode_tps"]),
            decode_spilled=median(same.loc[same["residency"].isin(["partial", "cpu"]), "decode_tps"]),
            decode_scope=scope, predicted_pct=prediction[0] if prediction else None,
            check=prediction[1] if prediction else None)
        run_shares = numeric(context.by_run.get(key[0], data["gpu_share"].iloc[:0])).dropna()
        nothing_fits = prediction is not None and prediction[0] == 0
        if measured == 0 and (run_shares == 0).all() and not nothing_fits:
            return Verdict(self.name, key, "no_gpu", replace(values, why="fits" if prediction else "every_model",
                                                             check="not_testable" if prediction else None))
        return Verdict(self.name, key, "confirmed" if measured < RESIDENT else "refuted", values)
