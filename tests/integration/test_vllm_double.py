"""The server's own metrics as evidence, through the product against a vLLM double (tests/doubles/vllm.py: vLLM's V1
metric names): a run scrapes its /metrics into server_metrics.parquet, and the Diagnosis reaches the verdicts vLLM's
counters call for — queueing confirmed by `vllm:num_requests_waiting`, preemptions by `vllm:num_preemptions_total`,
a conversation's reuse from `vllm:prefix_cache_hits_total` where the responses say nothing of it."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from doubles.vllm import VllmServer
from latencylab.collect import runner
from latencylab.plan.study import parse_study
from latencylab.publish import report
from latencylab.runs import server_metrics
from latencylab.core.paths import run_dir

MODEL = "vllm-double"


def _run(server: VllmServer, workload: dict[str, Any]) -> tuple[str, Any]:
    """A run against the double, scraped every 50 ms, and its English report."""
    study = parse_study({
        "name": "vllm", "backend": "openai", "base_url": server.base_url, "server_metrics": {"interval_s": 0.05},
        "workload": {"max_tokens": 8, **workload}, "scenarios": [{"name": "double", "model": MODEL}]})
    run_id = runner.run_study(study, progress=False)
    return run_id, report.document_of([run_id])


def _verdict(document: Any, cause: str) -> Any:
    (verdict,) = [v for v in document.findings.diagnosis.verdicts if v.cause == cause]
    return verdict


def test_one_slot_at_four_requests_at_once_is_queueing_the_server_counted(workdir):
    with VllmServer(slots=1, service_s=0.15) as server:
        run_id, document = _run(server, {"requests": 12, "warmup": 1, "concurrency": 4})
    assert (run_dir(run_id) / server_metrics.PARQUET).exists()
    scraped = server_metrics.load([run_id])
    assert set(scraped["quantity"]) == {"waiting", "running", "kv_used", "preemptions", "cached_tokens",
                                        "cache_queries"}
    assert scraped.loc[scraped["quantity"] == "waiting", "value"].max() >= 2
    queueing = _verdict(document, "queueing")
    assert queueing.verdict == "confirmed", queueing
    assert queueing.values.queue_metric == "vllm:num_requests_waiting" and queueing.values.queued >= 2
    assert "`vllm:num_requests_waiting`" in document.markdown("diagnosis")


def test_a_slot_for_every_request_in_flight_is_no_queue(workdir):
    with VllmServer(slots=4, service_s=0.15) as server:
        _, document = _run(server, {"requests": 12, "warmup": 1, "concurrency": 4})
    queueing = _verdict(document, "queueing")
    assert queueing.verdict != "confirmed", queueing
    assert queueing.values.queued == 0 and queueing.values.queue_metric == "vllm:num_requests_waiting"


def test_planted_preemptions_are_memory_pressure_on_the_gpu_and_none_planted_none_found(workdir):
    with VllmServer(slots=1, service_s=0.1, preempt_every=3, preempt_s=0.4) as server:
        _, planted = _run(server, {"requests": 12, "warmup": 1})
        preempted = server.preempted
    verdict = _verdict(planted, "preemption")
    assert verdict.verdict == "confirmed", verdict
    assert verdict.values.counter == "vllm:num_preemptions_total"
    # the later requests preempted (not the warm-up's, nor the first's), less any the scraper had not started for
    assert 2 <= verdict.values.preempted_n <= len([n for n in preempted if n > 2])
    requests = planted.findings.requests
    assert (requests.loc[requests["server_preempted"] > 0, "ttfb_ms"] > 400).all()  # none blamed on a neighbour
    assert verdict.values.extra_ms == pytest.approx(400, abs=150)
    assert "`vllm:num_preemptions_total`" in planted.markdown("diagnosis")
    with VllmServer(slots=1, service_s=0.1) as server:
        _, clean = _run(server, {"requests": 12, "warmup": 1})
    verdict = _verdict(clean, "preemption")
    assert verdict.verdict == "refuted" and verdict.values.counted_n >= 10, verdict


@pytest.mark.parametrize("cache", [True, False])
def test_a_conversation_s_reuse_comes_from_the_prefix_cache_counters(workdir, cache):
    sessions = {"count": 1, "turns": 5, "think_time_s": 0.4}  # scrapes between turns: each alone in flight
    with VllmServer(slots=1, service_s=0.05, cache=cache) as server:
        _, document = _run(server, {"sessions": sessions})
    turns = document.findings.conversation
    assert (turns["cache_source"] == "counters").all(), turns
    later = turns[turns["turn"] > 0]
    reusable = document.findings.requests.loc[later.index, "reusable"]
    verdict = _verdict(document, "cache")
    if cache:  # the double caches whole blocks of 16 tokens: all but the last partial block of the history
        assert (pd.to_numeric(later["cached"]) > reusable - 16 - 8).all() and (later["cached"] > 0).all(), turns
        assert verdict.verdict == "refuted", verdict
    else:
        assert (later["cached"] == 0).all()
        assert verdict.values.reasons == {"no_cache": len(later)}, verdict


def test_where_the_responses_state_a_turn_s_reuse_the_counters_are_not_read(workdir):
    sessions = {"count": 1, "turns": 3, "think_time_s": 0.4}
    with VllmServer(slots=1, service_s=0.05, report_cached=True) as server:  # --enable-prompt-tokens-details
        _, document = _run(server, {"sessions": sessions})
    turns = document.findings.conversation
    assert (turns["cache_source"] == "server").all() and (turns.loc[turns["turn"] > 0, "cached"] > 0).all(), turns
