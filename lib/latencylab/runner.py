"""Executes a study: engine, preparation, cold protocol, probes, requests; every sample stored at once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from tqdm.auto import tqdm

from . import embedded, loops, paths, preflight
from .backends import Backend, GenerationRequest, Timeouts, make_backend
from .backends.base import ServerError
from .backends.ollama import OllamaBackend
from .engine import Engine, prepare_models
from .gpu import GpuMonitor
from .sample import Sample
from .store import RunWriter, free_run_id, read_meta, read_samples
from .study import ScenarioSpec, StudySpec, load_study, parse_study, with_base_url
from .workload import PlannedRequest, plan_requests

API_KEY_ENV = "LATENCYLAB_API_KEY"  # for OpenAI-compatible servers that need a key; never stored
# Ollama reloads a resident model when one of these differs from the options it was loaded with.
RUNNER_OPTIONS = ("num_ctx", "num_batch", "num_gpu", "num_thread", "main_gpu", "use_mmap")
# A server-reported load shorter than this is a resident model's bookkeeping, not a reload (warm
# Ollama requests report a few ms of load_duration).
RELOAD_EVIDENCE_MS = 20.0
WORKER_STAGGER_S = 0.002  # between the first requests of closed-loop workers


@dataclass
class Target:
    """Where one scenario's requests go, and under which model id the server knows its model."""

    scenario: ScenarioSpec
    backend: Backend
    model: str
    client: httpx.AsyncClient | None = None
    runner_options: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def _engine_for(study: StudySpec, run_dir: Path) -> Iterator[Engine | None]:
    """The embedded engine with one preset per scenario, stopped on every exit path."""
    if not study.uses_engine:
        yield None
        return
    prepare_models()
    with Engine(log_path=run_dir / "llama-server.log", models_max=study.engine.models_max,
                ctx_size=study.engine.ctx_size, threads=study.engine.threads,
                presets=embedded.presets(study, paths.MODELS_DIR)) as engine:
        yield engine


def _targets(study: StudySpec, engine: Engine | None) -> dict[str, Target]:
    timeouts = Timeouts(**study.timeouts.model_dump())
    api_key = os.environ.get(API_KEY_ENV)
    targets = {}
    for s in study.scenarios:
        kind = study.backend_of(s)
        if kind == "embedded":
            assert engine is not None
            backend = make_backend("llamacpp", engine.base_url, timeouts=timeouts,
                                   connection=study.workload.connection)
            model = embedded.served_model_id(s)
        else:
            extra = {"endpoint": s.endpoint} if kind == "ollama" else {}
            backend = make_backend(kind, study.base_url_of(s) or "", timeouts=timeouts, api_key=api_key,
                                   connection=study.workload.connection, **extra)
            model = s.model
        runner_options = {k: s.options[k] for k in RUNNER_OPTIONS if k in s.options}
        targets[s.name] = Target(s, backend, model, runner_options=runner_options)
    return targets


def _request(study: StudySpec, target: Target, planned: PlannedRequest) -> GenerationRequest:
    w, s = study.workload, target.scenario
    # The engine applies runner options and keep_alive through its presets, not per request.
    on_engine = study.backend_of(s) == "embedded"
    options = {k: v for k, v in s.options.items() if not (on_engine and k in embedded.ENGINE_OPTIONS)}
    return GenerationRequest(
        model=target.model, prompt=planned.prompt, max_tokens=w.max_tokens, temperature=w.temperature,
        seed=w.seed, options=options, keep_alive=None if on_engine else s.keep_alive,
        cache_prompt=None if w.unique_prefix else True,
    )


def classify_state(resident_before: bool | None, options_changed: bool, load_ms: float | None) -> str:
    """cold / reload / warm / unknown, from the probe before the request and the server's load time."""
    if resident_before is None:
        return "unknown"
    if not resident_before:
        return "cold"
    if options_changed and (load_ms is None or load_ms >= RELOAD_EVIDENCE_MS):
        return "reload"
    return "warm"


def derive_load_ms(sample: Sample) -> None:
    """llama-server reports no load time: TTFT minus prompt processing and one token's generation."""
    if sample.load_ms is not None or not sample.ok:
        return
    if sample.state == "warm":
        sample.load_ms, sample.load_ms_source = 0.0, "probe"
    elif sample.state in ("cold", "reload") and None not in (sample.ttft_ms, sample.prompt_eval_ms, sample.eval_ms):
        first_token = sample.eval_ms / sample.output_tokens if sample.output_tokens else 0.0
        sample.load_ms = max(0.0, sample.ttft_ms - sample.prompt_eval_ms - first_token)
        sample.load_ms_source = "derived"


class Collector:
    """One run in progress: sends the plan and writes each sample the moment it exists."""

    def __init__(self, study: StudySpec, targets: dict[str, Target], writer: RunWriter, run_id: str,
                 engine: Engine | None, on_sample: Callable[[Sample], None] | None, progress: bool) -> None:
        self.study, self.targets, self.writer, self.run_id = study, targets, writer, run_id
        self.engine, self.on_sample = engine, on_sample
        self.gpu = GpuMonitor()
        self.started: set[str] = set()  # scenarios whose first request has been sent
        self.measured: set[str] = set()  # scenarios whose first measured request has been sent
        self.loaded_with: dict[str, dict[str, Any]] = {}  # model id → runner options of its last request
        self.last_end: float | None = None
        self.bar = tqdm(total=0, desc=study.name, unit="req", disable=not progress)

    def restore(self, done: list[dict[str, Any]]) -> None:
        """Take up what a resumed run had already sent (which scenarios started, which were measured)."""
        for sample in sorted(done, key=lambda s: s["seq"]):
            self.started.add(sample["scenario"])
            if not sample.get("warmup"):
                self.measured.add(sample["scenario"])
        self.bar.update(len(done))

    async def prepare(self) -> None:
        """Pull what an Ollama server lacks (when asked), with a progress bar per model."""
        if not self.study.prepare.pull:
            return
        for target in self.targets.values():
            if isinstance(target.backend, OllamaBackend):
                assert target.client is not None
                await target.backend.pull_missing(target.client, target.model)

    async def send(self, planned: PlannedRequest, scheduled_at: float | None = None) -> None:
        """Send one request; `scheduled_at` is when it was due (open loop), else the moment it is ready."""
        target = self.targets[planned.scenario]
        backend, client, s = target.backend, target.client, target.scenario
        assert client is not None
        first_of_scenario = planned.scenario not in self.started
        self.started.add(planned.scenario)
        if self.study.cold_protocol == "unload_before_each" or (
            self.study.cold_protocol == "first_only" and first_of_scenario
        ):
            await backend.unload(client, target.model)
            await backend.wait_resident(client, target.model, False)
        elif s.preload and first_of_scenario:
            await self._preload(target)
        gap = self.study.idle_gap_of(s) if scheduled_at is None else 0.0  # an open loop has its own arrivals
        if gap:
            await asyncio.sleep(gap)
        before = await backend.probe(client, target.model)
        scheduled_at = time.time() if scheduled_at is None else scheduled_at
        sample = await backend.measure(client, _request(self.study, target, planned))
        sample.scheduled_at = scheduled_at
        sample.client_queue_ms = (sample.started_at - scheduled_at) * 1000
        sample.concurrency = planned.concurrency if self.study.workload.mode == "closed" else None
        after = await backend.probe(client, target.model)
        self._annotate(sample, planned, target, before, after, gap)
        self.writer.append(sample)
        self.bar.update(1)
        self.bar.set_postfix_str(_postfix(sample), refresh=False)  # drawn at tqdm's own pace, not per sample
        if self.on_sample:
            self.on_sample(sample)

    async def _preload(self, target: Target) -> None:
        """The seed's step 2: load the model with its own keep_alive (and options) before measuring."""
        assert target.client is not None
        if isinstance(target.backend, OllamaBackend):
            await target.backend.load(target.client, target.model, target.scenario.keep_alive,
                                      target.scenario.options or None)
        else:
            await target.backend.load(target.client, target.model)
        await target.backend.wait_resident(target.client, target.model, True)
        self.loaded_with[target.model] = target.runner_options

    def _annotate(self, sample: Sample, planned: PlannedRequest, target: Target, before: Any, after: Any,
                  gap: float) -> None:
        s = target.scenario
        sample.run_id, sample.seq, sample.scenario = self.run_id, planned.seq, planned.scenario
        sample.warmup, sample.idle_gap_s = planned.warmup, gap
        sample.keep_alive = None if s.keep_alive is None else str(s.keep_alive)
        sample.resident_before = None if before is None else before.resident
        options_changed = target.model in self.loaded_with and self.loaded_with[target.model] != target.runner_options
        sample.state = classify_state(sample.resident_before, options_changed, sample.load_ms)
        self.loaded_with[target.model] = target.runner_options
        derive_load_ms(sample)
        if not planned.warmup and planned.scenario not in self.measured:
            sample.phase = "first"
            self.measured.add(planned.scenario)
        if after is not None:
            after.fill(sample)
        if self.engine is not None and self.study.backend_of(s) == "embedded":
            sample.server_rss_bytes = self.engine.rss_bytes(target.model)
            sample.gpu_layers = self.engine.gpu_layers(target.model)
        if (gpu := self.gpu.snapshot()) is not None:
            sample.gpu_mem_used_bytes, sample.gpu_util_pct = gpu.mem_used_bytes, gpu.util_pct
        sample.idle_before_s = None if self.last_end is None else max(0.0, sample.started_at - self.last_end)
        self.last_end = time.time()

    async def run(self, plan: list[PlannedRequest]) -> None:
        """Send `plan`: closed loop (each concurrency level in turn) or open loop (Poisson arrivals)."""
        self.bar.total = self.bar.n + len(plan)
        self.bar.refresh()
        try:
            if self.study.workload.mode == "open":
                await self._open_loop(plan)
            else:
                for level in dict.fromkeys(p.concurrency for p in plan):
                    await self._closed_loop([p for p in plan if p.concurrency == level], level)
        finally:
            self.bar.close()

    async def _closed_loop(self, plan: list[PlannedRequest], concurrency: int) -> None:
        """`concurrency` workers take the plan in order; each sends its next request when the last ends."""
        queue = iter(plan)

        async def worker(index: int) -> None:
            # Staggered starts: 256 connection set-ups at once would queue on the event loop, inside TTFB.
            await asyncio.sleep(index * WORKER_STAGGER_S)
            for planned in queue:  # shared iterator: each request is taken by one worker
                await self.send(planned)

        await asyncio.gather(*(worker(i) for i in range(concurrency)))

    async def _open_loop(self, plan: list[PlannedRequest]) -> None:
        """Requests arrive at `rate_per_s` on average (exponential gaps, seeded), whatever is in flight."""
        workload = self.study.workload
        assert workload.rate_per_s is not None
        arrivals = random.Random(workload.arrival_seed)
        loop = asyncio.get_running_loop()
        start_loop, start_wall, offset = loop.time(), time.time(), 0.0
        tasks = []
        for planned in plan:
            offset += arrivals.expovariate(workload.rate_per_s)
            await asyncio.sleep(max(0.0, start_loop + offset - loop.time()))
            tasks.append(asyncio.create_task(self.send(planned, scheduled_at=start_wall + offset)))
        await asyncio.gather(*tasks)


@contextlib.asynccontextmanager
async def _clients(targets: dict[str, Target], study: StudySpec) -> AsyncIterator[None]:
    """One HTTP client per scenario, its connection pool sized to the most requests ever in flight."""
    workload = study.workload
    in_flight = None if workload.mode == "open" else max(workload.levels) * 2  # a request and its probe
    async with contextlib.AsyncExitStack() as stack:
        for target in targets.values():
            target.client = await stack.enter_async_context(target.backend.client(max_connections=in_flight))
        yield


async def collect(
    study: StudySpec,
    raw_study: dict[str, Any] | None = None,
    *,
    run_id: str | None = None,
    on_sample: Callable[[Sample], None] | None = None,
    progress: bool = True,
    resume: bool = False,
) -> str:
    """Run `study` to completion and return its run id; samples are on disk as soon as they exist.

    With `resume`, continue run `run_id` where it stopped: same plan, the samples it has are kept.
    """
    run_id = run_id or free_run_id(study.name)
    plan = plan_requests(study, run_id)
    done: list[dict[str, Any]] = []
    if resume:
        done = read_samples(paths.run_dir(run_id) / "samples.jsonl")
    else:
        await preflight.check(study, os.environ.get(API_KEY_ENV))
    writer = RunWriter(run_id, study=raw_study or study.model_dump(mode="json"),
                       settings={"resolved": study.model_dump(mode="json"), "planned_requests": len(plan),
                                 "event_loop": loops.running_loop_name()},
                       resume=resume)
    status = "failed"
    try:
        with _engine_for(study, writer.dir) as engine:
            if engine is not None:
                writer.update(server={"kind": "embedded llama-server", "version": engine.version(),
                                      "command": engine.command(), "presets": engine.presets})
            targets = _targets(study, engine)
            async with _clients(targets, study):
                collector = Collector(study, targets, writer, run_id, engine, on_sample, progress)
                collector.restore(done)
                await collector.prepare()
                await collector.run([p for p in plan if p.seq not in {s["seq"] for s in done}])
        status = "complete"
    except (KeyboardInterrupt, asyncio.CancelledError):
        status = "interrupted"
        raise
    except ServerError as exc:
        raise RunError(f"run {run_id} stopped: {exc}") from exc
    finally:
        writer.close(status)
    return run_id


class RunError(RuntimeError):
    """A run that could not go on (a server that refused a load, unload or pull); samples are kept."""


def _postfix(sample: Sample) -> str:
    if not sample.ok:
        return f"{sample.scenario}: {sample.error_kind}"
    return f"{sample.scenario}: TTFT {sample.ttft_ms or 0:.0f} ms ({sample.state})"


def run_study(study: StudySpec, raw_study: dict[str, Any] | None = None, **kwargs: Any) -> str:
    """Synchronous `collect` for scripts, on uvloop where installed (in a notebook, `await collect(...)`)."""
    return loops.run(collect(study, raw_study, **kwargs))


def resumable(run_id: str) -> tuple[StudySpec, dict[str, Any]]:
    """The study of a run that stopped before the end, as it was resolved when the run started."""
    meta = read_meta(run_id)
    if meta.get("status") == "complete":
        raise RunError(f"run {run_id} is complete: there is nothing to resume")
    resolved = {k: v for k, v in meta["settings"]["resolved"].items() if k != "sweep"}  # already expanded
    return parse_study(resolved, f"{run_id}/run.json"), meta["study"]


async def collect_study(study: str, *, base_url: str = "", run_id: str = "", resume: bool = False,
                        progress: bool = True) -> str:
    """What the collect notebook does: load (or resume) a study, point it at `base_url`, run it."""
    for name, value, kind in (("study", study, str), ("base_url", base_url, str), ("run_id", run_id, str),
                              ("resume", resume, bool)):
        if not isinstance(value, kind):
            raise TypeError(f"parameter {name} must be a {kind.__name__}, got {value!r}")
    if resume:
        if not run_id:
            raise TypeError("parameter resume needs run_id: the run to continue")
        spec, raw = resumable(run_id)
    else:
        spec, raw = load_study(study)
    if base_url:
        spec = with_base_url(spec, base_url)
    return await collect(spec, raw, run_id=run_id or None, resume=resume, progress=progress)
