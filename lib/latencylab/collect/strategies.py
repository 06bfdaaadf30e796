"""The load strategies: which requests a run sends, and when; `runner` is the worker that sends them and records.

- `ClosedLoop`: `concurrency` workers take the plan in order, each sending its next request when its last one
  ends (a closed-loop study's concurrency level, or a rate sweep's synchronous or throughput pass);
- `OpenLoop`: each request due at a seeded Poisson arrival, `rate` per second on average, whatever is in flight
  (an open-loop study, or one rate level of a sweep);
- `Conversations`: sessions of turns, `concurrent` sessions at once, each turn sent after the previous turn's
  answer and its think time (the runner keeps each session's history);
- `Replay`: a recorded trace, each request due at its own time, whatever is in flight;
- `phases`: a plan cut into the strategies that send it, one after the other.

Data and schedules only: nothing here sends or sleeps, so a schedule is the same with or without a server.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from latencylab.plan.study import WorkloadSpec
from latencylab.plan.workload import PlannedRequest, RequestPlan, plan_levels

WORKER_STAGGER_S = 0.002  # between the first requests of closed-loop workers


@dataclass(frozen=True)
class ClosedLoop:
    """`concurrency` workers take `plan` in order; each sends its next request as soon as its last one ends."""

    plan: Sequence[PlannedRequest]
    concurrency: int

    def worker_starts(self) -> list[float]:
        """When each worker sends its first request, in seconds after the loop starts: staggered, because 256
        connection set-ups at once would queue on the event loop, inside TTFB."""
        return [index * WORKER_STAGGER_S for index in range(self.concurrency)]


@dataclass(frozen=True)
class OpenLoop:
    """`plan`'s requests arrive at `rate` per second on average, whatever is in flight."""

    plan: Sequence[PlannedRequest]
    rate: float
    seed: int | str

    def arrivals(self) -> Iterator[tuple[float, PlannedRequest]]:
        """Each request with the moment it is due, in seconds after the loop starts: exponential gaps of mean
        1 / `rate` drawn from `seed`, so that the same seed gives the same schedule."""
        gaps = random.Random(self.seed)
        due = 0.0
        for planned in self.plan:
            due += gaps.expovariate(self.rate)
            yield due, planned


@dataclass(frozen=True)
class Conversations:
    """`plan`'s sessions, `concurrent` at once: a session's turns in order, one after the other's answer."""

    plan: Sequence[PlannedRequest]
    concurrent: int

    def sessions(self) -> list[list[PlannedRequest]]:
        """Each session's turns in order, the sessions in the order they start."""
        found: dict[int | None, list[PlannedRequest]] = {}
        for planned in self.plan:
            found.setdefault(planned.session, []).append(planned)
        return [sorted(turns, key=lambda p: p.turn or 0) for turns in found.values()]


@dataclass(frozen=True)
class Replay:
    """A trace's requests, each due at its own time (`PlannedRequest.due_s`), whatever is in flight."""

    plan: Sequence[PlannedRequest]

    def arrivals(self) -> Iterator[tuple[float, PlannedRequest]]:
        """Each request with the moment it is due, in seconds after the replay starts."""
        for planned in self.plan:
            yield planned.due_s or 0.0, planned


Strategy = ClosedLoop | OpenLoop | Conversations | Replay


def phases(plan: RequestPlan, workload: WorkloadSpec) -> list[Strategy]:
    """The strategies that send `plan`, in turn: a rate sweep's levels (a pass as a closed loop, a rate as an
    open one), else the open loop of an open-loop study, else each concurrency level's closed loop. Each takes its
    part of the plan by kind (`where`): no request is made before it is sent."""
    if not plan:
        return []
    scenarios = dict.fromkeys(kind.scenario for kind in plan.kinds)
    if plan[0].session is not None:  # each scenario's sessions, as many at once as its own `concurrent`
        groups = [plan.where(lambda kind, n=name: kind.scenario == n) for name in scenarios]
        return [Conversations(group, group[0].concurrency) for group in groups]
    if plan[0].due_s is not None:  # each scenario replays the trace from its start
        return [Replay(plan.where(lambda kind, n=name: kind.scenario == n)) for name in scenarios]
    if plan[0].level is not None:
        levels: list[Strategy] = []
        for name, level, _, rate, _ in plan_levels(plan):
            group = plan.where(lambda kind, n=name, v=level: kind.scenario == n and kind.level == v)
            if rate is None:
                levels.append(ClosedLoop(group, group[0].concurrency))
            else:  # arrivals seeded per scenario and level: a level draws the same gaps whatever ran before it
                levels.append(OpenLoop(group, rate, f"{workload.arrival_seed}:{name}:{level}"))
        return levels
    if workload.mode == "open":
        assert isinstance(workload.rate_per_s, float | int)  # a list or sweep has levels, handled above
        return [OpenLoop(plan, workload.rate_per_s, workload.arrival_seed)]
    return [ClosedLoop(plan.where(lambda kind, c=level: kind.concurrency == c), level)
            for level in dict.fromkeys(kind.concurrency for kind in plan.kinds)]
