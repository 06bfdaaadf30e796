"""The server protocols latencylab speaks, and what a server of each can be asked besides generating.

A study names a protocol (`ollama`, `openai`, `llamacpp`, or `embedded` for the llama-server latencylab starts);
callers ask a protocol's `Capabilities`, never a backend's class.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Capabilities:
    """What a server can be asked besides generating."""

    load_unload: bool = False  # load / unload a model on request
    residency: bool = False  # say whether a model is loaded, without loading it
    list_models: bool = False  # say whether it has a model (has_model)
    pull: bool = False  # fetch a model it lacks (ensure_model(pull=True))
    metrics: tuple[str, ...] = ()  # where it publishes its own state (Prometheus /metrics, llama-server's /slots)


CAPABILITIES: dict[str, Capabilities] = {
    "ollama": Capabilities(load_unload=True, residency=True, list_models=True, pull=True),
    "openai": Capabilities(metrics=("/metrics",)),  # vLLM, SGLang…: kept where it answers with names latencylab reads
    # router mode; a single-model server has no load
    "llamacpp": Capabilities(load_unload=True, residency=True, metrics=("/metrics", "/slots")),
}


def capabilities(kind: str) -> Capabilities:
    """The capabilities of a study's backend kind (`embedded` is llama-server's protocol)."""
    return CAPABILITIES["llamacpp" if kind == "embedded" else kind]


def full_name(model: str) -> str:
    """Ollama's display form: the tag defaults to `latest` (`llama3.2` → `llama3.2:latest`)."""
    return model if ":" in model.rsplit("/", 1)[-1] else f"{model}:latest"
