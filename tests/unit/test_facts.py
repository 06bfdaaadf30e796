"""Server facts as data: GGUF metadata read from a hand-built file, model facts from GGUF keys, the host."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from latencylab.collect import gather
from latencylab.core.errors import GGUFError
from latencylab.core.gguf import read_metadata
from latencylab.plan import facts


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def write_gguf(path: Path, kv: list[tuple[str, int, bytes]]) -> Path:
    """A GGUF v3 header with `kv` (key, type, packed value) and no tensors."""
    body = b"".join(_string(key) + struct.pack("<I", kind) + value for key, kind, value in kv)
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, len(kv)) + body)
    return path


def u32(n: int) -> tuple[int, bytes]:
    return 4, struct.pack("<I", n)


def test_gguf_metadata_is_read_and_long_arrays_are_skipped(tmp_path):
    vocab = struct.pack("<IQ", 8, 5000) + b"".join(_string(f"tok{i}") for i in range(5000))
    path = write_gguf(tmp_path / "m.gguf", [
        ("general.architecture", 8, _string("llama")), ("general.file_type", *u32(3)),
        ("general.size_label", 8, _string("135M")), ("llama.block_count", *u32(30)),
        ("llama.context_length", *u32(8192)), ("llama.embedding_length", *u32(576)),
        ("llama.attention.head_count", *u32(9)), ("llama.attention.head_count_kv", *u32(3)),
        ("tokenizer.ggml.tokens", 9, vocab), ("general.ratio", 6, struct.pack("<f", 0.5)),
        ("llama.per_layer", 9, struct.pack("<IQ", 4, 2) + struct.pack("<II", 1, 2))])
    meta = read_metadata(path)
    assert meta["llama.block_count"] == 30 and meta["tokenizer.ggml.tokens"] is None
    assert meta["general.ratio"] == 0.5 and meta["llama.per_layer"] == [1, 2]
    model = gather.gguf_facts("smollm2", path)
    assert model is not None and model.source == "gguf" and model.size_bytes == path.stat().st_size
    assert (model.block_count, model.context_length, model.head_count_kv) == (30, 8192, 3)
    assert (model.quantization_level, model.parameter_size, model.layers) == ("Q4_1", "135M", 31)
    assert model.kv_bytes_per_token() == 30 * 3 * (64 + 64) * 2  # head size 576 / 9 = 64


def test_a_file_that_is_not_gguf_is_said_and_gives_no_facts(tmp_path):
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"not a model")
    with pytest.raises(GGUFError, match="not a GGUF file"):
        read_metadata(bad)
    assert gather.gguf_facts("x", bad) is None and gather.gguf_facts("y", tmp_path / "missing.gguf") is None


def test_model_facts_from_api_show_keep_what_the_details_say():
    info = {"general.architecture": "phi3", "phi3.block_count": 32, "phi3.context_length": 4096,
            "phi3.embedding_length": 3072, "phi3.attention.head_count": 32, "phi3.attention.head_count_kv": 32}
    model = facts.model_facts("phi3:mini", "ollama", info, quantization_level="Q4_0", size_bytes=2_176_178_913)
    assert model.family == "phi3" and model.quantization_level == "Q4_0"
    assert model.kv_bytes_per_token() == 384 * 1024
    assert facts.model_facts("x", "ollama", {}).kv_bytes_per_token() is None  # nothing to compute from


def test_host_facts_and_loopback_detection():
    host = gather.host_facts()
    assert host.cores_logical and host.ram_bytes and host.python
    assert facts.is_local("http://127.0.0.1:11434") and facts.is_local("http://localhost:1") and facts.is_local(None)
    assert not facts.is_local("http://gpu-box:11434") and not facts.is_local("http://10.0.0.2:11434")
