"""A GGUF file's metadata (its key/value header), read without the tensors: the facts a memory check needs.

The layout follows ggml's `docs/gguf.md` (version 2 and 3: little-endian, 64-bit counts): magic `GGUF`,
version, tensor count, key/value count, then each key as a string, a value type and the value.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

from latencylab.core.errors import GGUFError

MAGIC = b"GGUF"
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
MAX_KEPT_ARRAY = 4096  # per-layer numbers are kept; vocabularies (tens of thousands of entries) are skipped

# llama.cpp's `llama_ftype` (general.file_type) for the types a model file usually has.
FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
              11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
              17: "Q5_K_M", 18: "Q6_K", 32: "BF16"}


def _read(f: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise GGUFError(f"{getattr(f, 'name', 'GGUF')}: truncated metadata")
    return struct.unpack(fmt, data)[0]


def _string(f: BinaryIO) -> str:
    length = _read(f, "<Q")
    return f.read(length).decode("utf-8", errors="replace")


def _value(f: BinaryIO, kind: int) -> Any:
    if kind in _SCALARS:
        return _read(f, _SCALARS[kind])
    if kind == _STRING:
        return _string(f)
    if kind == _ARRAY:
        item, count = _read(f, "<I"), _read(f, "<Q")
        if item in _SCALARS and count > MAX_KEPT_ARRAY:
            f.seek(count * struct.calcsize(_SCALARS[item]), 1)
            return None
        values = [_value(f, item) for _ in range(count)]
        return values if count <= MAX_KEPT_ARRAY else None
    raise GGUFError(f"{getattr(f, 'name', 'GGUF')}: unknown metadata value type {kind}")


def read_metadata(path: Path) -> dict[str, Any]:
    """Every metadata key of a GGUF file (long arrays, such as the vocabulary, as None)."""
    try:
        with open(path, "rb") as f:
            if f.read(4) != MAGIC:
                raise GGUFError(f"{path}: not a GGUF file")
            version = _read(f, "<I")
            if version < 2:
                raise GGUFError(f"{path}: GGUF version {version} is too old (2 or 3 expected)")
            _tensors, count = _read(f, "<Q"), _read(f, "<Q")
            return {_string(f): _value(f, _read(f, "<I")) for _ in range(count)}
    except OSError as exc:
        raise GGUFError(f"cannot read {path}: {exc}") from None
