"""Offloaded layers from llama-server's log, and NVML peaks over a request's window."""

from __future__ import annotations

import pytest

from latencylab.collect import gpu
from latencylab.collect.engine.logs import Offload, OffloadLog, parse_offload

# Router mode: each child's stderr is forwarded as "[%5d] <line>" with the child's port
# (tools/server/server-models.cpp); the offload line is llama.cpp's src/llama-model.cpp format.
ROUTER_LOG = """\
srv   load_models: loading model 'smollm2-135m-q4_1--baseline'
[34907] load_tensors: loading model tensors, this can take a while... (mmap = true, direct_io = false)
[34907] load_tensors: offloading output layer to GPU
[34907] load_tensors: offloading 29 repeating layers to GPU
[34907] load_tensors: offloaded 31/31 layers to GPU
[34907] load_tensors:        CUDA0 model buffer size =    92.09 MiB
[ 8080] load_tensors: offloading 3 repeating layers to GPU
[ 8080] load_tensors: offloaded 4/31 layers to GPU
[34907] main: server is listening on http://127.0.0.1:34907
"""

# A CPU build prints no offload line at all (llama_supports_gpu_offload() is false).
CPU_ROUTER_LOG = """\
[41203] load_tensors: loading model tensors, this can take a while... (mmap = true, direct_io = false)
[41203] load_tensors:   CPU_Mapped model buffer size =    98.26 MiB
[41203] main: server is listening on http://127.0.0.1:41203
"""


def test_router_lines_are_matched_by_port_with_padding() -> None:
    assert parse_offload(ROUTER_LOG, 34907) == Offload(31, 31)
    assert parse_offload(ROUTER_LOG, 8080) == Offload(4, 31)
    assert parse_offload(ROUTER_LOG, 9999) is None


def test_the_last_load_of_a_port_wins() -> None:
    reloaded = ROUTER_LOG + "[34907] load_tensors: offloaded 12/31 layers to GPU\n"
    assert parse_offload(reloaded, 34907) == Offload(12, 31)


def test_single_server_log_has_no_port_tag() -> None:
    log = "load_tensors: offloaded 33/33 layers to GPU\n"
    assert parse_offload(log) == Offload(33, 33)
    assert parse_offload(log, 8080) is None
    assert parse_offload(ROUTER_LOG) is None  # router lines belong to children, not to the router


def test_cpu_build_log_has_no_offload() -> None:
    assert parse_offload(CPU_ROUTER_LOG, 41203) is None


def test_share_and_completeness() -> None:
    assert Offload(31, 31).complete and Offload(31, 31).share == 1.0
    partial = Offload(4, 31)
    assert not partial.complete and abs(partial.share - 4 / 31) < 1e-12


def test_sampler_peak_takes_the_window_and_the_reading_before_it() -> None:
    sampler = gpu.GpuSampler()  # not started: readings fed by hand
    sampler._times = [1.0, 2.0, 3.0, 4.0]
    sampler._readings = [[(100, 5.0), (300, 50.0), (200, 90.0), (900, 10.0)]]
    peak = sampler.peak(2.5, 3.5, 0)
    assert peak is not None and (peak.mem_used_bytes, peak.util_pct, peak.readings) == (300, 90.0, 2)
    assert sampler.peak(0.0, 0.5, 0) is None  # before any reading
    assert sampler.peak(2.5, 3.5, 1) is None  # no such GPU


def test_unreadable_readings_are_never_a_peak() -> None:
    sampler = gpu.GpuSampler()
    sampler._times, sampler._readings = [1.0, 2.0], [[(-1, -1.0), (50, 1.0)]]
    peak = sampler.peak(0.5, 2.5)
    assert peak is not None and peak.mem_used_bytes == 50


def test_without_a_driver_nothing_is_seen(monkeypatch) -> None:
    # NVML fails to start as it does without a driver, on any machine (with a GPU the sampler's readings are
    # checked by benchmarks/gpu_check.sh)
    pynvml = pytest.importorskip("pynvml")

    def no_driver() -> None:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)

    monkeypatch.setattr(pynvml, "nvmlInit", no_driver)
    assert gpu.devices() == [] and gpu.gpu_of_processes([1]) is None
    sampler = gpu.GpuSampler().start()
    sampler.stop()
    assert not sampler.available and sampler._thread is None and sampler.peak(0, 1e12) is None


def test_offload_log_follows_a_growing_file(tmp_path) -> None:
    path = tmp_path / "llama-server.log"
    path.write_text(CPU_ROUTER_LOG)
    log = OffloadLog(path)
    assert log.offload(34907) is None
    with open(path, "a") as f:
        f.write(ROUTER_LOG + "[34907] load_tensors: offloaded 12/3")  # the last line is still being written
    assert log.offload(34907) == Offload(31, 31) and log.offload(8080) == Offload(4, 31)
    with open(path, "a") as f:
        f.write("1 layers to GPU\n")
    assert log.offload(34907) == Offload(12, 31)
