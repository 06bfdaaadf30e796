"""The Q4_1 → Q8_0 rewrite that makes the shipped Q8_0 model without llama.cpp, on a hand-built GGUF file."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from latencylab.core.gguf import GGUFError, read_metadata, requantize_q8_0


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def _q4_1_block(d: float, m: float, q: list[int]) -> bytes:
    """ggml's block_q4_1: scale, minimum, then 32 four-bit values packed two a byte (value j and j + 16)."""
    packed = bytes(q[j] | (q[j + 16] << 4) for j in range(16))
    return np.array([d, m], dtype=np.float16).tobytes() + packed


def _write(path: Path, tensors: list[tuple[str, list[int], int, bytes]]) -> Path:
    """A GGUF v3 file: general.file_type Q4_1 and a name, then the tensors (name, dims, type, data), aligned."""
    kv = _string("general.file_type") + struct.pack("<II", 4, 3) + _string("general.name") + struct.pack("<I", 8) \
        + _string("twin")
    infos, data, offset = b"", b"", 0
    for name, dims, kind, payload in tensors:
        infos += _string(name) + struct.pack(f"<I{len(dims)}QIQ", len(dims), *dims, kind, offset)
        padded = payload + bytes(-len(payload) % 32)
        data, offset = data + padded, offset + len(padded)
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), 2) + kv + infos
    path.write_bytes(head + bytes(-len(head) % 32) + data)
    return path


def _tensors(path: Path) -> tuple[list[tuple[str, list[int], int, int]], int]:
    """Each tensor's (name, dims, type, offset) and where the data starts."""
    raw = path.read_bytes()
    at = 4 + 4 + 16
    count = struct.unpack_from("<Q", raw, 8)[0]
    for _ in range(struct.unpack_from("<Q", raw, 16)[0]):  # skip the key/values: strings and u32s only here
        at += 8 + struct.unpack_from("<Q", raw, at)[0]
        kind = struct.unpack_from("<I", raw, at)[0]
        at += 4 + (4 if kind == 4 else 8 + struct.unpack_from("<Q", raw, at + 4)[0])
    out = []
    for _ in range(count):
        length = struct.unpack_from("<Q", raw, at)[0]
        name = raw[at + 8:at + 8 + length].decode()
        at += 8 + length
        n_dims = struct.unpack_from("<I", raw, at)[0]
        dims = list(struct.unpack_from(f"<{n_dims}Q", raw, at + 4))
        at += 4 + 8 * n_dims
        kind, offset = struct.unpack_from("<IQ", raw, at)
        at += 12
        out.append((name, dims, kind, offset))
    return out, at + (-at % 32)


def test_a_q4_1_model_becomes_its_q8_0_twin_and_the_rest_is_copied(tmp_path):
    ramp = list(range(16)) * 2
    q4 = _q4_1_block(0.5, -2.0, ramp) + _q4_1_block(0.25, 1.0, [15 - v for v in ramp])
    norm = np.array([1.5, -0.25, 3.0], dtype=np.float32).tobytes()
    source = _write(tmp_path / "q4.gguf", [("blk.0.w", [32, 2], 3, q4), ("blk.0.norm", [3], 0, norm)])
    target = tmp_path / "q8.gguf"
    requantize_q8_0(source, target)

    assert read_metadata(target) == {"general.file_type": 7, "general.name": "twin"}
    (weights, norms), start = _tensors(target)
    assert (weights[:3], norms[:3]) == (("blk.0.w", [32, 2], 8), ("blk.0.norm", [3], 0))
    assert start % 32 == 0 and norms[3] % 32 == 0 and norms[3] >= 2 * 34
    raw = target.read_bytes()
    assert raw[start + norms[3]:start + norms[3] + 12] == norm
    blocks = np.frombuffer(raw[start + weights[3]:start + weights[3] + 68], dtype=np.uint8).reshape(2, 34)
    scales = blocks[:, :2].copy().view(np.float16).astype(np.float32)
    values = blocks[:, 2:].view(np.int8).astype(np.float32)
    original = np.array([[v * 0.5 - 2.0 for v in ramp], [(15 - v) * 0.25 + 1.0 for v in ramp]], dtype=np.float32)
    # ggml's reference Q8_0: scale max|x| / 127, the largest value at ±127, every value within half a step
    assert np.allclose(scales[:, 0], np.abs(original).max(axis=1) / 127, rtol=1e-3)
    assert np.abs(values).max(axis=1).tolist() == [127, 127]
    assert np.all(np.abs(values * scales - original) <= scales * 0.5 + 1e-3)


def test_a_tensor_type_it_cannot_read_is_said(tmp_path):
    source = _write(tmp_path / "k.gguf", [("blk.0.w", [256], 14, bytes(210))])  # Q6_K
    with pytest.raises(GGUFError, match="ggml type 14"):
        requantize_q8_0(source, tmp_path / "out.gguf")
