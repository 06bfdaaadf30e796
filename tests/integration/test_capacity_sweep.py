"""The rate sweep against a server of known capacity (issue 20): S slots, each request served in t seconds, so
that no more than S / t requests per second can be answered. The sweep must find that limit by itself (its
synchronous and throughput passes, then its rates) and place the saturation point within one level of it."""

from __future__ import annotations

import pytest

from doubles.capacity import CapacityServer
from latencylab.analyse import capacity
from latencylab.collect import runner
from latencylab.plan.study import parse_study
from latencylab.runs import store

SERVICE_S = 0.05


def sweep(server: CapacityServer, rates: object = "sweep") -> tuple[object, object]:
    study = parse_study({
        "name": "capacity", "backend": "openai", "base_url": server.base_url,
        "slo": {"ttft_ms": 20 * SERVICE_S * 1000},  # generous: the rate decides, not a strict TTFT
        "workload": {"mode": "open", "rate_per_s": rates, "sweep_rates": 6, "requests": 30, "warmup": 2,
                     "max_tokens": 8},
        "scenarios": [{"name": "double", "model": "capacity"}]})
    run_id = runner.run_study(study, progress=False)
    samples = store.load_run(run_id)
    table = capacity.levels(samples, study.slo)
    return table, capacity.saturation(table, study.slo.goal)


@pytest.mark.parametrize("slots", [1, 2])
def test_the_sweep_finds_the_saturation_point_within_one_level_of_the_known_capacity(workdir, slots):
    with CapacityServer(slots=slots, service_s=SERVICE_S) as server:
        table, found = sweep(server)
    limit = slots / SERVICE_S
    assert list(table["kind"]) == ["synchronous", "throughput"] + ["rate"] * 6
    passes = table.set_index("kind")
    assert passes.loc["throughput", "achieved_rate_per_s"] == pytest.approx(limit, rel=0.2)
    rates = sorted(table[table["kind"] == "rate"]["nominal_rate_per_s"])
    assert rates[-1] == pytest.approx(1.2 * limit, rel=0.2)  # the sweep reaches past the capacity
    (point,) = found
    step = rates[1] - rates[0]
    assert point.status == "found", table
    assert abs(point.rate - limit) <= step + 1e-9, (point, rates)
    assert point.high == pytest.approx(point.rate + step, abs=0.01)  # rates are rounded to 3 decimals
    queue = table[table["kind"] == "rate"].sort_values("nominal_rate_per_s")["queue_p50_ms"]
    assert queue.iloc[-1] > queue.iloc[0] + 1000 * SERVICE_S  # past the capacity, requests wait for a slot
    assert not table["client_limited"].any()


def test_the_capacity_section_words_the_levels_and_the_knee_in_both_languages(workdir):
    with CapacityServer(slots=2, service_s=SERVICE_S) as server:
        sweep(server, rates=[10.0, 60.0])  # well under and well over its 40 requests/s
    from latencylab.publish import report

    run_id = store.list_runs()[-1]
    english, spanish = report.document_of([run_id]), report.document_of([run_id], lang="es")
    text = english.markdown("capacity")
    assert "## Capacity: how much load the server holds" in text
    assert "SLO per request: TTFT ≤ 1,000\u00a0ms" in text
    assert "**double** held 10.0 requests/s and no longer held 60.0 requests/s" in text
    assert english.figure_names("capacity") == ["latency_throughput", "goodput"]
    assert "**double** sostuvo 10,0 peticiones/s y ya no sostuvo 60,0 peticiones/s" in spanish.markdown("capacity")
    samples = store.load_run(run_id)
    assert sorted(samples["offered_rate_per_s"].unique()) == [10.0, 60.0] and set(samples["level"]) == {0, 1}


def test_worker_processes_send_the_timed_requests_and_the_coordinator_keeps_the_schedule(workdir):
    with CapacityServer(slots=4, service_s=SERVICE_S) as server:
        study = parse_study({
            "name": "workers", "backend": "openai", "base_url": server.base_url,
            "workload": {"mode": "open", "rate_per_s": [20.0], "requests": 20, "warmup": 1, "max_tokens": 8,
                         "client_processes": 2},
            "scenarios": [{"name": "double", "model": "capacity"}]})
        samples = store.load_run(runner.run_study(study, progress=False))
    assert len(samples) == 21 and samples["ok"].all()
    assert (samples["output_tokens"] == 8).all() and samples["ttft_ms"].between(0, 1000).all()
    assert samples["client_queue_ms"].median() < 50  # sent about when scheduled, through the workers


def test_a_stopped_sweep_resumes_with_the_rates_its_passes_found(workdir, interrupt_after):
    with CapacityServer(slots=2, service_s=0.02) as server:
        study = parse_study({
            "name": "resumed", "backend": "openai", "base_url": server.base_url,
            "workload": {"mode": "open", "rate_per_s": "sweep", "sweep_rates": 2, "requests": 6, "warmup": 0,
                         "max_tokens": 4},
            "scenarios": [{"name": "double", "model": "capacity"}]})
        with pytest.raises(KeyboardInterrupt):  # stopped in the first rate level, after both passes
            runner.run_study(study, run_id="cut", on_sample=interrupt_after(14), progress=False)
        rates = store.load_meta("cut").sweep_rates
        runner.run("cut", progress=False)
    samples = store.load_run("cut")
    meta = store.load_meta("cut")
    assert meta.status == "complete" and meta.sweep_rates == rates and len(rates["double"]) == 2
    finished = samples[samples["ok"]]
    assert sorted(finished["seq"]) == list(range(24))  # 2 passes and 2 rates of 6, none sent twice
    assert sorted(finished[finished["level"] >= 2]["offered_rate_per_s"].unique()) == rates["double"]
