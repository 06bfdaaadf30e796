"""Any OpenAI-compatible server: streaming `/v1/chat/completions` (SSE) with usage reporting."""

from __future__ import annotations

from typing import Any

import httpx

from latencylab.collect.backends.base import (
    Backend,
    GenerationRequest,
    StreamParser,
    number,
    parse_json_line,
)
from latencylab.core.errors import ServerError
from latencylab.core.sample import Sample


class OpenAIParser(StreamParser):
    """SSE `data:` events: role chunk, content chunks, finish chunk, optional usage, `[DONE]`."""

    def __init__(self) -> None:
        super().__init__()
        self.usage: dict[str, Any] = {}
        self.finish_reason: str | None = None

    def feed(self, line: bytes) -> bool:
        if not line.startswith(b"data:"):
            return False  # comments (`:`), `event:` and `id:` lines carry no data
        data = line[5:].strip()
        if data == b"[DONE]":
            self.finished = True
            return False
        event = parse_json_line(data)
        if event.get("error"):
            error = event["error"]
            raise ServerError("server_error", str(error.get("message", error) if isinstance(error, dict) else error))
        self.read_extra(event)
        if event.get("usage"):
            if not isinstance(event["usage"], dict):
                raise ServerError("protocol", f"usage is not an object: {event['usage']!r:.80}")
            self.usage = event["usage"]
        carried = False
        for choice in event.get("choices") or []:
            delta = choice.get("delta") or {}
            text = delta.get("content") or ""
            reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
            if text:
                self.add_text(text)
            carried = carried or bool(text or reasoning)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return carried

    def read_extra(self, event: dict[str, Any]) -> None:
        """Hook for servers that add their own fields to events."""

    def fill(self, sample: Sample) -> None:
        sample.done_reason = self.finish_reason
        if "completion_tokens" in self.usage:
            sample.output_tokens = number(self.usage["completion_tokens"], "completion_tokens")
            sample.output_tokens_source = "server"
        if "prompt_tokens" in self.usage:
            sample.prompt_tokens = number(self.usage["prompt_tokens"], "prompt_tokens")
        cached = (self.usage.get("prompt_tokens_details") or {}).get("cached_tokens")
        if cached is not None:
            sample.cached_tokens = number(cached, "cached_tokens")
            if sample.prompt_tokens is not None:
                sample.processed_tokens = sample.prompt_tokens - sample.cached_tokens


class OpenAIBackend(Backend):
    """`POST {base_url}/v1/chat/completions`; a base URL that already ends in `/v1` is accepted."""

    kind = "openai"

    def url(self, path: str) -> str:
        if self.base_url.endswith("/v1") and path.startswith("/v1/"):
            path = path[3:]
        return self.base_url + path

    def build(self, request: GenerationRequest) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": request.chat(),
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": request.max_tokens,
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.seed is not None:
            body["seed"] = request.seed
        return "/v1/chat/completions", body

    def parser(self) -> StreamParser:
        return OpenAIParser()

    async def facts(self, client: httpx.AsyncClient, models: list[str]) -> dict[str, Any]:
        """The models it serves (`/v1/models`: their ids only): those of `models` it lacks."""
        response = await client.get(self.url("/v1/models"))
        response.raise_for_status()
        ids = {m.get("id") for m in response.json().get("data") or []}
        return {"missing": [m for m in dict.fromkeys(models) if m not in ids]}


BACKEND = OpenAIBackend  # what the registry's entries naming this module speak with (core.protocols)
