"""The server's own metrics as the analysis reads them: the scraper's parse of real-shaped Prometheus texts (vLLM's V1
names, llama-server's), each request's window over the scrapes (`analyse.server_metrics.per_request`), a turn's cached
tokens from the counters, and the preemption cause's verdicts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from latencylab.analyse import compute
from latencylab.analyse.conversation import turns
from latencylab.analyse.findings import RunInfo
from latencylab.analyse.server_metrics import (
    CACHED,
    CACHED_SOURCE,
    PREEMPTED,
    SCRAPES,
    WAITING,
    WAITING_SOURCE,
    per_request,
)
from latencylab.collect.scrape import parse
from latencylab.runs.columnar import samples_frame
from latencylab.runs.server_metrics import LOADED

# vLLM's V1 exposition as prometheus_client writes it (vllm/v1/metrics/loggers.py: labels model_name and engine,
# counters with _total and _created, histograms with _bucket/_count/_sum), two engines (data parallel), a cut
VLLM = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="Qwen/Qwen3-0.6B"} 2.0
vllm:num_requests_running{engine="1",model_name="Qwen/Qwen3-0.6B"} 1.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="Qwen/Qwen3-0.6B"} 3.0
vllm:num_requests_waiting{engine="1",model_name="Qwen/Qwen3-0.6B"} 0.0
# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.DEPRECATED: Use vllm:kv_cache_usage_perc instead.
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{engine="0",model_name="Qwen/Qwen3-0.6B"} 0.25
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="Qwen/Qwen3-0.6B"} 0.25
# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of number of queried tokens.
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{engine="0",model_name="Qwen/Qwen3-0.6B"} 4096.0
# HELP vllm:prefix_cache_queries_created Prefix cache queries, in terms of number of queried tokens.
# TYPE vllm:prefix_cache_queries_created gauge
vllm:prefix_cache_queries_created{engine="0",model_name="Qwen/Qwen3-0.6B"} 1.7596e+09
# HELP vllm:prefix_cache_hits_total Prefix cache hits, in terms of number of cached tokens.
# TYPE vllm:prefix_cache_hits_total counter
vllm:prefix_cache_hits_total{engine="0",model_name="Qwen/Qwen3-0.6B"} 1024.0
# HELP vllm:gpu_prefix_cache_hits_total GPU prefix cache hits, in terms of number of cached tokens. DEPRECATED
# TYPE vllm:gpu_prefix_cache_hits_total counter
vllm:gpu_prefix_cache_hits_total{engine="0",model_name="Qwen/Qwen3-0.6B"} 1024.0
# HELP vllm:num_preemptions_total Cumulative number of preemption from the engine.
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{engine="0",model_name="Qwen/Qwen3-0.6B"} 5.0
vllm:num_preemptions_total{engine="1",model_name="Qwen/Qwen3-0.6B"} 2.0
# HELP vllm:request_success_total Count of successfully processed requests.
# TYPE vllm:request_success_total counter
vllm:request_success_total{engine="0",finished_reason="stop",model_name="Qwen/Qwen3-0.6B"} 40.0
vllm:request_success_total{engine="0",finished_reason="length",model_name="Qwen/Qwen3-0.6B"} 2.0
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.001",model_name="Qwen/Qwen3-0.6B"} 0.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.1",model_name="Qwen/Qwen3-0.6B"} 30.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="Qwen/Qwen3-0.6B"} 42.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="Qwen/Qwen3-0.6B"} 42.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="Qwen/Qwen3-0.6B"} 3.7
"""

# the bundled llama-server's /metrics (--metrics), as it answered
LLAMA_SERVER = """\
# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed, excluding cached tokens
# TYPE llamacpp:prompt_tokens_total counter
llamacpp:prompt_tokens_total 31
# HELP llamacpp:prompt_tokens_cached_total Number of prompt tokens reused from the cache
# TYPE llamacpp:prompt_tokens_cached_total counter
llamacpp:prompt_tokens_cached_total 0
# HELP llamacpp:prompt_seconds_total Total time spent processing prompts
# TYPE llamacpp:prompt_seconds_total counter
llamacpp:prompt_seconds_total 0.610581
# HELP llamacpp:tokens_predicted_total Number of generation tokens processed
# TYPE llamacpp:tokens_predicted_total counter
llamacpp:tokens_predicted_total 8
# HELP llamacpp:n_tokens_max Largest observed sequence length (prompt + generation)
# TYPE llamacpp:n_tokens_max counter
llamacpp:n_tokens_max 38
# HELP llamacpp:prompt_tokens_seconds Average prompt throughput in tokens/s
# TYPE llamacpp:prompt_tokens_seconds gauge
llamacpp:prompt_tokens_seconds 50.7713
# HELP llamacpp:requests_processing Number of requests processing
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 0
# HELP llamacpp:requests_deferred Number of requests deferred
# TYPE llamacpp:requests_deferred gauge
llamacpp:requests_deferred 0
# HELP llamacpp:n_busy_slots_per_decode Average number of busy slots per llama_decode() call
# TYPE llamacpp:n_busy_slots_per_decode gauge
llamacpp:n_busy_slots_per_decode 1
"""


def test_vllm_s_exposition_gives_every_quantity_summed_over_its_engines_by_its_current_names():
    assert parse(VLLM) == {
        "waiting": (3.0, "vllm:num_requests_waiting"), "running": (3.0, "vllm:num_requests_running"),
        "kv_used": (0.25, "vllm:kv_cache_usage_perc"), "preemptions": (7.0, "vllm:num_preemptions_total"),
        "cached_tokens": (1024.0, "vllm:prefix_cache_hits_total"),
        "cache_queries": (4096.0, "vllm:prefix_cache_queries_total")}


def test_an_older_vllm_s_deprecated_names_still_count():
    older = "\n".join(line for line in VLLM.splitlines()
                      if "kv_cache_usage_perc" not in line and "vllm:prefix_cache_hits" not in line) + "\n"
    found = parse(older)
    assert found["kv_used"] == (0.25, "vllm:gpu_cache_usage_perc")
    assert found["cached_tokens"] == (1024.0, "vllm:gpu_prefix_cache_hits_total")


def test_llama_server_s_exposition_gives_its_queue_its_work_and_its_cache_and_no_preemptions():
    assert parse(LLAMA_SERVER) == {
        "waiting": (0.0, "llamacpp:requests_deferred"), "running": (0.0, "llamacpp:requests_processing"),
        "cached_tokens": (0.0, "llamacpp:prompt_tokens_cached_total")}


def test_a_text_with_no_name_latencylab_reads_gives_nothing():
    assert parse("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 12.5\n") == {}


# per_request: each request's window over the scrapes. Requests of run r1, scenario s (Unix seconds):
#   a: 100.0 → first byte 100.5 → end 101.0;  b: 103.0 → 103.2 → 104.0;
#   c: 103.5 → 103.6 → 105.0 (overlaps b)


def _requests() -> pd.DataFrame:
    return pd.DataFrame({"run_id": "r1", "scenario": "s", "started_at": [100.0, 103.0, 103.5],
                         "ttfb_ms": [500.0, 200.0, 100.0], "e2e_ms": [1000.0, 1000.0, 1500.0]},
                        index=["a", "b", "c"])


def _series(quantity: str, source: str, points: list[tuple[float, float]]) -> pd.DataFrame:
    return pd.DataFrame([("r1", "s", t, "http://x", quantity, value, source) for t, value in points], columns=LOADED)


def test_a_request_s_waiting_count_is_the_most_the_scrapes_inside_its_wait_saw():
    series = _series("waiting", "vllm:num_requests_waiting",
                     [(99.9, 7.0), (100.0, 1.0), (100.3, 2.0), (100.5, 1.0), (100.6, 9.0), (103.1, 0.0)])
    out = per_request(_requests(), series)
    # a: 100.0, 100.3 and 100.5 lie in [100.0, 100.5], its start and first byte included; 99.9 and 100.6 do not
    assert out.loc["a", WAITING] == 2.0 and out.loc["a", SCRAPES] == 3
    assert out.loc["b", WAITING] == 0.0 and out.loc["b", SCRAPES] == 1
    assert math.isnan(out.loc["c", WAITING]) and out.loc["c", SCRAPES] == 0  # no scrape in its 100 ms wait
    assert set(out[WAITING_SOURCE]) == {"vllm:num_requests_waiting"}


def test_a_counter_s_rise_is_from_the_scrape_before_a_request_to_the_scrape_after_it():
    series = _series("preemptions", "vllm:num_preemptions_total",
                     [(99.0, 4.0), (100.5, 5.0), (101.5, 6.0), (102.5, 6.0), (104.5, 8.0)])
    out = per_request(_requests(), series)
    assert out.loc["a", PREEMPTED] == 2.0  # 99.0 → 101.5: inside it included
    assert out.loc["b", PREEMPTED] == 2.0  # 102.5 → 104.5
    assert math.isnan(out.loc["c", PREEMPTED])  # no scrape after 105.0


def test_a_cached_count_from_the_counter_only_for_a_request_alone_between_the_scrapes_around_it():
    series = _series("cached_tokens", "vllm:prefix_cache_hits_total",
                     [(99.0, 0.0), (101.5, 64.0), (102.5, 64.0), (105.5, 160.0)])
    out = per_request(_requests(), series)
    assert out.loc["a", CACHED] == 64.0 and out.loc["a", CACHED_SOURCE] == "vllm:prefix_cache_hits_total"
    # b and c share 102.5 → 105.5: the rise is theirs together, neither's own
    assert out[CACHED].iloc[1:].isna().all() and out[CACHED_SOURCE].iloc[1:].isna().all()
    # a request of another scenario of the run in flight in a's widened window (99.0 → 101.5) takes a's too
    other = pd.DataFrame({"run_id": "r1", "scenario": "t", "started_at": [101.2], "ttfb_ms": [10.0],
                          "e2e_ms": [100.0]}, index=["d"])
    assert per_request(pd.concat([_requests(), other]), series)[CACHED].isna().all()


def test_no_scrape_leaves_every_request_without_the_server_s_account():
    out = per_request(_requests(), pd.DataFrame(columns=LOADED))
    assert out[[WAITING, PREEMPTED, CACHED]].isna().all().all() and (out[SCRAPES] == 0).all()


def _turns(cached_tokens: list[float | None], counted: list[float]) -> pd.DataFrame:
    """Three turns of a session on an OpenAI-compatible server (no prompt times), the history growing by 40 tokens."""
    return pd.DataFrame({"run": "r1", "scenario": "chat", "session": 0, "turn": [0, 1, 2],
                         "prompt_tokens": [30.0, 70.0, 110.0], "output_tokens": [8.0, 8.0, 8.0],
                         "prompt_eval_ms": np.nan, "prompt_chars": 100, "cached_tokens": cached_tokens,
                         CACHED: counted})


def test_a_turn_s_cache_comes_from_the_server_s_answer_else_its_counters():
    out = turns(_turns([None, None, None], [0.0, 32.0, np.nan]))
    assert list(out["cache_source"].iloc[:2]) == ["counters", "counters"] and out["cache_source"].isna().iloc[2]
    assert list(out["cached"].iloc[:2]) == [0.0, 32.0] and list(out["processed"].iloc[:2]) == [30.0, 38.0]
    out = turns(_turns([0.0, 60.0, 100.0], [0.0, 32.0, 96.0]))  # the response says it: the counters are not read
    assert list(out["cache_source"]) == ["server"] * 3 and list(out["cached"]) == [0.0, 60.0, 100.0]


# The preemption cause, on vLLM-shaped requests (no server timings) with the counter scraped around each.
RUN = RunInfo(run_id="r1", label="r1", study="hand")


def _preempted(slow: set[int], n: int = 12, flat: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`n` requests 1 s apart, 100 ms each, those in `slow` 500 ms and preempted (the counter rising during them)."""
    rows, points, count = [], [], 0.0
    for seq in range(n):
        start, ttfb = 1000.0 + seq, 500.0 if seq in slow else 100.0
        rows.append({"run_id": "r1", "seq": seq, "scenario": "v", "backend": "openai", "model": "m", "ok": True,
                     "warmup": False, "phase": "first" if seq == 0 else "subsequent", "state": "unknown",
                     "started_at": start, "ttfb_ms": ttfb, "ttft_ms": ttfb, "e2e_ms": ttfb + 100.0,
                     "prompt_tokens": 20, "output_tokens": 8, "output_tokens_source": "server"})
        points.append((start - 0.1, count))
        count += 0.0 if flat else float(seq in slow)
    points.append((1000.0 + n, count))
    series = _series("preemptions", "vllm:num_preemptions_total", points).assign(scenario="v")
    return samples_frame(rows), series


def _preemption(samples: pd.DataFrame, series: pd.DataFrame):
    found = compute.findings(samples, [RUN], server_metrics=series)
    return next(v for v in found.diagnosis.verdicts if v.cause == "preemption"), found


def test_requests_the_server_preempted_during_and_materially_slower_confirm_memory_pressure_on_the_gpu():
    verdict, found = _preemption(*_preempted({3, 6, 9}))
    assert verdict.verdict == "confirmed"
    x = verdict.values
    assert (x.counter, x.counted_n, x.preempted_n, x.most) == ("vllm:num_preemptions_total", 11, 3, 1.0)
    assert (x.slow_ms, x.quiet_ms, x.extra_ms, x.share) == (500.0, 100.0, 400.0, 0.8)
    assert not [s for s in found.diagnosis.predictions if s.kind == "predict_preemption"]  # the median is unmoved


def test_a_fix_is_predicted_where_most_requests_were_preempted_during():
    _, found = _preemption(*_preempted(set(range(2, 10))))
    (gain,) = [s for s in found.diagnosis.predictions if s.kind == "predict_preemption"]
    assert (gain.values["now"], gain.values["after"]) == (500.0, 100.0)


def test_a_flat_counter_refutes_preemptions_and_a_server_without_one_is_not_asked():
    verdict, _ = _preemption(*_preempted(set(), flat=True))
    assert verdict.verdict == "refuted" and verdict.values.counted_n == 11
    samples, series = _preempted(set())
    waiting = series.assign(quantity="waiting", source="llamacpp:requests_deferred", value=0.0)
    found = compute.findings(samples, [RUN], server_metrics=waiting)  # llama-server: a queue count, no preemptions
    assert "preemption" not in {v.cause for v in found.diagnosis.verdicts}


def test_preemptions_too_small_to_matter_are_present_not_a_cause():
    samples, series = _preempted({3, 6})
    samples.loc[samples["seq"].isin([3, 6]), ["ttfb_ms", "ttft_ms"]] = 120.0
    verdict, _ = _preemption(samples, series)
    assert verdict.verdict == "present" and verdict.values.extra_ms == pytest.approx(20.0)


def test_a_server_that_publishes_no_metrics_is_not_asked_about_preemptions():
    samples, _ = _preempted({3})
    found = compute.findings(samples, [RUN])
    assert "preemption" not in {v.cause for v in found.diagnosis.verdicts}
