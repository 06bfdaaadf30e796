"""Struggling servers (issue 5): every server fault becomes a recorded failed sample, never a crash.

The faults come from `tests/doubles/faults.py`, a loopback server that answers each request with a
chosen fault, in Ollama's NDJSON (`/api/generate`, `/api/chat`) and OpenAI's SSE
(`/v1/chat/completions`). Each test checks the sample `measure()` returns: `ok` False, the documented
`error_kind`, a message naming what happened, and the times reached before the fault. Then whole
studies run against a script of faults and good answers, and memory stays bounded when the server
sends far more than was asked for.
"""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from typing import Any

import httpx
import pandas as pd
import pytest

from doubles.faults import BAD_REQUEST, BUSY, CRASH, OPENAI_ERROR, VLLM_NOT_FOUND, FaultServer, refused_url
from latencylab.analyse import tables
from latencylab.collect import runner
from latencylab.collect.backends.base import MAX_LINE_BYTES, Backend, GenerationRequest, Timeouts
from latencylab.collect.backends.ollama import OllamaBackend
from latencylab.collect.backends.openai import OpenAIBackend
from latencylab.core.sample import ERROR_KINDS, MAX_TEXT_CHARS, Sample
from latencylab.plan.study import parse_study
from latencylab.runs import store

TIMEOUTS = Timeouts(connect_s=1.0, first_byte_s=0.5, between_chunks_s=0.3, total_s=3.0)
TOKENS = ("The", " sky", " is", " blue", ".")
BEFORE = 3  # tokens the server sends before a mid-stream fault
ENDPOINTS = ("generate", "chat", "openai")


def backend(base_url: str, endpoint: str, timeouts: Timeouts = TIMEOUTS) -> Backend:
    if endpoint == "openai":
        return OpenAIBackend(base_url, timeouts=timeouts)
    return OllamaBackend(base_url, endpoint=endpoint, timeouts=timeouts)


def measure(base_url: str, endpoint: str, timeouts: Timeouts = TIMEOUTS, max_tokens: int = 4) -> Sample:
    async def go() -> Sample:
        b = backend(base_url, endpoint, timeouts)
        async with b.client() as client:
            return await b.measure(client, GenerationRequest(model="m", prompt="why is the sky blue",
                                                             max_tokens=max_tokens))

    return asyncio.run(go())


def timed(fault: str, endpoint: str, timeouts: Timeouts = TIMEOUTS, **server: Any) -> tuple[Sample, float]:
    """The sample of one request against `fault`, and the seconds `measure` took."""
    with FaultServer(fault, tokens=TOKENS, tokens_before=BEFORE, **server) as s:
        t = time.monotonic()
        sample = measure(s.base_url, endpoint, timeouts)
        return sample, time.monotonic() - t


def failed(sample: Sample, kind: str, *words: str) -> None:
    """A failed sample of `kind` whose message names what happened (every word of `words`)."""
    assert sample.ok is False
    assert kind in ERROR_KINDS and sample.error_kind == kind, (sample.error_kind, sample.error)
    assert sample.error and len(sample.error) <= 500
    for word in words:
        assert word in sample.error, (word, sample.error)


def tokens_reached(sample: Sample, n: int) -> None:
    """The times up to the fault: headers, first byte, first token, the gaps between the n tokens."""
    assert sample.status_code == 200
    assert sample.headers_ms is not None and sample.ttfb_ms is not None and sample.ttft_ms is not None
    assert 0 < sample.headers_ms <= sample.ttfb_ms <= sample.ttft_ms <= sample.e2e_ms
    assert len(sample.itl_ms) == n - 1 and all(gap >= 0 for gap in sample.itl_ms)
    assert sample.output_tokens == n and sample.output_tokens_source == "chunks"
    assert sample.text == "".join(TOKENS[:n])


def nothing_reached(sample: Sample) -> None:
    assert sample.status_code is None
    assert (sample.headers_ms, sample.ttfb_ms, sample.ttft_ms, sample.e2e_ms) == (None, None, None, None)
    assert sample.itl_ms == [] and sample.output_tokens is None and sample.text == ""


# -- the double itself -------------------------------------------------------------------------------

@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_the_double_answers_a_good_request_in_each_protocol(endpoint):
    sample, _ = timed("ok", endpoint)
    assert sample.ok, sample.error
    assert sample.text == "".join(TOKENS) and sample.output_tokens == len(TOKENS)
    assert sample.output_tokens_source == "server" and sample.done_reason == "stop"
    assert len(sample.itl_ms) == len(TOKENS) - 1


def test_the_double_serves_its_script_in_order_and_answers_api_ps():
    with FaultServer("http_500", script=["ok", "busy"]) as s:
        kinds = [measure(s.base_url, "generate").error_kind for _ in range(4)]
        assert httpx.get(s.base_url + "/api/ps", timeout=2).json() == {"models": []}
        assert [fault for _, fault in s.served] == ["ok", "busy", "http_500", "http_500"]
    assert kinds == [None, "http", "http", "http"]


def test_the_double_stops_by_itself_after_its_lifetime():
    server = FaultServer("no_headers", lifetime_s=0.3).__enter__()  # no `with`: a test that forgot to close
    url = server.base_url
    time.sleep(0.5)
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/api/ps", timeout=1)
    assert server.stop.is_set()


def test_an_unknown_fault_name_is_refused():
    with pytest.raises(ValueError, match="unknown fault"):
        FaultServer("gremlins")


# -- no connection, no response ----------------------------------------------------------------------

@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_connection_refused_is_a_connect_failure(endpoint):
    with refused_url() as url:
        sample = measure(url, endpoint)
    failed(sample, "connect", "cannot connect", url)
    nothing_reached(sample)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_reset_before_the_headers_is_an_incomplete_response(endpoint):
    sample, _ = timed("reset_before_headers", endpoint)
    failed(sample, "incomplete", "connection broke")
    nothing_reached(sample)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_headers_that_never_come_time_out_after_first_byte_s(endpoint):
    sample, took = timed("no_headers", endpoint)
    failed(sample, "timeout", "no response headers within 0.5 s")
    nothing_reached(sample)
    assert 0.5 <= took < 1.5


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_headers_then_silence_times_out_waiting_for_the_first_byte(endpoint):
    sample, took = timed("stall_first_byte", endpoint)
    failed(sample, "timeout", "no first byte within 0.5 s")
    assert sample.status_code == 200 and sample.headers_ms is not None
    assert sample.ttfb_ms is None and sample.ttft_ms is None and sample.text == ""
    assert 0.5 <= took < 1.5


# -- HTTP error statuses -----------------------------------------------------------------------------

@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("fault, status, message", [
    ("http_400", 400, BAD_REQUEST),
    ("http_500", 500, None),  # the protocol's own message
    ("busy", 503, BUSY),
])
def test_an_http_error_status_keeps_the_status_and_the_servers_message(endpoint, fault, status, message):
    sample, _ = timed(fault, endpoint)
    if message is None:
        message = OPENAI_ERROR["message"] if endpoint == "openai" else CRASH
    failed(sample, "http", f"HTTP {status}: {message}")
    assert sample.status_code == status and sample.headers_ms is not None
    assert sample.ttft_ms is None and sample.itl_ms == [] and sample.text == ""


def test_a_vllm_error_body_keeps_its_message():
    sample, _ = timed("http_vllm", "openai")
    failed(sample, "http", "HTTP 404", VLLM_NOT_FOUND)


# -- streams that break after some tokens ------------------------------------------------------------

@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_reset_mid_stream_keeps_the_tokens_that_arrived(endpoint):
    sample, _ = timed("reset_mid_stream", endpoint)
    failed(sample, "incomplete", "connection broke")
    tokens_reached(sample, BEFORE)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_an_error_line_in_a_200_stream_is_a_server_error(endpoint):
    sample, _ = timed("error_line", endpoint)
    failed(sample, "server_error", CRASH)
    tokens_reached(sample, BEFORE)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_stream_without_its_final_chunk_is_incomplete(endpoint):
    sample, _ = timed("truncated", endpoint)
    failed(sample, "incomplete", "without its final chunk")
    tokens_reached(sample, BEFORE)
    assert sample.done_reason is None


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_stalled_stream_times_out_after_between_chunks_s(endpoint):
    sample, took = timed("stall", endpoint)
    failed(sample, "timeout", "no next chunk within 0.3 s")
    tokens_reached(sample, BEFORE)
    assert 0.3 <= took < 1.3


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("fault, words", [
    ("malformed_json", ("malformed JSON line",)),
    ("invalid_utf8", ("invalid UTF-8",)),
])
def test_an_unreadable_line_is_a_protocol_failure(endpoint, fault, words):
    sample, _ = timed(fault, endpoint)
    failed(sample, "protocol", *words)  # at once: the server holds the line open after it, so no timeout
    tokens_reached(sample, BEFORE)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_json_of_the_wrong_shape_is_a_protocol_failure(endpoint):
    sample, _ = timed("wrong_shape", endpoint)
    failed(sample, "protocol")
    tokens_reached(sample, BEFORE)


@pytest.mark.parametrize("endpoint, metrics, named", [
    ("generate", None, "eval_duration is not a number: '30ms'"),
    ("chat", None, "eval_duration is not a number: '30ms'"),
    ("generate", {"eval_count": "5"}, "eval_count is not a number: '5'"),  # reaches StreamClock.fill's TPOT
    ("openai", None, "usage is not an object: ['7', '5']"),
    ("openai", {"prompt_tokens": 7, "completion_tokens": "5"}, "completion_tokens is not a number: '5'"),
])
def test_final_figures_of_the_wrong_type_are_a_protocol_failure(endpoint, metrics, named):
    sample, _ = timed("wrong_metrics", endpoint, bad_metrics=metrics)
    failed(sample, "protocol", named)
    assert sample.ttft_ms is not None and sample.text == "".join(TOKENS)
    # the server's count is not a number: the tokens are counted from the content chunks instead
    assert (sample.output_tokens, sample.output_tokens_source) == (len(TOKENS), "chunks")


# -- far more than was asked for: bounded time and memory -------------------------------------------

@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_one_enormous_line_fails_at_once_with_bounded_memory(endpoint):
    tracemalloc.start()
    try:
        sample, took = timed("huge_line", endpoint, huge_bytes=32 * MAX_LINE_BYTES)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    failed(sample, "protocol", "exceeded")
    assert sample.ttft_ms is None and sample.ttfb_ms is not None and len(sample.text) <= MAX_TEXT_CHARS
    assert took < 2.0
    assert peak < 8 * MAX_LINE_BYTES, f"peak {peak / 2**20:.1f} MiB for a {MAX_LINE_BYTES >> 20} MiB line limit"


def test_an_enormous_error_body_is_read_with_bounded_memory():
    tracemalloc.start()
    try:
        sample, took = timed("huge_error_body", "generate", huge_bytes=64 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    failed(sample, "http", "HTTP 500")
    assert sample.status_code == 500 and took < 2.0
    assert peak < 8 << 20, f"peak {peak / 2**20:.0f} MiB for a 64 MiB error body"


ENDLESS = Timeouts(connect_s=1.0, first_byte_s=0.5, between_chunks_s=0.3, total_s=1.0)


def test_an_endless_stream_of_tokens_stops_at_total_s():
    sample, took = timed("endless_tokens", "generate", ENDLESS, hold_s=3.0)
    assert sample.ok is False and sample.error_kind in ("timeout", "protocol"), sample.error
    assert took < ENDLESS.total_s + 0.8
    assert sample.ttft_ms is not None and len(sample.text) <= MAX_TEXT_CHARS


def test_an_endless_stream_of_tokens_keeps_bounded_memory():
    sample, _ = timed("endless_tokens", "openai", ENDLESS, hold_s=3.0)
    assert sample.ok is False and sample.error_kind in ("timeout", "protocol"), sample.error
    assert len(sample.text) <= MAX_TEXT_CHARS
    # 4 tokens asked for; a loopback server pushes tens of thousands of chunks a second.
    assert len(sample.itl_ms) < 1000, f"{len(sample.itl_ms) + 1} chunks kept for max_tokens=4"


# -- whole studies -----------------------------------------------------------------------------------

KIND = {"ok": None, "busy": "http", "http_500": "http", "reset_mid_stream": "incomplete",
        "error_line": "server_error", "truncated": "incomplete", "stall": "timeout",
        "malformed_json": "protocol", "invalid_utf8": "protocol", "reset_before_headers": "incomplete",
        "no_headers": "timeout", "huge_line": "protocol", "wrong_shape": "protocol"}
PATH = {"ollama": "/api/generate", "chat": "/api/chat", "openai": "/v1/chat/completions"}
STUDY_TIMEOUTS = {"connect_s": 1.0, "first_byte_s": 0.5, "between_chunks_s": 0.3, "total_s": 3.0}


def run(scenarios: list[dict[str, Any]], base_url: str, requests: int, **kwargs: Any) -> tuple[str, Any]:
    spec = parse_study({"name": "faults", "backend": "ollama", "base_url": base_url, "timeouts": STUDY_TIMEOUTS,
                        "workload": {"requests": requests, "max_tokens": 4}, "scenarios": scenarios})
    run_id = runner.run_study(spec, progress=False, **kwargs)
    return run_id, store.load_run(run_id).sort_values("seq").reset_index(drop=True)


def test_a_study_against_a_struggling_server_records_every_request_and_completes(workdir):
    script = ["ok", "busy", "http_500",
              "reset_mid_stream", "ok", "error_line",
              "truncated", "stall", "ok",
              "malformed_json", "invalid_utf8", "reset_before_headers",
              "ok", "no_headers", "huge_line"]
    with FaultServer("ok", script=script, tokens=TOKENS, huge_bytes=4 << 20) as server, FaultServer("ok") as flaky:

        def on_sample(sample: Sample) -> None:  # the flaky server goes away after its first answer
            if sample.scenario == "flaky":
                flaky.close()

        scenarios = [{"name": "ollama", "model": "m"}, {"name": "chat", "model": "m", "endpoint": "chat"},
                     {"name": "openai", "model": "m", "backend": "openai"},
                     {"name": "flaky", "model": "m", "base_url": flaky.base_url}]
        run_id, frame = run(scenarios, server.base_url, requests=5, on_sample=on_sample)
        served = list(server.served)

    assert store.load_meta(run_id).status == "complete"
    assert list(frame["seq"]) == list(range(20))  # every planned request, in order, none lost
    up = frame[frame["scenario"] != "flaky"]
    assert [path for path, _ in served] == [PATH[s] for s in up["scenario"]]
    assert [fault for _, fault in served] == script
    assert [None if pd.isna(k) else k for k in up["error_kind"]] == [KIND[f] for f in script]
    assert list(up["ok"]) == [f == "ok" for f in script]
    gone = frame[frame["scenario"] == "flaky"]
    assert list(gone["ok"]) == [True, False, False, False, False]
    assert list(gone["error_kind"].iloc[1:]) == ["connect"] * 4
    assert frame.loc[~frame["ok"], "error"].str.len().gt(0).all()
    # http failures keep their status; the mid-stream ones keep the times they reached
    assert list(up.loc[up["error_kind"] == "http", "status_code"]) == [503, 500]
    broken = up[up["error_kind"].isin(["incomplete", "server_error", "timeout"]) & up["status_code"].eq(200)]
    assert broken["ttft_ms"].notna().all() and len(broken) == 4

    # no failed sample enters a latency figure: summary counts them as errors
    table = tables.summary(frame).droplevel("run")  # one run: scenarios by name
    for name in ("ollama", "chat", "openai", "flaky"):
        rows = frame[frame["scenario"] == name]
        good = rows[rows["ok"]]
        assert table.loc[name, "n"] == len(good) and table.loc[name, "errors"] == (~rows["ok"]).sum()
        assert table.loc[name, "mean"] == pytest.approx(good["ttfb_ms"].mean())
        assert table.loc[name, "max"] == pytest.approx(good["ttfb_ms"].max())
    assert set(tables.measured(frame)["ok"]) == {True}


def test_a_scenario_whose_every_request_failed_still_shows_its_errors(workdir):
    with FaultServer("ok") as server, FaultServer("http_500") as broken:
        _, frame = run([{"name": "up", "model": "m"}, {"name": "broken", "model": "m", "base_url": broken.base_url}],
                       server.base_url, requests=2)
    assert list(frame["ok"]) == [True, False, True, False]
    table = tables.summary(frame).droplevel("run")  # one run: scenarios by name
    assert table.loc["broken", "errors"] == 2 and table.loc["broken", "n"] == 0


def test_a_study_goes_on_past_a_chunk_of_the_wrong_shape(workdir):
    with FaultServer("ok", script=["ok", "wrong_shape", "ok"]) as server:
        run_id, frame = run([{"name": "a", "model": "m", "endpoint": "chat"}], server.base_url, requests=3)
    assert store.load_meta(run_id).status == "complete"
    assert list(frame["ok"]) == [True, False, True] and frame.loc[1, "error_kind"] == "protocol"
