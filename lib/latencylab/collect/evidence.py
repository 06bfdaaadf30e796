"""What each sample records besides its times: the model's state when the request arrived (cold, reload, warm)
from the residency probes and the server's load time, the phase, where the model sat (size_vram, offloaded
layers, the engine's memory), the GPU's peaks while it ran, and when it was due."""

from __future__ import annotations

import time
from typing import Any

from latencylab.collect import gpu
from latencylab.collect.engine import Engine
from latencylab.collect.servers import Target
from latencylab.core.sample import Sample
from latencylab.plan.check import OLLAMA_KEEP_ALIVE, ollama_default_num_ctx
from latencylab.plan.study import ScenarioSpec, StudySpec
from latencylab.plan.workload import PlannedRequest

# A server-reported load shorter than this is a resident model's bookkeeping, not a reload (warm
# Ollama requests report a few ms of load_duration).
RELOAD_EVIDENCE_MS = 20.0


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
    """llama-server reports no load time: TTFT minus prompt processing. The first token is sampled from the
    prompt's own logits (tools/server ends `prompt_ms` there), so no decode step comes before it."""
    if sample.load_ms is not None or not sample.ok:
        return
    if sample.state == "warm":
        sample.load_ms, sample.load_ms_source = 0.0, "probe"
    elif sample.state in ("cold", "reload") and None not in (sample.ttft_ms, sample.prompt_eval_ms):
        sample.load_ms = max(0.0, sample.ttft_ms - sample.prompt_eval_ms)
        sample.load_ms_source = "derived"


class Evidence:
    """The annotations of one run's samples, with what they remember from one request to the next (the options a
    model was loaded with, which scenarios were measured, when the last request ended, the GPU sampler)."""

    def __init__(self, study: StudySpec, run_id: str, engine: Engine | None) -> None:
        self.study, self.run_id, self.engine = study, run_id, engine
        self.gpu = gpu.GpuSampler()
        self.gpu_index: int | None = None  # the GPU the server runs on, once NVML can tell
        self.measured: set[str] = set()  # scenarios whose first measured request has been sent
        self.loaded_with: dict[str, dict[str, Any]] = {}  # model id → runner options of its last request
        self.last_end: float | None = None

    def restore(self, sample: dict[str, Any]) -> None:
        """Take up a finished sample of a resumed run."""
        if not sample.get("warmup"):
            self.measured.add(sample["scenario"])

    def preloaded(self, target: Target) -> None:
        """The scenario's model was loaded with its own runner options."""
        self.loaded_with[target.model] = target.runner_options

    def stamp(self, sample: Sample, planned: PlannedRequest, scheduled_at: float) -> None:
        sample.scheduled_at = scheduled_at
        sample.client_queue_ms = (sample.started_at - scheduled_at) * 1000
        closed = self.study.workload.mode == "closed" or planned.sweep_pass is not None
        sample.concurrency = planned.concurrency if closed else None
        sample.level, sample.sweep_pass = planned.level, planned.sweep_pass
        sample.offered_rate_per_s = planned.rate_per_s
        sample.session, sample.turn, sample.think_s = planned.session, planned.turn, planned.think_s

    def peaks(self, sample: Sample, start: float, end: float) -> None:
        """NVML's peak memory and utilisation on the server's GPU while the request was in flight."""
        if not self.gpu.available:
            return
        if self.gpu_index is None and self.engine is not None:
            self.gpu_index = gpu.gpu_of_processes(self.engine.pids())
        sample.gpu_index = self.gpu_index if self.gpu_index is not None else 0
        if (peak := self.gpu.peak(start, end, sample.gpu_index)) is not None:
            sample.gpu_mem_used_bytes, sample.gpu_util_pct = peak.mem_used_bytes, peak.util_pct

    def _num_ctx(self, s: ScenarioSpec, sample: Sample) -> int | None:
        """The context the request was served with, where known: what an Ollama server's residency probe reported
        (`/api/ps` `context_length`, v0.10.0 on: the context its runner was loaded with, num_ctx clamped to the
        trained one), else the scenario's num_ctx, the engine's context, the bundled Ollama's default (0.5.4
        reports none), or what another server's probe reported."""
        if sample.context_length and self.study.backend_of(s) == "ollama":
            return sample.context_length
        if isinstance(s.options.get("num_ctx"), int):
            return int(s.options["num_ctx"])
        if self.study.backend_of(s) == "embedded":
            return self.study.engine.ctx_size
        if self.study.on_bundled_ollama(s):
            return ollama_default_num_ctx("0.5.4", 0)  # the bundled server's version
        return sample.context_length

    def annotate(self, sample: Sample, planned: PlannedRequest, target: Target, before: Any, after: Any,
                  gap: float) -> None:
        s = target.scenario
        sample.run_id, sample.seq, sample.scenario = self.run_id, planned.seq, planned.scenario
        sample.warmup, sample.idle_gap_s, sample.prompt_index = planned.warmup, gap, planned.prompt_index
        sample.keep_alive = None if s.keep_alive is None else str(s.keep_alive)
        bundled = self.study.bundled_ollama
        if s.keep_alive is None and bundled is not None and self.study.on_bundled_ollama(s):  # ours: its default known
            sample.server_keep_alive = bundled.env().get("OLLAMA_KEEP_ALIVE", OLLAMA_KEEP_ALIVE)
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
        sample.num_ctx = self._num_ctx(s, sample)
        if self.engine is not None and self.study.backend_of(s) == "embedded":
            sample.server_rss_bytes = self.engine.rss_bytes(target.model)
            offload, sample.gpu_layers_source = self.engine.offload(target.model)
            if offload is not None:
                sample.gpu_layers, sample.gpu_layers_total = offload.layers, offload.total
                sample.gpu_share, sample.fits_in_vram = offload.share, offload.complete
                sample.gpu_share_source = "layers"
        sample.idle_before_s = None if self.last_end is None else max(0.0, sample.started_at - self.last_end)
        self.last_end = time.time()
