"""Ollama's native API: streaming `/api/generate` and `/api/chat` (NDJSON), load/unload, `/api/ps`."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import httpx
from tqdm.auto import tqdm

from latencylab.collect.backends.base import (
    Backend,
    GenerationRequest,
    Residency,
    StreamParser,
    error_text,
    number,
    parse_json_line,
)
from latencylab.core.errors import ServerError
from latencylab.core.protocols import full_name
from latencylab.core.sample import Sample
from latencylab.plan.facts import LoadedModel, ModelFacts, model_facts

NS_PER_MS = 1e6
# The settings of the server's start log that decide what a request waits for (envconfig/config.go `AsMap`):
# OLLAMA_CONTEXT_LENGTH is logged from v0.5.13 on, the others at least since 0.5.4.
CONFIG_KEYS = ("OLLAMA_FLASH_ATTENTION", "OLLAMA_KV_CACHE_TYPE", "OLLAMA_NUM_PARALLEL", "OLLAMA_MAX_LOADED_MODELS",
               "OLLAMA_KEEP_ALIVE", "OLLAMA_CONTEXT_LENGTH")
# server/routes.go `Serve`: slog.Info("server config", "env", envconfig.Values()), a Go map printed as
# env="map[KEY:value KEY:value …]" after `INFO server config` (0.5.4's default logger) or `msg="server config"`
# (logutil/logutil.go's slog text handler, current); a value holds no space except lists (OLLAMA_ORIGINS), not read.
_CONFIG_LINE = re.compile(r'server config"? env="?map\[(.*)\]')
_CONFIG_ENTRY = re.compile(r"(?:^| )(OLLAMA_[A-Z_]+):(\S*)")


def server_config(log: str) -> dict[str, str] | None:
    """The configuration an Ollama server printed when it started (the last start in `log`): CONFIG_KEYS as
    written (an empty value is the server's default); None when the log has no such line."""
    lines = [m for line in log.splitlines() if (m := _CONFIG_LINE.search(line))]
    if not lines:
        return None
    entries = dict(_CONFIG_ENTRY.findall(lines[-1].group(1)))
    return {key: entries[key] for key in CONFIG_KEYS if key in entries}


def _stopping(expires_at: str | None, now: datetime) -> bool:
    """`/api/ps` keeps listing an unloading model with a past `expires_at` (the CLI's "Stopping…")."""
    if not expires_at:
        return False
    # Go writes 1-9 fraction digits; Python parses at most 6.
    stamp = re.sub(r"\.(\d+)", lambda m: "." + (m.group(1) + "000000")[:6], expires_at)
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")) <= now
    except ValueError:
        return False


def _residency(model: LoadedModel, now: datetime) -> Residency:
    return Residency(resident=not _stopping(model.expires_at, now), size_bytes=model.size_bytes,
                     vram_bytes=model.vram_bytes, context_length=model.context_length, expires_at=model.expires_at)


class OllamaParser(StreamParser):
    """NDJSON chunks; the final one (`done: true`) carries the durations in nanoseconds."""

    def __init__(self, chat: bool) -> None:
        super().__init__()
        self.chat = chat
        self.final: dict[str, Any] = {}

    def feed(self, line: bytes) -> bool:
        chunk = parse_json_line(line)
        if chunk.get("error"):
            raise ServerError("server_error", str(chunk["error"]))
        part = (chunk.get("message") or {}) if self.chat else chunk
        text = part.get("content" if self.chat else "response") or ""
        thinking = part.get("thinking") or ""
        if text:
            self.add_text(text)
        if chunk.get("done"):
            self.finished, self.final = True, chunk
        return bool(text or thinking)

    def fill(self, sample: Sample) -> None:
        f = self.final
        if not f:
            return
        sample.done_reason = f.get("done_reason")
        if sample.done_reason in ("load", "unload"):
            return  # these replies carry no metrics at all, not omitted zeros
        sample.load_ms_source = "server"
        # Every metric is `omitempty`: a missing field is a zero, not an unknown.
        for column, key in (
            ("load_ms", "load_duration"),
            ("prompt_eval_ms", "prompt_eval_duration"),
            ("eval_ms", "eval_duration"),
            ("total_ms", "total_duration"),
        ):
            setattr(sample, column, number(f.get(key, 0), key) / NS_PER_MS)
        sample.prompt_tokens = number(f.get("prompt_eval_count", 0), "prompt_eval_count")
        # Newer servers count the prompt tokens served from the KV cache (llama-server's cache_n carried through);
        # prompt_eval_count still counts the whole prompt. `omitempty` too: absent is zero on such a server, and
        # unknown on one that never reports it (0.5.4), which analyse/conversation.py tells apart by the scenario.
        if "prompt_eval_cached_count" in f:
            sample.cached_tokens = number(f["prompt_eval_cached_count"], "prompt_eval_cached_count")
            sample.processed_tokens = max(sample.prompt_tokens - sample.cached_tokens, 0)
        if "eval_count" in f or sample.done_reason in ("stop", "length"):
            sample.output_tokens, sample.output_tokens_source = number(f.get("eval_count", 0), "eval_count"), "server"


class OllamaBackend(Backend):
    """Ollama's native API; `endpoint` is `generate` (the seed's) or `chat`."""

    kind = "ollama"

    def __init__(self, base_url: str, *, endpoint: str = "generate", **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        if endpoint not in ("generate", "chat"):
            raise ValueError(f"Ollama endpoint must be 'generate' or 'chat', not {endpoint!r}")
        self.endpoint = endpoint

    def _body(self, model: str, prompt: str, keep_alive: float | str | None,
              messages: list[dict[str, str]] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "stream": True}
        if self.endpoint == "chat":
            body["messages"] = messages if messages is not None else [{"role": "user", "content": prompt}] \
                if prompt else []
        else:
            body["prompt"] = prompt
        if keep_alive is not None:
            body["keep_alive"] = keep_alive
        return body

    def build(self, request: GenerationRequest) -> tuple[str, dict[str, Any]]:
        if request.messages is not None and self.endpoint != "chat":
            raise ValueError("a conversation needs Ollama's chat endpoint (endpoint: chat)")
        body = self._body(request.model, request.prompt, request.keep_alive, request.messages)
        options = dict(request.options)
        options.setdefault("num_predict", request.max_tokens)
        if request.temperature is not None:
            options.setdefault("temperature", request.temperature)
        if request.seed is not None:
            options.setdefault("seed", request.seed)
        body["options"] = options
        return f"/api/{self.endpoint}", body

    def parser(self) -> StreamParser:
        return OllamaParser(chat=self.endpoint == "chat")

    async def _control(self, client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
        response = await client.post(self.url(f"/api/{self.endpoint}"), json=body, timeout=None)
        if response.status_code >= 400:
            raise ServerError("http", f"HTTP {response.status_code}: {error_text(response.content)}")
        return response.json()

    async def load(
        self,
        client: httpx.AsyncClient,
        model: str,
        *,
        keep_alive: float | str | None = None,
        options: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Load-only request (empty prompt); Ollama answers `done_reason: "load"` without metrics.

        `options` should be the scenario's, so that its first measured request does not reload.
        """
        body = self._body(model, "", keep_alive)
        if options:
            body["options"] = options
        return await self._control(client, body)

    async def unload(self, client: httpx.AsyncClient, model: str) -> dict[str, Any]:
        """Empty prompt with `keep_alive: 0`; the unload itself finishes asynchronously."""
        return await self._control(client, self._body(model, "", 0))

    async def ps(self, client: httpx.AsyncClient) -> list[LoadedModel]:
        """The loaded models, from `GET /api/ps` (which never loads anything)."""
        response = await client.get(self.url("/api/ps"))
        response.raise_for_status()
        return [
            LoadedModel(
                name=m.get("name") or m.get("model", ""),
                size_bytes=int(m.get("size", 0)),
                vram_bytes=int(m.get("size_vram", 0)),
                expires_at=m.get("expires_at"),
                context_length=m.get("context_length"),
            )
            for m in response.json().get("models") or []
        ]

    async def residency(self, client: httpx.AsyncClient, model: str) -> Residency | None:
        try:
            loaded = await self.ps(client)
        except (httpx.HTTPError, ValueError):
            return None
        now = datetime.now(UTC)
        for entry in loaded:
            if full_name(entry.name) == full_name(model):
                return _residency(entry, now)
        return Residency(resident=False)

    async def tags(self, client: httpx.AsyncClient) -> set[str]:
        """The models the server has pulled, by full `name:tag`."""
        response = await client.get(self.url("/api/tags"))
        if response.status_code >= 400:
            raise ServerError("http", f"/api/tags: HTTP {response.status_code}: {error_text(response.content)}")
        return {full_name(m.get("name") or m.get("model", "")) for m in response.json().get("models") or []}

    async def _get_json(self, client: httpx.AsyncClient, path: str, body: dict[str, Any] | None = None) -> Any:
        response = await (client.post(self.url(path), json=body) if body is not None else client.get(self.url(path)))
        if response.status_code >= 400:
            raise ServerError("http", f"{path}: HTTP {response.status_code}: {error_text(response.content)}")
        return response.json()

    async def version(self, client: httpx.AsyncClient) -> str | None:
        """The server's version, from `GET /api/version` (`{"version": "0.33.0"}`)."""
        return (await self._get_json(client, "/api/version")).get("version")

    async def tag_list(self, client: httpx.AsyncClient) -> list[dict[str, Any]]:
        """`/api/tags` entries as given: name, size, digest, details."""
        return list((await self._get_json(client, "/api/tags")).get("models") or [])

    async def show(self, client: httpx.AsyncClient, model: str) -> dict[str, Any]:
        """`POST /api/show`: details (family, parameter size, quantization) and `model_info` (GGUF keys)."""
        return await self._get_json(client, "/api/show", {"model": model})

    async def facts(self, client: httpx.AsyncClient, models: list[str]) -> dict[str, Any]:
        """Each of `models` the server has (`/api/tags`, `/api/show`), those it lacks, those loaded (`/api/ps`)
        and its version."""
        tags = {full_name(t.get("name") or t.get("model", "")): t for t in await self.tag_list(client)}
        found: list[ModelFacts] = []
        for model in dict.fromkeys(full_name(m) for m in models):
            if model not in tags:
                continue
            tag = tags[model]
            try:
                shown = await self.show(client, model)
            except ServerError:
                shown = {}
            details = {**(tag.get("details") or {}), **(shown.get("details") or {})}
            found.append(model_facts(model, "ollama", shown.get("model_info") or {}, family=details.get("family"),
                                     parameter_size=details.get("parameter_size"),
                                     quantization_level=details.get("quantization_level"),
                                     size_bytes=tag.get("size"), digest=tag.get("digest")))
        try:  # older or proxied servers may lack these two; the rest still stands
            loaded = await self.ps(client)
            version = await self.version(client)
        except (httpx.HTTPStatusError, ServerError, ValueError):
            loaded, version = [], None
        return {"version": version, "models": found, "loaded": loaded,
                "missing": sorted({full_name(m) for m in models} - tags.keys())}

    async def model_path(self, client: httpx.AsyncClient, model: str) -> str | None:
        """Its modelfile's `FROM /path` (`/api/show`)."""
        found = re.search(r"^FROM (/\S.*)$", (await self.show(client, model)).get("modelfile") or "", re.M)
        return found.group(1).strip() if found else None

    def config_from_log(self, log: str) -> dict[str, str] | None:
        return server_config(log)

    async def pull_probe(self, client: httpx.AsyncClient, model: str) -> tuple[str | None, int | None]:
        """Whether the registry has `model`: start a pull and stop reading once its manifest resolves.

        Returns (the pull's own error, None) or (None, the first layer's size: the weights). An unknown tag
        fails right after "pulling manifest" with an error line (HTTP 200); whatever a known one fetched
        meanwhile stays on the server for the real pull.
        """
        async with client.stream("POST", self.url("/api/pull"), json={"model": model, "stream": True},
                                 timeout=httpx.Timeout(self.timeouts.connect_s, read=60.0)) as response:
            if response.status_code >= 400:
                return f"HTTP {response.status_code}: {error_text(await response.aread())}", None
            async for line in response.aiter_lines():
                event = parse_json_line(line.encode()) if line.strip() else {}
                if event.get("error"):
                    return str(event["error"]), None
                if event.get("digest") or event.get("status") == "success":
                    return None, event.get("total")
        return None, None

    async def has_model(self, client: httpx.AsyncClient, model: str) -> bool | None:
        """From `/api/tags`; None when the server does not answer it (an older or proxied server)."""
        try:
            return full_name(model) in await self.tags(client)
        except (ServerError, httpx.HTTPError, ValueError):
            return None

    async def pull(self, client: httpx.AsyncClient, model: str) -> None:
        """`POST /api/pull` with a progress bar (the seed's step 1)."""
        with tqdm(desc=f"pull {model}", unit="B", unit_scale=True) as bar:
            async with client.stream("POST", self.url("/api/pull"), json={"model": model, "stream": True},
                                     timeout=httpx.Timeout(self.timeouts.connect_s, read=None)) as response:
                if response.status_code >= 400:
                    body = await response.aread()
                    raise ServerError("http", f"pull {model}: HTTP {response.status_code}: {error_text(body)}")
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    event = parse_json_line(line.encode())
                    if event.get("error"):  # an unknown model fails with 200 and an error line
                        raise ServerError("server_error", f"pull {model}: {event['error']}")
                    if event.get("total"):
                        bar.total = event["total"]
                        bar.n = event.get("completed", 0)
                    bar.set_postfix_str(event.get("status", ""))
                    bar.refresh()


BACKEND = OllamaBackend  # what the registry's entries naming this module speak with (core.protocols)
