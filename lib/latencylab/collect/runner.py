"""Executes a run's plan: hands each load strategy (`strategies`) its part with `Collector.send`, which sends one
request with the cold protocol and preloads and the residency probes around it, and stores its sample the moment
it exists. When each request leaves is the strategy's; what a sample records besides its times is `evidence`'s;
where requests go, `servers`'."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pyarrow as pa
from tqdm.auto import tqdm

from latencylab.collect import gather, gpu, host, loops, scrape, servers, strategies
from latencylab.collect.engine import Engine
from latencylab.collect.engine.ollama import BundledOllama
from latencylab.collect.evidence import Evidence
from latencylab.collect.servers import Target
from latencylab.collect.workers import WorkerPool
from latencylab.core import words
from latencylab.core.errors import RequestInterrupted, RunError, RunStopped, ServerError, UsageError
from latencylab.core.sample import Sample
from latencylab.plan.study import StudySpec
from latencylab.plan.workload import PlannedRequest, RequestPlan, estimate_s, plan_levels, plan_requests, sweep_rates
from latencylab.runs import store
from latencylab.runs.store import RunWriter

RESTORED = ["seq", "scenario", "warmup", "ok", "sweep_pass", "started_at", "e2e_ms"]  # what a resume reads back
T = TypeVar("T")


class Collector:
    """One run in progress: sends the plan and writes each sample the moment it exists."""

    def __init__(self, study: StudySpec, targets: dict[str, Target], writer: RunWriter, run_id: str,
                 engine: Engine | None, on_sample: Callable[[Sample], None] | None, progress: bool,
                 lang: str, bundled: BundledOllama | None = None) -> None:
        self.study, self.targets, self.writer, self.run_id = study, targets, writer, run_id
        self.engine, self.bundled = engine, bundled
        self.hosts: dict[str, host.HostProbe | str] = {}  # each scenario's host probe, or why it has none
        self.lang = lang  # of the progress bar's words
        self.on_sample = on_sample
        self.evidence = Evidence(study, run_id, engine)
        self.started: set[str] = set()  # scenarios whose first request has been sent
        self.preparing: dict[str, asyncio.Lock] = {}  # scenario → held while it unloads or preloads
        self.to_preload_again: set[str] = set()  # preloading scenarios a resume takes up mid-way
        # a rate sweep's passes, by scenario and pass: (response time, end) of each measured request that ended well
        self.passes: dict[tuple[str, str], list[tuple[float, float]]] = {}
        self.progress = progress
        self.pool: WorkerPool | None = None  # worker processes that send the timed requests, when the study asks
        self.scraper: scrape.Scraper | None = None  # the server's own metrics, where it publishes them
        self.gc = loops.HeldGc()  # no collection while requests are in flight, but at quiet points or past a budget
        self.bar = tqdm(total=0, desc=run_id, unit=words.text("progress_unit", lang), disable=not progress)

    def restore(self, done: pa.Table) -> None:
        """Take up what a resumed run had finished (`RESTORED` of its samples): which scenarios started, which
        were measured; those with `preload` load their model again before their next request (the server may
        have restarted)."""
        for batch in done.sort_by("seq").to_batches():  # a batch of dicts at a time, however long the run
            for sample in batch.to_pylist():
                self.started.add(sample["scenario"])
                self.evidence.restore(sample)
                self._keep_pass(sample["scenario"], sample["sweep_pass"], bool(sample["warmup"]), bool(sample["ok"]),
                                sample["started_at"], sample["e2e_ms"])
        self.to_preload_again = {name for name in self.started if self.targets[name].scenario.preload}
        self.bar.update(done.num_rows)

    async def prepare(self) -> None:
        """Pull what a server lacks (when the study asks and the server can), with a progress bar per model; then
        find each server's processes and model files for the host evidence."""
        if self.study.prepare.pull:
            for target in self.targets.values():
                if target.backend.capabilities.pull:
                    assert target.client is not None
                    await target.backend.ensure_model(target.client, target.model, pull=True)
        self.hosts = await host.probes(self.study, self.targets, self.engine, self.bundled)

    async def send(self, planned: PlannedRequest, scheduled_at: float | None = None,
                   history: list[dict[str, str]] | None = None) -> Sample:
        """Send one request; `scheduled_at` is when it was due (open loop), else the moment it is ready; `history`:
        a conversation's messages before this turn. Returns its sample."""
        target = self.targets[planned.scenario]
        backend, client, s = target.backend, target.client, target.scenario
        assert client is not None
        # Concurrent workers wait here while the scenario's first request unloads or preloads: sent meanwhile,
        # theirs would arrive during that load (seen on the real Ollama: "cold", with the load inside them).
        async with self.preparing.setdefault(planned.scenario, asyncio.Lock()):
            first_of_scenario = planned.scenario not in self.started
            self.started.add(planned.scenario)
            if self.study.cold_protocol == "unload_before_each":
                await backend.unload(client, target.model)
                await backend.wait_resident(client, target.model, False)
            elif self.study.cold_protocol == "first_only" and first_of_scenario:
                await self._cold_start(target)
            if s.preload and self.study.cold_protocol != "unload_before_each" and (
                first_of_scenario or planned.scenario in self.to_preload_again
            ):
                self.to_preload_again.discard(planned.scenario)
                await self._preload(target)
        gap = self.study.idle_gap_of(s) if scheduled_at is None else 0.0  # an open loop has its own arrivals
        if gap:
            await asyncio.sleep(gap)
        probe = backend.capabilities.residency
        before = await backend.residency(client, target.model) if probe else None
        on_host = self.hosts.get(planned.scenario)
        # the host's snapshots: before t0 and after the last byte, never inside the timed window
        host_before = None
        if isinstance(on_host, host.HostProbe):
            host_before = on_host.snapshot(before=True)
            # Block a moment, so that the timed window starts as a freshly woken task, not one that has just spent
            # its slice on the snapshot (on a busy machine the scheduler would then preempt it more likely in it).
            await asyncio.sleep(host.SETTLE_S)
        scheduled_at = time.time() if scheduled_at is None else scheduled_at
        window_start = time.monotonic()
        try:
            request = servers.request_for(self.study, target, planned, history)
            with self.scraper.sending(planned.scenario) if self.scraper is not None else contextlib.nullcontext():
                if self.pool is not None:
                    sample = await self.pool.measure(planned.scenario, request)
                else:
                    sample = await backend.measure(client, request)
        except RequestInterrupted as stop:  # kept with the times it reached; a resume sends it again
            self.evidence.peaks(stop.sample, window_start, time.monotonic())
            self.evidence.stamp(stop.sample, planned, scheduled_at)
            self.evidence.annotate(stop.sample, planned, target, before, None, gap)
            self.writer.append(stop.sample)
            raise
        self.evidence.peaks(sample, window_start, time.monotonic())
        if isinstance(on_host, host.HostProbe) and host_before is not None:
            on_host.fill(sample, host_before, on_host.snapshot(before=False))
        elif isinstance(on_host, str):
            sample.host = on_host
        self.evidence.stamp(sample, planned, scheduled_at)
        after = await backend.residency(client, target.model) if probe else None
        self.evidence.annotate(sample, planned, target, before, after, gap)
        self.writer.append(sample)
        self.gc.check_budget()
        self._keep_pass(planned.scenario, planned.sweep_pass, planned.warmup, sample.ok, sample.started_at,
                        sample.e2e_ms)
        self.bar.update(1)
        self.bar.set_postfix_str(_postfix(sample, self.lang), refresh=False)  # drawn at tqdm's own pace, not per sample
        if self.on_sample:
            self.on_sample(sample)
        return sample

    def _keep_pass(self, scenario: str, sweep_pass: str | None, warmup: bool, ok: bool, started_at: float | None,
                   e2e_ms: float | None) -> None:
        if sweep_pass and not warmup and ok and started_at is not None and e2e_ms is not None:
            self.passes.setdefault((scenario, sweep_pass), []).append((e2e_ms / 1000, started_at + e2e_ms / 1000))

    def found_rates(self, plan: RequestPlan, known: dict[str, list[float]]) -> dict[str, list[float]]:
        """The rates of each scenario whose sweep passes `plan` ended with (its rates not known yet)."""
        found = {}
        for name in dict.fromkeys(p.scenario for p in plan if p.sweep_pass == "throughput"):
            if name in known:
                continue
            try:
                found[name] = sweep_rates([e2e for e2e, _ in self.passes.get((name, "synchronous"), [])],
                                          [end for _, end in self.passes.get((name, "throughput"), [])],
                                          self.study.workload.sweep_rates)
            except ValueError as exc:
                raise RunStopped(f"the rate sweep of scenario {name!r} found no rates: {exc}") from None
        return found

    async def _cold_start(self, target: Target) -> None:
        """Unload every model of the study on the scenario's server, so its first request starts from nothing
        resident (a blocked order then never carries one scenario's model, or its eviction, into the next)."""
        same_server = {t.model: t for t in self.targets.values()
                       if t.backend.base_url == target.backend.base_url and t.client is not None}
        for other in same_server.values():
            if other is target or await other.backend.resident(other.client, other.model) is not False:
                await other.backend.unload(other.client, other.model)
                await other.backend.wait_resident(other.client, other.model, False)

    async def _preload(self, target: Target) -> None:
        """The seed's step 2: load the model with its own keep_alive (and options) before measuring."""
        assert target.client is not None
        await target.backend.load(target.client, target.model, keep_alive=target.scenario.keep_alive,
                                  options=target.scenario.options or None)
        await target.backend.wait_resident(target.client, target.model, True)
        self.evidence.preloaded(target)

    async def run(self, plan: RequestPlan) -> None:
        """Send `plan`, one strategy after the other (`strategies.phases`), collecting garbage between them: each
        strategy sends its part through `send` at the moments it owns."""
        self.bar.total = self.bar.n + len(plan)
        self.bar.refresh()
        self.evidence.gpu.start()
        try:
            with self.gc.hold():
                for strategy in strategies.phases(plan, self.study):
                    first = strategy.plan[0]
                    if first.level is not None:  # a rate sweep's level: a progress bar of its own
                        self.bar.close()
                        label = first.sweep_pass or f"{first.rate_per_s:g}/s"
                        self.bar = tqdm(total=len(strategy.plan), desc=f"{first.scenario} {label}",
                                        unit=words.text("progress_unit", self.lang), disable=not self.progress)
                    await strategy.run(self.send)
                    self.gc.quiet_point()
        finally:
            self.evidence.gpu.stop()
            self.bar.close()
            self.writer.update(gc_collections=self.gc.counts())


def create_run(study: StudySpec, study_as_written: dict[str, Any] | None = None, run_id: str | None = None) -> str:
    """Create the run once: its folder, the resolved study, the plan's size, status `prepared` and the
    server facts known before sending. Returns the run id; `collect(run_id)` then runs it."""
    run_id = run_id or store.free_run_id(study.name)
    store.refuse_existing(run_id)
    facts = servers.server_facts(study, run_id)
    store.create_run(run_id, study=study, study_as_written=study_as_written or study.model_dump(mode="json"),
                     planned_requests=len(plan_requests(study, run_id)), server=facts,
                     gpus=[dataclasses.asdict(d) for d in gpu.devices()], host=gather.host_facts())
    return run_id


async def collect(run_id: str, *, on_sample: Callable[[Sample], None] | None = None, progress: bool = True,
                  ollama: BundledOllama | None = None, lang: str | None = None) -> str:
    """Send the run's plan, new or stopped alike: every request without a finished sample, in plan order.

    The one entry point that collects (the CLI and the collect notebook call it); while it runs, this
    process holds the run's lock, so nothing else writes the run. Samples are on disk as soon as they exist.
    What it prints is in `lang` (default: the study's).
    """
    writer = RunWriter(run_id)  # RunLocked while another process writes it
    meta = writer.meta
    try:
        if meta.status == "complete":
            raise RunError(f"run {run_id} is complete: there is nothing to resume")
        if meta.study is None:
            raise RunError(f"run {run_id} has no resolved study in its run.json: it cannot be run again")
        done = store.finished(writer.samples_path, RESTORED)
    except UsageError:
        writer.release()  # status unchanged: this was no attempt to run
        raise
    study = meta.study
    sent = set(done.column("seq").to_pylist())
    rates: dict[str, list[float]] = dict(getattr(meta, "sweep_rates", None) or {})
    plan = plan_requests(study, run_id, rates).without(sent)
    if meta.status == "prepared":
        writer.update(status="running")
    else:
        resume = store.Resume(at=store.utc_now(), samples_kept=done.num_rows, next_seq=plan[0].seq if plan else None,
                              engine_restarted=study.uses_engine or study.uses_bundled_ollama)
        writer.update(status="running", resumes=[*meta.resumes, resume])
    writer.update(event_loop=loops.running_loop_name())  # uvloop or asyncio: where the stamps were taken
    status = "failed"
    try:
        with servers.engine_for(study, run_id) as engine, servers.bundled_ollama_for(study, run_id, ollama) as bundled:
            if engine is not None:
                writer.update(server={**writer.meta.server, "command": engine.command()})
            targets = servers.targets(study, engine, bundled)
            router = engine.process.pid if engine is not None and engine.process is not None else None
            async with servers.clients(targets, study), servers.pool(targets, study) as pool, \
                    scrape.during(study, targets, router, run_id) as (scraper, scraped):
                writer.update(server_metrics=scraped)
                collector = Collector(study, targets, writer, run_id, engine, on_sample, progress, lang or study.lang,
                                      bundled)
                collector.pool, collector.scraper = pool, scraper
                collector.restore(done)
                await collector.prepare()
                while plan:  # a rate sweep's plan grows as its passes find each scenario's rates
                    _say_plan(study, plan, rates, collector.bar, collector.lang)
                    await collector.run(plan)
                    found = collector.found_rates(plan, rates)
                    if not found:
                        break
                    sent |= {p.seq for p in plan}
                    rates.update(found)
                    writer.update(sweep_rates=rates)
                    plan = plan_requests(study, run_id, rates).without(sent)
        status = "complete"
    except (KeyboardInterrupt, asyncio.CancelledError):
        status = "interrupted"
        raise
    except ServerError as exc:
        raise RunStopped(f"run {run_id} stopped: {exc}") from exc
    finally:
        writer.close(status)
    return run_id


def _say_plan(study: StudySpec, plan: RequestPlan, rates: dict[str, list[float]], bar: tqdm, lang: str) -> None:
    """Before a rate sweep's levels start: each level, and how long they take at their rates."""
    levels = plan_levels(plan)
    if not levels:
        return
    parts = [words.text("progress_plan_level", lang, scenario=name, count=count,
                        step=words.text(f"level_{sweep_pass}", lang) if sweep_pass else f"{rate:g}/s")
             for name, _, sweep_pass, rate, count in levels]
    seconds = estimate_s(study, plan)
    took = words.text("progress_plan_took", lang, seconds=f"{seconds:.0f}") if seconds else ""
    later = any(p.sweep_pass == "throughput" and p.scenario not in rates for p in plan)
    w = study.workload
    each = (words.text("progress_plan_each", lang, level_s=f"{w.level_duration_s:g}",
                       total_s=f"{w.sweep_rates * w.level_duration_s:g}") if w.level_duration_s
            else words.text("progress_plan_each_later", lang))
    then = words.text("progress_plan_then", lang, rates=w.sweep_rates, each=each) if later else ""
    bar.write(words.text("progress_plan", lang, levels=", ".join(parts), took=took, then=then), file=sys.stderr)


def _postfix(sample: Sample, lang: str) -> str:
    if not sample.ok:
        return f"{sample.scenario}: {sample.error_kind}"
    return words.text("progress_sample", lang, scenario=sample.scenario, ttft_ms=f"{sample.ttft_ms or 0:.0f}",
                      state=words.text(f"state_{sample.state}", lang))


def on_own_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` (a collection) on an event loop of its own, where Ctrl-C and SIGTERM stop it the same way
    (requests in flight kept as `interrupted` samples) and end in KeyboardInterrupt."""
    async def main() -> T:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        assert task is not None
        on_term = signal.getsignal(signal.SIGTERM)
        in_main_thread = threading.current_thread() is threading.main_thread()
        if in_main_thread:
            signal.signal(signal.SIGTERM, lambda signum, frame: loop.call_soon_threadsafe(task.cancel, "SIGTERM"))
        try:
            return await coro
        finally:
            if in_main_thread:
                signal.signal(signal.SIGTERM, on_term)

    try:
        return loops.run(main())
    except asyncio.CancelledError:  # SIGTERM (Ctrl-C already ends asyncio.run in KeyboardInterrupt)
        raise KeyboardInterrupt("SIGTERM") from None


def run(run_id: str, **kwargs: Any) -> str:
    """`collect` alone (no check, no facts) on an event loop of its own; `workflow.run` is the whole step."""
    return on_own_loop(collect(run_id, **kwargs))


def run_study(study: StudySpec, study_as_written: dict[str, Any] | None = None, *, run_id: str | None = None,
              **kwargs: Any) -> str:
    """Create a run of `study` and collect it, without the check and the server facts (tests and scripts that
    measure a server on purpose broken; `workflow` makes a run the way the CLI and the notebook do)."""
    return run(create_run(study, study_as_written, run_id), **kwargs)
