"""The kinds of server a study can name, and what a server of each can be asked besides generating.

`SERVER_KINDS` is the one list of them: a study's `backend:` is one of its keys, and study validation, the
preflight, the evidence gathering, the check's rules, `collect.backends.make_backend` and the README's table of
server kinds read it (tests/unit/test_server_kinds.py holds that list of readers, and the README, to it). Adding a
server kind is one entry here and the backend class it names; callers ask a kind's `Capabilities`, never a
backend's class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Capabilities:
    """What a server can be asked besides generating."""

    load_unload: bool = False  # load / unload a model on request
    residency: bool = False  # say whether a model is loaded, without loading it
    list_models: bool = False  # say whether it has a model (has_model)
    pull: bool = False  # fetch a model it lacks (ensure_model(pull=True))
    metrics: tuple[str, ...] = ()  # where it publishes its own state (Prometheus /metrics, llama-server's /slots)


@dataclass(frozen=True)
class ServerKind:
    """One kind of server a study can name (`backend:`): the protocol it speaks and what latencylab knows of it
    without asking it."""

    about: str  # what it is, in the README's table of server kinds
    backend: str  # the module whose `BACKEND` speaks its protocol (resolved by collect.backends.make_backend)
    capabilities: Capabilities
    health_path: str  # a cheap GET every server of the kind answers (any HTTP status proves it is there)
    started: bool = False  # latencylab starts it for the run (no base_url)
    # The setting that bounds how many models it keeps resident, as the check knows it: interleaved scenarios
    # past it reload on every switch. None: the check cannot tell.
    resident_limit: str | None = None
    # When it unloads an idle model by itself: "default" (after a keep_alive, the server's own when the scenario
    # sets none), "asked" (only after a keep_alive the scenario sets), None (never, as far as latencylab knows).
    idle_unload: Literal["default", "asked"] | None = None


_LLAMA_SERVER = "latencylab.collect.backends.llamacpp"
# router mode (a single-model server has no load); /metrics and /slots where it runs with --metrics (the embedded
# engine does)
_ROUTER = Capabilities(load_unload=True, residency=True, metrics=("/metrics", "/slots"))

SERVER_KINDS: dict[str, ServerKind] = {
    "embedded": ServerKind("llama.cpp's llama-server in router mode, which latencylab starts on the GGUF files in "
                           "`data/models/` (`make engine`)", _LLAMA_SERVER, _ROUTER, "/health", started=True,
                           resident_limit="engine.models_max", idle_unload="asked"),
    "ollama": ServerKind("an Ollama server (`/api/generate` or `/api/chat`), or the bundled Ollama 0.5.4 with "
                         "`bundled_ollama:`", "latencylab.collect.backends.ollama",
                         Capabilities(load_unload=True, residency=True, list_models=True, pull=True),
                         "/api/version", resident_limit="OLLAMA_MAX_LOADED_MODELS", idle_unload="default"),
    "openai": ServerKind("any OpenAI-compatible server (vLLM, LM Studio, Ollama's `/v1`): "
                         "`/v1/chat/completions`", "latencylab.collect.backends.openai",
                         Capabilities(metrics=("/metrics",)), "/v1/models"),  # vLLM's, where it answers
    "llamacpp": ServerKind("a llama-server of your own: llama-server's own timings, and load and unload in "
                           "router mode", _LLAMA_SERVER, _ROUTER, "/health"),
}


def server_kind(kind: str) -> ServerKind:
    """The registry's entry for a study's backend kind; ValueError, naming the kinds there are, for another."""
    try:
        return SERVER_KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown backend {kind!r}; expected one of {', '.join(SERVER_KINDS)}") from None


def capabilities(kind: str) -> Capabilities:
    """The capabilities of a study's backend kind."""
    return server_kind(kind).capabilities


def unloads_idle(kind: str, keep_alive_set: bool) -> bool:
    """Whether a server of `kind` unloads a scenario's model once it has been idle for a keep_alive
    (`keep_alive_set`: the scenario sets one)."""
    rule = server_kind(kind).idle_unload
    return rule == "default" or (rule == "asked" and keep_alive_set)


def full_name(model: str) -> str:
    """Ollama's display form: the tag defaults to `latest` (`llama3.2` → `llama3.2:latest`)."""
    return model if ":" in model.rsplit("/", 1)[-1] else f"{model}:latest"
