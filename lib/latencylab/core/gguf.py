"""A GGUF file's metadata (its key/value header), read without the tensors: the facts a memory check needs; and
the one rewrite the shipped models need, Q4_1 to Q8_0, so that making them needs no compiled llama.cpp.

The layout follows ggml's `docs/gguf.md` (version 2 and 3: little-endian, 64-bit counts): magic `GGUF`,
version, tensor count, key/value count, then each key as a string, a value type and the value; then each tensor's
name, dimensions, type and offset; then the tensors' data, each at a multiple of `general.alignment` (32).
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

# ggml's tensor types that `requantize_q8_0` reads: bytes per block of 32 values (F32: one value per "block").
F32, Q4_1, Q8_0 = 0, 3, 8
_BLOCK = {F32: (1, 4), Q4_1: (32, 20), Q8_0: (32, 34)}  # type → (values, bytes) per block
DEFAULT_ALIGNMENT = 32

# llama.cpp's `llama_ftype` (general.file_type) for the types a model file usually has.
FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
              11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
              17: "Q5_K_M", 18: "Q6_K", 32: "BF16"}
FILE_TYPE_Q8_0 = 7


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


def requantize_q8_0(source: Path, target: Path) -> None:
    """Write `source`, a Q4_1 model, as its Q8_0 twin: what `llama-quantize --allow-requantize SOURCE TARGET Q8_0`
    writes. Every Q4_1 tensor is dequantized and quantized again with ggml's reference Q8_0 (scale max|x| / 127,
    values rounded half away from zero); tensors of other types are copied as they are, as llama-quantize does for
    a tensor already of the type it would get (F32 norms, the Q8_0 token embedding); general.file_type becomes
    Q8_0. The metadata is copied byte for byte. On the shipped SmolLM2 every tensor came out byte for byte as
    llama-quantize (b-11000 series) writes it; only the order of the metadata keys differs."""
    import numpy as np  # here, not at the top: the memory check reads metadata without numpy

    with open(source, "rb") as f:
        if f.read(4) != MAGIC:
            raise GGUFError(f"{source}: not a GGUF file")
        _read(f, "<I")
        tensor_count, key_count = _read(f, "<Q"), _read(f, "<Q")
        file_type_at, alignment = None, DEFAULT_ALIGNMENT
        for _ in range(key_count):
            key, kind = _string(f), _read(f, "<I")
            at = f.tell()
            value = _value(f, kind)
            if key == "general.file_type":
                file_type_at = at
            elif key == "general.alignment":
                alignment = value
        header_end = f.tell()
        tensors = []
        for _ in range(tensor_count):
            name = _string(f)
            dims = [_read(f, "<Q") for _ in range(_read(f, "<I"))]
            tensors.append((name, dims, _read(f, "<I"), _read(f, "<Q")))
        data_start = _aligned(f.tell(), alignment)
        f.seek(0)
        header = bytearray(f.read(header_end))
        if file_type_at is not None:
            header[file_type_at:file_type_at + 4] = struct.pack("<I", FILE_TYPE_Q8_0)
        out_types, out_offsets, offset = [], [], 0
        for name, dims, kind, _ in tensors:
            if kind not in _BLOCK:
                raise GGUFError(f"{source}: tensor {name} has ggml type {kind}; only F32, Q4_1 and Q8_0 are read")
            out_types.append(Q8_0 if kind == Q4_1 else kind)
            out_offsets.append(offset)
            offset = _aligned(offset + _size(dims, out_types[-1]), alignment)
        with open(target, "wb") as out:
            out.write(header)
            for (name, dims, _, _), kind, at in zip(tensors, out_types, out_offsets, strict=True):
                encoded = name.encode("utf-8")
                out.write(struct.pack("<Q", len(encoded)) + encoded + struct.pack("<I", len(dims)))
                out.write(struct.pack(f"<{len(dims)}Q", *dims) + struct.pack("<IQ", kind, at))
            out.write(bytes(_aligned(out.tell(), alignment) - out.tell()))
            out_start = out.tell()
            for (_, dims, kind, at), out_at in zip(tensors, out_offsets, strict=True):
                f.seek(data_start + at)
                data = f.read(_size(dims, kind))
                out.write(bytes(out_start + out_at - out.tell()))
                out.write(_q4_1_to_q8_0(np, data) if kind == Q4_1 else data)


def _q4_1_to_q8_0(np: Any, data: bytes) -> bytes:
    """Q4_1 blocks (scale d, minimum m, 32 four-bit values: x = q·d + m) as Q8_0 blocks (scale, 32 int8)."""
    blocks = np.frombuffer(data, dtype=np.uint8).reshape(-1, 20)
    d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)
    m = blocks[:, 2:4].copy().view(np.float16).astype(np.float32)
    packed = blocks[:, 4:]
    q = np.concatenate([packed & 0x0F, packed >> 4], axis=1).astype(np.float32)  # low nibbles first, as ggml
    x = q * d + m
    scale = np.abs(x).max(axis=1, keepdims=True) / np.float32(127)
    inverse = np.divide(np.float32(1), scale, out=np.zeros_like(scale), where=scale != 0)
    scaled = (x * inverse).astype(np.float64)  # roundf: half away from zero, exact in float64
    values = (np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)).astype(np.int8)
    out = np.empty((len(blocks), 34), dtype=np.uint8)
    out[:, 0:2] = scale.astype(np.float16).view(np.uint8)
    out[:, 2:] = values.view(np.uint8)
    return out.tobytes()


def _size(dims: list[int], kind: int) -> int:
    values, size = _BLOCK[kind]
    count = 1
    for dim in dims:
        count *= dim
    return count // values * size


def _aligned(offset: int, alignment: int) -> int:
    return offset + (-offset) % alignment
