"""Planted conditions on the real servers (issue 26): the host's causes made for real on this machine, not on a
double — the page cache dropped, reads of the disk throttled by a cgroup v1 blkio group, a memory cgroup limit on
the server, busy processes pinned to the cores — and their controls.

Each condition's study has four scenarios of the same model, each starting from nothing loaded
(`cold_protocol: first_only`), so every scenario's first request loads the model once (a cold start, never a
reload); the condition is planted after the first two scenarios (`AFTER` samples), so the report holds loads and
requests from before it to compare with. The server is the bundled Ollama 0.5.4 (`server: bundled_ollama`: its
runner reads the whole model file on a load, `--no-mmap`) or the embedded llama-server (`server: engine`, which maps
it). Planting needs root and cgroup v1 (`why_not` says what is missing); whatever is planted is undone on every
exit path: the processes moved back to the cgroups they came from, the cgroups removed, the busy processes ended.

A condition planted `throughout` (issue 33) is the user's case instead: one scenario, the condition there from its
first request to its last, no control in the run — every load from a throttled disk with the page cache dropped
before each request (keep_alive 0), or busy processes on every core with the model kept loaded — judged by the
kernel's own accounting alone; and its controls (a quiet run, the page cache dropped alone).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import psutil

CGROUP_V1 = Path("/sys/fs/cgroup")
AFTER = 6  # samples before the condition is planted: the first two scenarios, three requests each
ENGINE_SLEEP_S = 1  # the embedded engine's instances unload this long after their last request
THROTTLE_BPS = 25 * 10**6  # 25 MB/s: the 98 MB SmolLM2 Q4_1 file in about 4 s
SLOW_BPS = 14 * 10**6  # planted throughout: a slow disk (issue 33's), the file in about 7 s
# No targets: what is material is then a quarter of the latency and 50 ms, and no floor is judged against a goal.
NO_TARGETS = dict.fromkeys(("first_ms", "subsequent_ms", "mean_ms", "mean_stretch_ms", "cv", "fits_in_vram"))
# The memory limit: a runner's memory with the model loaded, and this much beside (less than the model file: the
# page cache cannot keep it). A cgroup v1 charges memory to the group a process was in when it took it, so a limit
# on the server's group binds the runners it starts after the move, not what the server itself held before.
MEMORY_ROOM = 20 * 2**20


@dataclass(frozen=True)
class RealCondition:
    """One condition planted on a real server: what a right diagnosis states (`Cause.findings`), the server, what
    is planted after `AFTER` samples, and the study (name, backend and server are added)."""

    name: str
    planted: frozenset[str]
    server: Literal["bundled_ollama", "engine"]
    plant: Literal["none", "drop", "slow_storage", "memory_limit", "cpu_hog"]
    prompts: list[str] = field(default_factory=list)  # none: the builtin prompts (short: little prefill to slow)
    throughout: bool = False  # planted before the first request of its one scenario: no control in the run

    @property
    def loads_each(self) -> bool:
        """Every request loads the model (nothing kept loaded) from storage: planted throughout on storage or memory."""
        return self.throughout and self.plant in ("drop", "slow_storage", "memory_limit")

    @property
    def cold_each(self) -> bool:
        """The page cache dropped before each request (a memory limit needs no drop: the cache cannot keep the file)."""
        return self.loads_each and self.plant != "memory_limit"

    @property
    def expected(self) -> frozenset[str]:
        """What a right diagnosis states: the causes planted, and "the server did not use a GPU" where it runs on
        the CPU (the bundled Ollama always: its GPU backend is a stub; the engine where it is a CPU build)."""
        from latencylab.collect.engine.install import build_backend

        on_cpu = self.server == "bundled_ollama" or build_backend() == "cpu"
        return self.planted | ({"no_gpu"} if on_cpu else set())

    def study(self, model: str) -> dict[str, Any]:
        workload = {"requests": 3 if self.loads_each or not self.throughout else 6, "warmup": 0, "max_tokens": 4,
                    "idle_gap_s": 0, "order": "blocked", **({"prompts": self.prompts} if self.prompts else {})}
        # llama-server maps the model file: its instances sleep (unload, unmap) soon after their last request
        sleep = {"keep_alive": f"{ENGINE_SLEEP_S}s"} if self.server == "engine" else {}
        if self.throughout:
            keep = sleep or ({"keep_alive": 0} if self.loads_each else {})
            return {"name": self.name, "cold_protocol": "first_only", "workload": workload, "targets": NO_TARGETS,
                    "scenarios": [{"name": "whole-run", "model": model, **keep}]}
        return {"name": self.name, "cold_protocol": "first_only", "workload": workload, "targets": NO_TARGETS,
                "scenarios": [{"name": f"{when}-{i}", "model": model, **sleep} for when in ("before", "after")
                              for i in (1, 2)]}


LONG = [" ".join(["the quick brown fox jumps over the lazy dog"] * 30) + f" {i}" for i in range(3)]

REAL_CONDITIONS: tuple[RealCondition, ...] = (
    RealCondition("real-healthy", frozenset(), "bundled_ollama", "none"),
    # A drop alone is the control: the model comes from storage, and this disk reads it as fast as memory does.
    RealCondition("real-drop-caches", frozenset(), "bundled_ollama", "drop"),
    RealCondition("real-slow-storage", frozenset({"storage"}), "bundled_ollama", "slow_storage"),
    RealCondition("real-memory-limit", frozenset({"storage", "memory"}), "bundled_ollama", "memory_limit"),
    RealCondition("real-cpu-hog", frozenset({"cpu"}), "bundled_ollama", "cpu_hog", LONG),
    RealCondition("real-engine-slow-storage", frozenset({"storage"}), "engine", "slow_storage"),
    # issue 33: the condition for the whole run, no control in it, and the controls
    # (nothing kept loaded, so that every load comes from storage: the reloads are planted too, and confirmed)
    RealCondition("whole-quiet", frozenset(), "bundled_ollama", "none", throughout=True),
    RealCondition("whole-drop-caches", frozenset({"reloads"}), "bundled_ollama", "drop", throughout=True),
    RealCondition("whole-slow-storage", frozenset({"storage", "reloads"}), "bundled_ollama", "slow_storage",
                  throughout=True),
    RealCondition("whole-cpu-hog", frozenset({"cpu"}), "bundled_ollama", "cpu_hog", LONG, throughout=True),
    RealCondition("whole-memory-limit", frozenset({"storage", "memory", "reloads"}), "bundled_ollama", "memory_limit",
                  throughout=True),
    RealCondition("whole-engine-slow-storage", frozenset({"storage", "reloads"}), "engine", "slow_storage",
                  throughout=True),
)


def why_not(plant: str) -> str | None:
    """Why this machine cannot plant `plant` (a pytest skip reason), or None."""
    if plant == "none":
        return None
    if os.geteuid() != 0:
        return "planting needs root (drop_caches, cgroups)"
    needs = {"drop": [], "slow_storage": ["blkio"], "memory_limit": ["blkio", "memory"], "cpu_hog": []}[plant]
    for controller in needs:
        if not (CGROUP_V1 / controller / "cgroup.procs").exists():
            return f"no cgroup v1 {controller} controller at {CGROUP_V1 / controller}"
    if plant == "cpu_hog" and not _which("taskset"):
        return "no taskset to pin the busy processes"
    return None


def _which(name: str) -> str | None:
    return next((str(p / name) for p in map(Path, os.environ.get("PATH", "").split(":")) if (p / name).exists()), None)


def drop_caches() -> None:
    """Write dirty pages out, then drop the page cache (and dentries and inodes): every file is read again."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def disk_of(path: Path) -> str:
    """`major:minor` of the whole disk that holds `path` (a blkio throttle takes disks, not partitions)."""
    st = os.stat(path)
    device = Path(f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}")
    if (device / "partition").exists():
        return (device.resolve().parent / "dev").read_text().strip()
    return f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"


class Cgroup:
    """A cgroup v1 group of one controller, made for a condition: `add` moves processes in (their children follow
    when they start), `close` moves every process in it back to the group the first one came from and removes it."""

    def __init__(self, controller: str, name: str) -> None:
        self.controller = controller
        self.path = CGROUP_V1 / controller / f"latencylab-{name}-{os.getpid()}"
        self.path.mkdir()
        self.home: Path | None = None

    def set(self, name: str, value: str) -> None:
        (self.path / name).write_text(value)

    def add(self, pids: list[int]) -> None:
        for pid in pids:
            if self.home is None:
                self.home = CGROUP_V1 / self.controller / _group_of(pid, self.controller).lstrip("/")
            with contextlib.suppress(ProcessLookupError, OSError):
                (self.path / "cgroup.procs").write_text(str(pid))

    def close(self) -> None:
        home = self.home or CGROUP_V1 / self.controller
        for _ in range(50):
            pids = (self.path / "cgroup.procs").read_text().split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, OSError):
                    (home / "cgroup.procs").write_text(pid)
            try:
                self.path.rmdir()
                return
            except OSError:  # a process was still moving out, or a child just started in it
                time.sleep(0.1)
        raise RuntimeError(f"could not remove {self.path}")


def _group_of(pid: int, controller: str) -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path
    return "/"


@contextlib.contextmanager
def busy_processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """One busy process pinned to each core (taskset), ended on every exit path."""
    hogs = [subprocess.Popen(["taskset", "-c", str(core), sys.executable, "-c", "while True: pass"])
            for core in sorted(os.sched_getaffinity(0))]
    try:
        yield hogs
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def _rss(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            total += psutil.Process(pid).memory_info().rss
    return total


class Planter:
    """Plants one condition on a running server (`pids`: its processes; `model_file`: what it loads) once `AFTER`
    samples exist (`on_sample`), or at `start` where it is planted throughout, and undoes it all on `close`,
    whatever happened."""

    def __init__(self, condition: RealCondition, pids: Callable[[], list[int]], model_file: Path) -> None:
        self.condition, self.pids, self.model_file = condition, pids, model_file
        self.seen = 0
        self.stack = contextlib.ExitStack()
        self.peak_rss = 0  # the server's runners with the model loaded, before the condition

    def start(self) -> None:
        """Plant a condition planted throughout, before the first request: on the bundled Ollama's processes; on
        the embedded engine, which the run starts, on this process (the engine's processes start in its cgroups)."""
        if self.condition.throughout:
            self.plant(self.pids() if self.condition.server == "bundled_ollama" else [os.getpid()])

    def on_sample(self, sample: Any) -> None:
        self.seen += 1
        if self.condition.cold_each:
            self.drop()  # before the next request
        if self.condition.throughout:
            return
        if self.seen < AFTER:  # the runners alone: what the server already holds stays charged to its own group
            self.peak_rss = max(self.peak_rss, _rss(self.pids()[1:]))
        if self.seen == AFTER:
            self.plant(self.pids())

    def drop(self) -> None:
        if self.condition.server == "engine":  # a drop keeps the pages of a file mapped: let the instance sleep first
            time.sleep(ENGINE_SLEEP_S + 1.5)
        drop_caches()

    def plant(self, pids: list[int]) -> None:
        plant, name = self.condition.plant, self.condition.name
        if plant == "cpu_hog":
            self.stack.enter_context(busy_processes())
            return
        if plant == "none":
            return
        if plant == "memory_limit":
            memory = Cgroup("memory", name)
            self.stack.callback(memory.close)
            memory.set("memory.limit_in_bytes", str(self.peak_rss + MEMORY_ROOM))
            memory.add(pids)
        if plant in ("slow_storage", "memory_limit"):
            blkio = Cgroup("blkio", name)
            self.stack.callback(blkio.close)
            rate = SLOW_BPS if self.condition.throughout else THROTTLE_BPS
            blkio.set("blkio.throttle.read_bps_device", f"{disk_of(self.model_file)} {rate}")
            blkio.add(pids)
        self.drop()

    def close(self) -> None:
        self.stack.close()

    def __enter__(self) -> Planter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


Q4 = "smollm2:135m-q4_1"  # the bundled Ollama's name of the shipped SmolLM2 Q4_1 file
ENGINE_MODEL = "smollm2-135m-q4_1"


def _engine_pids() -> list[int]:
    """The embedded llama-server this process started (its router first) and its model instances."""
    routers = [p for p in psutil.Process().children() if p.name().startswith("llama-server")]
    return [p.pid for router in routers for p in (router, *router.children(recursive=True))]


def run_condition(condition: RealCondition) -> str:
    """Run `condition`'s study on its real server with the condition planted, undone whatever happens; the run id.
    Runs in the data folder `latencylab.core.paths` points at."""
    import httpx

    from latencylab.collect import runner
    from latencylab.collect.engine.ollama import BundledOllama
    from latencylab.core import paths
    from latencylab.plan.study import parse_study

    if condition.server == "engine":
        study = parse_study({**condition.study(ENGINE_MODEL), "backend": "embedded"})
        with Planter(condition, _engine_pids, paths.MODELS_DIR / f"{ENGINE_MODEL}.gguf") as planter:
            planter.start()
            return runner.run_study(study, progress=False, on_sample=planter.on_sample)
    with BundledOllama(models=(Q4,)) as server:
        shown = httpx.post(f"{server.base_url}/api/show", json={"model": Q4}, timeout=30).json()["modelfile"]
        blob = Path(next(line[5:].strip() for line in shown.splitlines() if line.startswith("FROM /")))
        study = parse_study({**condition.study(Q4), "backend": "ollama", "bundled_ollama": True})
        with Planter(condition, server.pids, blob) as planter:
            if condition.throughout and condition.plant == "memory_limit":  # the limit: its runner's memory, loaded
                httpx.post(f"{server.base_url}/api/generate", json={"model": Q4, "keep_alive": -1}, timeout=120)
                planter.peak_rss = _rss(server.pids()[1:])
                httpx.post(f"{server.base_url}/api/generate", json={"model": Q4, "keep_alive": 0}, timeout=120)
            planter.start()
            return runner.run_study(study, ollama=server, progress=False, on_sample=planter.on_sample)
