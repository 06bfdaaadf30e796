"""GPU memory and utilisation through NVML, when an NVIDIA GPU and driver are present; silent otherwise."""

from __future__ import annotations

from dataclasses import dataclass

try:
    import pynvml
except ImportError:  # nvidia-ml-py is a dependency, but a trimmed install may lack it
    pynvml = None


@dataclass(frozen=True)
class GpuSnapshot:
    mem_used_bytes: int
    util_pct: float


class GpuMonitor:
    """Reads GPU 0 (the one a single-GPU server uses); every read is None without a GPU."""

    def __init__(self) -> None:
        self._handle = None
        if pynvml is None:
            return
        try:
            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        except pynvml.NVMLError:
            self._handle = None

    @property
    def available(self) -> bool:
        return self._handle is not None

    def snapshot(self) -> GpuSnapshot | None:
        if self._handle is None:
            return None
        try:
            memory = pynvml.nvmlDeviceGetMemoryInfo(self._handle)
            util = pynvml.nvmlDeviceGetUtilizationRates(self._handle)
        except pynvml.NVMLError:
            return None
        return GpuSnapshot(mem_used_bytes=int(memory.used), util_pct=float(util.gpu))
