"""`compute.findings()` on samples written by hand; every expected value is computed by hand in a comment."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from latencylab.analyse import compute, tables
from latencylab.analyse.findings import RunInfo, run_info
from latencylab.runs.columnar import samples_frame
from latencylab.runs.store import RunMeta

RUN = RunInfo(run_id="r1", label="r1", study="hand", targets={"metric": "ttfb_ms"},
              scenarios={"base": {"model": "q8", "keep_alive": 2, "options": {"num_ctx": 8192}},
                         "fast": {"model": "q4", "keep_alive": -1, "options": {"num_ctx": 2048}}})
GOALS = {"metric": "ttfb_ms", "first_ms": 500, "subsequent_ms": 150, "mean_ms": 600, "cv": None, "fits_in_vram": None}


def _samples(run_id: str = "r1") -> pd.DataFrame:
    base = [  # seq, phase, state, ttfb, load
        (1, "first", "cold", 1000.0, 700.0), (3, "subsequent", "cold", 600.0, 300.0),
        (5, "subsequent", "warm", 200.0, 0.0), (7, "subsequent", "warm", 200.0, 0.0),
    ]
    fast = [(2, "first", "warm", 100.0, 0.0), (4, "subsequent", "warm", 100.0, 0.0),
            (6, "subsequent", "warm", 120.0, 0.0), (8, "subsequent", "warm", 80.0, 0.0)]
    rows = [{"seq": 0, "scenario": "base", "ok": True, "warmup": True, "phase": "first", "state": "cold",
             "ttfb_ms": 5000.0}]
    rows += [{"seq": seq, "scenario": name, "ok": True, "warmup": False, "phase": phase, "state": state,
              "ttfb_ms": ttfb, "load_ms": load, "load_ms_source": "server" if state == "cold" else "probe"}
             for name, group in (("base", base), ("fast", fast)) for seq, phase, state, ttfb, load in group]
    rows.append({"seq": 9, "scenario": "base", "ok": False, "warmup": False, "phase": "subsequent",
                 "error_kind": "http", "error": "HTTP 500"})
    return samples_frame([{**r, "run_id": run_id, "backend": "llamacpp"} for r in rows])


@pytest.fixture(scope="module")
def found():
    return compute.findings(_samples(), [RUN], targets=GOALS)


def test_scenarios_are_keyed_by_run_and_name_in_the_study_order(found):
    assert found.keys == [("r1", "base"), ("r1", "fast")] and found.baseline == ("r1", "base")
    assert found.labels == {("r1", "base"): "base", ("r1", "fast"): "fast"} and found.metric == "ttfb_ms"


def test_phase_figures_match_hand_computed_values(found):
    base = found.phases.loc[("r1", "base", "all")]
    # measured: 1000, 600, 200, 200 (the warm-up and the failed request never count)
    assert (base["n"], base["errors"], base["mean"], base["median"]) == (4, 1, 500.0, 400.0)
    # std: deviations 500, 100, −300, −300 → 440 000 / 3 → 383.0; CV 383.0 / 500
    std = np.sqrt(440_000 / 3)
    assert base["std"] == pytest.approx(std) and base["cv"] == pytest.approx(std / 500)
    assert found.phases.loc[("r1", "base", "first"), "max"] == 1000.0
    assert found.phases.loc[("r1", "base", "subsequent"), "median"] == 200.0
    assert found.phases.loc[("r1", "fast", "all"), "median"] == 100.0


def test_loads_paid_are_counted_and_explained(found):
    load = found.load.loc[("r1", "base")]
    # 2 of 4 cold: the cold start (a 700 ms load, TTFB 1000) and 1 of the 3 later requests (300 of 600 ms): the
    # reloads cause's figures, 300 ms a load, 100 ms a later request, of their mean TTFB (600 + 200 + 200) / 3
    assert (load["cold"], load["paid_load_share"], load["load_mean_loaded"]) == (2, 0.5, 300.0)
    assert (load["requests_later"], load["loads_later"], load["load_per_request"]) == (3, 1, 100.0)
    assert (load["load_cold_start"], load["metric_cold_start"]) == (700.0, 1000.0)
    assert (load["median_paid"], load["median_warm"]) == (600.0, 200.0)
    assert load["load_share"] == pytest.approx(0.3)
    reloads = next(v.values for v in found.diagnosis.verdicts if v.cause == "reloads" and v.key == ("r1", "base"))
    assert (reloads.load_ms, reloads.amount_ms, reloads.share, reloads.cold_start_ms) == (
        load["load_mean_loaded"], load["load_per_request"], load["load_share"], load["load_cold_start"])
    assert found.load.loc[("r1", "fast"), "paid_load_share"] == 0.0


def test_targets_are_judged_by_their_interval(found):
    status = {(r.scenario, r.target): r.status for r in found.targets.itertuples()}
    rows = found.targets.set_index(["scenario", "target"])
    # first request: one sample each, judged on its value (1000 ≥ 500 fails, 100 < 500 passes)
    assert status[("base", "first_ms")] == "fail" and status[("fast", "first_ms")] == "pass"
    assert rows.loc[("base", "first_ms"), "n"] == 1 and pd.isna(rows.loc[("base", "first_ms"), "ci_low"])
    # later requests of base: 600, 200, 200 → every resampled median is 200 or 600, both ≥ 150: fail
    assert status[("base", "subsequent_ms")] == "fail"
    # fast: 100, 120, 80 → resampled medians 80…120, all < 150: pass
    assert status[("fast", "subsequent_ms")] == "pass"
    # base mean 500 < 600, but its interval (200…850) straddles 600: inconclusive
    assert rows.loc[("base", "mean_ms"), "measured"] == 500.0 and status[("base", "mean_ms")] == "inconclusive"
    assert status[("fast", "mean_ms")] == "pass"
    assert set(found.targets["target"]) == {"first_ms", "subsequent_ms", "mean_ms"}  # None turns a target off


def test_comparison_headline_and_steps(found):
    c = found.comparisons.iloc[0]
    assert (c["scenario"], c["median_before"], c["median_after"], c["ratio"]) == ("fast", 400.0, 100.0, 0.25)
    assert c["verdict"] == "faster"  # every fast value is below every base value: U = 0, p = 2/70
    h = found.headline
    assert h.scenario == ("r1", "fast") and h.ratio == 0.25 and h.changed == ["model", "keep_alive", "num_ctx"]
    assert h.targets_passed == {("r1", "base"): (0, 3), ("r1", "fast"): (3, 3)}
    # errors: 1 of 5 attempted (20 %) ranks first; then the loads; then the scenario that meets every target
    assert [(s.kind, s.key) for s in found.steps] == [
        ("errors", ("r1", "base")), ("keep_loaded", ("r1", "base")), ("all_met", ("r1", "fast"))]
    assert found.steps[0].values == {"share": 0.2, "kinds": {"http": 1}}
    assert h.finding == found.steps[0]
    assert found.results.set_index("measure").loc["stat_median", "change"] == pytest.approx(-0.75)


def test_the_metric_follows_the_targets(found):
    frame = _samples().assign(ttft_ms=lambda d: d["ttfb_ms"] * 2)
    ttft = compute.findings(frame, [RUN], targets={**GOALS, "metric": "ttft_ms"})
    assert ttft.metric == "ttft_ms" and ttft.phases.loc[("r1", "base", "all"), "median"] == 800.0


def test_two_runs_that_share_scenario_names_stay_apart():
    frame = pd.concat([_samples("r1"), _samples("r2")], ignore_index=True)
    runs = [RUN, RunInfo(run_id="r2", label="r2", scenarios=RUN.scenarios)]
    found = compute.findings(frame, runs, baseline="r2/base")
    assert found.keys == [("r1", "base"), ("r1", "fast"), ("r2", "base"), ("r2", "fast")]
    assert found.baseline == ("r2", "base") and found.labels[("r1", "base")] == "base · r1"
    with pytest.raises(ValueError, match="baseline 'nope' is not a scenario of these runs"):
        compute.findings(frame, runs, baseline="nope")


def test_an_unknown_load_is_unknown_not_zero():
    external = samples_frame([{"run_id": "external:x.csv", "seq": i, "scenario": "x", "backend": "external",
                               "ok": True, "warmup": False, "state": "unknown", "ttfb_ms": v, "ttft_ms": v}
                              for i, v in enumerate([100.0, 200.0])])
    parts = tables.decomposition_table(external)
    assert pd.isna(parts.iloc[0]["load"]) and pd.isna(parts.iloc[0]["rest"])
    assert bool(compute.findings(external, []).load.iloc[0]["external"])


def test_run_info_reads_run_json():
    # a schema-1 run.json (what latencylab wrote before RunMeta) is read through RunMeta like a new one
    meta = RunMeta.model_validate({
        "run_id": "r", "status": "complete", "study": {"name": "s"},
        "settings": {"resolved": {"name": "s", "lang": "es", "backend": "ollama", "base_url": "http://h:1",
                                  "targets": {"cv": 0.5},
                                  "scenarios": [{"name": "a", "model": "m"}]}}})
    info = run_info(meta)
    assert (info.label, info.lang, info.targets["cv"], info.server) == ("r", "es", 0.5, "ollama")
    assert info.scenarios["a"]["backend"] == "ollama" and info.scenarios["a"]["model"] == "m"
    assert info.gpus == [] and info.resumes == []


@pytest.mark.parametrize(("host", "shown"), [
    # HostFacts, as run.json keeps it since issue 17
    ({"system": "Linux 6.1.0", "machine": "x86_64", "cpu": "EPYC", "cores_logical": 16, "cores_physical": 8,
      "ram_bytes": 2**34, "python": "3.11.2", "hostname": "box"}, ("Linux 6.1.0 x86_64", 16, 2**34, "box")),
    # the keys runs wrote before it (tests/data/fixture-run has them)
    ({"hostname": "old", "platform": "Linux-6.1.0-x86_64-with-glibc2.36", "machine": "x86_64", "processor": "",
      "cpu_count": 2, "ram_bytes": 2**33}, ("Linux-6.1.0-x86_64-with-glibc2.36", 2, 2**33, "old")),
])
def test_run_info_reads_the_host_in_both_forms(host, shown):
    info = run_info(RunMeta(run_id="r", host=host))
    assert (info.platform, info.cpu_count, info.ram_bytes, info.hostname) == shown
