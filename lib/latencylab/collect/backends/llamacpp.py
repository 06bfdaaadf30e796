"""llama.cpp's llama-server: the OpenAI protocol plus its per-response `timings` and router mode."""

from __future__ import annotations

from typing import Any

import httpx

from latencylab.collect.backends.base import GenerationRequest, Residency, StreamParser, error_text, number
from latencylab.collect.backends.openai import OpenAIBackend, OpenAIParser
from latencylab.core.errors import ServerError
from latencylab.core.sample import Sample
from latencylab.plan.facts import ModelFacts, as_int

# Ollama's per-request options that llama-server reads under its own names.
SAMPLING_OPTIONS = {"temperature": "temperature", "seed": "seed", "top_k": "top_k", "top_p": "top_p",
                    "min_p": "min_p", "typical_p": "typical_p", "repeat_penalty": "repeat_penalty",
                    "repeat_last_n": "repeat_last_n", "presence_penalty": "presence_penalty",
                    "frequency_penalty": "frequency_penalty", "stop": "stop", "num_predict": "max_tokens"}
PROPS_KEYS = ("build_info", "model_path", "total_slots", "model_alias", "is_sleeping", "role", "max_instances")


def _status(entry: dict[str, Any]) -> str:
    status = entry.get("status")
    value = status.get("value") if isinstance(status, dict) else status
    return value or "loaded"  # a single-model server gives no status: its model is always loaded


class LlamaCppParser(OpenAIParser):
    """Adds llama-server's `timings` (prompt_n, prompt_ms, predicted_n, predicted_ms, cache_n)."""

    def __init__(self) -> None:
        super().__init__()
        self.timings: dict[str, Any] = {}

    def read_extra(self, event: dict[str, Any]) -> None:
        if event.get("timings"):
            self.timings = event["timings"]

    def fill(self, sample: Sample) -> None:
        super().fill(sample)
        t = self.timings
        if not t:
            return
        if not isinstance(t, dict):
            raise ServerError("protocol", f"timings is not an object: {t!r:.80}")
        cached = number(t.get("cache_n", 0), "cache_n")
        sample.cached_tokens = cached
        if "prompt_n" in t:
            sample.processed_tokens = number(t["prompt_n"], "prompt_n")
            sample.prompt_tokens = sample.processed_tokens + cached
        if "predicted_n" in t:
            sample.output_tokens, sample.output_tokens_source = number(t["predicted_n"], "predicted_n"), "server"
        if "prompt_ms" in t:
            sample.prompt_eval_ms = number(t["prompt_ms"], "prompt_ms")
        if "predicted_ms" in t:
            sample.eval_ms = number(t["predicted_ms"], "predicted_ms")


class LlamaCppBackend(OpenAIBackend):
    """llama-server, single-model or router mode (`/models`, `/models/load`, `/models/unload`)."""

    kind = "llamacpp"

    def build(self, request: GenerationRequest) -> tuple[str, dict[str, Any]]:
        path, body = super().build(request)
        for option, field in SAMPLING_OPTIONS.items():
            if option in request.options:
                body[field] = request.options[option]
        if request.cache_prompt is not None:
            body["cache_prompt"] = request.cache_prompt
        return path, body

    def parser(self) -> StreamParser:
        return LlamaCppParser()

    async def _entries(self, client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
        response = await client.get(self.url("/models"))
        response.raise_for_status()
        return {entry.get("id", ""): entry for entry in response.json().get("data") or []}

    async def models(self, client: httpx.AsyncClient) -> dict[str, str]:
        """Model id → router status (`unloaded | loading | loaded | sleeping`); never wakes a model."""
        return {model_id: _status(entry) for model_id, entry in (await self._entries(client)).items()}

    async def residency(self, client: httpx.AsyncClient, model: str) -> Residency | None:
        try:
            entry = (await self._entries(client)).get(model)
        except (httpx.HTTPError, ValueError):
            return None
        if entry is None:
            return None
        meta = entry.get("meta") or {}
        return Residency(resident=_status(entry) == "loaded", size_bytes=meta.get("size"),
                         context_length=meta.get("n_ctx"))

    async def props(self, client: httpx.AsyncClient, model: str | None = None) -> dict[str, Any]:
        """`GET /props` (router mode: `?model=`): context, slots, build, model path; never wakes a model."""
        response = await client.get(self.url("/props"), params={"model": model} if model else None)
        if response.status_code >= 400:
            raise ServerError("http", f"/props: HTTP {response.status_code}: {error_text(response.content)}")
        return response.json()

    async def model_entries(self, client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
        """`/models` entries by id (status, and `meta` where the server gives it: size, trained context)."""
        return await self._entries(client)

    async def facts(self, client: httpx.AsyncClient, models: list[str]) -> dict[str, Any]:
        """Its build and settings (`/props`), and each of `models` it lists (`/models`, with the facts a router
        gives of a loaded model)."""
        try:
            props = await self.props(client)
        except (ServerError, ValueError):
            props = {}
        settings = props.get("default_generation_settings") or {}
        kept = {k: props[k] for k in PROPS_KEYS if k in props}
        if settings.get("n_ctx"):  # a router says 0: each model has its own
            kept["n_ctx"] = settings["n_ctx"]
        try:
            entries = await self.model_entries(client)
        except (httpx.HTTPError, ValueError):
            entries = {}
        found = []
        for model in dict.fromkeys(models):
            meta = (entries.get(model) or {}).get("meta") or {}  # a router gives it for loaded models only
            params = as_int(meta.get("n_params"))
            if model in entries:
                found.append(ModelFacts(
                    name=model, source="llama-server", size_bytes=as_int(meta.get("size")),
                    context_length=as_int(meta.get("n_ctx_train")), embedding_length=as_int(meta.get("n_embd")),
                    quantization_level=meta.get("ftype"),
                    parameter_size=None if params is None else f"{params / 1e9:.1f}B" if params >= 1e9
                    else f"{params / 1e6:.0f}M"))
        return {"version": props.get("build_info"), "props": kept, "models": found,
                "missing": [m for m in dict.fromkeys(models) if entries and m not in entries]}

    async def model_path(self, client: httpx.AsyncClient, model: str) -> str | None:
        """`/props`' `model_path`."""
        return (await self.props(client)).get("model_path")

    async def _post(self, client: httpx.AsyncClient, action: str, model: str) -> None:
        response = await client.post(self.url(f"/models/{action}"), json={"model": model}, timeout=None)
        if response.status_code >= 400:
            raise ServerError("http", f"{action} {model}: HTTP {response.status_code}: {error_text(response.content)}")

    async def load(
        self,
        client: httpx.AsyncClient,
        model: str,
        *,
        keep_alive: float | str | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        """Load `model` and wait until the router reports it loaded (keep_alive and options are the
        engine's presets, not per request)."""
        await self._post(client, "load", model)
        await self.wait_resident(client, model, True)

    async def unload(self, client: httpx.AsyncClient, model: str) -> None:
        """Unload `model` and wait until the router no longer holds it."""
        if (await self.models(client)).get(model) not in ("loaded", "loading"):
            return
        await self._post(client, "unload", model)
        await self.wait_resident(client, model, False)


BACKEND = LlamaCppBackend  # what the registry's entries naming this module speak with (core.protocols)
