"""Executes a study: starts the embedded engine if needed, sends the plan, stores every sample at once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from . import engine as engine_mod
from .backends import Backend, GenerationRequest, Timeouts, make_backend
from .sample import Sample
from .store import RunWriter, new_run_id
from .study import ScenarioSpec, StudySpec
from .workload import PlannedRequest, plan_requests

API_KEY_ENV = "LATENCYLAB_API_KEY"  # for OpenAI-compatible servers that need a key; never stored


@dataclass
class Target:
    """Where one scenario's requests go."""

    scenario: ScenarioSpec
    backend: Backend


@contextlib.contextmanager
def _engine_for(study: StudySpec, run_dir: Path) -> Any:
    """The embedded engine when a scenario needs it, stopped on every exit path."""
    if not study.uses_engine:
        yield None
        return
    engine_mod.prepare_models()
    spec = study.engine
    with engine_mod.Engine(
        log_path=run_dir / "llama-server.log",
        models_max=spec.models_max,
        sleep_idle_seconds=spec.sleep_idle_seconds,
        ctx_size=spec.ctx_size,
        threads=spec.threads,
    ) as engine:
        yield engine


def _targets(study: StudySpec, engine: engine_mod.Engine | None) -> dict[str, Target]:
    timeouts = Timeouts(**study.timeouts.model_dump())
    api_key = os.environ.get(API_KEY_ENV)
    targets = {}
    for s in study.scenarios:
        kind = study.backend_of(s)
        if kind == "embedded":
            assert engine is not None
            backend = make_backend("llamacpp", engine.base_url, timeouts=timeouts)
        else:
            extra = {"endpoint": s.endpoint} if kind == "ollama" else {}
            backend = make_backend(kind, study.base_url_of(s) or "", timeouts=timeouts, api_key=api_key, **extra)
        targets[s.name] = Target(s, backend)
    return targets


def _request(study: StudySpec, target: Target, planned: PlannedRequest) -> GenerationRequest:
    w, s = study.workload, target.scenario
    return GenerationRequest(
        model=s.model, prompt=planned.prompt, max_tokens=w.max_tokens, temperature=w.temperature,
        seed=w.seed, options=dict(s.options), keep_alive=s.keep_alive,
        cache_prompt=None if w.unique_prefix else True,
    )


def classify_state(resident_before: bool | None) -> str:
    """`cold` when the server showed the model not resident, `warm` when resident, else `unknown`."""
    return {True: "warm", False: "cold"}.get(resident_before, "unknown")  # type: ignore[arg-type]


async def collect(
    study: StudySpec,
    raw_study: dict[str, Any] | None = None,
    *,
    run_id: str | None = None,
    on_sample: Callable[[Sample], None] | None = None,
    progress: bool = True,
) -> str:
    """Run `study` to completion and return its run id; samples are on disk as soon as they exist."""
    run_id = run_id or new_run_id(study.name)
    plan = plan_requests(study, run_id)
    writer = RunWriter(run_id, study=raw_study or study.model_dump(mode="json"),
                       settings={"resolved": study.model_dump(mode="json"), "planned_requests": len(plan)})
    status = "failed"
    try:
        with _engine_for(study, writer.dir) as engine:
            if engine is not None:
                writer.update(server={"kind": "embedded llama-server", "version": engine.version(),
                                      "command": engine.command()})
            targets = _targets(study, engine)
            await _send_all(study, plan, targets, writer, run_id, on_sample, progress)
        status = "complete"
    except (KeyboardInterrupt, asyncio.CancelledError):
        status = "interrupted"
        raise
    finally:
        writer.close(status)
    return run_id


@contextlib.asynccontextmanager
async def _clients(targets: dict[str, Target]) -> AsyncIterator[dict[str, Any]]:
    async with contextlib.AsyncExitStack() as stack:
        yield {name: await stack.enter_async_context(t.backend.client()) for name, t in targets.items()}


async def _send_all(
    study: StudySpec,
    plan: list[PlannedRequest],
    targets: dict[str, Target],
    writer: RunWriter,
    run_id: str,
    on_sample: Callable[[Sample], None] | None,
    progress: bool,
) -> None:
    seen_measured: set[str] = set()
    last_end: float | None = None
    bar = tqdm(total=len(plan), desc=study.name, unit="req", disable=not progress)
    try:
        async with _clients(targets) as clients:
            for planned in plan:
                target, client = targets[planned.scenario], clients[planned.scenario]
                if study.workload.idle_gap_s:
                    await asyncio.sleep(study.workload.idle_gap_s)
                resident = await target.backend.resident(client, target.scenario.model)
                sample = await target.backend.measure(client, _request(study, target, planned))
                sample.run_id, sample.seq, sample.scenario = run_id, planned.seq, planned.scenario
                sample.warmup = planned.warmup
                sample.resident_before, sample.state = resident, classify_state(resident)
                sample.idle_before_s = None if last_end is None else sample.started_at - last_end
                if not planned.warmup and planned.scenario not in seen_measured:
                    sample.phase = "first"
                    seen_measured.add(planned.scenario)
                last_end = time.time()
                writer.append(sample)
                bar.update(1)
                bar.set_postfix_str(_postfix(sample))
                if on_sample:
                    on_sample(sample)
    finally:
        bar.close()


def _postfix(sample: Sample) -> str:
    if not sample.ok:
        return f"{sample.scenario}: {sample.error_kind}"
    return f"{sample.scenario}: TTFT {sample.ttft_ms or 0:.0f} ms ({sample.state})"


def run_study(study: StudySpec, raw_study: dict[str, Any] | None = None, **kwargs: Any) -> str:
    """Synchronous `collect` for scripts (in a notebook, `await collect(...)` instead)."""
    return asyncio.run(collect(study, raw_study, **kwargs))
