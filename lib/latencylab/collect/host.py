"""Host evidence: what this machine did around each request to a server that runs on it (issue 26).

A snapshot before a request's t0 and another after its last byte — never between, so collecting it costs the
timed window nothing: the CPU time, major page faults and bytes read from storage of the server's processes (its
runners and model instances included: /proc/PID/stat, /proc/PID/io), the share of the model's file in the page
cache before the request (mincore over a mapping of it, which reads nothing), the CPU time every other process
used (/proc/stat's busy time less the server's and latencylab's own), the memory the server could still use
(MemAvailable, or less where its memory cgroup limits it), the machine's swap-ins and -outs (/proc/vmstat) and, on
an NVIDIA GPU, the memory and utilisation of the other processes on the server's GPU (NVML). A server that is not
on this machine gets none (`host = "remote"`), never a guess. Linux only.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx
import psutil

from latencylab.collect import gpu
from latencylab.collect.backends.llamacpp import LlamaCppBackend
from latencylab.collect.backends.ollama import OllamaBackend
from latencylab.collect.engine import Engine
from latencylab.collect.engine.ollama import BundledOllama
from latencylab.collect.servers import Target
from latencylab.core.errors import ServerError
from latencylab.core.sample import Sample
from latencylab.plan.facts import is_local
from latencylab.plan.study import StudySpec

TICK_S = 1 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01
PROC = Path("/proc")
CGROUP = Path("/sys/fs/cgroup")
_MAP_FAILED = ctypes.c_void_p(-1).value
SETTLE_S = 0.002  # the client sleeps this long after the snapshot before a request (runner.Collector.send)


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
    return libc


LIBC = _libc()


def cached_share(path: Path) -> float | None:
    """The share of `path`'s pages in the page cache: mincore(2) over a read-only mapping of it (Python has no
    mincore; the mapping touches no page, so asking reads nothing from storage). None where it cannot tell."""
    if LIBC is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        size = os.fstat(fd).st_size
        if not size:
            return None
        address = LIBC.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if address in (None, _MAP_FAILED):
            return None
        try:
            pages = -(-size // mmap.PAGESIZE)
            vector = (ctypes.c_ubyte * pages)()
            if LIBC.mincore(address, size, vector) != 0:
                return None
            return (pages - bytes(vector).count(0)) / pages  # a page's lowest bit: resident (the rest is 0)
        finally:
            LIBC.munmap(address, size)
    finally:
        os.close(fd)


def _process(pid: int) -> tuple[float, int, int] | None:
    """One process's CPU time (its reaped children's included, s), major faults (likewise) and bytes read from
    storage; None when it is gone or unreadable."""
    try:
        stat = (PROC / str(pid) / "stat").read_bytes()
        io = (PROC / str(pid) / "io").read_bytes()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2:].split()  # the command name may hold spaces and parentheses
    # after the name: state ppid … minflt cminflt majflt cmajflt utime stime cutime cstime (proc(5), fields 3–17)
    majflt, cmajflt, utime, stime, cutime, cstime = (int(fields[i]) for i in (7, 8, 9, 10, 11, 12))
    found = re.search(rb"^read_bytes: (\d+)", io, re.M)
    return (utime + stime + cutime + cstime) * TICK_S, majflt + cmajflt, int(found.group(1)) if found else 0


def _busy_s() -> float:
    """Every core's busy time since boot, s (/proc/stat: all but idle and iowait; guest time is in user's)."""
    with open(PROC / "stat", "rb") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return (user + nice + system + irq + softirq + steal) * TICK_S


def _keyed(path: Path, keys: tuple[bytes, ...]) -> dict[bytes, int]:
    """`name value` lines of /proc/meminfo, /proc/vmstat or a cgroup's memory.stat (meminfo's values in kB)."""
    found = {}
    with open(path, "rb") as f:
        for line in f:
            name, _, rest = line.partition(b" ")
            name = name.rstrip(b":")
            if name in keys:
                found[name] = int(rest.split()[0])
    return found


def _cgroup_room(pid: int) -> int | None:
    """What the memory cgroup of `pid` still allows its processes beyond their own memory (its limit less its
    RSS), where a limit is set (cgroup v1 or v2); None without one."""
    try:
        lines = (PROC / str(pid) / "cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            folder, limit_file, rss_key = CGROUP / "memory" / path.lstrip("/"), "memory.limit_in_bytes", b"total_rss"
        elif controllers == "":
            folder, limit_file, rss_key = CGROUP / path.lstrip("/"), "memory.max", b"anon"
        else:
            continue
        try:
            limit = (folder / limit_file).read_text().strip()
            if limit == "max" or int(limit) >= psutil.virtual_memory().total:
                continue
            rss = _keyed(folder / "memory.stat", (rss_key,)).get(rss_key, 0)
        except (OSError, ValueError):
            continue
        return max(0, int(limit) - rss)
    return None


def tree(pid: int) -> list[int]:
    """A process and every process it started, from /proc/PID/task/TID/children: a few small reads, where psutil
    reads every process of the machine (several ms on a busy one); psutil where the kernel lacks those files."""
    if not (PROC / str(pid) / "task" / str(pid) / "children").exists():
        try:
            root = psutil.Process(pid)
            return [root.pid] + [p.pid for p in root.children(recursive=True)]
        except psutil.Error:
            return []
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in os.listdir(PROC / str(current) / "task"):
                todo += [int(c) for c in (PROC / str(current) / "task" / task / "children").read_text().split()]
        except OSError:  # it ended meanwhile
            continue
    return found


def listening_pid(base_url: str) -> int | None:
    """The process on this machine that listens on `base_url`'s port (a server of the user's own)."""
    parsed = urlparse(base_url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        connections = psutil.net_connections("tcp")
    except psutil.Error:
        return None
    return next((c.pid for c in connections if c.status == psutil.CONN_LISTEN and c.laddr.port == port and c.pid),
                None)


@dataclass(frozen=True)
class Snapshot:
    """The host at one instant: the server's processes (pid → CPU s, major faults, bytes read), the machine's busy
    CPU, latencylab's own CPU, memory and swap, the model file's share in the page cache, the GPU's others."""

    at: float
    processes: dict[int, tuple[float, int, int]]
    busy_s: float
    own_s: float
    mem_available: int
    swap: tuple[int, int]
    cached_share: float | None = None
    gpu_free: int | None = None
    gpu_others: list[gpu.GpuProcess] = field(default_factory=list)


@dataclass
class HostProbe:
    """The host evidence of one server's requests: `pids` gives its processes (they change: a runner starts on a
    load), `model_file` the file it loads the scenario's model from, where known."""

    pids: Callable[[], list[int]]
    model_file: Path | None = None
    on_gpu: bool = field(default_factory=lambda: bool(gpu.devices()))

    def snapshot(self, before: bool) -> Snapshot:
        """The host now; before a request, the model file's share in the page cache and the GPU's others too."""
        pids = self.pids()
        processes = {pid: found for pid in pids if (found := _process(pid)) is not None}
        memory = _keyed(PROC / "meminfo", (b"MemAvailable",)).get(b"MemAvailable", 0) * 1024
        room = _cgroup_room(pids[0]) if pids else None
        vm = _keyed(PROC / "vmstat", (b"pswpin", b"pswpout"))
        share = cached_share(self.model_file) if before and self.model_file else None
        free, others = None, []
        if before and self.on_gpu:
            mine = set(pids)
            on_gpu = gpu.processes()
            index = next((p.index for p in on_gpu if p.pid in mine), 0)
            free = gpu.free_bytes(index)
            others = [p for p in on_gpu if p.index == index and p.pid not in mine]
        return Snapshot(time.monotonic(), processes, _busy_s(), time.process_time(),
                        memory if room is None else min(memory, room), (vm.get(b"pswpin", 0), vm.get(b"pswpout", 0)),
                        share, free, others)

    def fill(self, sample: Sample, before: Snapshot, after: Snapshot) -> None:
        """The request's host evidence: what changed from `before` to `after`, and what `before` saw."""
        start = {pid: before.processes.get(pid, (0.0, 0, 0)) for pid in after.processes}  # a new runner: from 0
        server_s = sum(a[0] - start[pid][0] for pid, a in after.processes.items())
        sample.host = "local"
        sample.host_window_ms = (after.at - before.at) * 1000
        sample.host_cores = os.cpu_count()
        sample.server_cpu_ms = max(0.0, server_s) * 1000
        sample.others_cpu_ms = max(0.0, (after.busy_s - before.busy_s) - server_s - (after.own_s - before.own_s)) * 1000
        sample.major_faults = max(0, sum(a[1] - start[pid][1] for pid, a in after.processes.items()))
        sample.read_bytes = max(0, sum(a[2] - start[pid][2] for pid, a in after.processes.items()))
        if self.model_file is not None:
            sample.model_file = str(self.model_file)
            try:
                sample.model_file_bytes = self.model_file.stat().st_size
            except OSError:
                pass
        sample.cached_share = before.cached_share
        sample.mem_available_bytes = min(before.mem_available, after.mem_available)
        sample.swap_in_pages = after.swap[0] - before.swap[0]
        sample.swap_out_pages = after.swap[1] - before.swap[1]
        if self.on_gpu:
            sample.gpu_free_bytes = before.gpu_free
            sample.gpu_others_bytes = sum(p.used_bytes or 0 for p in before.gpu_others)
            utils = [p.util_pct for p in before.gpu_others if p.util_pct is not None]
            sample.gpu_others_util_pct = max(utils) if utils else None
            sample.gpu_others = ", ".join(f"{_name(p.pid)} ({p.pid})" for p in before.gpu_others) or None


def _name(pid: int) -> str:
    try:
        return psutil.Process(pid).name()
    except psutil.Error:
        return "?"


def _blob(modelfile: str) -> Path | None:
    """The file an Ollama model is loaded from: its modelfile's `FROM /path` (`/api/show`)."""
    found = re.search(r"^FROM (/\S.*)$", modelfile or "", re.M)
    return Path(found.group(1).strip()) if found and Path(found.group(1).strip()).is_file() else None


async def model_file(backend: object, client: httpx.AsyncClient, model: str) -> Path | None:
    """The file a server loads `model` from, as the server says (Ollama `/api/show`, llama-server `/props`)."""
    try:
        if isinstance(backend, OllamaBackend):
            return _blob((await backend.show(client, model)).get("modelfile", ""))
        if isinstance(backend, LlamaCppBackend):
            path = (await backend.props(client)).get("model_path")
            return Path(path) if path and Path(path).is_file() else None
    except (httpx.HTTPError, ServerError, ValueError):
        return None
    return None


def _of(server: Engine | BundledOllama) -> Callable[[], list[int]]:
    """A server of ours' processes, read the cheap way (`tree`)."""
    return lambda: tree(server.process.pid) if server.process is not None else []


async def probes(study: StudySpec, targets: dict[str, Target], engine: Engine | None,
                 bundled: BundledOllama | None) -> dict[str, HostProbe | str]:
    """Each scenario's host probe, or why it has none: "remote" (the server is not on this machine), "not_found"
    (nothing on this machine listens on its port), "overlap" (requests overlap, so one's snapshots would fall
    inside another's timed window: host evidence is taken one request at a time)."""
    w = study.workload
    one_at_a_time = w.mode == "closed" and w.levels == [1] and w.client_processes == 1
    found: dict[str, HostProbe | str] = {}
    for name, target in targets.items():
        s, client = target.scenario, target.client
        pids: Callable[[], list[int]]
        if study.backend_of(s) == "embedded" and engine is not None:
            pids, file = _of(engine), Path(engine.presets[target.model]["model"])
        elif bundled is not None and study.on_bundled_ollama(s):
            assert client is not None
            pids, file = _of(bundled), await model_file(target.backend, client, target.model)
        elif not is_local(target.backend.base_url):
            found[name] = "remote"
            continue
        elif (pid := listening_pid(target.backend.base_url)) is None:
            found[name] = "not_found"
            continue
        else:
            assert client is not None
            pids, file = (lambda root=pid: tree(root)), await model_file(target.backend, client, target.model)
        found[name] = HostProbe(pids, file) if one_at_a_time else "overlap"
    return found
