"""The Ollama client against `tests/doubles/ollama.py`, a test double written from
shared/reference/ollama-api.md (not Ollama), plus tests of the double's own fidelity: a double that
lies about the protocol would make the client tests worthless.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from doubles.ollama import BUSY, FOREVER_NS, METRICS, OllamaDouble, parse_keep_alive
from latencylab.collect.backends.base import GenerationRequest
from latencylab.collect.backends.ollama import OllamaBackend
from latencylab.core.errors import ServerError
from latencylab.core.sample import Sample

MODELS = {"tiny": {"size": 1_000_000, "context_length": 8192},
          "big:q4": {"size": 10_000_000, "size_vram": 4_000_000}}
TOKENS = ("The", " sky", " is", " blue", ".")


def double(**kwargs: Any) -> OllamaDouble:
    kwargs = {"models": MODELS, "load_delay_s": 0.05, "token_delay_s": 0.005, **kwargs}
    return OllamaDouble(**kwargs)


def request(**kwargs: Any) -> GenerationRequest:
    return GenerationRequest(**{"model": "tiny", "prompt": "why is the sky blue", **kwargs})


def measure(server: OllamaDouble, endpoint: str = "generate", **kwargs: Any) -> Sample:
    return asyncio.run(_measure_many(server, endpoint, [request(**kwargs)]))[0]


async def _measure_many(
    server: OllamaDouble, endpoint: str, reqs: list[GenerationRequest]
) -> list[Sample]:
    backend = OllamaBackend(server.base_url, endpoint=endpoint)
    async with backend.client() as client:
        return [await backend.measure(client, r) for r in reqs]


def when(stamp: str) -> datetime:
    """Go's RFC 3339 (1 to 9 fractional digits) as a datetime; Python 3.10 wants exactly 6."""
    stamp = re.sub(r"\.(\d+)", lambda m: "." + (m.group(1) + "000000")[:6], stamp)
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def ms(ns: int) -> float:
    return ns / 1e6


async def eventually(probe: Any, expected: Any, within_s: float = 1.0) -> Any:
    """Poll `probe()` until it returns `expected`: Ollama releases a runner (and so refreshes
    `expires_at` or unloads) just after the done chunk is written, not before."""
    deadline = time.monotonic() + within_s
    while (value := await probe()) != expected and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return value


# -- streaming generate and chat -------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["generate", "chat"])
def test_streamed_request_gives_an_ok_sample(endpoint: str) -> None:
    with double(token_delay_s=0.01) as server:
        s = measure(server, endpoint)
        final = server.finals[-1]
    assert s.ok, s.error
    assert s.status_code == 200 and s.done_reason == "stop"
    assert 0 < s.headers_ms <= s.ttfb_ms <= s.ttft_ms <= s.e2e_ms
    assert s.text == "".join(TOKENS)
    assert (s.output_tokens, s.output_tokens_source) == (len(TOKENS), "server")
    assert s.output_tokens == final["eval_count"]
    assert len(s.itl_ms) == s.output_tokens - 1 and all(x > 0 for x in s.itl_ms)
    # TPOT spreads first token → end of stream over the 4 tokens after the first, so it is at least the mean of
    # the 4 gaps between tokens (the end comes with or after the last token); dividing by 5 would fall a fifth below
    assert s.tpot_ms >= sum(s.itl_ms) / (len(TOKENS) - 1) * (1 - 1e-9)  # 1e-9: the two sums round differently
    assert s.prompt_tokens == final["prompt_eval_count"]
    # integer ns in the done chunk become ms, exactly
    assert s.load_ms == ms(final["load_duration"])
    assert s.prompt_eval_ms == ms(final["prompt_eval_duration"])
    assert s.eval_ms == ms(final["eval_duration"])
    assert s.total_ms == ms(final["total_duration"])
    assert s.eval_ms >= 0.01 * 1000 * (len(TOKENS) - 1) * 0.9  # a token every 10 ms after the first
    assert s.total_ms <= s.e2e_ms


def test_text_of_the_done_chunk_is_kept() -> None:
    with double(text_in_final=True) as server:
        s = measure(server)
        assert server.finals[-1]["response"] == "."
    assert s.ok and s.text == "The sky is blue."
    assert s.output_tokens == len(TOKENS) and len(s.itl_ms) == len(TOKENS) - 1


def test_omitted_metrics_read_as_zero() -> None:
    with double(prompt_token_delay_s=0) as server:
        s = measure(server, max_tokens=0)  # nothing generated and no prompt time: all omitted
        final = server.finals[-1]
    assert not {"eval_count", "eval_duration", "prompt_eval_duration"} & set(final)
    assert s.ok and s.done_reason == "length"
    assert s.eval_ms == 0.0 and s.prompt_eval_ms == 0.0
    assert (s.output_tokens, s.output_tokens_source) == (0, "server")
    assert s.ttft_ms is None and s.itl_ms == [] and s.text == ""
    assert s.load_ms > 0 and s.total_ms > 0


@pytest.mark.parametrize("endpoint", ["generate", "chat"])
def test_a_current_ollama_s_cached_count_is_read_and_the_bundled_version_s_absence_is_unknown(endpoint: str) -> None:
    # The same prompt twice: a current Ollama serves all of it but one token from the KV cache the second time and
    # says so (prompt_eval_cached_count, omitted while it is zero); Ollama 0.5.4 says nothing of it.
    reqs = [request(), request()]
    with double(reports_cached=True) as server:
        first, second = asyncio.run(_measure_many(server, endpoint, reqs))
        finals = server.finals[-2:]
    assert "prompt_eval_cached_count" not in finals[0]  # omitempty: a zero is not written
    assert first.cached_tokens is None and first.processed_tokens is None
    assert second.cached_tokens == finals[1]["prompt_eval_cached_count"] == second.prompt_tokens - 1
    assert second.processed_tokens == 1
    with double() as server:
        samples = asyncio.run(_measure_many(server, endpoint, reqs))
    assert [s.cached_tokens for s in samples] == [None, None]


def test_num_predict_limit_gives_length() -> None:
    with double() as server:
        s = measure(server, max_tokens=3)
    assert s.ok and s.done_reason == "length" and s.text == "The sky is" and s.output_tokens == 3


# -- cold, warm, load, unload, residency -----------------------------------------------------------


def test_cold_request_pays_the_load_and_a_warm_one_does_not() -> None:
    delay = 0.2
    with double(load_delay_s=delay) as server:
        cold, warm = asyncio.run(_measure_many(server, "generate", [request(), request()]))
        assert server.loads == [("tiny:latest", "cold")]
    assert cold.ok and warm.ok
    assert delay * 1000 <= cold.load_ms < delay * 1000 + 150
    assert cold.ttfb_ms > delay * 1000 and cold.ttft_ms > cold.load_ms
    assert 0 < warm.load_ms < 50  # small but non-zero on a warm model
    assert warm.ttfb_ms < delay * 1000


@pytest.mark.parametrize("endpoint", ["generate", "chat"])
def test_load_only_and_unload(endpoint: str) -> None:
    delay = 0.15

    async def scenario(server: OllamaDouble) -> tuple[Any, ...]:
        backend = OllamaBackend(server.base_url, endpoint=endpoint)
        async with backend.client() as client:
            before = await backend.resident(client, "tiny")
            t = time.perf_counter()
            loaded = await backend.load(client, "tiny", keep_alive="10m")
            load_s = time.perf_counter() - t
            during = await backend.resident(client, "tiny:latest")
            t = time.perf_counter()
            unloaded = await backend.unload(client, "tiny")
            unload_s = time.perf_counter() - t
            after = await backend.resident(client, "tiny")
            return before, loaded, load_s, during, unloaded, unload_s, after

    with double(load_delay_s=delay) as server:
        before, loaded, load_s, during, unloaded, unload_s, after = asyncio.run(scenario(server))
        bodies = server.bodies(f"/api/{endpoint}")
    assert before is False and during is True and after is False
    assert loaded["done"] is True and loaded["done_reason"] == "load"
    assert not set(METRICS) & set(loaded), "a load-only reply carries no metrics"
    assert load_s >= delay  # the only way to time a cold load-only request: on the client
    assert unloaded["done_reason"] == "unload" and unload_s < delay
    if endpoint == "chat":
        assert loaded["message"] == {"role": "assistant", "content": ""}
        assert bodies[0]["messages"] == [] and bodies[1]["messages"] == []
    else:
        assert loaded["response"] == "" and bodies[0]["prompt"] == ""
    assert bodies[0]["keep_alive"] == "10m" and bodies[1]["keep_alive"] == 0


def test_unload_does_not_schedule_a_load() -> None:
    async def scenario(server: OllamaDouble) -> dict[str, Any]:
        backend = OllamaBackend(server.base_url)
        async with backend.client() as client:
            return await backend.unload(client, "tiny")

    with double(load_delay_s=0.3) as server:
        t = time.perf_counter()
        reply = asyncio.run(scenario(server))
        assert time.perf_counter() - t < 0.3
        assert reply["done_reason"] == "unload" and server.loads == []


def test_ps_reports_partial_and_full_offload() -> None:
    async def scenario(server: OllamaDouble) -> list[Any]:
        backend = OllamaBackend(server.base_url)
        async with backend.client() as client:
            empty = await backend.ps(client)
            await backend.load(client, "tiny")
            await backend.load(client, "big:q4")
            return [empty, await backend.ps(client)]

    with double() as server:
        empty, loaded = asyncio.run(scenario(server))
    assert empty == []
    by_name = {r.name: r for r in loaded}
    assert set(by_name) == {"tiny:latest", "big:q4"}
    assert by_name["big:q4"].gpu_share == pytest.approx(0.4) and by_name["big:q4"].gpu_share < 1
    assert by_name["tiny:latest"].gpu_share == 1.0
    assert by_name["tiny:latest"].context_length == 4096
    assert when(by_name["tiny:latest"].expires_at) > datetime.now(UTC)


@pytest.mark.parametrize("keep_alive", [0.2, "200ms"])
def test_resident_turns_false_after_keep_alive_expires(keep_alive: float | str) -> None:
    async def scenario(server: OllamaDouble) -> tuple[Any, ...]:
        backend = OllamaBackend(server.base_url)
        async with backend.client() as client:
            sample = await backend.measure(client, request(keep_alive=keep_alive))
            right_after = await backend.resident(client, "tiny")
            await asyncio.sleep(0.35)
            return sample, right_after, await backend.resident(client, "tiny")

    with double() as server:
        sample, right_after, later = asyncio.run(scenario(server))
    assert sample.ok and right_after is True and later is False


def test_keep_alive_zero_with_a_prompt_generates_then_unloads() -> None:
    async def scenario(server: OllamaDouble) -> tuple[Sample, bool | None]:
        backend = OllamaBackend(server.base_url)
        async with backend.client() as client:
            sample = await backend.measure(client, request(keep_alive=0))
            return sample, await eventually(lambda: backend.resident(client, "tiny"), False)

    with double() as server:
        sample, resident = asyncio.run(scenario(server))
    assert sample.ok and sample.text == "The sky is blue." and resident is False


def test_resident_is_false_while_a_model_is_stopping() -> None:
    async def scenario(server: OllamaDouble) -> tuple[list[Any], bool | None]:
        backend = OllamaBackend(server.base_url)
        async with backend.client() as client:
            await backend.load(client, "tiny")
            await backend.unload(client, "tiny")
            return await backend.ps(client), await backend.resident(client, "tiny")

    with double(unload_delay_s=0.5) as server:
        listed, resident = asyncio.run(scenario(server))
    assert [r.name for r in listed] == ["tiny:latest"]  # still listed while it unloads …
    assert when(listed[0].expires_at) <= datetime.now(UTC)  # … as "Stopping…"
    assert resident is False


def test_load_only_reply_through_measure_has_no_server_figures() -> None:
    with double(load_delay_s=0.1) as server:
        s = measure(server, prompt="")
    assert s.ok and s.done_reason == "load" and s.e2e_ms >= 100
    assert s.load_ms is None and s.total_ms is None  # not "the server spent 0 ms loading"


def test_runner_options_reload_and_sampling_options_do_not() -> None:
    delay = 0.15
    reqs = [request(options={"num_ctx": 2048}),
            request(options={"num_ctx": 2048, "temperature": 0.1, "top_k": 5, "seed": 1}),
            request(options={"num_ctx": 4096}),
            request(options={"num_ctx": 4096, "num_gpu": -1})]  # -1 (auto) never reloads
    with double(load_delay_s=delay) as server:
        first, sampling, num_ctx, auto_gpu = asyncio.run(_measure_many(server, "generate", reqs))
        assert server.loads == [("tiny:latest", "cold"), ("tiny:latest", "reload")]
        assert server.ps()["models"][0]["context_length"] == 4096
    assert all(s.ok for s in (first, sampling, num_ctx, auto_gpu))
    assert first.load_ms >= delay * 1000 and num_ctx.load_ms >= delay * 1000
    assert sampling.load_ms < 50 and auto_gpu.load_ms < 50


# -- errors ----------------------------------------------------------------------------------------


def test_unknown_model_is_an_http_404() -> None:
    async def load(server: OllamaDouble) -> None:
        backend = OllamaBackend(server.base_url)
        async with backend.client() as client:
            await backend.load(client, "llama9")

    with double() as server:
        s = measure(server, model="llama9")
        with pytest.raises(ServerError, match="not found") as info:
            asyncio.run(load(server))
    assert not s.ok and s.error_kind == "http" and s.status_code == 404
    assert "not found" in s.error and "model 'llama9' not found" in s.error
    assert info.value.kind == "http"


def test_full_load_queue_is_an_http_503_and_warm_requests_bypass_it() -> None:
    async def scenario(server: OllamaDouble) -> tuple[list[Sample], Sample]:
        backend = OllamaBackend(server.base_url)
        async with backend.client() as client:
            await backend.load(client, "big:q4")  # warm: takes the fast path, never queued
            cold = [backend.measure(client, request()) for _ in range(3)]
            warm = backend.measure(client, request(model="big:q4"))
            *samples, warm_sample = await asyncio.gather(*cold, warm)
            return samples, warm_sample

    with double(load_delay_s=0.3, max_queue=1) as server:
        samples, warm = asyncio.run(scenario(server))
    busy = [s for s in samples if not s.ok]
    assert len(busy) == 1 and sum(s.ok for s in samples) == 2
    assert busy[0].error_kind == "http" and busy[0].status_code == 503
    assert busy[0].error == f"HTTP 503: {BUSY}"
    assert warm.ok and warm.ttfb_ms < 300


def test_error_line_mid_stream_is_a_server_error_with_times_kept() -> None:
    with double(fail_after_tokens=2, fail_message="runner crashed") as server:
        s = measure(server)
    assert not s.ok and s.error_kind == "server_error" and s.status_code == 200
    assert s.error == "runner crashed"
    assert s.ttft_ms is not None and s.ttfb_ms <= s.ttft_ms <= s.e2e_ms
    assert s.text == "The sky" and len(s.itl_ms) == 1
    assert s.load_ms is None and s.done_reason is None  # no done chunk, so no server figures


def test_failure_before_the_first_chunk_is_an_http_500() -> None:
    with double(fail_after_tokens=0, fail_message="llama runner process has terminated") as server:
        s = measure(server)
    assert not s.ok and s.error_kind == "http" and s.status_code == 500
    assert "llama runner process has terminated" in s.error and s.ttft_ms is None


def test_bad_keep_alive_string_is_rejected_by_the_server() -> None:
    with double() as server:
        s = measure(server, keep_alive="300")
        r = httpx.post(f"{server.base_url}/api/generate",
                       json={"model": "tiny", "keep_alive": "300"})
    assert not s.ok and s.error_kind == "http" and s.status_code == 400
    assert s.error == 'HTTP 400: time: missing unit in duration "300"'
    assert r.status_code == 400 and r.json() == {"error": 'time: missing unit in duration "300"'}
    assert r.headers["content-type"] == "application/json; charset=utf-8"


# -- what the client sends -------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["generate", "chat"])
def test_client_sends_keep_alive_options_and_num_predict(endpoint: str) -> None:
    with double() as server:
        measure(server, endpoint, keep_alive="10m", max_tokens=3, temperature=0.2, seed=7,
                options={"num_ctx": 2048})
        measure(server, endpoint)
        sent, default = server.bodies(f"/api/{endpoint}")
    assert sent["model"] == "tiny" and sent["stream"] is True and sent["keep_alive"] == "10m"
    assert sent["options"] == {"num_ctx": 2048, "num_predict": 3, "temperature": 0.2, "seed": 7}
    if endpoint == "chat":
        assert sent["messages"] == [{"role": "user", "content": "why is the sky blue"}]
    else:
        assert sent["prompt"] == "why is the sky blue"
    assert "keep_alive" not in default  # unset: the server keeps the runner's current value
    assert default["options"]["num_predict"] == GenerationRequest.max_tokens


def test_explicit_num_predict_in_options_wins() -> None:
    with double() as server:
        s = measure(server, max_tokens=32, options={"num_predict": 2})
        assert server.bodies("/api/generate")[0]["options"]["num_predict"] == 2
    assert s.output_tokens == 2


# -- the double's own fidelity ---------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    (None, None), (300, 300 * 10**9), (0.5, 5 * 10**8), (0, 0), (-1, FOREVER_NS),
    ("5m", 300 * 10**9), ("1h30m", 5400 * 10**9), ("300ms", 3 * 10**8), ("1.5s", 15 * 10**8),
    ("0", 0), ("0s", 0), ("-1m", FOREVER_NS), ("-1s", FOREVER_NS),
    ("300", 'time: missing unit in duration "300"'), ("-1", 'time: missing unit in duration "-1"'),
    ("5x", 'time: unknown unit "x" in duration "5x"'), ("", 'time: invalid duration ""'),
    ("abc", 'time: invalid duration "abc"'), (".s", 'time: invalid duration ".s"'),
    (True, "Unsupported type: 'bool'"), ({}, "Unsupported type: 'map[string]interface {}'"),
])
def test_double_parses_keep_alive_like_go(value: Any, expected: int | str | None) -> None:
    if isinstance(expected, str):
        with pytest.raises(Exception, match=re.escape(expected)) as info:
            parse_keep_alive(value)
        assert info.value.status == 400
    else:
        assert parse_keep_alive(value) == expected


def test_double_keep_alive_errors_over_http() -> None:
    with double() as server:
        for value, message in [(True, "Unsupported type: 'bool'"),
                               ("-1", 'time: missing unit in duration "-1"')]:
            r = httpx.post(f"{server.base_url}/api/chat",
                           json={"model": "tiny", "keep_alive": value})
            assert (r.status_code, r.json()) == (400, {"error": message})
        assert server.loads == []


def test_double_absent_keep_alive_keeps_the_current_duration() -> None:
    def expires(server: OllamaDouble) -> datetime:
        assert server.wait_idle()  # expires_at is set when the runner goes idle, not before
        return when(server.ps()["models"][0]["expires_at"])

    with double() as server:
        url = server.base_url + "/api/generate"
        httpx.post(url, json={"model": "tiny", "keep_alive": -1})
        assert expires(server).year > 2300  # forever: about 292 years ahead
        httpx.post(url, json={"model": "tiny", "prompt": "hi"})
        assert expires(server).year > 2300  # absent: not reset to 5m
        httpx.post(url, json={"model": "tiny", "prompt": "hi", "keep_alive": "1m"})
        ahead = (expires(server) - datetime.now(UTC)).total_seconds()
        assert 55 < ahead <= 60
        assert server.loads == [("tiny:latest", "cold")]


@pytest.mark.parametrize("endpoint", ["generate", "chat"])
def test_double_stream_wire_format(endpoint: str) -> None:
    body: dict[str, Any] = {"model": "tiny"}
    body.update({"messages": [{"role": "user", "content": "hi"}]} if endpoint == "chat"
                else {"prompt": "hi"})
    with double() as server, httpx.Client() as client:
        with client.stream("POST", f"{server.base_url}/api/{endpoint}", json=body) as r:
            assert r.status_code == 200 and r.http_version == "HTTP/1.1"
            assert r.headers["content-type"] == "application/x-ndjson"
            assert r.headers["transfer-encoding"] == "chunked"
            lines = [json.loads(line) for line in r.iter_lines() if line]
    *chunks, final = lines
    assert len(chunks) == len(TOKENS)
    for chunk in chunks:
        assert chunk["done"] is False and chunk["model"] == "tiny"  # echoes the name as sent
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z", chunk["created_at"])
        assert not set(METRICS) & set(chunk)
    texts = [c["message"]["content"] if endpoint == "chat" else c["response"] for c in chunks]
    assert "".join(texts) == "The sky is blue."
    assert final["done"] is True and final["done_reason"] == "stop"
    assert all(isinstance(final[k], int) and final[k] > 0 for k in METRICS)
    assert final["total_duration"] >= final["load_duration"] + final["eval_duration"]
    assert ("context" in final) == (endpoint == "generate")


def test_double_omits_zero_metrics() -> None:
    with double(prompt_token_delay_s=0) as server:
        r = httpx.post(server.base_url + "/api/generate",
                       json={"model": "tiny", "prompt": "hi", "options": {"num_predict": 0}})
        final = [line for line in r.text.splitlines() if line][-1]
    assert '"eval_count"' not in final and '"eval_duration"' not in final
    assert '"prompt_eval_duration"' not in final and '"prompt_eval_count":1' in final
    assert ":0," not in final and ":0}" not in final


def test_double_prompt_eval_count_includes_cached_tokens() -> None:
    with double(prompt_token_delay_s=0.005) as server:
        prompt = " ".join(f"w{i}" for i in range(20))
        measure(server, prompt=prompt)
        measure(server, prompt=prompt)
        cold, cached = server.finals
    assert cold["prompt_eval_count"] == cached["prompt_eval_count"] == 20
    assert cached["prompt_eval_duration"] < cold["prompt_eval_duration"] / 4


def test_double_ps_sorted_by_expires_at_descending() -> None:
    with double() as server:
        url = server.base_url + "/api/generate"
        assert httpx.get(server.base_url + "/api/ps").json() == {"models": []}
        httpx.post(url, json={"model": "tiny", "keep_alive": "1m"})
        httpx.post(url, json={"model": "big:q4", "keep_alive": -1})
        models = httpx.get(server.base_url + "/api/ps").json()["models"]
    assert [m["name"] for m in models] == ["big:q4", "tiny:latest"]
    assert [m["model"] for m in models] == ["big:q4", "tiny:latest"]
    assert when(models[0]["expires_at"]) > when(models[1]["expires_at"])
    for m in models:
        assert {"name", "model", "size", "size_vram", "expires_at", "context_length", "digest",
                "details"} <= set(m)
        assert len(m["digest"]) == 64 and m["details"]["format"] == "gguf"
    assert models[0]["size_vram"] < models[0]["size"]  # partial offload
    assert models[1]["size_vram"] == models[1]["size"]


def test_double_num_gpu_zero_is_cpu_only_and_a_reload() -> None:
    with double() as server:
        url = server.base_url + "/api/generate"
        httpx.post(url, json={"model": "tiny"})
        httpx.post(url, json={"model": "tiny", "options": {"num_gpu": 0}})
        assert server.ps()["models"][0]["size_vram"] == 0
        assert [reason for _, reason in server.loads] == ["cold", "reload"]


def test_double_num_parallel_wait_shows_only_in_total_duration() -> None:
    async def scenario(server: OllamaDouble) -> None:
        backend = OllamaBackend(server.base_url)
        async with backend.client() as client:
            await backend.load(client, "tiny")
            await asyncio.gather(*(backend.measure(client, request()) for _ in range(2)))

    with double(token_delay_s=0.02, num_parallel=1) as server:
        asyncio.run(scenario(server))
        finals = server.finals
    overheads = [f["total_duration"] - f["load_duration"] - f["prompt_eval_duration"]
                 - f["eval_duration"] for f in finals]
    # the second request waited for the slot while the first generated
    assert max(overheads) >= 0.8 * min(f["eval_duration"] for f in finals)
    assert all(f["load_duration"] < 50e6 for f in finals)  # warm: not in load_duration


def test_double_other_endpoints_and_errors() -> None:
    with double() as server, httpx.Client(base_url=server.base_url) as c:
        assert (c.get("/").status_code, c.get("/").text) == (200, "Ollama is running")
        assert c.head("/").status_code == 200
        assert c.get("/api/version").json() == {"version": "0.33.0"}
        r = c.get("/api/nope")
        assert (r.status_code, r.text) == (404, "404 page not found")
        assert c.get("/api/generate").status_code == 405
        cases = [
            ("/api/generate", b"", 400, "missing request body"),
            ("/api/generate", b'{"model": ""}', 404, "model '' not found"),
            ("/api/chat", b'{"model": ""}', 400, "model is required"),
            ("/api/chat", b'{"model": "llama9", "messages": []}', 404,
             'model "llama9" not found, try pulling it first'),  # as the real Ollama 0.5.4 words it
            ("/api/chat", b'{"model": "bad name"}', 400, "invalid model name"),
            ("/api/generate", b'{"model": "bad name"}', 404, "model 'bad name' not found"),
            ("/api/generate", b"[]", 400,
             "json: cannot unmarshal into Go value of type api.GenerateRequest"),
            ("/api/generate", b'{"model": "tiny", "prompt": "x", "options": {"num_ctx": "4096"}}',
             500, 'option "num_ctx" must be of type integer'),
        ]
        for path, content, status, message in cases:
            r = c.post(path, content=content, headers={"Content-Type": "application/json"})
            assert (r.status_code, r.json()) == (status, {"error": message}), path
        r = c.post("/api/generate", json={"model": "tiny", "prompt": "hi", "stream": False})
        assert r.headers["content-type"] == "application/json; charset=utf-8"
        assert r.json()["response"] == "The sky is blue." and r.json()["done"] is True
