"""The SSE readers of the OpenAI and llama-server backends, fed recorded lines."""

import json

import pytest

from latencylab.collect.backends import GenerationRequest
from latencylab.collect.backends.base import error_text
from latencylab.collect.backends.llamacpp import LlamaCppBackend, LlamaCppParser
from latencylab.collect.backends.openai import OpenAIBackend, OpenAIParser
from latencylab.core.errors import ServerError
from latencylab.core.sample import Sample


def data(obj) -> bytes:
    return b"data: " + json.dumps(obj).encode()


def chunk(delta, finish=None):
    return data({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


STREAM = [
    b": keep-alive comment",
    chunk({"role": "assistant", "content": None}),
    chunk({"content": ""}),
    chunk({"reasoning_content": "thinking"}),
    chunk({"content": "Hello"}),
    chunk({"content": " world"}),
    chunk({}, finish="length"),
    data({"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 3,
                                   "prompt_tokens_details": {"cached_tokens": 4}}}),
    b"data: [DONE]",
]


def test_role_only_and_empty_chunks_do_not_count_as_tokens():
    parser = OpenAIParser()
    carried = [parser.feed(line) for line in STREAM]
    assert carried == [False, False, False, True, True, True, False, False, False]
    assert parser.finished and parser.text() == "Hello world"
    sample = Sample()
    parser.fill(sample)
    assert (sample.output_tokens, sample.output_tokens_source) == (3, "server")
    assert (sample.prompt_tokens, sample.cached_tokens, sample.done_reason) == (12, 4, "length")


def test_llama_server_timings_are_the_server_figures():
    parser = LlamaCppParser()
    timings = {"cache_n": 37, "prompt_n": 1, "prompt_ms": 5.5, "predicted_n": 32, "predicted_ms": 300.25}
    for line in STREAM[:-3] + [data({"choices": [{"delta": {}, "finish_reason": "length"}], "timings": timings}),
                               b"data: [DONE]"]:
        parser.feed(line)
    sample = Sample()
    parser.fill(sample)
    assert (sample.cached_tokens, sample.prompt_tokens, sample.output_tokens) == (37, 38, 32)
    assert (sample.prompt_eval_ms, sample.eval_ms) == (5.5, 300.25)


def test_error_events_and_bad_json_are_failures_of_the_right_kind():
    with pytest.raises(ServerError) as err:
        OpenAIParser().feed(data({"error": {"message": "model overloaded", "code": 503}}))
    assert err.value.kind == "server_error" and "model overloaded" in str(err.value)
    with pytest.raises(ServerError) as err:
        OpenAIParser().feed(b"data: {not json")
    assert err.value.kind == "protocol"
    with pytest.raises(ServerError) as err:
        OpenAIParser().feed(b"data: \xff\xfe")
    assert err.value.kind == "protocol"


def test_error_bodies_of_both_protocols_are_read():
    assert error_text(b'{"error":"model \'x\' not found"}') == "model 'x' not found"
    assert error_text(b'{"error":{"message":"bad key","type":"auth"}}') == "bad key"
    assert error_text(b"<html>gateway</html>") == "<html>gateway</html>"


def test_request_bodies():
    request = GenerationRequest(model="m", prompt="p", max_tokens=7, temperature=0.0, seed=1, cache_prompt=False)
    path, body = OpenAIBackend("http://h:1/v1").build(request)
    assert OpenAIBackend("http://h:1/v1").url(path) == "http://h:1/v1/chat/completions"
    assert body["stream"] and body["stream_options"] == {"include_usage": True} and body["max_tokens"] == 7
    assert "cache_prompt" not in body
    _, body = LlamaCppBackend("http://h:1").build(request)
    assert body["cache_prompt"] is False
