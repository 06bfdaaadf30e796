"""Server facts: what makes two runs comparable, gathered before the first request and after the last.

Server kind and version, each model's facts (Ollama `/api/show`, llama-server `/props` and `/models`, the
embedded engine's GGUF files), the models resident (`/api/ps`), the GPU (NVML, this machine's) and the
host. Plain data (pydantic), so that the run record can hold it and the check can reason on it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import httpx
import psutil
from pydantic import BaseModel, ConfigDict

from . import gpu, paths
from .backends import Timeouts, make_backend
from .backends.base import ServerError
from .backends.llamacpp import LlamaCppBackend
from .backends.ollama import OllamaBackend, full_name
from .gguf import FILE_TYPES, GGUFError, read_metadata
from .study import StudySpec

Moment = Literal["before", "after", "check"]
FACTS_TIMEOUT_S = 30.0  # a server that answers none of its facts in this time counts as unreachable
PROPS_KEYS = ("build_info", "model_path", "total_slots", "model_alias", "is_sleeping", "role", "max_instances")


class _Facts(BaseModel):
    model_config = ConfigDict(frozen=True)


class ModelFacts(_Facts):
    """One model as its server (or its GGUF file) describes it; None where it says nothing."""

    name: str
    source: Literal["ollama", "llama-server", "gguf"]
    architecture: str | None = None
    family: str | None = None
    parameter_size: str | None = None
    quantization_level: str | None = None
    size_bytes: int | None = None  # the weights: /api/tags size, the GGUF file, llama-server's meta.size
    digest: str | None = None
    block_count: int | None = None
    context_length: int | None = None  # the trained context
    embedding_length: int | None = None
    head_count: int | None = None
    head_count_kv: int | None = None
    key_length: int | None = None
    value_length: int | None = None

    @property
    def layers(self) -> int | None:
        """Layers a server offloads: the repeating blocks plus the output layer (llm/memory.go `layersModel`)."""
        return self.block_count + 1 if self.block_count else None

    def kv_bytes_per_token(self, bytes_per_element: float = 2.0) -> float | None:
        """K and V of every layer for one token of context (llm/memory.go: f16 is 2 bytes an element)."""
        if not (self.block_count and self.head_count_kv and (self.key_length or (self.embedding_length
                                                                                   and self.head_count))):
            return None
        head = self.embedding_length / self.head_count if self.embedding_length and self.head_count else 0
        k, v = self.key_length or head, self.value_length or self.key_length or head
        return self.block_count * self.head_count_kv * (k + v) * bytes_per_element


class LoadedModel(_Facts):
    """A resident model as `/api/ps` shows it: `size` includes the KV cache; `vram_bytes` is the GPU's part."""

    name: str
    size_bytes: int
    vram_bytes: int
    context_length: int | None = None


class ServerFacts(_Facts):
    """One server the study names (or the embedded engine), with the facts of the study's models on it."""

    kind: str
    base_url: str | None
    reachable: bool
    error: str | None = None
    version: str | None = None
    models: list[ModelFacts] = []
    missing: list[str] = []  # the study's models the server does not have
    loaded: list[LoadedModel] = []
    props: dict[str, Any] = {}  # llama-server /props: n_ctx, total_slots, build_info, model_path

    def model(self, name: str) -> ModelFacts | None:
        key = full_name(name) if self.kind == "ollama" else name
        return next((m for m in self.models if m.name == key), None)


class GpuFacts(_Facts):
    """GPU 0 of this machine through NVML (a remote server's GPU is declared in the study instead)."""

    name: str
    total_bytes: int
    used_bytes: int
    driver: str | None = None
    count: int = 1


class HostFacts(_Facts):
    """The machine latencylab ran on."""

    system: str
    machine: str
    cpu: str
    cores_logical: int | None
    cores_physical: int | None
    ram_bytes: int | None
    python: str


class Facts(_Facts):
    """Everything gathered at one moment of a run (or of a check)."""

    moment: Moment
    taken_at: str
    servers: list[ServerFacts]
    gpu: GpuFacts | None
    host: HostFacts

    def server(self, kind: str, base_url: str | None) -> ServerFacts | None:
        return next((s for s in self.servers if s.kind == kind and s.base_url == base_url), None)


def is_local(base_url: str | None) -> bool:
    """A server on this machine (loopback), whose GPU and cores are the ones NVML and psutil see."""
    if base_url is None:
        return True  # the embedded engine
    host = urlparse(base_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_facts() -> HostFacts:
    """This machine: OS, CPU, cores, memory, Python."""
    cpu = platform.processor()
    try:
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), cpu)
    except OSError:
        pass
    return HostFacts(system=f"{platform.system()} {platform.release()}", machine=platform.machine(), cpu=cpu,
                     cores_logical=os.cpu_count(), cores_physical=psutil.cpu_count(logical=False),
                     ram_bytes=psutil.virtual_memory().total, python=platform.python_version())


def gpu_facts() -> GpuFacts | None:
    """GPU 0 of this machine (from `gpu.devices()`); None without an NVIDIA GPU and driver."""
    found = gpu.devices()
    if not found:
        return None
    first = found[0]
    return GpuFacts(name=first.name, total_bytes=first.memory_total_bytes, used_bytes=first.memory_used_bytes,
                    driver=first.driver_version, count=len(found))


def _number(value: Any) -> int | None:
    if isinstance(value, list):  # per-layer values (some architectures): the largest
        value = max((v for v in value if isinstance(v, int | float)), default=None)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def model_facts(name: str, source: Literal["ollama", "llama-server", "gguf"], info: dict[str, Any],
                **known: Any) -> ModelFacts:
    """Facts from GGUF keys (a file's metadata, or `/api/show`'s `model_info`), prefixed by the architecture."""
    arch = info.get("general.architecture")
    key = lambda k: _number(info.get(f"{arch}.{k}"))  # noqa: E731
    file_type = info.get("general.file_type")
    defaults = {"architecture": arch, "family": arch, "parameter_size": info.get("general.size_label"),
                "quantization_level": FILE_TYPES.get(file_type) if isinstance(file_type, int) else None}
    return ModelFacts(name=name, source=source, block_count=key("block_count"), context_length=key("context_length"),
                      embedding_length=key("embedding_length"), head_count=key("attention.head_count"),
                      head_count_kv=key("attention.head_count_kv"), key_length=key("attention.key_length"),
                      value_length=key("attention.value_length"),
                      **{**defaults, **{k: v for k, v in known.items() if v is not None}})


def gguf_facts(name: str, path: Path) -> ModelFacts | None:
    """A local GGUF file's facts (the embedded engine's models); None when it is missing or unreadable."""
    try:
        return model_facts(name, "gguf", read_metadata(path), size_bytes=path.stat().st_size)
    except (GGUFError, OSError):
        return None


async def _ollama(backend: OllamaBackend, client: httpx.AsyncClient, models: list[str]) -> dict[str, Any]:
    tags = {full_name(t.get("name") or t.get("model", "")): t for t in await backend.tag_list(client)}
    found: list[ModelFacts] = []
    for model in dict.fromkeys(full_name(m) for m in models):
        if model not in tags:
            continue
        tag = tags[model]
        try:
            shown = await backend.show(client, model)
        except ServerError:
            shown = {}
        details = {**(tag.get("details") or {}), **(shown.get("details") or {})}
        found.append(model_facts(model, "ollama", shown.get("model_info") or {}, family=details.get("family"),
                                 parameter_size=details.get("parameter_size"),
                                 quantization_level=details.get("quantization_level"),
                                 size_bytes=tag.get("size"), digest=tag.get("digest")))
    try:  # older or proxied servers may lack these two; the rest still stands
        loaded = [LoadedModel(name=m.name, size_bytes=m.size, vram_bytes=m.size_vram,
                              context_length=m.context_length) for m in await backend.ps(client)]
        version = await backend.version(client)
    except (httpx.HTTPStatusError, ServerError, ValueError):
        loaded, version = [], None
    return {"version": version, "models": found, "loaded": loaded,
            "missing": sorted({full_name(m) for m in models} - tags.keys())}


async def _llamacpp(backend: LlamaCppBackend, client: httpx.AsyncClient, models: list[str]) -> dict[str, Any]:
    try:
        props = await backend.props(client)
    except (ServerError, ValueError):
        props = {}
    settings = props.get("default_generation_settings") or {}
    kept = {k: props[k] for k in PROPS_KEYS if k in props}
    if settings.get("n_ctx"):  # a router says 0: each model has its own
        kept["n_ctx"] = settings["n_ctx"]
    try:
        entries = await backend.model_entries(client)
    except (httpx.HTTPError, ValueError):
        entries = {}
    found = []
    for model in dict.fromkeys(models):
        meta = (entries.get(model) or {}).get("meta") or {}  # a router gives it for loaded models only
        params = _number(meta.get("n_params"))
        if model in entries:
            found.append(ModelFacts(
                name=model, source="llama-server", size_bytes=_number(meta.get("size")),
                context_length=_number(meta.get("n_ctx_train")), embedding_length=_number(meta.get("n_embd")),
                quantization_level=meta.get("ftype"),
                parameter_size=None if params is None else f"{params / 1e9:.1f}B" if params >= 1e9
                else f"{params / 1e6:.0f}M"))
    return {"version": props.get("build_info"), "props": kept, "models": found,
            "missing": [m for m in dict.fromkeys(models) if entries and m not in entries]}


async def _ask(kind: str, backend: Any, client: httpx.AsyncClient, models: list[str]) -> dict[str, Any]:
    """The facts a server of protocol `kind` can give (the study names the protocol)."""
    if kind == "ollama":
        return await _ollama(backend, client, models)
    if kind == "llamacpp":
        return await _llamacpp(backend, client, models)
    response = await client.get(backend.url("/v1/models"))  # an OpenAI-compatible server: its model ids only
    response.raise_for_status()
    ids = {m.get("id") for m in response.json().get("data") or []}
    return {"missing": [m for m in dict.fromkeys(models) if m not in ids]}


async def _server(kind: str, url: str, models: list[str], api_key: str | None) -> ServerFacts:
    backend = make_backend(kind, url, timeouts=Timeouts(connect_s=5.0), api_key=api_key)
    try:
        async with backend.client() as client:
            found = await asyncio.wait_for(_ask(kind, backend, client, models), FACTS_TIMEOUT_S)
    except (httpx.HTTPError, ServerError, ValueError, TimeoutError) as exc:
        return ServerFacts(kind=kind, base_url=url, reachable=False, error=f"{type(exc).__name__}: {exc}")
    return ServerFacts(kind=kind, base_url=url, reachable=True, **found)


async def _embedded(models: list[str], models_dir: Path, engine_url: str | None) -> ServerFacts:
    """The engine's models from their GGUF files; with the engine running, its build from `/props` too."""
    found = [f for m in dict.fromkeys(models) if (f := gguf_facts(m, models_dir / f"{m}.gguf"))]
    props: dict[str, Any] = {}
    if engine_url:
        try:
            backend = LlamaCppBackend(engine_url, timeouts=Timeouts(connect_s=5.0))
            async with backend.client() as client:
                props = (await asyncio.wait_for(_llamacpp(backend, client, []), FACTS_TIMEOUT_S))["props"]
        except (httpx.HTTPError, ServerError, ValueError, TimeoutError):
            props = {}
    return ServerFacts(kind="embedded", base_url=None, reachable=True, models=found,
                       version=props.get("build_info"), props=props,
                       missing=[m for m in dict.fromkeys(models) if not (models_dir / f"{m}.gguf").exists()])


async def gather(study: StudySpec, moment: Moment = "before", api_key: str | None = None,
                 models_dir: Path | None = None, engine_url: str | None = None) -> Facts:
    """The facts of every server the study names, the GPU and the host (servers in parallel).

    `engine_url`: the embedded engine's address while it runs (its `/props`); without it, its GGUF files only.
    """
    by_server: dict[tuple[str, str | None], list[str]] = {}
    for scenario in study.scenarios:
        by_server.setdefault((study.backend_of(scenario), study.base_url_of(scenario)), []).append(scenario.model)
    servers = await asyncio.gather(*(
        _server(kind, url, models, api_key) if kind != "embedded" and url else
        _embedded(models, models_dir or paths.MODELS_DIR, engine_url)
        for (kind, url), models in by_server.items()))
    return Facts(moment=moment, taken_at=datetime.now(UTC).isoformat(timespec="seconds"), servers=list(servers),
                 gpu=gpu_facts(), host=host_facts())


def collect(study: StudySpec, moment: Moment = "before", api_key: str | None = None) -> Facts:
    """`gather` for callers outside an event loop (the CLI)."""
    return asyncio.run(gather(study, moment, api_key))


class RunFacts(_Facts):
    """What a run record holds: the facts before its first request and after its last."""

    before: Facts | None = None
    after: Facts | None = None


def save(run_facts: RunFacts, run_dir: Path) -> Path:
    """Write `facts.json` into a run's folder."""
    path = run_dir / "facts.json"
    path.write_text(run_facts.model_dump_json(indent=1) + "\n", encoding="utf-8")
    return path
