"""The request plan of a study: which scenario sends which prompt, in which order."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from latencylab.plan.study import StudySpec
from latencylab.plan.trace import read_trace, trace_prompt

# Short questions and longer tasks, so that prompt processing is part of what is measured.
BUILTIN_PROMPTS: tuple[str, ...] = (
    "What is the capital of France?",
    "Name three primary colours.",
    "Explain in one sentence what a CPU cache is.",
    "Write a haiku about waiting for a slow server.",
    "Summarise the following text in two sentences. Latency is the time between a request and the "
    "first sign of its answer. For a language model server it includes queueing, loading the model "
    "into memory if it is not resident, processing the prompt, and generating the first token. Each "
    "of these can dominate: loading when the model was evicted, prompt processing when the prompt is "
    "long, queueing when many users share one server.",
    "You are reviewing a deployment plan. The service runs a small language model on a laptop GPU "
    "with 3 GB of memory. Users complain that the first answer of the morning takes almost a minute, "
    "while later answers are quick. List the likely causes and one fix for each, briefly.",
)


@dataclass(frozen=True)
class PlannedRequest:
    """One request of the plan; `seq` is its position in the run."""

    seq: int
    scenario: str
    prompt: str
    warmup: bool
    concurrency: int = 1
    level: int | None = None  # a rate sweep's level, per scenario, in the order run
    rate_per_s: float | None = None  # that level's mean arrival rate (open loop)
    sweep_pass: str | None = None  # "synchronous" or "throughput": the passes that find a sweep's rates
    session: int | None = None  # a conversation's session, per scenario; `prompt` is its user turn
    turn: int | None = None  # the turn in that session, 0 first
    think_s: float | None = None  # the pause after the previous turn's answer
    due_s: float | None = None  # a replayed trace's arrival, in seconds after the replay starts
    max_tokens: int | None = None  # the answer's length where the request sets its own (a trace's output_length)


SWEEP_PASSES = ("synchronous", "throughput")
SWEEP_HIGH = 1.2  # a sweep's top rate, × the throughput pass's: the knee gets a level on each side
SWEEP_LOW = 0.5  # its lowest rate: the synchronous rate, or this share of the throughput when lower


def plan_requests(study: StudySpec, run_id: str, rates: dict[str, list[float]] | None = None) -> list[PlannedRequest]:
    """Warm-ups first, then the measured requests: scenarios interleaved, in blocks, or shuffled (seeded).

    A concurrency sweep repeats that plan once per level. A rate sweep (`rate_per_s` a list, or `sweep`) runs
    each scenario in turn, level after level, each level its warm-ups then its measured requests; a `sweep`
    first runs its synchronous and throughput passes, and its rates are those found from them (`rates`, by
    scenario): the plan stops after the passes of the first scenario whose rates are not known yet.
    """
    workload = study.workload
    if workload.rate_levels is not None:
        return _rate_plan(study, run_id, rates or {})
    if workload.sessions is not None:
        return _session_plan(study, run_id)
    if workload.trace is not None:
        return _trace_plan(study)
    names = [s.name for s in study.scenarios]
    slots: list[tuple[str, bool]] = []
    if workload.order == "blocked":
        for name in names:
            slots += [(name, True)] * workload.warmup + [(name, False)] * workload.requests
    else:
        for warmup, count in ((True, workload.warmup), (False, workload.requests)):
            block = [(name, warmup) for _ in range(count) for name in names]
            if workload.order == "random":
                random.Random(workload.order_seed).shuffle(block)
            slots += block
    plan: list[PlannedRequest] = []
    for level in workload.levels:
        for name, warmup in slots:
            plan.append(PlannedRequest(seq=len(plan), scenario=name, prompt=_prompt(study, run_id, len(plan)),
                                       warmup=warmup, concurrency=level))
    return plan


def _prompt(study: StudySpec, run_id: str, seq: int) -> str:
    workload = study.workload
    prompts = BUILTIN_PROMPTS if workload.prompts == "builtin" else tuple(workload.prompts)
    prompt = prompts[seq % len(prompts)]
    if workload.unique_prefix:
        # A unique first line defeats prefix caching, which would flatter warm requests.
        prompt = f"Request {seq} of run {run_id}.\n{prompt}"
    return prompt


def _session_plan(study: StudySpec, run_id: str) -> list[PlannedRequest]:
    """Each scenario's sessions in turn, each session's turns in order: the user turns cycle through the prompts
    (from the session's own place, so that sessions differ), the think times drawn per session (seeded)."""
    sessions = study.workload.sessions
    assert sessions is not None
    prompts = BUILTIN_PROMPTS if study.workload.prompts == "builtin" else tuple(study.workload.prompts)
    plan: list[PlannedRequest] = []
    for scenario in study.scenarios:
        for session in range(sessions.count):
            draw = random.Random(f"{sessions.think_seed}:{scenario.name}:{session}")
            for turn in range(sessions.turns):
                prompt = prompts[(session + turn) % len(prompts)]
                if turn == 0 and study.workload.unique_prefix:  # sessions share the system prompt, not more
                    prompt = f"Session {session} of run {run_id}.\n{prompt}"
                think = sessions.think_time_s
                think_s = None if turn == 0 else draw.uniform(*think) if isinstance(think, tuple) else float(think)
                plan.append(PlannedRequest(seq=len(plan), scenario=scenario.name, prompt=prompt, warmup=False,
                                           concurrency=sessions.concurrent, session=session, turn=turn,
                                           think_s=think_s))
    return plan


def _trace_plan(study: StudySpec) -> list[PlannedRequest]:
    """The trace's requests for each scenario in turn, each due at its timestamp (× `time_scale`), its prompt made
    of its hash ids' blocks and its answer `output_length` tokens long."""
    trace = study.workload.trace
    assert trace is not None
    requests = read_trace(Path(trace.file), trace.max_requests)
    start = requests[0].timestamp_ms
    plan: list[PlannedRequest] = []
    for scenario in study.scenarios:
        for index, r in enumerate(requests):
            plan.append(PlannedRequest(seq=len(plan), scenario=scenario.name, warmup=False,
                                       prompt=trace_prompt(r, trace.block_tokens, index),
                                       due_s=(r.timestamp_ms - start) / 1000 * trace.time_scale,
                                       max_tokens=r.output_length))
    return plan


def level_requests(study: StudySpec, rate: float) -> int:
    """Measured requests of one rate level: `requests`, or rate × `level_duration_s` when that is set."""
    duration = study.workload.level_duration_s
    return study.workload.requests if duration is None else max(1, round(rate * duration))


def _rate_plan(study: StudySpec, run_id: str, rates: dict[str, list[float]]) -> list[PlannedRequest]:
    workload = study.workload
    plan: list[PlannedRequest] = []

    def add(name: str, level: int, count: int, warmup: bool, **how: object) -> None:
        for _ in range(count):
            plan.append(PlannedRequest(seq=len(plan), scenario=name, prompt=_prompt(study, run_id, len(plan)),
                                       warmup=warmup, level=level, **how))  # type: ignore[arg-type]

    for scenario in study.scenarios:
        name, level = scenario.name, 0
        if workload.rate_levels == "sweep":
            for sweep_pass in SWEEP_PASSES:  # the throughput pass sends all its requests at once
                concurrency = 1 if sweep_pass == "synchronous" else workload.warmup + workload.requests
                add(name, level, workload.warmup, True, concurrency=concurrency, sweep_pass=sweep_pass)
                add(name, level, workload.requests, False, concurrency=concurrency, sweep_pass=sweep_pass)
                level += 1
            if name not in rates:
                return plan  # its rates come from these passes
        for rate in rates[name] if workload.rate_levels == "sweep" else workload.rate_levels or []:
            add(name, level, workload.warmup, True, rate_per_s=rate)
            add(name, level, level_requests(study, rate), False, rate_per_s=rate)
            level += 1
    return plan


def sweep_rates(synchronous_e2e_s: Sequence[float], throughput_ends_s: Sequence[float], count: int) -> list[float]:
    """A sweep's rates from its two passes, as GuideLLM's sweep finds its range, stretched to show the knee.

    The synchronous rate is 1 / the mean response time of requests sent one at a time; the throughput is
    (n − 1) / the span of the throughput pass's completions (all its requests sent at once). The rates run
    evenly from the lower of the synchronous rate and SWEEP_LOW × the throughput to SWEEP_HIGH × the throughput,
    so that a level lies past the capacity. Raises ValueError when a pass gave too little to read.
    """
    if not synchronous_e2e_s or sum(synchronous_e2e_s) <= 0:
        raise ValueError("the synchronous pass finished no request")
    ends = sorted(throughput_ends_s)
    if len(ends) < 2 or ends[-1] <= ends[0]:
        raise ValueError("the throughput pass finished fewer than two requests")
    synchronous = len(synchronous_e2e_s) / sum(synchronous_e2e_s)
    throughput = (len(ends) - 1) / (ends[-1] - ends[0])
    low, high = min(synchronous, SWEEP_LOW * throughput), SWEEP_HIGH * throughput
    return [round(low + (high - low) * k / (count - 1), 3) for k in range(count)]


def estimate_s(study: StudySpec, plan: Sequence[PlannedRequest], service_s: float | None = None) -> float | None:
    """How long sending `plan` takes, at least: each rate level's requests at its rate, closed-loop requests at
    `service_s` each (divided among the concurrency) when a response time is known. None when nothing is timed."""
    total, known = 0.0, False
    for p in plan:
        if p.rate_per_s:
            total, known = total + 1 / p.rate_per_s, True
        elif service_s is not None:
            total, known = total + service_s / max(1, p.concurrency), True
    return total if known else None


def plan_levels(plan: Sequence[PlannedRequest]) -> list[tuple[str, int, str | None, float | None, int]]:
    """The levels of a rate plan in order: (scenario, level, sweep pass, rate, requests with warm-ups)."""
    found: dict[tuple[str, int], list[PlannedRequest]] = {}
    for p in plan:
        if p.level is not None:
            found.setdefault((p.scenario, p.level), []).append(p)
    return [(name, level, group[0].sweep_pass, group[0].rate_per_s, len(group))
            for (name, level), group in found.items()]


