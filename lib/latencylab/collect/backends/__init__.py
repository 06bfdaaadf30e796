"""One module per protocol; each turns one request into one `Sample` and knows nothing of studies. Which class
serves which server kind is the registry's (`core.protocols.SERVER_KINDS`), not this package's."""

from __future__ import annotations

import importlib
from typing import Any

from latencylab.collect.backends.base import Backend, GenerationRequest, Timeouts
from latencylab.core.protocols import server_kind


def backend_class(kind: str) -> type[Backend]:
    """The class that speaks the protocol of server kind `kind`: the `BACKEND` of its registry entry's module."""
    cls: type[Backend] = importlib.import_module(server_kind(kind).backend).BACKEND
    return cls


def make_backend(kind: str, base_url: str, **kwargs: Any) -> Backend:
    """The backend for server kind `kind` at `base_url`; ValueError, naming the kinds there are, for another."""
    return backend_class(kind)(base_url, **kwargs)


__all__ = ["Backend", "GenerationRequest", "Timeouts", "backend_class", "make_backend"]
