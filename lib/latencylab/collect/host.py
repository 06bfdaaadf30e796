"""Host evidence: what this machine did around each request to a server that runs on it (issue 26).

A snapshot before a request's t0 and another after its last byte — never between, so collecting it costs the
timed window nothing: the CPU time, major page faults and bytes read from storage of the server's processes (its
runners and model instances included: /proc/PID/stat, /proc/PID/io), the share of the model's file in the page
cache before the request (mincore over a mapping of it, which reads nothing), the CPU time every other process
used (/proc/stat's busy time less the server's and latencylab's own), the memory the server could still use
(MemAvailable, or less where its memory cgroup limits it), the machine's swap-ins and -outs (/proc/vmstat) and, on
an NVIDIA GPU, the memory and utilisation of the other processes on the server's GPU (NVML). The kernel's own
accounting too (issue 33): the pressure stall totals (PSI, Linux ≥ 4.20 where enabled) of the server's cgroup v2
group, or of the machine where it has none of its own, and the time the server's threads waited in a run queue
(/proc/PID/task/TID/schedstat, where the kernel keeps it); and, once per model file, how fast the page cache gives
it (read where it is wholly cached: that reads nothing from storage). A server that is not on this machine gets
none (`host = "remote"`), never a guess. Linux only.
"""

from __future__ import annotations

import ctypes
import math
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

from latencylab.collect import cgroups, gpu
from latencylab.collect.backends import Backend
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


WARM = 0.99  # a file this much in the page cache is read from memory: its rate there can be measured
_CACHE_RATES: dict[Path, float] = {}  # each model file's page-cache rate, measured once a process


def page_cache_rate(path: Path) -> float | None:
    """How fast this machine's page cache gives `path` (bytes/s: the faster of two reads), measured once and only
    where the file is wholly cached already (so the reads touch no storage, and latencylab never warms a cache a
    run is measuring); None until then."""
    if path in _CACHE_RATES:
        return _CACHE_RATES[path]
    share = cached_share(path)
    if share is None or share < WARM:
        return None
    chunk = bytearray(8 * 2**20)
    best, size = math.inf, 0
    try:
        for _ in range(2):
            started, size = time.perf_counter(), 0
            with open(path, "rb", buffering=0) as f:
                while read := f.readinto(chunk):
                    size += read
            best = min(best, time.perf_counter() - started)
    except OSError:
        return None
    if not size or best <= 0:
        return None
    _CACHE_RATES[path] = size / best
    return _CACHE_RATES[path]


Threads = dict[int, tuple[int, int]]  # thread id → (time on a CPU, time runnable but waiting for one), ns


def _threads(pid: int) -> Threads | None:
    """Each thread of `pid`'s time on a CPU and time waiting in a run queue (schedstat's first two fields, ns); None
    where the kernel keeps no schedstat."""
    found: Threads = {}
    try:
        tasks = os.listdir(PROC / str(pid) / "task")
    except OSError:
        return None
    for task in tasks:
        try:
            with open(PROC / str(pid) / "task" / task / "schedstat", "rb") as f:
                run, wait = f.read().split()[:2]
            found[int(task)] = int(run), int(wait)
        except FileNotFoundError:  # the thread ended, or no schedstat at all
            if task == str(pid):
                return None
        except (OSError, ValueError):
            continue
    return found


def longest_wait(before: dict[int, Threads | None], after: dict[int, Threads | None]) -> tuple[float, float] | None:
    """The longest any one thread waited for a CPU between two snapshots (ms), and the share of the time it was
    runnable that this was; None where schedstat is not kept. One thread, not their sum: a server's many threads
    that wake briefly all wait on a busy machine, and their sum is no time the request lost; the thread that waited
    most (the compute threads of a prompt advance together) is a time it lost at least."""
    best: tuple[float, float] | None = None
    for pid, threads in after.items():
        if threads is None:
            return None
        start = before.get(pid) or {}
        for tid, (run, wait) in threads.items():
            run0, wait0 = start.get(tid, (0, 0))  # a thread started in the window: from 0
            waited, ran = max(0, wait - wait0), max(0, run - run0)
            if best is None or waited / 1e6 > best[0]:
                best = waited / 1e6, waited / (waited + ran) if waited + ran else 0.0
    return best


def _process(pid: int) -> tuple[float, int, int, Threads | None] | None:
    """One process's CPU time (its reaped children's included, s), major faults (likewise), bytes read from
    storage and its threads' schedstat (None where unknown); None when it is gone or unreadable."""
    try:
        stat = (PROC / str(pid) / "stat").read_bytes()
        io = (PROC / str(pid) / "io").read_bytes()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2:].split()  # the command name may hold spaces and parentheses
    # after the name: state ppid … minflt cminflt majflt cmajflt utime stime cutime cstime (proc(5), fields 3–17)
    majflt, cmajflt, utime, stime, cutime, cstime = (int(fields[i]) for i in (7, 8, 9, 10, 11, 12))
    found = re.search(rb"^read_bytes: (\d+)", io, re.M)
    return ((utime + stime + cutime + cstime) * TICK_S, majflt + cmajflt, int(found.group(1)) if found else 0,
            _threads(pid))


# PSI (Documentation/accounting/psi.rst): "some" and "full" totals in µs; what a request's window records
STALLS = (("cpu", b"some"), ("io", b"some"), ("io", b"full"), ("memory", b"some"), ("memory", b"full"))


def stall_totals(pid: int) -> tuple[str, tuple[int, ...]] | None:
    """The pressure stall totals (µs, in `STALLS`' order) of the cgroup v2 group `pid` is in where it is not the
    hierarchy's root ("cgroup": its own, where latencylab started it or it runs as a service), else of the machine
    ("system"); None where the kernel has no PSI (before 4.20, or disabled: the files are missing or refuse
    reading)."""
    own = cgroups.group_of(pid)
    folder, scope = (own, "cgroup") if own is not None and (own / "cpu.pressure").exists() else \
        (PROC / "pressure", "system")
    found: dict[tuple[str, bytes], int] = {}
    try:
        for resource in dict.fromkeys(r for r, _ in STALLS):
            with open(folder / (f"{resource}.pressure" if scope == "cgroup" else resource), "rb") as f:
                for line in f:
                    found[resource, line.split(maxsplit=1)[0]] = int(line.rsplit(b"total=", 1)[1])
        return scope, tuple(found[key] for key in STALLS)
    except (OSError, IndexError, KeyError, ValueError):
        return None


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
    """The host at one instant: the server's processes (pid → CPU s, major faults, bytes read, its threads'
    schedstat), the machine's busy CPU, latencylab's own CPU, memory and swap, the pressure stall totals, the model
    file's share in the page cache, the GPU's others."""

    at: float
    processes: dict[int, tuple[float, int, int, Threads | None]]
    busy_s: float
    own_s: float
    mem_available: int
    swap: tuple[int, int]
    cached_share: float | None = None
    stalls: tuple[str, tuple[int, ...]] | None = None
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
        stalls = stall_totals(pids[0]) if pids else None
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
                        share, stalls, free, others)

    def fill(self, sample: Sample, before: Snapshot, after: Snapshot) -> None:
        """The request's host evidence: what changed from `before` to `after`, and what `before` saw; and the model
        file's page-cache rate once it can be measured (after the request: outside its window)."""
        start = {pid: before.processes.get(pid, (0.0, 0, 0, {})) for pid in after.processes}  # a new runner: from 0
        server_s = sum(a[0] - start[pid][0] for pid, a in after.processes.items())
        sample.host = "local"
        sample.host_window_ms = (after.at - before.at) * 1000
        sample.host_cores = os.cpu_count()
        sample.server_cpu_ms = max(0.0, server_s) * 1000
        sample.others_cpu_ms = max(0.0, (after.busy_s - before.busy_s) - server_s - (after.own_s - before.own_s)) * 1000
        sample.major_faults = max(0, sum(a[1] - start[pid][1] for pid, a in after.processes.items()))
        sample.read_bytes = max(0, sum(a[2] - start[pid][2] for pid, a in after.processes.items()))
        if (waited := longest_wait({p: t[3] for p, t in start.items()}, {p: a[3] for p, a in after.processes.items()})):
            sample.runqueue_ms, sample.runqueue_share = waited
        if before.stalls is not None and after.stalls is not None and before.stalls[0] == after.stalls[0]:
            sample.psi_scope = after.stalls[0]
            (sample.cpu_stall_ms, sample.io_stall_ms, sample.io_full_ms, sample.memory_stall_ms,
             sample.memory_full_ms) = (max(0, a - b) / 1000 for a, b in zip(after.stalls[1], before.stalls[1],
                                                                             strict=True))
        if self.model_file is not None:
            sample.model_file = str(self.model_file)
            try:
                sample.model_file_bytes = self.model_file.stat().st_size
            except OSError:
                pass
            sample.page_cache_bps = page_cache_rate(self.model_file)
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


async def model_file(backend: Backend, client: httpx.AsyncClient, model: str) -> Path | None:
    """The file a server loads `model` from, as the server says (`Backend.model_path`: Ollama `/api/show`,
    llama-server `/props`), where that file is on this machine."""
    try:
        path = await backend.model_path(client, model)
    except (httpx.HTTPError, ServerError, ValueError):
        return None
    return Path(path) if path and Path(path).is_file() else None


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
