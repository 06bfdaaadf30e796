"""The diagnosis and every measured figure on samples written by hand; expected values computed by hand in comments."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from latencylab.analyse import compute
from latencylab.analyse.diagnosis import per_request
from latencylab.analyse.findings import RunInfo
from latencylab.plan.check import Finding
from latencylab.publish import document, exports
from latencylab.runs.store import samples_frame

RUN = RunInfo(run_id="r1", label="r1", study="hand")


def _row(seq: int, scenario: str, **values) -> dict:
    base = {"run_id": "r1", "seq": seq, "scenario": scenario, "backend": "ollama", "model": scenario, "ok": True,
            "warmup": False, "phase": "first" if seq < 2 else "subsequent", "state": "warm",
            "started_at": 1000.0 + 10 * seq, "e2e_ms": 500.0, "load_ms": 0.0, "load_ms_source": "probe"}
    return {**base, **values}


def _samples() -> pd.DataFrame:
    rows = []
    # reloads: cold first (load 400 of 500 ms), one reload later (300 of 400), two warm (100 each)
    for seq, state, ttfb, load in ((0, "cold", 500.0, 400.0), (2, "reload", 400.0, 300.0), (4, "warm", 100.0, 0.0),
                                   (6, "warm", 100.0, 0.0)):
        rows.append(_row(seq, "reloads", state=state, ttfb_ms=ttfb, ttft_ms=ttfb, load_ms=load,
                         load_ms_source="server" if load else "probe", gpu_share=0.62, model_size_bytes=10 * 2**20,
                         vram_bytes=int(6.2 * 2**20), output_tokens=10, output_tokens_source="server", eval_ms=200.0))
    # prompt: warm, TTFT = 50 + 0.5 × tokens, prompt time 0.4 × tokens; two lengths (two modes); resident
    for i in range(20):
        tokens = 100 if i % 2 else 400
        ttft = 50 + 0.5 * tokens + i % 3  # 100–102 ms and 250–252 ms
        rows.append(_row(10 + 2 * i, "prompt", ttfb_ms=ttft, ttft_ms=ttft, prompt_tokens=tokens,
                         prompt_eval_ms=0.4 * tokens, cached_tokens=10 if i < 5 else 0, gpu_share=1.0,
                         model_size_bytes=10 * 2**20, output_tokens=11, output_tokens_source="chunks",
                         e2e_ms=ttft + 200))
    return samples_frame(rows)


@pytest.fixture(scope="module")
def found():
    return compute.findings(_samples(), [RUN])


def _verdict(found, cause: str, scenario: str):
    return next(v for v in found.diagnosis.verdicts if v.cause == cause and v.key == ("r1", scenario))


def test_decode_and_prefill_speeds_come_from_the_server_else_the_client():
    frame = per_request(samples_frame([
        _row(1, "a", output_tokens=10, output_tokens_source="server", eval_ms=100.0, ttft_ms=100.0, e2e_ms=300.0,
             prompt_tokens=120, cached_tokens=20, prompt_eval_ms=50.0),
        _row(2, "a", output_tokens=11, output_tokens_source="chunks", ttft_ms=100.0, e2e_ms=300.0)]))
    # server: 10 tokens / 100 ms = 100 tok/s; client: (11 − 1) tokens / (300 − 100) ms = 50 tok/s
    assert list(frame["decode_tps"]) == [100.0, 50.0] and list(frame["decode_source"]) == ["server", "client"]
    # prefill: (120 − 20 cached) tokens / 50 ms = 2000 tok/s; no prompt time: unknown
    assert frame["prefill_tps"].iloc[0] == 2000.0 and math.isnan(frame["prefill_tps"].iloc[1])


def test_every_measured_figure_per_scenario(found):
    table = found.measured_figures
    decode = table.loc[("r1", "reloads", "decode_tps")]
    assert decode["source"] == "server" and decode["median"] == 50.0  # 10 tokens / 200 ms
    client = table.loc[("r1", "prompt", "decode_tps")]
    assert client["source"] == "client" and client["median"] == 50.0  # (11 − 1) / 200 ms
    prefill = table.loc[("r1", "prompt", "prefill_tps")]
    # 400 tokens / 160 ms = 2500 tok/s for every uncached request; the cached ones are slightly slower
    assert prefill["median"] == 2500.0 and prefill["n"] == 20
    assert table.loc[("r1", "prompt", "e2e_ms"), "n"] == 20


def test_reloads_between_requests_are_confirmed_with_their_share(found):
    v = _verdict(found, "reloads", "reloads")
    # 1 of 3 later requests reloaded; loads 700 ms of 1100 ms of TTFB
    assert v.verdict == "confirmed" and (v.values["later_paid"], v.values["later_n"]) == (1, 3)
    assert v.values["load_ms"] == 350.0 and v.values["explained"] == pytest.approx(700 / 1100)
    assert _verdict(found, "reloads", "prompt").verdict == "refuted"


def test_offload_is_confirmed_at_62_percent_and_refuted_when_resident(found):
    spilled, resident = _verdict(found, "offload", "reloads"), _verdict(found, "offload", "prompt")
    assert spilled.verdict == "confirmed" and spilled.values["share"] == 0.62
    assert resident.verdict == "refuted"
    assert found.diagnosis.decode_by_residency["gpu"] == 50.0


def test_prompt_processing_grows_with_prompt_tokens(found):
    v = _verdict(found, "prompt", "prompt")
    # TTFT = 50 + 0.5 × tokens (+0…2 ms): slope ≈ 0.5 ms per token, 150 ms more for 400 tokens than for 100
    assert v.verdict == "confirmed" and v.values["slope"] == pytest.approx(0.5, abs=0.01)
    assert v.values["rho"] > 0.8 and v.values["p"] < 0.05
    assert v.values["cache_hits"] == 0.25  # 5 of 20 requests reused cached tokens


def test_two_modes_are_explained_by_prompt_length(found):
    (modes,) = found.diagnosis.modes
    assert modes.key == ("r1", "prompt") and modes.by_prompt and modes.agreement == 1.0
    assert (modes.low_n, modes.high_n, modes.threshold) == (10, 10, 100.0)
    assert modes.low_median == pytest.approx(101, abs=1) and modes.high_median == pytest.approx(251, abs=1)


def test_variance_names_what_explains_the_tail():
    rows = [_row(i, "v", ttfb_ms=1000.0 if i % 10 == 0 else 100.0 + i, state="cold" if i % 10 == 0 else "warm",
                 load_ms=900.0 if i % 10 == 0 else 0.0) for i in range(20)]
    found = compute.findings(samples_frame(rows), [RUN])
    v = _verdict(found, "variance", "v")
    # 2 cold requests of 20 at 1000 ms: the slowest 10 % (2) are both cold (100 %, 10 % overall)
    assert v.verdict == "confirmed" and v.values["explains"] == "loads" and v.values["tail_n"] == 2
    assert (v.values["tail_share"], v.values["overall_share"]) == (1.0, 0.1)


def test_overlapping_requests_that_are_slower_confirm_queueing():
    rows = [_row(i, "q", started_at=1000.0 + (0 if i < 4 else 10 * i), e2e_ms=800.0,
                 ttfb_ms=600.0 if i < 4 else 100.0) for i in range(8)]
    found = compute.findings(samples_frame(rows), [RUN])
    v = _verdict(found, "queueing", "q")
    assert v.verdict == "confirmed" and v.values["overlap_share"] == 0.5  # 4 sent at once, 600 against 100 ms


def test_no_evidence_says_why():
    rows = [_row(i, "c", state="unknown", ttfb_ms=100.0, gpu_layers_source="cpu-build") for i in range(3)]
    found = compute.findings(samples_frame(rows), [RUN])
    assert _verdict(found, "reloads", "c").reason == "no_state"
    assert _verdict(found, "offload", "c").reason == "cpu_build"
    assert _verdict(found, "variance", "c").verdict == "no_evidence"  # 3 requests


CHECK = [{"rule": "memory-partial", "level": "warning", "scenario": "reloads",
          "evidence": {"model": "m", "num_ctx": 4096, "weights_gb": 2.03, "kv_gb": 1.5, "margin_gb": 0.5,
                       "need_gb": 4.03, "budget_gb": 3.0, "budget_source": "study", "gpu_pct": 60}}]


@pytest.mark.parametrize("lang", ["en", "es"])
def test_the_check_before_the_run_is_confirmed_by_the_measured_share(lang):
    found = compute.findings(_samples(), [RUN], checks={"r1": CHECK})
    assert found.diagnosis.predicted == {("r1", "reloads"): (60, "confirmed")}  # 62 % measured, 60 % predicted
    # the check's own type, with the label of the run it was checked before
    assert found.diagnosis.checks == [Finding("memory-partial", "warning", "reloads", CHECK[0]["evidence"], run="r1")]
    assert found.diagnosis.checks[0].to_dict() == CHECK[0]  # check.json's form has no label
    text = document.section(found, "diagnosis", lang)
    # the check's share and the measured one in one format (it read "about 60 % … measured: 62%")
    assert {"en": "about 60% on the GPU", "es": "cerca del 60\u00a0% en la GPU"}[lang] in text
    assert {"en": "measured: 62% on the GPU, so the prediction is confirmed",
            "es": "medido: 62\u00a0% en la GPU, así que la predicción queda confirmada"}[lang] in text
    summary = exports.summary(found)
    assert summary["diagnosis"]["check"][0]["confirmation"] == {"predicted_pct": 60, "verdict": "confirmed"}
    assert {v["cause"] for v in summary["diagnosis"]["verdicts"]} == {"reloads", "offload", "prompt", "queueing",
                                                                     "variance"}


def test_the_two_modes_are_worded_by_prompt_length(found):
    en, es = document.section(found, "diagnosis", "en"), document.section(found, "diagnosis", "es")
    assert "prompt length explains them: the requests with more than 100 prompt tokens" in en
    assert "la longitud del prompt los explica: las peticiones con más de 100 tokens de prompt" in es


def test_prompt_modes_are_found_under_slow_requests_from_other_work():
    # 13 short prompts at 120–144 ms, 6 long ones at 260–285 ms, 11 requests slowed by other work (600–1600 ms)
    rows = [_row(i, "m", ttfb_ms=120.0 + 2 * i, prompt_tokens=65) for i in range(13)]
    rows += [_row(20 + i, "m", ttfb_ms=260.0 + 5 * i, prompt_tokens=117) for i in range(6)]
    rows += [_row(30 + i, "m", ttfb_ms=600.0 + 100 * i, prompt_tokens=65 if i % 2 else 117) for i in range(11)]
    found = compute.findings(samples_frame(rows), [RUN])
    (modes,) = found.diagnosis.modes
    assert modes.by_prompt and (modes.low_n, modes.high_n, modes.threshold) == (13, 6, 65.0)
    assert (modes.low_median, modes.high_median) == (132.0, 272.5)  # medians of 120…144 and of 260…285
    assert (modes.beyond_n, modes.beyond_from) == (11, 600.0)
    text = document.section(found, "diagnosis", "en")
    assert "prompt length explains them" in text and "The 11 slowest requests (from 600\u00a0ms on)" in text
