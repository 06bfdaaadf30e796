"""One module per protocol; each turns one request into one `Sample` and knows nothing of studies."""

from __future__ import annotations

from typing import Any

from latencylab.collect.backends.base import Backend, GenerationRequest, Timeouts
from latencylab.collect.backends.llamacpp import LlamaCppBackend
from latencylab.collect.backends.ollama import OllamaBackend
from latencylab.collect.backends.openai import OpenAIBackend

BACKENDS: dict[str, type[Backend]] = {
    "ollama": OllamaBackend,
    "openai": OpenAIBackend,
    "llamacpp": LlamaCppBackend,
}


def make_backend(kind: str, base_url: str, **kwargs: Any) -> Backend:
    """The backend for protocol `kind` (`ollama`, `openai` or `llamacpp`) at `base_url`."""
    try:
        cls = BACKENDS[kind]
    except KeyError:
        raise ValueError(f"unknown backend {kind!r}; expected one of {', '.join(BACKENDS)}") from None
    return cls(base_url, **kwargs)


__all__ = ["BACKENDS", "Backend", "GenerationRequest", "Timeouts", "make_backend"]
