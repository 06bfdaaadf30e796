"""A whole study run against the Ollama test double (tests/doubles/ollama.py, not Ollama): states from
/api/ps and load_duration, reloads on option changes, partial offload, preload, cold protocol, pull."""

from __future__ import annotations

from typing import Any

import pytest

from doubles.ollama import OllamaDouble
from latencylab.collect import runner
from latencylab.plan.study import parse_study
from latencylab.runs import store

MODELS = {"tiny": {"size": 1_000_000}, "big:q4": {"size": 10_000_000, "size_vram": 4_000_000}}


def run(server: OllamaDouble, scenarios: list[dict[str, Any]], **study: Any):
    spec = parse_study({"name": "double", "backend": "ollama", "base_url": server.base_url,
                        "workload": {"requests": 3, "max_tokens": 4, **study.pop("workload", {})},
                        "scenarios": scenarios, **study})
    return store.load_run(runner.run_study(spec, progress=False))


def by_scenario(frame, name):
    return frame[frame["scenario"] == name].sort_values("seq")


def test_cold_then_warm_from_api_ps_and_load_duration(workdir):
    with OllamaDouble(models=MODELS, load_delay_s=0.1) as server:
        frame = run(server, [{"name": "a", "model": "tiny"}])
    assert list(frame["state"]) == ["cold", "warm", "warm"]
    assert list(frame["phase"]) == ["first", "subsequent", "subsequent"]
    assert list(frame["resident_before"]) == [False, True, True]
    assert frame["resident_after"].all()
    cold, warm = frame.iloc[0], frame.iloc[1]
    assert cold["load_ms"] >= 100 and warm["load_ms"] < 20 and cold["load_ms_source"] == "server"
    assert cold["ttfb_ms"] > cold["load_ms"] > warm["ttfb_ms"]


def test_changing_runner_options_is_a_reload_and_sampling_options_are_not(workdir):
    scenarios = [{"name": "ctx2k", "model": "tiny", "options": {"num_ctx": 2048, "temperature": 0.1}},
                 {"name": "ctx4k", "model": "tiny", "options": {"num_ctx": 4096, "temperature": 0.9}},
                 {"name": "ctx4k-hot", "model": "tiny", "options": {"num_ctx": 4096, "temperature": 0.2}}]
    with OllamaDouble(models=MODELS, load_delay_s=0.1) as server:
        frame = run(server, scenarios, workload={"requests": 2, "order": "interleaved"})
    states = list(frame.sort_values("seq")["state"])
    # ctx2k (cold), ctx4k (reload), ctx4k-hot (same runner options: warm), ctx2k (reload), …
    assert states == ["cold", "reload", "warm", "reload", "reload", "warm"]
    reloads = frame[frame["state"] == "reload"]
    assert (reloads["load_ms"] >= 100).all()


def test_partial_offload_is_recorded_with_each_sample(workdir):
    with OllamaDouble(models=MODELS) as server:
        frame = run(server, [{"name": "big", "model": "big:q4"}, {"name": "small", "model": "tiny"}])
    big, small = by_scenario(frame, "big").iloc[-1], by_scenario(frame, "small").iloc[-1]
    assert big["gpu_share"] == pytest.approx(0.4) and not big["fits_in_vram"]
    assert (big["model_size_bytes"], big["vram_bytes"]) == (10_000_000, 4_000_000)
    assert small["gpu_share"] == 1.0 and bool(small["fits_in_vram"])


def test_preload_sends_keep_alive_and_options_so_the_first_request_is_warm(workdir):
    scenario = {"name": "opt", "model": "tiny", "keep_alive": -1, "preload": True, "options": {"num_ctx": 2048}}
    with OllamaDouble(models=MODELS, load_delay_s=0.1) as server:
        frame = run(server, [scenario])
        load_body = server.bodies("/api/generate")[0]
    assert load_body["prompt"] == "" and load_body["keep_alive"] == -1 and load_body["options"] == {"num_ctx": 2048}
    assert list(frame["state"]) == ["warm"] * 3 and frame.iloc[0]["phase"] == "first"
    assert frame["keep_alive"].iloc[0] == "-1"


@pytest.mark.parametrize("protocol, expected", [
    ("unload_before_each", ["cold", "cold", "cold"]),
    ("first_only", ["cold", "warm", "warm"]),
])
def test_cold_protocol_unloads_and_waits_until_the_server_shows_it_gone(workdir, protocol, expected):
    with OllamaDouble(models=MODELS, load_delay_s=0.05, unload_delay_s=0.1) as server:
        frame = run(server, [{"name": "a", "model": "tiny"}], cold_protocol=protocol)
        unloads = [b for b in server.bodies("/api/generate") if b.get("keep_alive") == 0]
    assert list(frame["state"]) == expected
    assert len(unloads) == expected.count("cold")


def test_prepare_pulls_only_what_the_server_lacks(workdir):
    with OllamaDouble(models=MODELS, registry={"phi3:mini-q4_K_M": 2_000_000}) as server:
        frame = run(server, [{"name": "a", "model": "tiny"}, {"name": "b", "model": "phi3:mini-q4_K_M"}],
                    prepare={"pull": True}, workload={"requests": 1})
        pulls = server.bodies("/api/pull")
    assert pulls == [{"model": "phi3:mini-q4_K_M", "stream": True}]
    assert frame["ok"].all()


def test_a_model_no_registry_has_stops_the_run_with_the_server_message(workdir):
    with OllamaDouble(models=MODELS) as server, pytest.raises(runner.RunStopped, match="file does not exist"):
        run(server, [{"name": "a", "model": "nope:7b"}], prepare={"pull": True})
    run_id = store.list_runs()[-1]
    assert store.load_meta(run_id).status == "failed"


def test_a_closed_loop_concurrency_sweep_records_each_level(workdir):
    with OllamaDouble(models=MODELS, load_delay_s=0.01, num_parallel=1) as server:
        frame = run(server, [{"name": "a", "model": "tiny"}],
                    workload={"requests": 4, "concurrency": [1, 4], "order": "blocked"})
    assert list(frame.sort_values("seq")["concurrency"]) == [1] * 4 + [4] * 4
    assert frame["ok"].all() and (frame["client_queue_ms"] >= 0).all() and (frame["client_queue_ms"] < 50).all()
    by_level = frame[frame["state"] == "warm"].groupby("concurrency")["ttft_ms"].median()
    assert by_level[4] > by_level[1]  # one slot (OLLAMA_NUM_PARALLEL=1): concurrent requests wait their turn
    from latencylab.publish import report

    doc = report.document_of([store.list_runs()[-1]])
    assert "## Time to first token under concurrency" in doc.markdown("concurrency")
    assert doc.figure_names("concurrency") == ["concurrency"]


def test_an_open_loop_keeps_its_seeded_poisson_schedule(workdir):
    with OllamaDouble(models=MODELS, load_delay_s=0.01) as server:
        frame = run(server, [{"name": "a", "model": "tiny"}],
                    workload={"requests": 12, "mode": "open", "rate_per_s": 40, "arrival_seed": 5})
        again = run(server, [{"name": "a", "model": "tiny"}],
                    workload={"requests": 12, "mode": "open", "rate_per_s": 40, "arrival_seed": 5})
    gaps = frame.sort_values("seq")["scheduled_at"].diff().dropna().to_numpy()
    gaps_again = again.sort_values("seq")["scheduled_at"].diff().dropna().to_numpy()
    assert gaps == pytest.approx(gaps_again, abs=1e-6)  # the same arrivals for the same seed
    assert 0.005 < gaps.mean() < 0.08  # about 1/40 s apart
    assert frame["concurrency"].isna().all() and (frame["client_queue_ms"] >= 0).all()


def test_open_loop_needs_a_rate_and_a_sweep_needs_a_closed_loop():
    from latencylab.plan.study import StudyError

    base = {"name": "s", "scenarios": [{"name": "a", "model": "m"}]}
    with pytest.raises(StudyError, match="mode: open needs rate_per_s"):
        parse_study({**base, "workload": {"mode": "open"}})
    with pytest.raises(StudyError, match="a concurrency sweep is a closed-loop study"):
        parse_study({**base, "workload": {"mode": "open", "rate_per_s": 2, "concurrency": [1, 2]}})
    with pytest.raises(StudyError, match="concurrency must be 1 or more"):
        parse_study({**base, "workload": {"concurrency": [0, 2]}})
