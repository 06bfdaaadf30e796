"""Figures of a point per request draw a bounded, seeded sample of a big run, in which every state stays in sight,
and their titles say so (issue 24)."""

from __future__ import annotations

import pandas as pd
import pytest

from latencylab.analyse import compute, tables
from latencylab.analyse.findings import Findings, RunInfo
from latencylab.publish import figures, plots
from latencylab.runs.columnar import samples_frame


def _found(n: int, cold_every: int = 50) -> Findings:
    rows = [{"run_id": "r", "seq": i, "scenario": "a" if i % 2 else "b", "model": "m", "ok": True, "warmup": i < 2,
             "phase": "first" if i < 4 else "subsequent", "state": "cold" if i % cold_every == 0 else "warm",
             "started_at": 1000.0 + i, "ttfb_ms": 100.0 + i % 7, "e2e_ms": 300.0, "output_tokens": 10,
             "output_tokens_source": "server", "eval_ms": 100.0} for i in range(n)]
    return compute.findings(samples_frame(rows), [RunInfo(run_id="r", label="r")])


def test_up_to_the_limit_every_request_is_drawn(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(plots, "POINTS_MAX", 400)
    found = _found(400)
    assert plots.drawn(found, "timeline") == (400, 400)
    pd.testing.assert_frame_equal(plots.sample(found, "timeline"), found.samples)
    assert "random sample" not in figures.words(found, "timeline", "en")[0]


def test_past_it_each_group_keeps_its_share_and_a_rare_state_keeps_its_floor(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(plots, "POINTS_MAX", 400)
    monkeypatch.setattr(plots, "POINTS_MIN", 30)
    found = _found(4000)
    # groups (state, label, warmup): cold·b 79 → 79·400 // 4000 = 7, raised to 30; warm·a 1999 → 199; warm·b 1920
    # → 192; the two warm-ups (requests 0, cold·b, and 1, warm·a) keep theirs
    shown = plots.sample(found, "timeline")
    assert plots.drawn(found, "timeline") == (len(shown), 4000) and len(shown) == 30 + 199 + 192 + 1 + 1
    counts = shown.groupby(["state", "label"]).size()
    assert counts[("cold", "b")] == 31 and counts[("warm", "a")] == 200 and counts[("warm", "b")] == 192
    assert shown["warmup"].sum() == 2 and shown.index.is_monotonic_increasing  # drawn in the order they were sent
    pd.testing.assert_frame_equal(shown, plots.sample(found, "timeline"))  # seeded: the same sample each time
    title, alt = figures.words(found, "timeline", "en")
    assert "(a random sample of 423 of the 4,000 requests drawn)" in title and "423" in alt
    assert "(se dibuja una muestra aleatoria de 423 de las 4.000 peticiones)" in \
        figures.words(found, "timeline", "es")[0]


def test_the_box_summarises_every_request_and_draws_a_sample_of_points(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(plots, "POINTS_MAX", 400)
    monkeypatch.setattr(plots, "POINTS_MIN", 30)
    found = _found(4000)
    # (label, phase): the first requests of a and b (1 each) and their later ones (1998 each → 199)
    shown, total = plots.drawn(found, "box")
    assert (shown, total) == (1 + 1 + 199 + 199, 3998)  # the two warm-ups are not measured
    assert len(plots.sample(found, "box")) == shown  # the strip's points (the notebook's box cell draws them)
    assert len(tables.measured(found.samples)) == total  # the boxes: every measured request
