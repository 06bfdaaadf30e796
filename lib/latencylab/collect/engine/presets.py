"""A study's scenarios on the embedded engine: each becomes a llama-server preset of its own.

Ollama's runner options map onto llama-server flags, and `keep_alive` onto the idle sleep, so the same
study shape runs on Ollama and on the embedded engine.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from latencylab.core.durations import keep_alive_seconds
from latencylab.core.errors import EngineError
from latencylab.plan.study import ScenarioSpec, StudySpec

# num_parallel: requests the instance serves at once (llama-server's slots; Ollama's OLLAMA_NUM_PARALLEL)
ENGINE_OPTIONS = {"num_ctx": "ctx-size", "num_batch": "batch-size", "num_thread": "threads", "num_gpu": "n-gpu-layers",
                  "num_parallel": "parallel"}


def served_model_id(scenario: ScenarioSpec) -> str:
    """The id the engine serves a scenario's model under (its own settings, its own instance)."""
    return f"{scenario.model}--{scenario.name}"


def preset(scenario: ScenarioSpec, study: StudySpec, models_dir: Path) -> dict[str, Any]:
    """The `[model-id]` section of one scenario: model file, context, batch, threads, GPU layers, idle sleep."""
    model_file = models_dir / f"{scenario.model}.gguf"
    if not model_file.exists():
        available = ", ".join(sorted(p.stem for p in models_dir.glob("*.gguf"))) or "none"
        raise EngineError(f"scenario {scenario.name!r}: no model {scenario.model!r} in {models_dir} "
                          f"(available: {available})")
    settings: dict[str, Any] = {"model": str(model_file), "ctx-size": study.engine.ctx_size}
    if study.engine.threads:
        settings["threads"] = study.engine.threads
    for option, flag in ENGINE_OPTIONS.items():
        if option in scenario.options:
            settings[flag] = int(scenario.options[option])
    if scenario.keep_alive is not None:
        seconds = keep_alive_seconds(scenario.keep_alive)
        if not math.isinf(seconds):
            settings["sleep-idle-seconds"] = max(1, math.ceil(seconds))
    return settings


def presets(study: StudySpec, models_dir: Path) -> dict[str, dict[str, Any]]:
    """Every embedded scenario's preset, by served model id."""
    return {served_model_id(s): preset(s, study, models_dir)
            for s in study.scenarios if study.backend_of(s) == "embedded"}
