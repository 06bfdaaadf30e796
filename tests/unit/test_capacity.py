"""Capacity figures per load level (issue 20), against values computed by hand."""

import numpy as np
import pandas as pd
import pytest

from latencylab.analyse import capacity
from latencylab.plan.study import SloSpec


def level(n, level, rate, *, gap, e2e, ttft, start=0.0, ok=None, lag=0.0, sweep_pass=None):
    """n requests scheduled `gap` s apart, each sent `lag` ms late and answered in `e2e` s, TTFT `ttft` ms."""
    rows = []
    for k in range(n):
        scheduled = start + k * gap
        rows.append({"run_id": "r", "scenario": "a", "seq": k, "warmup": False, "ok": True if ok is None else ok[k],
                     "level": level, "offered_rate_per_s": rate, "sweep_pass": sweep_pass, "concurrency": None,
                     "scheduled_at": scheduled, "started_at": scheduled + lag / 1000, "client_queue_ms": lag,
                     "e2e_ms": e2e * 1000, "ttft_ms": ttft, "tpot_ms": 10.0, "itl_ms": [10.0, 10.0],
                     "output_tokens": 4})
    return rows


def test_a_level_s_rates_attainment_and_goodput():
    # 11 requests 0.1 s apart (10/s), each 0.2 s: completions 0.1 s apart too; TTFT 50 ms but every fourth 500
    rows = level(11, 0, 10.0, gap=0.1, e2e=0.2, ttft=50.0)
    for k in (0, 4, 8):
        rows[k]["ttft_ms"] = 500.0
    rows[10]["ok"], rows[10]["e2e_ms"] = False, None
    table = capacity.levels(pd.DataFrame(rows), SloSpec(ttft_ms=100))
    (row,) = table.to_dict("records")
    assert row["requests"] == 11 and row["errors"] == 1
    assert row["offered_rate_per_s"] == pytest.approx(10.0)  # 10 gaps over 1.0 s
    assert row["achieved_rate_per_s"] == pytest.approx(10.0)  # 10 ends over 0.9 s: 9 / 0.9
    assert row["attainment"] == pytest.approx(7 / 11)  # three too slow, one failed
    assert row["goodput_per_s"] == pytest.approx(10.0 * 7 / 11)
    assert row["output_tokens_per_s"] == pytest.approx(40.0)
    assert row["ttft_p50"] == 50.0 and row["kind"] == "rate" and not row["client_limited"]


def test_the_saturation_point_is_the_last_level_held_before_the_first_that_broke():
    rows = (level(11, 0, 5.0, gap=0.2, e2e=0.1, ttft=20.0)
            + level(11, 1, 10.0, gap=0.1, e2e=0.1, ttft=30.0, start=10)
            # 20/s offered, completions only 10/s: the queue grows
            + level(11, 2, 20.0, gap=0.05, e2e=0.1, ttft=400.0, start=20))
    for k, row in enumerate(rows[22:]):
        row["e2e_ms"] = 100.0 + k * 50.0  # ends 0.1 s apart: 10/s
    table = capacity.levels(pd.DataFrame(rows), SloSpec(ttft_ms=200))
    assert list(table["achieved_rate_per_s"].round(6)) == [5.0, 10.0, 10.0]
    (point,) = capacity.saturation(table, 0.95)
    assert (point.status, point.rate, point.high) == ("found", 10.0, 20.0)
    # the median TTFT above the lowest rate's (20 ms): 10 ms at the level held, 380 at the one that broke
    assert point.grows["queue_p50_ms"] == pytest.approx((10.0, 380.0))


def test_a_level_the_client_could_not_send_is_no_saturation_point():
    rows = (level(11, 0, 5.0, gap=0.2, e2e=0.1, ttft=20.0)
            + level(11, 1, 50.0, gap=0.02, e2e=0.1, ttft=20.0, start=10, lag=40.0))
    for k, row in enumerate(rows[11:]):  # sent ever later: 40 ms, then 10 ms more each time
        row["started_at"] += k * 0.01
        row["client_queue_ms"] = 40.0 + k * 10
        row["e2e_ms"] = 100.0
    table = capacity.levels(pd.DataFrame(rows), SloSpec())
    assert list(table["client_limited"]) == [False, True]
    (point,) = capacity.saturation(table, 0.95)
    assert (point.status, point.rate, point.high) == ("client_limited", 5.0, None)


def test_every_level_held_and_no_level_held():
    held = capacity.levels(pd.DataFrame(level(11, 0, 5.0, gap=0.2, e2e=0.1, ttft=20.0)), SloSpec(ttft_ms=100))
    assert [(p.status, p.rate, p.high) for p in capacity.saturation(held, 0.95)] == [("held_all", 5.0, None)]
    slow = capacity.levels(pd.DataFrame(level(11, 0, 5.0, gap=0.2, e2e=0.1, ttft=200.0)), SloSpec(ttft_ms=100))
    assert [(p.status, p.rate, p.high) for p in capacity.saturation(slow, 0.95)] == [("none_held", None, 5.0)]


def test_no_levels_no_table():
    frame = pd.DataFrame(level(3, 0, 5.0, gap=0.2, e2e=0.1, ttft=20.0)).assign(level=np.nan)
    assert capacity.levels(frame, SloSpec()).empty
