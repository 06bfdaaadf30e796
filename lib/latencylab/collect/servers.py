"""The servers a run talks to: the embedded engine and the bundled Ollama it starts, one `Target` per scenario
(backend, model id, HTTP client), the request each planned prompt becomes, the clients and worker processes."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from latencylab.collect.backends import Backend, GenerationRequest, make_backend
from latencylab.collect.engine import Engine, prepare_models, presets
from latencylab.collect.engine.ollama import BundledOllama
from latencylab.collect.workers import WorkerPool
from latencylab.core import paths
from latencylab.plan.study import ScenarioSpec, StudySpec
from latencylab.plan.workload import PlannedRequest

API_KEY_ENV = "LATENCYLAB_API_KEY"  # for OpenAI-compatible servers that need a key; never stored


@dataclass
class Target:
    """Where one scenario's requests go, and under which model id the server knows its model."""

    scenario: ScenarioSpec
    backend: Backend
    model: str
    client: httpx.AsyncClient | None = None
    runner_options: dict[str, Any] = field(default_factory=dict)


def _engine(study: StudySpec, run_id: str) -> Engine:
    return Engine(log_path=paths.run_dir(run_id) / "llama-server.log", models_max=study.engine.models_max,
                  ctx_size=study.engine.ctx_size, threads=study.engine.threads,
                  presets=presets.presets(study, paths.MODELS_DIR))


@contextlib.contextmanager
def engine_for(study: StudySpec, run_id: str) -> Iterator[Engine | None]:
    """The embedded engine with one preset per scenario, stopped on every exit path."""
    if not study.uses_engine:
        yield None
        return
    prepare_models(only=engine_models(study))
    with _engine(study, run_id) as engine:
        yield engine


@contextlib.contextmanager
def bundled_ollama_for(study: StudySpec, run_id: str | None = None,
                       given: BundledOllama | None = None) -> Iterator[BundledOllama | None]:
    """The bundled Ollama the study asks for (`bundled_ollama:`): `given` when the caller started it already
    (the CLI, for the check before and the facts after the run), else one started here and stopped on every
    exit path; None when the study does not use it."""
    if not study.uses_bundled_ollama or given is not None:
        yield given if study.uses_bundled_ollama else None
        return
    assert study.bundled_ollama is not None
    models = tuple(sorted({s.model for s in study.scenarios if study.on_bundled_ollama(s)}))
    log_path = paths.run_dir(run_id) / "ollama.log" if run_id else None
    with BundledOllama(models=models, env=study.bundled_ollama.env(), log_path=log_path) as server:
        yield server


def with_bundled_url(study: StudySpec, server: BundledOllama | None) -> StudySpec:
    """The study as the check and the fact gathering see it: the bundled Ollama's URL where it serves."""
    if server is None or not study.uses_bundled_ollama:
        return study
    # As the study's base_url (not validated again: it keeps bundled_ollama), so the scenarios it serves are
    # still those that name no server of their own.
    return study.model_copy(update={"base_url": server.base_url})


def server_logs(server: BundledOllama | None) -> dict[str, Path]:
    """The log of the bundled Ollama by its URL (where it serves), for the facts that only its log says."""
    return {server.base_url: server.log_path} if server is not None and server.log_path else {}


def engine_models(study: StudySpec) -> set[str]:
    """The models the study asks of the embedded engine (file stems in data/models/)."""
    return {s.model for s in study.scenarios if study.backend_of(s) == "embedded"}


def server_facts(study: StudySpec, run_id: str) -> dict[str, Any]:
    """What is known about the servers before the first request: the engine's version and presets, or the
    kinds and URLs of the servers the study names."""
    if study.uses_engine:
        prepare_models(only=engine_models(study))
        engine = _engine(study, run_id)
        return {"kind": "embedded llama-server", "version": engine.version(), "backend": engine.backend,
                "presets": engine.presets}
    kinds = sorted({study.backend_of(s) for s in study.scenarios})
    facts = {"kind": ", ".join(kinds), "base_urls": sorted({study.base_url_of(s) or "" for s in study.scenarios})}
    if study.uses_bundled_ollama:
        assert study.bundled_ollama is not None
        facts["bundled_ollama"] = {"version": BundledOllama().version(), "env": study.bundled_ollama.env()}
    return facts


def targets(study: StudySpec, engine: Engine | None, bundled: BundledOllama | None = None) -> dict[str, Target]:
    timeouts = study.timeouts
    api_key = os.environ.get(API_KEY_ENV)
    targets = {}
    for s in study.scenarios:
        kind = study.backend_of(s)
        if kind == "embedded":
            assert engine is not None
            backend = make_backend(kind, engine.base_url, api_key=engine.api_key, timeouts=timeouts,
                                   connection=study.workload.connection)
            model = presets.served_model_id(s)
        else:
            # a conversation's turns carry their history: Ollama's chat endpoint takes it
            endpoint = "chat" if study.workload.sessions is not None else s.endpoint
            extra = {"endpoint": endpoint} if kind == "ollama" else {}
            url = bundled.base_url if bundled is not None and study.on_bundled_ollama(s) else study.base_url_of(s)
            backend = make_backend(kind, url or "", timeouts=timeouts, api_key=api_key,
                                   connection=study.workload.connection, **extra)
            model = s.model
        runner_options = s.runner_options
        targets[s.name] = Target(s, backend, model, runner_options=runner_options)
    return targets


def request_for(study: StudySpec, target: Target, planned: PlannedRequest,
                history: list[dict[str, str]] | None = None) -> GenerationRequest:
    """The request one planned prompt becomes; a conversation's turn carries its `history` and the turn after it."""
    w, s = study.workload, target.scenario
    # The engine applies runner options and keep_alive through its presets, not per request.
    on_engine = study.backend_of(s) == "embedded"
    options = {k: v for k, v in s.options.items() if not (on_engine and k in presets.ENGINE_OPTIONS)}
    return GenerationRequest(
        model=target.model, prompt=planned.prompt, max_tokens=planned.max_tokens or w.max_tokens,
        temperature=w.temperature, seed=w.seed, options=options, keep_alive=None if on_engine else s.keep_alive,
        # a conversation is what prompt caching is for: the server is asked to keep it (llama-server)
        cache_prompt=True if planned.session is not None or not w.unique_prefix else None,
        messages=None if history is None else [*history, {"role": "user", "content": planned.prompt}],
    )


@contextlib.asynccontextmanager
async def clients(targets: dict[str, Target], study: StudySpec) -> AsyncIterator[None]:
    """One HTTP client per scenario, its connection pool sized to the most requests ever in flight."""
    workload = study.workload
    in_flight = None if workload.mode == "open" else max(workload.levels) * 2  # a request and its probe
    async with contextlib.AsyncExitStack() as stack:
        for target in targets.values():
            target.client = await stack.enter_async_context(target.backend.client(max_connections=in_flight))
        yield


@contextlib.asynccontextmanager
async def pool(targets: dict[str, Target], study: StudySpec) -> AsyncIterator[WorkerPool | None]:
    """The worker processes that send the timed requests, when `client_processes` asks for more than one."""
    if study.workload.client_processes == 1:
        yield None
        return
    async with WorkerPool({name: t.backend for name, t in targets.items()}, study.workload.client_processes) as pool:
        yield pool
