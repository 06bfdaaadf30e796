"""Server facts as data: what makes two runs comparable and what the check reasons on.

Server kind and version, each model's facts (Ollama `/api/show`, llama-server `/props` and `/models`, the
embedded engine's GGUF files), the models resident (`/api/ps`), the GPU and the host. Plain data (pydantic);
gathering them over HTTP and NVML is `collect.gather`'s job.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict

from latencylab.core.gguf import FILE_TYPES
from latencylab.core.protocols import full_name

Moment = Literal["before", "after", "check"]


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
    vocab_size: int | None = None  # `<arch>.vocab_size`, where the file has it (the compute graph grows with it)

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
    expires_at: str | None = None

    @property
    def gpu_share(self) -> float | None:
        """Fraction of the model in VRAM (1.0 is the CLI's "100% GPU")."""
        return self.vram_bytes / self.size_bytes if self.size_bytes else None


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
    # Ollama's configuration as its start log printed it (OLLAMA_FLASH_ATTENTION, …); None where its log is not
    # readable (a server latencylab did not start): unknown, never guessed from the defaults
    config: dict[str, str] | None = None

    def model(self, name: str) -> ModelFacts | None:
        key = full_name(name) if self.kind == "ollama" else name
        return next((m for m in self.models if m.name == key), None)

    def loaded_model(self, name: str) -> LoadedModel | None:
        """`name` as `/api/ps` listed it, where it was resident."""
        key = full_name(name) if self.kind == "ollama" else name
        return next((m for m in self.loaded if full_name(m.name) == key), None)


class GpuUser(_Facts):
    """A process that holds memory on the GPU, other than the study's servers (NVML)."""

    pid: int
    name: str
    used_bytes: int | None = None


class GpuFacts(_Facts):
    """GPU 0 of this machine through NVML (a remote server's GPU is declared in the study instead)."""

    name: str
    total_bytes: int
    used_bytes: int
    driver: str | None = None
    count: int = 1
    free_bytes: int | None = None  # facts.json files before issue 26 lack it and `others`
    others: list[GpuUser] = []  # processes other than the study's servers holding memory on it


class HostFacts(_Facts):
    """The machine latencylab ran on (facts.json's `host`, and run.json's since issue 17)."""

    system: str
    machine: str
    cpu: str
    cores_logical: int | None
    cores_physical: int | None
    ram_bytes: int | None
    python: str
    hostname: str | None = None  # facts.json files before issue 17 lack it


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


def as_int(value: Any) -> int | None:
    if isinstance(value, list):  # per-layer values (some architectures): the largest
        value = max((v for v in value if isinstance(v, int | float)), default=None)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def model_facts(name: str, source: Literal["ollama", "llama-server", "gguf"], info: dict[str, Any],
                **known: Any) -> ModelFacts:
    """Facts from GGUF keys (a file's metadata, or `/api/show`'s `model_info`), prefixed by the architecture."""
    arch = info.get("general.architecture")
    key = lambda k: as_int(info.get(f"{arch}.{k}"))  # noqa: E731
    file_type = info.get("general.file_type")
    defaults = {"architecture": arch, "family": arch, "parameter_size": info.get("general.size_label"),
                "quantization_level": FILE_TYPES.get(file_type) if isinstance(file_type, int) else None}
    return ModelFacts(name=name, source=source, block_count=key("block_count"), context_length=key("context_length"),
                      embedding_length=key("embedding_length"), head_count=key("attention.head_count"),
                      head_count_kv=key("attention.head_count_kv"), key_length=key("attention.key_length"),
                      value_length=key("attention.value_length"), vocab_size=key("vocab_size"),
                      **{**defaults, **{k: v for k, v in known.items() if v is not None}})


class RunFacts(_Facts):
    """What a run record holds: the facts before its first request and after its last."""

    before: Facts | None = None
    after: Facts | None = None
