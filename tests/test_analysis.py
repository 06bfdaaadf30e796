import pandas as pd
import pytest

from latencylab import analysis
from latencylab.store import samples_frame


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
    table = analysis.summary(_frame())
    a = table.loc["a"]
    assert (a["n"], a["errors"]) == (3, 1)
    assert (a["mean"], a["median"], a["min"], a["max"]) == (20.0, 20.0, 10.0, 30.0)
    assert a["std"] == pytest.approx(10.0)  # sample std (ddof=1)
    assert a["cv"] == pytest.approx(0.5)
    assert list(table.columns) == analysis.SUMMARY_COLUMNS


def test_failed_and_warmup_requests_never_enter_a_figure():
    table = analysis.summary(_frame())
    assert table.loc["a", "max"] == 30.0 and table.loc["a", "min"] == 10.0
    assert table.loc["b", "n"] == 1 and pd.isna(table.loc["b", "std"]) and table.loc["b", "errors"] == 0


def test_scenarios_keep_the_study_order():
    frame = _frame().iloc[::-1]
    frame.loc[frame["scenario"] == "a", "scenario"] = "z"  # not alphabetical
    assert analysis.scenario_order(frame) == ["z", "b"]
    assert list(analysis.summary(frame).index) == ["z", "b"]
