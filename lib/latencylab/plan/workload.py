"""The request plan of a study: which scenario sends which prompt, in which order."""

from __future__ import annotations

import random
from array import array
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import overload

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


@dataclass(frozen=True, slots=True)
class Prompts:
    """The prompts of a plan, taken in turn; with `run_id`, each begins with a line unique to its request.
    `per_scenario`: each scenario takes them from the first, so that scenarios differ by their settings and not
    by their prompts (else they run on across the run's requests)."""

    texts: tuple[str, ...]
    run_id: str | None = None
    per_scenario: bool = True

    def of(self, index: int, seq: int) -> str:
        """The `index`-th prompt (they cycle), for the request `seq`."""
        prompt = self.texts[index % len(self.texts)]
        # A unique first line defeats prefix caching, which would flatter warm requests.
        return prompt if self.run_id is None else f"Request {seq} of run {self.run_id}.\n{prompt}"


@dataclass(frozen=True, slots=True)
class PlannedRequest:
    """One request of the plan; `seq` is its position in the run. Made when asked for (`Plan`), its prompt too."""

    seq: int
    scenario: str
    prompts: Prompts = field(repr=False)
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
    # the prompt's place in the prompts: two scenarios' requests with the same index were sent the same prompt (the
    # pairs of a paired comparison); None: the seq's
    prompt_index: int | None = None

    @property
    def prompt(self) -> str:
        return self.prompts.of(self.seq if self.prompt_index is None else self.prompt_index, self.seq)


@dataclass(frozen=True, slots=True)
class Kind:
    """What the requests of one scenario, warm-up or not, at one level have in common."""

    scenario: str
    warmup: bool
    concurrency: int = 1
    level: int | None = None
    rate_per_s: float | None = None
    sweep_pass: str | None = None


class Plan(Sequence[PlannedRequest]):
    """A run's requests in the order sent, each `PlannedRequest` made when asked for: a plan holds 14 bytes a
    request (its seq, its kind and its prompt's index), so that a million of them are no million objects held
    while they are sent."""

    def __init__(self, prompts: Prompts, kinds: Sequence[Kind] = (), seqs: Iterable[int] = (),
                 kind_of: Iterable[int] = (), prompt_of: Iterable[int] = ()) -> None:
        self.prompts, self.kinds = prompts, list(kinds)  # each kind that some request of the plan has
        self._seqs, self._kind_of, self._prompt_of = array("q", seqs), array("H", kind_of), array("I", prompt_of)
        self._taken: Counter[str] = Counter()  # prompts each scenario has taken so far (`Prompts.per_scenario`)

    def extend(self, kinds: Sequence[Kind], slots: Sequence[int]) -> None:
        """One request per slot, of kind `kinds[slot]`, at the end, numbered on from the last."""
        index: dict[int, int] = {}
        for used in sorted(set(slots)):
            if kinds[used] not in self.kinds:
                self.kinds.append(kinds[used])
            index[used] = self.kinds.index(kinds[used])
        start = len(self._seqs)
        self._kind_of.extend(index[slot] for slot in slots)
        self._seqs.extend(range(start, len(self._kind_of)))
        if not self.prompts.per_scenario:
            self._prompt_of.extend(range(start, len(self._kind_of)))
            return
        # each request the next prompt of its own scenario, warm-ups included
        counters = {name: count(self._taken[name]) for name in {kinds[used].scenario for used in index}}
        take = {used: counters[kinds[used].scenario].__next__ for used in index}
        self._prompt_of.extend(take[slot]() for slot in slots)
        for name, counter in counters.items():
            self._taken[name] = next(counter)  # the next prompt it will take

    def where(self, keep: Callable[[Kind], bool]) -> Plan:
        """The requests whose kind `keep` accepts, in order."""
        wanted = {i for i, kind in enumerate(self.kinds) if keep(kind)}
        if len(wanted) == len(self.kinds):
            return self
        return self._subset(i for i, k in enumerate(self._kind_of) if k in wanted)

    def without(self, seqs: Collection[int]) -> Plan:
        """The requests whose seq is not in `seqs` (those a resumed run has finished), in order."""
        if not seqs:
            return self
        return self._subset(i for i, seq in enumerate(self._seqs) if seq not in seqs)

    def _subset(self, positions: Iterator[int]) -> Plan:
        chosen = Plan(self.prompts, self.kinds)
        for i in positions:
            chosen._seqs.append(self._seqs[i])
            chosen._kind_of.append(self._kind_of[i])
            chosen._prompt_of.append(self._prompt_of[i])
        used = list(dict.fromkeys(chosen._kind_of))  # only the kinds left, in the order they come
        renumber = array("H", [0] * len(self.kinds))
        for new, old in enumerate(used):
            renumber[old] = new
        return Plan(self.prompts, [self.kinds[k] for k in used], chosen._seqs, (renumber[k] for k in chosen._kind_of),
                    chosen._prompt_of)

    def __len__(self) -> int:
        return len(self._seqs)

    @overload
    def __getitem__(self, index: int) -> PlannedRequest: ...
    @overload
    def __getitem__(self, index: slice) -> Plan: ...
    def __getitem__(self, index: int | slice) -> PlannedRequest | Plan:
        if isinstance(index, slice):
            return self._subset(iter(range(len(self))[index]))
        kind = self.kinds[self._kind_of[index]]
        return PlannedRequest(self._seqs[index], kind.scenario, self.prompts, kind.warmup, kind.concurrency,
                              kind.level, kind.rate_per_s, kind.sweep_pass, prompt_index=self._prompt_of[index])

    def __iter__(self) -> Iterator[PlannedRequest]:
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        """The same requests in the same order (as two lists of them would be)."""
        return isinstance(other, Plan) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  (it grows: no hash, as a list has none)


def kind_of(planned: PlannedRequest) -> Kind:
    """What a request has in common with others of its scenario, warm-up or not, and level."""
    return Kind(planned.scenario, planned.warmup, planned.concurrency, planned.level, planned.rate_per_s,
                planned.sweep_pass)


class Listed(Sequence[PlannedRequest]):
    """A plan whose requests differ beyond their kind (a conversation's turns, a trace's arrivals and lengths): each
    request held as made, with `Plan`'s `kinds`, `where` and `without`. A plan of the study's size, not of a
    million requests."""

    def __init__(self, requests: Iterable[PlannedRequest]) -> None:
        self._requests = list(requests)
        self.kinds = list(dict.fromkeys(kind_of(p) for p in self._requests))

    def where(self, keep: Callable[[Kind], bool]) -> Listed:
        """The requests whose kind `keep` accepts, in order."""
        return Listed(p for p in self._requests if keep(kind_of(p)))

    def without(self, seqs: Collection[int]) -> Listed:
        """The requests whose seq is not in `seqs` (those a resumed run has finished), in order."""
        return Listed(p for p in self._requests if p.seq not in seqs) if seqs else self

    def __len__(self) -> int:
        return len(self._requests)

    @overload
    def __getitem__(self, index: int) -> PlannedRequest: ...
    @overload
    def __getitem__(self, index: slice) -> Listed: ...
    def __getitem__(self, index: int | slice) -> PlannedRequest | Listed:
        return Listed(self._requests[index]) if isinstance(index, slice) else self._requests[index]

    def __iter__(self) -> Iterator[PlannedRequest]:
        return iter(self._requests)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Listed) and self._requests == other._requests

    __hash__ = None  # type: ignore[assignment]


RequestPlan = Plan | Listed  # what `plan_requests` gives: a compact plan, or one of requests held as made


SWEEP_PASSES = ("synchronous", "throughput")
SWEEP_HIGH = 1.2  # a sweep's top rate, × the throughput pass's: the knee gets a level on each side
SWEEP_LOW = 0.5  # its lowest rate: the synchronous rate, or this share of the throughput when lower


def plan_requests(study: StudySpec, run_id: str, rates: dict[str, list[float]] | None = None) -> RequestPlan:
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
    # each slot of the order is an index into `slot_kinds` (scenario, warm-up): small ints, no objects made
    slot_kinds = [(s.name, warmup) for warmup in (True, False) for s in study.scenarios]
    scenarios = range(len(study.scenarios))
    slots: list[int] = []
    if workload.order == "blocked":
        for i in scenarios:
            slots += [i] * workload.warmup + [len(scenarios) + i] * workload.requests
    else:
        for first, count in ((0, workload.warmup), (len(scenarios), workload.requests)):
            block = [first + i for _ in range(count) for i in scenarios]
            if workload.order == "random":
                random.Random(workload.order_seed).shuffle(block)
            slots += block
    plan = Plan(_prompts(study, run_id))
    for level in workload.levels:
        plan.extend([Kind(name, warmup, concurrency=level) for name, warmup in slot_kinds], slots)
    return plan


def _prompts(study: StudySpec, run_id: str) -> Prompts:
    workload = study.workload
    texts = BUILTIN_PROMPTS if workload.prompts == "builtin" else tuple(workload.prompts)
    return Prompts(texts, run_id if workload.unique_prefix else None, workload.prompt_order == "same")


def _session_plan(study: StudySpec, run_id: str) -> Listed:
    """Each scenario's sessions (its own, else the workload's) in turn, each session's turns in order: the user turns
    cycle through the prompts (from the session's own place, so that sessions differ), the think times drawn per
    session (seeded)."""
    prompts = BUILTIN_PROMPTS if study.workload.prompts == "builtin" else tuple(study.workload.prompts)
    plan: list[PlannedRequest] = []
    for scenario in study.scenarios:
        sessions = study.sessions_of(scenario)
        assert sessions is not None
        for session in range(sessions.count):
            draw = random.Random(f"{sessions.think_seed}:{scenario.name}:{session}")
            for turn in range(sessions.turns):
                prompt = prompts[(session + turn) % len(prompts)]
                if turn == 0 and study.workload.unique_prefix:  # sessions share the system prompt, not more
                    prompt = f"Session {session} of run {run_id}.\n{prompt}"
                think = sessions.think_time_s
                think_s = None if turn == 0 else draw.uniform(*think) if isinstance(think, tuple) else float(think)
                plan.append(PlannedRequest(seq=len(plan), scenario=scenario.name, prompts=Prompts((prompt,)),
                                           warmup=False, concurrency=sessions.concurrent, session=session,
                                           turn=turn, think_s=think_s))
    return Listed(plan)


def _trace_plan(study: StudySpec) -> Listed:
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
                                       prompts=Prompts((trace_prompt(r, trace.block_tokens, index),)),
                                       due_s=(r.timestamp_ms - start) / 1000 * trace.time_scale,
                                       max_tokens=r.output_length, prompt_index=index))
    return Listed(plan)


def level_requests(study: StudySpec, rate: float) -> int:
    """Measured requests of one rate level: `requests`, or rate × `level_duration_s` when that is set."""
    duration = study.workload.level_duration_s
    return study.workload.requests if duration is None else max(1, round(rate * duration))


def _rate_plan(study: StudySpec, run_id: str, rates: dict[str, list[float]]) -> Plan:
    workload = study.workload
    plan = Plan(_prompts(study, run_id))

    def add(name: str, level: int, count: int, warmup: bool, **how: object) -> None:
        plan.extend([Kind(name, warmup, level=level, **how)], [0] * count)  # type: ignore[arg-type]

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
    found: dict[tuple[str, int], tuple[PlannedRequest, int]] = {}  # its first request, and how many
    for p in plan:
        if p.level is not None:
            first, count = found.get((p.scenario, p.level), (p, 0))
            found[(p.scenario, p.level)] = (first, count + 1)
    return [(name, level, first.sweep_pass, first.rate_per_s, count) for (name, level), (first, count) in found.items()]


