"""Running the embedded engine: llama-server (router mode) on a free loopback port, supervised.

`Engine` starts it, waits for health, logs to a file, and stops it and every child process on every exit path.
The server is ours alone: it requires a random key made for this engine (`api_key`), given to it through its
environment (`LLAMA_API_KEY`, which its model instances inherit), so it is in no command line, file or report.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import os
import secrets
import signal
import socket
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import httpx
import psutil

from latencylab.collect import cgroups
from latencylab.collect.engine import logs
from latencylab.collect.engine.install import build_backend, find_binary
from latencylab.core import paths
from latencylab.core.errors import EngineError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM if this Python process dies, even by SIGKILL."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def process_tree(process: subprocess.Popen[bytes] | None) -> list[int]:
    """A server's pid and those of every process it started (its model instances or runners)."""
    if process is None:
        return []
    try:
        root = psutil.Process(process.pid)
        return [root.pid] + [p.pid for p in root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def wait_answering(process: subprocess.Popen[bytes], url: str, timeout_s: float, name: str, log_path: Path | None,
                   ) -> None:
    """Wait until GET `url` answers 200; an EngineError with the log's tail if `process` exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EngineError(f"{name} exited with status {process.returncode}:\n{logs.tail(log_path, 20)}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise EngineError(f"{name} did not answer within {timeout_s:g} s:\n{logs.tail(log_path, 20)}")


def stop_tree(process: subprocess.Popen[bytes], pids: list[int], grace_s: float = 5.0) -> None:
    """Stop a server and the processes it started (`pids`, itself first): SIGTERM, SIGKILL after `grace_s`."""
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    for proc in procs:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=grace_s)
    process.wait()  # reap, so no zombie is left either


def write_presets(presets: dict[str, dict[str, Any]], path: Path) -> Path:
    """A llama-server `--models-preset` INI file: one `[model-id]` section of long option names each."""
    lines = []
    for model_id, settings in presets.items():
        lines.append(f"[{model_id}]")
        lines += [f"{key} = {value}" for key, value in settings.items()]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


class Supervised(ABC):
    """A server process of ours: in a session of its own, its output in a log file, stopped on every exit path
    (`with`, an error while it starts, the interpreter's exit)."""

    process: subprocess.Popen[bytes] | None
    log_path: Path | None
    _tmp: tempfile.TemporaryDirectory[str] | None
    _group: Path | None = None  # its cgroup v2 group (collect/cgroups.py), where one was made

    def _spawn(self, command: list[str], env: dict[str, str], ready: Callable[[], None]) -> None:
        """Start `command`, then call `ready` (waits until it answers); stopped again if that fails."""
        assert self.log_path is not None
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_parent,
            )
        # its own cgroup v2 group, where we may: the pressure stall times of the host evidence are then its own
        self._group = cgroups.own_group(self.process.pid, type(self).__name__.lower())
        atexit.register(self.stop)
        try:
            ready()
        except BaseException:
            self.stop()
            raise

    def _stopped(self) -> None:
        """After `stop` ended the processes: forget them and remove the temporary folder."""
        self.process = None
        cgroups.release(self._group)
        self._group = None
        atexit.unregister(self.stop)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    @abstractmethod
    def start(self) -> str:
        """Start the server and wait until it answers; returns its base URL."""

    @abstractmethod
    def stop(self, grace_s: float = 5.0) -> None:
        """Stop the server and every process it started, for sure: SIGTERM, then SIGKILL after `grace_s`."""

    def log_tail(self, lines: int = 20) -> str:
        return logs.tail(self.log_path, lines)

    def pids(self) -> list[int]:
        """The server and every process it started (model instances or runners)."""
        return process_tree(self.process)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Engine(Supervised):
    """llama-server in router mode: every GGUF in `models_dir` is a model id, loaded on demand."""

    def __init__(
        self,
        models_dir: Path = paths.MODELS_DIR,
        *,
        log_path: Path | None = None,
        models_max: int = 1,
        sleep_idle_seconds: float | None = None,
        ctx_size: int = 2048,
        threads: int | None = None,
        presets: dict[str, dict[str, Any]] | None = None,
        startup_timeout_s: float = 60.0,
    ) -> None:
        self.models_dir = models_dir
        self.log_path = log_path
        self.models_max = models_max
        self.sleep_idle_seconds = sleep_idle_seconds
        self.ctx_size = ctx_size
        self.threads = threads
        self.presets = presets or {}
        self.startup_timeout_s = startup_timeout_s
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._offload_log: logs.OffloadLog | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        # Without a key, anyone on this machine (and any web page open in a browser: its CORS allows all
        # origins) could use the server; clients send it as `Authorization: Bearer` (`/health` needs none).
        self.api_key = secrets.token_urlsafe(24)

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise EngineError("the engine is not running")
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """The llama-server command line (loopback only; no shell)."""
        cmd = [str(find_binary("llama-server")), "--host", "127.0.0.1", "--port", str(self.port),
               "--models-dir", str(self.models_dir), "--models-max", str(self.models_max), "--no-webui",
               "--metrics"]  # its instances' /metrics, which latencylab scrapes during a run (collect.scrape)
        # Defaults go in the presets' `[*]` section: flags on the command line would override every preset.
        defaults: dict[str, Any] = {"ctx-size": self.ctx_size}
        if self.sleep_idle_seconds is not None:
            defaults["sleep-idle-seconds"] = f"{self.sleep_idle_seconds:g}"
        if self.threads:
            defaults["threads"] = self.threads
        if self.backend != "cpu":
            defaults["log-verbosity"] = 4  # the "offloaded N/M layers to GPU" line is logged at trace level
        assert self._tmp is not None
        presets_file = Path(self._tmp.name) / "presets.ini"
        cmd += ["--models-preset", str(write_presets({"*": defaults, **self.presets}, presets_file))]
        return cmd

    def version(self) -> str:
        """`llama-server --version`, first line that names the version."""
        out = subprocess.run([str(find_binary("llama-server")), "--version"], capture_output=True, text=True)
        lines = (out.stdout + out.stderr).splitlines()
        return next((line.strip() for line in lines if line.startswith("version")), "unknown")

    def start(self) -> str:
        """Start the server and wait until `/health` answers; returns its base URL."""
        if self.process is not None:
            return self.base_url
        self._tmp = tempfile.TemporaryDirectory(prefix="latencylab-engine-")
        self.port = free_port()
        self.log_path = self.log_path or Path(self._tmp.name) / "llama-server.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._spawn(self.command(), {**os.environ, "LLAMA_API_KEY": self.api_key}, self._wait_healthy)
        return self.base_url

    def _wait_healthy(self) -> None:
        assert self.process is not None
        wait_answering(self.process, f"{self.base_url}/health", self.startup_timeout_s, "llama-server", self.log_path)

    def instance(self, model_id: str) -> psutil.Process | None:
        """The child process serving `model_id` (the router starts each with `--alias <id>`)."""
        for pid in self.pids()[1:]:
            try:
                process = psutil.Process(pid)
                args = process.cmdline()
            except psutil.Error:
                continue
            if "--alias" in args and args[args.index("--alias") + 1 : args.index("--alias") + 2] == [model_id]:
                return process
        return None

    def rss_bytes(self, model_id: str) -> int | None:
        """Resident memory of the process serving `model_id`, if it runs."""
        process = self.instance(model_id)
        try:
            return process.memory_info().rss if process else None
        except psutil.Error:
            return None

    @functools.cached_property
    def backend(self) -> str:
        """"cpu", or the GPU backend this llama-server was built with."""
        return build_backend()

    def offload(self, model_id: str) -> tuple[logs.Offload | None, str]:
        """Layers of `model_id` offloaded to the GPU, with where that came from or why it is unknown.

        The source is "log" when the child's offload line was found; otherwise a reason: "cpu-build" (no GPU
        backend: nothing is ever offloaded), "not-loaded" or "not-in-log".
        """
        if self.backend == "cpu":
            return None, "cpu-build"
        process = self.instance(model_id)
        if process is None or not self.log_path or not self.log_path.exists():
            return None, "not-loaded"
        try:
            args = process.cmdline()
            port = int(args[args.index("--port") + 1])
        except (psutil.Error, ValueError, IndexError):
            return None, "not-loaded"
        if self._offload_log is None or self._offload_log.path != self.log_path:
            self._offload_log = logs.OffloadLog(self.log_path)
        found = self._offload_log.offload(port)
        return (found, "log") if found else (None, "not-in-log")

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop the server and its children for sure: SIGTERM, then SIGKILL after `grace_s`."""
        if self.process is None:
            return
        stop_tree(self.process, self.pids(), grace_s)  # router mode runs one child per loaded model
        self._stopped()
