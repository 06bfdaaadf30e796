"""NVIDIA GPUs through NVML: what is installed, and memory and utilisation sampled while requests run.

Everything here is silent without an NVIDIA driver: `devices()` is empty and the sampler records nothing.
NVML calls go through ctypes, which releases the GIL, so a sampling thread costs the event loop that
stamps the request times only its wake-ups (measured in benchmarks/README.md).
"""

from __future__ import annotations

import bisect
import threading
import time
from dataclasses import dataclass

try:
    import pynvml
except ImportError:  # nvidia-ml-py is a dependency, but a trimmed install may lack it
    pynvml = None

SAMPLE_INTERVAL_S = 0.05  # 20 readings a second: a request of 50 ms or more gets at least one in its window
MAX_READINGS = 200_000  # per GPU (about 3 h at 20 Hz); older readings are dropped


@dataclass(frozen=True)
class GpuDevice:
    """One GPU as NVML describes it."""

    index: int
    name: str
    memory_total_bytes: int
    memory_used_bytes: int
    driver_version: str
    cuda_version: str  # the highest CUDA version the driver supports, e.g. "13.0"
    uuid: str


@dataclass(frozen=True)
class GpuPeak:
    """The most memory used and the highest utilisation seen on one GPU during a time window."""

    index: int
    mem_used_bytes: int
    util_pct: float
    readings: int


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _init() -> bool:
    if pynvml is None:
        return False
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    return True


def devices() -> list[GpuDevice]:
    """Every NVIDIA GPU NVML sees (an empty list without a driver)."""
    if not _init():
        return []
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        cuda = pynvml.nvmlSystemGetCudaDriverVersion_v2()
        found = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            found.append(GpuDevice(
                index=index, name=_text(pynvml.nvmlDeviceGetName(handle)),
                memory_total_bytes=int(memory.total), memory_used_bytes=int(memory.used),
                driver_version=driver, cuda_version=f"{cuda // 1000}.{cuda % 1000 // 10}",
                uuid=_text(pynvml.nvmlDeviceGetUUID(handle)),
            ))
        return found
    except pynvml.NVMLError:
        return []


def gpu_of_processes(pids: list[int]) -> int | None:
    """The index of the first GPU on which one of `pids` runs (the server's GPU), if NVML can tell."""
    if not pids or not _init():
        return None
    wanted = set(pids)
    try:
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            if any(p.pid in wanted for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)):
                return index
    except pynvml.NVMLError:
        return None
    return None


@dataclass(frozen=True)
class GpuProcess:
    """A process using a GPU, as NVML lists it (compute and graphics): its memory there and its SM utilisation over
    the last seconds, where NVML can tell."""

    index: int
    pid: int
    used_bytes: int | None
    util_pct: float | None


def processes() -> list[GpuProcess]:
    """Every process NVML sees on every GPU (an empty list without a driver)."""
    if not _init():
        return []
    found: dict[tuple[int, int], GpuProcess] = {}
    try:
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            util = _process_util(handle)
            running = [*pynvml.nvmlDeviceGetComputeRunningProcesses(handle),
                       *pynvml.nvmlDeviceGetGraphicsRunningProcesses(handle)]
            for p in running:  # a process in both lists is one process
                used = p.usedGpuMemory if isinstance(p.usedGpuMemory, int) else None  # None: NVML cannot tell
                found.setdefault((index, p.pid), GpuProcess(index, p.pid, used, util.get(p.pid)))
    except pynvml.NVMLError:
        return []
    return list(found.values())


def _process_util(handle: object) -> dict[int, float]:
    """Each process's SM utilisation on a GPU over NVML's recent samples; empty where the driver keeps none."""
    try:
        samples = pynvml.nvmlDeviceGetProcessUtilization(handle, 0)
    except pynvml.NVMLError:
        return {}
    util: dict[int, float] = {}
    for s in samples:
        util[s.pid] = max(util.get(s.pid, 0.0), float(s.smUtil))
    return util


def free_bytes(index: int) -> int | None:
    """The free memory of GPU `index` (None without a driver or such a GPU)."""
    if not _init():
        return None
    try:
        return int(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(index)).free)
    except pynvml.NVMLError:
        return None


class GpuSampler:
    """A background thread that reads every GPU's used memory and utilisation every `interval_s`."""

    def __init__(self, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._handles: list[object] = []
        if _init():
            try:
                self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
            except pynvml.NVMLError:
                self._handles = []
        self._times: list[float] = []  # time.monotonic() of each round of readings
        self._readings: list[list[tuple[int, float]]] = [[] for _ in self._handles]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def available(self) -> bool:
        return bool(self._handles)

    def start(self) -> GpuSampler:
        if self.available and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="latencylab-nvml", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * self.interval_s + 1)
            self._thread = None

    def _read(self) -> None:
        round_ = []
        for handle in self._handles:
            try:
                memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
                util = pynvml.nvmlDeviceGetUtilizationRates(handle)
                round_.append((int(memory.used), float(util.gpu)))
            except pynvml.NVMLError:
                round_.append((-1, -1.0))  # unreadable this time; never a peak
        with self._lock:
            self._times.append(time.monotonic())
            for per_gpu, reading in zip(self._readings, round_, strict=True):
                per_gpu.append(reading)
            if len(self._times) > MAX_READINGS:
                del self._times[: len(self._times) - MAX_READINGS]
                for per_gpu in self._readings:
                    del per_gpu[: len(per_gpu) - MAX_READINGS]

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._read()
            self._stop.wait(self.interval_s)

    def peak(self, start: float, end: float, index: int = 0) -> GpuPeak | None:
        """Peak memory and utilisation of GPU `index` between two `time.monotonic()` instants.

        The reading just before `start` is included, so a request shorter than the interval still gets one.
        """
        if not 0 <= index < len(self._readings):
            return None
        with self._lock:
            lo = max(0, bisect.bisect_left(self._times, start) - 1)
            hi = bisect.bisect_right(self._times, end)
            window = [r for r in self._readings[index][lo:hi] if r[0] >= 0]
        if not window:
            return None
        return GpuPeak(index=index, mem_used_bytes=max(m for m, _ in window),
                       util_pct=max(u for _, u in window), readings=len(window))

    def __enter__(self) -> GpuSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
