"""The load strategies: which requests a run sends, and when; `runner` is the worker that sends them and records.

- `ClosedLoop`: `concurrency` workers take the plan in order, each sending its next request when its last one
  ends (a closed-loop study's concurrency level, or a rate sweep's synchronous or throughput pass);
- `OpenLoop`: each request due at a seeded Poisson arrival, `rate` per second on average, whatever is in flight
  (an open-loop study, or one rate level of a sweep);
- `phases`: a plan cut into the strategies that send it, one after the other.

Data and schedules only: nothing here sends or sleeps, so a schedule is the same with or without a server.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from latencylab.plan.study import WorkloadSpec
from latencylab.plan.workload import Plan, PlannedRequest, plan_levels

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


Strategy = ClosedLoop | OpenLoop


def phases(plan: Plan, workload: WorkloadSpec) -> list[Strategy]:
    """The strategies that send `plan`, in turn: a rate sweep's levels (a pass as a closed loop, a rate as an
    open one), else the open loop of an open-loop study, else each concurrency level's closed loop. Each takes its
    part of the plan by kind (`Plan.where`): no request is made before it is sent."""
    if not plan:
        return []
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
