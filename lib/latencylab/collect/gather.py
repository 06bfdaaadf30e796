"""Gathering server facts (HTTP, GGUF files, NVML, the host) and the check that reasons on them.

Before the first request and after the last of a run, and for `latencylab check`.
"""

from __future__ import annotations

import asyncio
import os
import platform
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from latencylab.collect import gpu
from latencylab.collect.backends import Backend, Timeouts, make_backend
from latencylab.collect.host import listening_pid, tree
from latencylab.core import paths
from latencylab.core.errors import GGUFError, ServerError
from latencylab.core.gguf import read_metadata
from latencylab.core.protocols import capabilities
from latencylab.plan.check import CheckResult, Plan, evaluate
from latencylab.plan.facts import (
    Facts,
    GpuFacts,
    GpuUser,
    HostFacts,
    ModelFacts,
    Moment,
    ServerFacts,
    is_local,
    model_facts,
)
from latencylab.plan.study import StudySpec

FACTS_TIMEOUT_S = 30.0  # a server that answers none of its facts in this time counts as unreachable


def host_facts() -> HostFacts:
    """This machine: OS, CPU, cores, memory, Python."""
    cpu = platform.processor()
    try:
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), cpu)
    except OSError:
        pass
    return HostFacts(system=f"{platform.system()} {platform.release()}", machine=platform.machine(), cpu=cpu,
                     cores_logical=os.cpu_count(), cores_physical=psutil.cpu_count(logical=False),
                     ram_bytes=psutil.virtual_memory().total, python=platform.python_version(),
                     hostname=platform.node())


def gpu_facts(servers: set[int] | frozenset[int] = frozenset()) -> GpuFacts | None:
    """GPU 0 of this machine (from `gpu.devices()`), its free memory and the processes other than `servers` (pids)
    that hold memory on it; None without an NVIDIA GPU and driver."""
    found = gpu.devices()
    if not found:
        return None
    first = found[0]
    others = [GpuUser(pid=p.pid, name=_name(p.pid), used_bytes=p.used_bytes) for p in gpu.processes()
              if p.index == first.index and p.pid not in servers]
    return GpuFacts(name=first.name, total_bytes=first.memory_total_bytes, used_bytes=first.memory_used_bytes,
                    driver=first.driver_version, count=len(found), free_bytes=gpu.free_bytes(first.index),
                    others=others)


def _name(pid: int) -> str:
    try:
        return psutil.Process(pid).name()
    except psutil.Error:
        return "?"


def server_pids(study: StudySpec) -> set[int]:
    """The processes of the study's servers on this machine (found by their ports) and of the servers latencylab
    started (its children): not "other processes" on the GPU."""
    pids = {p.pid for p in psutil.Process().children(recursive=True)}
    for url in {study.base_url_of(s) for s in study.scenarios}:
        if url and is_local(url) and (pid := listening_pid(url)) is not None:
            pids |= set(tree(pid))
    return pids


def gguf_facts(name: str, path: Path) -> ModelFacts | None:
    """A local GGUF file's facts (the embedded engine's models); None when it is missing or unreadable."""
    try:
        return model_facts(name, "gguf", read_metadata(path), size_bytes=path.stat().st_size)
    except (GGUFError, OSError):
        return None


def _config(backend: Backend, log: Path | None) -> dict[str, str] | None:
    """The server's configuration from its start log, where latencylab has that log (a server it started)."""
    try:
        return backend.config_from_log(log.read_text(errors="replace")) if log else None
    except OSError:
        return None


async def _server(kind: str, url: str, models: list[str], api_key: str | None, log: Path | None = None) -> ServerFacts:
    backend = make_backend(kind, url, timeouts=Timeouts(connect_s=5.0), api_key=api_key)
    config = _config(backend, log)
    try:
        async with backend.client() as client:
            found = await asyncio.wait_for(backend.facts(client, models), FACTS_TIMEOUT_S)
    except (httpx.HTTPError, ServerError, ValueError, TimeoutError) as exc:
        return ServerFacts(kind=kind, base_url=url, reachable=False, error=f"{type(exc).__name__}: {exc}",
                           config=config)
    return ServerFacts(kind=kind, base_url=url, reachable=True, config=config, **found)


async def _embedded(models: list[str], models_dir: Path, engine_url: str | None,
                    engine_key: str | None = None) -> ServerFacts:
    """The engine's models from their GGUF files; with the engine running, its build from `/props` too."""
    found = [f for m in dict.fromkeys(models) if (f := gguf_facts(m, models_dir / f"{m}.gguf"))]
    props: dict[str, Any] = {}
    if engine_url:
        try:
            backend = make_backend("embedded", engine_url, api_key=engine_key, timeouts=Timeouts(connect_s=5.0))
            async with backend.client() as client:
                props = (await asyncio.wait_for(backend.facts(client, []), FACTS_TIMEOUT_S))["props"]
        except (httpx.HTTPError, ServerError, ValueError, TimeoutError):
            props = {}
    return ServerFacts(kind="embedded", base_url=None, reachable=True, models=found,
                       version=props.get("build_info"), props=props,
                       missing=[m for m in dict.fromkeys(models) if not (models_dir / f"{m}.gguf").exists()])


async def gather(study: StudySpec, moment: Moment = "before", api_key: str | None = None,
                 models_dir: Path | None = None, engine_url: str | None = None, engine_key: str | None = None,
                 logs: Mapping[str, Path] | None = None) -> Facts:
    """The facts of every server the study names, the GPU and the host (servers in parallel).

    `engine_url`, `engine_key`: the embedded engine's address and key while it runs (its `/props`); without
    them, its GGUF files only. `logs`: the log file of each server latencylab started, by its base URL.
    """
    by_server: dict[tuple[str, str | None], list[str]] = {}
    for scenario in study.scenarios:
        by_server.setdefault((study.backend_of(scenario), study.base_url_of(scenario)), []).append(scenario.model)
    servers = await asyncio.gather(*(
        _server(kind, url, models, api_key, (logs or {}).get(url)) if kind != "embedded" and url else
        _embedded(models, models_dir or paths.MODELS_DIR, engine_url, engine_key)
        for (kind, url), models in by_server.items()))
    return Facts(moment=moment, taken_at=datetime.now(UTC).isoformat(timespec="seconds"), servers=list(servers),
                 gpu=gpu_facts(server_pids(study)), host=host_facts())


def collect(study: StudySpec, moment: Moment = "before", api_key: str | None = None) -> Facts:
    """`gather` for callers outside an event loop (the CLI)."""
    return asyncio.run(gather(study, moment, api_key))


async def _pull_probes(study: StudySpec, facts: Facts, api_key: str | None) -> dict[str, tuple[str | None, int | None]]:
    """For a study that may pull: ask each server that can pull for the models it lacks, up to the manifest."""
    probes: dict[str, tuple[str | None, int | None]] = {}
    if not study.prepare.pull:
        return probes
    for server in facts.servers:
        if server.base_url is None or not capabilities(server.kind).pull or not server.reachable \
                or not server.missing:
            continue
        backend = make_backend(server.kind, server.base_url, timeouts=Timeouts(connect_s=5.0), api_key=api_key)
        async with backend.client() as client:
            for model in server.missing:
                try:
                    probes[model] = await backend.pull_probe(client, model)
                except (httpx.HTTPError, ServerError, ValueError):
                    continue  # unknown: the run's own pull will say
    return probes


async def check_study(study: StudySpec, api_key: str | None = None, facts: Facts | None = None,
                      moment: Moment = "check", logs: Mapping[str, Path] | None = None) -> CheckResult:
    """Gather the servers' facts (unless given; `logs` as `gather`'s), probe the tags a pull would need, and
    evaluate every rule."""
    facts = facts or await gather(study, moment, api_key, logs=logs)
    plan = Plan(study, facts, await _pull_probes(study, facts, api_key))
    return CheckResult(evaluate(plan), facts, plan.budget)


def run_check(study: StudySpec, api_key: str | None = None, moment: Moment = "check") -> CheckResult:
    """`check_study` for callers outside an event loop (the CLI; `moment="before"` ahead of a run)."""
    return asyncio.run(check_study(study, api_key, moment=moment))
