"""Shared fixtures: a private data/ + reports/ folder per test, and the real embedded engine."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from latencylab.core import paths

TESTS_DIR = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test by its folder (`-m unit`, `-m "not integration"`); anything outside tests/unit/ is slow."""
    for item in items:
        in_unit = Path(item.path).relative_to(TESTS_DIR).parts[0] == "unit"
        item.add_marker("unit" if in_unit else "integration")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point data/ and reports/ at a temporary folder, in this process and in child processes."""
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path))
    monkeypatch.setattr(paths, "WORK_ROOT", tmp_path)
    monkeypatch.setattr(paths, "DATA_DIR", tmp_path / "data")
    monkeypatch.setattr(paths, "RUNS_DIR", tmp_path / "data" / "runs")
    monkeypatch.setattr(paths, "REPORTS_DIR", tmp_path / "reports")
    return tmp_path


@pytest.fixture(scope="session")
def models() -> list[Path]:
    """The embedded engine's models in data/models/ (prepared once; idempotent)."""
    from latencylab.collect import engine

    return engine.prepare_models()


@pytest.fixture(scope="module")
def router(models: list[Path]) -> Iterator[object]:
    """A real llama-server in router mode: one model resident at a time, idle models sleep after 3 s."""
    from latencylab.collect.engine import Engine

    with Engine(models_max=1, sleep_idle_seconds=3) as server:
        yield server


@pytest.fixture(scope="session")
def real_ollama(models: list[Path]) -> Iterator[object]:
    """The bundled real Ollama (0.5.4, CPU; `make test` assembles it), one per session: one request at a time
    (OLLAMA_NUM_PARALLEL=1) and one model resident (OLLAMA_MAX_LOADED_MODELS=1), so queueing and eviction are
    real. Tests leave it with nothing loaded."""
    from latencylab.collect.engine.ollama import BundledOllama

    with BundledOllama(env={"OLLAMA_NUM_PARALLEL": "1", "OLLAMA_MAX_LOADED_MODELS": "1"}) as server:
        yield server


@pytest.fixture
def interrupt_after() -> Callable[[int], Callable[[Any], None]]:
    """An `on_sample` callback that stops a run as Ctrl-C does, once `count` samples exist."""

    def make(count: int) -> Callable[[Any], None]:
        seen: list[int] = []

        def on_sample(sample: Any) -> None:
            seen.append(sample.seq)
            if len(seen) == count:
                raise KeyboardInterrupt

        return on_sample

    return make


@pytest.fixture
def background_job() -> Callable[..., subprocess.Popen[str]]:
    """`subprocess.Popen` as a script's `command &` starts a command: with SIGINT ignored (a non-interactive shell
    does that for its background jobs), whatever this test process inherited. A test that stops the child with
    SIGINT then relies on the child's own handler, the same on a terminal, in CI and in `make test &`."""

    def start(args: list[str], **kwargs: Any) -> subprocess.Popen[str]:
        inherited = signal.signal(signal.SIGINT, signal.SIG_IGN)  # the child keeps what is ignored across exec
        try:
            return subprocess.Popen(args, **kwargs)
        finally:
            signal.signal(signal.SIGINT, inherited)

    return start
