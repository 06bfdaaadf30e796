import pandas as pd
import pytest

from latencylab.analyse import attribution, tables, targets
from latencylab.runs.columnar import samples_frame


def _frame():
    rows = [
        {"seq": 0, "scenario": "a", "ok": True, "warmup": True, "ttfb_ms": 999.0},
        {"seq": 1, "scenario": "a", "ok": True, "warmup": False, "ttfb_ms": 10.0},
        {"seq": 2, "scenario": "a", "ok": True, "warmup": False, "ttfb_ms": 20.0},
        {"seq": 3, "scenario": "a", "ok": True, "warmup": False, "ttfb_ms": 30.0},
        {"seq": 4, "scenario": "a", "ok": False, "warmup": False, "ttfb_ms": 5.0, "error_kind": "http"},
        {"seq": 5, "scenario": "b", "ok": True, "warmup": False, "ttfb_ms": 100.0},
    ]
    return samples_frame(rows)


def test_summary_matches_hand_computed_values():
    table = tables.summary(_frame())
    a = table.loc[("", "a")]  # keyed by (run, scenario); these samples name no run
    assert (a["n"], a["errors"]) == (3, 1)
    assert (a["mean"], a["median"], a["min"], a["max"]) == (20.0, 20.0, 10.0, 30.0)
    assert a["std"] == pytest.approx(10.0)  # sample std (ddof=1)
    assert a["cv"] == pytest.approx(0.5)
    assert list(table.columns) == tables.SUMMARY_COLUMNS


def test_failed_and_warmup_requests_never_enter_a_figure():
    table = tables.summary(_frame())
    a, b = table.loc[("", "a")], table.loc[("", "b")]
    assert a["max"] == 30.0 and a["min"] == 10.0
    assert b["n"] == 1 and pd.isna(b["std"]) and b["errors"] == 0


def test_scenarios_keep_the_study_order():
    frame = _frame().iloc[::-1]
    frame.loc[frame["scenario"] == "a", "scenario"] = "z"  # not alphabetical
    assert tables.scenario_order(frame) == [("", "z"), ("", "b")]
    assert list(tables.summary(frame).index) == [("", "z"), ("", "b")]


def _evidence_frame():
    rows = [
        # scenario a: one cold first request paying a 400 ms load, then warm ones
        {"seq": 0, "scenario": "a", "phase": "first", "state": "cold", "ttfb_ms": 600.0, "ttft_ms": 600.0,
         "load_ms": 400.0, "load_ms_source": "server", "prompt_eval_ms": 150.0, "eval_ms": 100.0,
         "output_tokens": 10, "fits_in_vram": False, "gpu_share": 0.6},
        {"seq": 1, "scenario": "a", "phase": "subsequent", "state": "warm", "ttfb_ms": 200.0, "ttft_ms": 200.0,
         "load_ms": 2.0, "prompt_eval_ms": 150.0, "eval_ms": 100.0, "output_tokens": 10, "fits_in_vram": False},
        {"seq": 2, "scenario": "a", "phase": "subsequent", "state": "warm", "ttfb_ms": 100.0, "ttft_ms": 100.0,
         "load_ms": 2.0, "prompt_eval_ms": 150.0, "eval_ms": 100.0, "output_tokens": 10, "fits_in_vram": False},
    ]
    return samples_frame([{**r, "ok": True, "warmup": False} for r in rows])


def test_decomposition_adds_up_to_ttft_and_flags_a_negative_rest():
    parts = tables.decompose(_evidence_frame())
    first = parts.iloc[0]
    # the first token comes from the prompt's logits: no decode step (eval 100 ms / 10 tokens) before it
    assert (first["load"], first["prompt"], first["first_token"]) == (400.0, 150.0, 0.0)
    assert first["rest"] == pytest.approx(600 - 400 - 150) and not first["rest_negative"]
    assert parts.iloc[2]["rest_negative"]  # 2 + 150 > 100: the server's figures overshoot


def test_load_share_counts_who_paid_a_load():
    frame = tables.keyed(_evidence_frame().assign(run_id="r", model="m", started_at=[0.0, 10.0, 20.0], e2e_ms=600.0))
    requests = pd.concat([frame, attribution.attribute(frame, "ttfb_ms")], axis=1)
    row = tables.load_share(requests).loc[("r", "a")]
    assert (row["n"], row["cold"], row["reload"]) == (3, 1, 0)
    assert row["paid_load_share"] == pytest.approx(1 / 3)
    # the cold start paid the only load: none of the 2 later requests loaded (their 2 ms are the scheduler's)
    assert (row["requests_later"], row["loads_later"], row["load_per_request"]) == (2, 0, 0.0)
    assert (row["load_cold_start"], row["metric_cold_start"], row["median_warm"]) == (400.0, 600.0, 150.0)
    assert pd.isna(row["load_mean_loaded"]) and pd.isna(row["median_paid"])


def test_a_resident_models_few_ms_of_load_are_no_load_in_any_table():
    # Ollama reports load_duration of a few ms for a resident model: the scheduler's, not a load (issue 32)
    parts = tables.decompose(_evidence_frame())
    assert list(parts["load"]) == [400.0, 0.0, 0.0]


def test_targets_pass_fail_and_no_evidence():
    goals = {"metric": "ttfb_ms", "first_ms": 2000, "subsequent_ms": 120, "mean_ms": 5000, "cv": 0.5,
             "fits_in_vram": True, "mean_stretch_ms": None}
    table = targets.evaluate_targets(_evidence_frame(), goals).set_index("target")
    assert table.loc["first_ms", "status"] == "pass" and table.loc["first_ms", "measured"] == 600.0
    assert table.loc["first_ms", "n"] == 1 and pd.isna(table.loc["first_ms", "ci_low"])  # one sample, no interval
    # median 150 of [200, 100]: its interval 100–200 straddles the goal 120
    assert table.loc["subsequent_ms", "status"] == "inconclusive" and table.loc["subsequent_ms", "measured"] == 150.0
    assert table.loc["mean_ms", "status"] == "pass"
    assert table.loc["cv", "measured"] == pytest.approx(264.575 / 300, rel=1e-4)  # std 264.6 / mean 300
    assert table.loc["fits_in_vram", "status"] == "fail"
    assert "mean_stretch_ms" not in table.index
    no_vram = _evidence_frame().assign(fits_in_vram=pd.NA).astype({"fits_in_vram": "boolean"})
    row = targets.evaluate_targets(no_vram, goals).set_index("target").loc["fits_in_vram"]
    assert row["status"] == "no_evidence" and row["measured"] is None


def test_sweep_table_only_for_sweeps():
    assert tables.sweep(_evidence_frame()).empty
    rows = [{"seq": i, "scenario": f"ka2-gap{gap}", "ok": True, "warmup": False, "keep_alive": "2",
             "idle_gap_s": gap, "state": state, "ttfb_ms": t}
            for i, (gap, state, t) in enumerate([(1.0, "warm", 50.0), (1.0, "warm", 60.0),
                                                 (4.0, "cold", 500.0), (4.0, "cold", 700.0)])]
    table = tables.sweep(samples_frame(rows))
    assert list(table["cold_share"]) == [0.0, 1.0] and list(table["mean"]) == [55.0, 600.0]
