"""Server facts as data: GGUF metadata read from a hand-built file, model facts from GGUF keys, the host."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from latencylab.analyse.compare import CONFIG_UNKNOWN, fact_differences, server_facts
from latencylab.analyse.findings import RunInfo
from latencylab.collect import gather
from latencylab.collect.backends import make_backend
from latencylab.collect.backends.ollama import server_config
from latencylab.core.errors import GGUFError
from latencylab.core.gguf import read_metadata
from latencylab.plan import facts
from latencylab.publish.templating import fact_value


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


# The bundled 0.5.4's start line (its own log, data/runs/…/ollama.log), and a current server's as logutil/logutil.go's
# slog text handler writes it (server/routes.go at v0.32.15 logs the same envconfig.Values()).
LOG_054 = ('2026/12/07 18:11:27 routes.go:1259: INFO server config env="map[CUDA_VISIBLE_DEVICES: HTTPS_PROXY:'
           'http://127.0.0.1:9 OLLAMA_DEBUG:false OLLAMA_FLASH_ATTENTION:false OLLAMA_GPU_OVERHEAD:0 OLLAMA_HOST:'
           'http://127.0.0.1:36131 OLLAMA_KEEP_ALIVE:2s OLLAMA_KV_CACHE_TYPE: OLLAMA_MAX_LOADED_MODELS:0 '
           'OLLAMA_NUM_PARALLEL:1 OLLAMA_ORIGINS:[http://localhost https://localhost http://127.0.0.1] '
           'ROCR_VISIBLE_DEVICES:]"')
LOG_CURRENT = ('time=2026-08-21T10:00:00.000Z level=INFO source=routes.go:1951 msg="server config" env="map['
               'OLLAMA_CONTEXT_LENGTH:8192 OLLAMA_FLASH_ATTENTION:true OLLAMA_KEEP_ALIVE:5m0s '
               'OLLAMA_KV_CACHE_TYPE:q8_0 OLLAMA_MAX_LOADED_MODELS:0 OLLAMA_NUM_PARALLEL:1 '
               'OLLAMA_ORIGINS:[http://localhost https://x]]"')


def test_an_ollama_server_s_configuration_is_read_from_its_start_log_where_it_printed_it():
    assert server_config(f"starting\n{LOG_054}\nListening on 127.0.0.1:1") == {
        "OLLAMA_FLASH_ATTENTION": "false", "OLLAMA_KV_CACHE_TYPE": "", "OLLAMA_NUM_PARALLEL": "1",
        "OLLAMA_MAX_LOADED_MODELS": "0", "OLLAMA_KEEP_ALIVE": "2s"}  # 0.5.4 logs no OLLAMA_CONTEXT_LENGTH
    current = server_config(f"{LOG_054}\n{LOG_CURRENT}")  # the last start counts
    assert current["OLLAMA_CONTEXT_LENGTH"] == "8192" and current["OLLAMA_KV_CACHE_TYPE"] == "q8_0"
    assert server_config("no such line") is None


def test_the_configuration_shows_in_the_setup_where_known_and_is_unknown_never_a_difference_where_not(tmp_path):
    log = tmp_path / "ollama.log"
    log.write_text(LOG_054)
    ollama = make_backend("ollama", "http://127.0.0.1:1")
    assert gather._config(ollama, log)["OLLAMA_KEEP_ALIVE"] == "2s"
    assert gather._config(ollama, None) is None and gather._config(ollama, tmp_path / "gone.log") is None
    assert gather._config(make_backend("openai", "http://127.0.0.1:1"), log) is None  # its log says nothing

    def run(label, config):
        server = {"kind": "ollama", "base_url": "http://127.0.0.1:1", "reachable": True, "version": "0.5.4",
                  **({"config": config} if config is not None else {})}
        return RunInfo(run_id=label, label=label, facts={"before": {"servers": [server]}})

    known, remote = server_facts(run("a", server_config(LOG_054))), server_facts(run("b", None))
    assert known[("config", "ollama")]["config"]["OLLAMA_NUM_PARALLEL"] == "1"
    assert remote[("config", "ollama")]["config"] == CONFIG_UNKNOWN
    assert fact_differences({"a": known, "b": remote}, "a").empty  # unknown is not a change
    changed = server_facts(run("c", server_config(LOG_CURRENT)))
    assert list(fact_differences({"a": known, "c": changed}, "a")["field"]) == ["config"]
    shown = fact_value(known[("config", "ollama")]["config"], "config", "en")
    assert shown == "FLASH_ATTENTION=false, KV_CACHE_TYPE=default, NUM_PARALLEL=1, MAX_LOADED_MODELS=0, KEEP_ALIVE=2s"
    assert fact_value(CONFIG_UNKNOWN, "config", "es") == "desconocida (su registro no es legible aquí)"
