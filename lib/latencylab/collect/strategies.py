"""The load strategies: which requests a run sends, and when. Each owns its timing behind one interface,
`run(send)`: it calls `send` (the runner's `Collector.send`, which sends one request and records its sample) for
each request of its plan, at the moment it says, and returns once every request it sent has ended; the runner
sends what a strategy gives it without asking which strategy it is.

- `ClosedLoop`: `concurrency` workers take the plan in order, each sending its next request when its last one
  ends (a closed-loop study's concurrency level, or a rate sweep's synchronous or throughput pass);
- `OpenLoop`: each request due at a seeded Poisson arrival, `rate` per second on average, whatever is in flight
  (an open-loop study, or one rate level of a sweep);
- `Conversations`: sessions of turns, `concurrent` sessions at once, each turn sent with the session's history
  after the previous turn's answer and its think time;
- `Replay`: a recorded trace, each request due at its own time, whatever is in flight;
- `phases`: a plan cut into the strategies that send it, one after the other.

Their schedules (`staggered`, `arrivals`, `sessions`) are plain data, the same with or without a server. A
stopped run (Ctrl-C, SIGTERM: the task is cancelled) or a failed request ends every worker and waits for each
request in flight, which writes its sample, before `run` returns.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from latencylab.core.sample import Sample
from latencylab.plan.study import StudySpec
from latencylab.plan.workload import PlannedRequest, RequestPlan, plan_levels

WORKER_STAGGER_S = 0.002  # between the first requests of a closed loop's or conversations' workers


class Send(Protocol):
    """Sends one request and returns its sample (`runner.Collector.send`): `scheduled_at` is when it was due
    (an open loop's arrival; None: the moment it is ready), `history` a conversation's messages before it."""

    def __call__(self, planned: PlannedRequest, scheduled_at: float | None = None,
                 history: list[dict[str, str]] | None = None) -> Coroutine[Any, Any, Sample]: ...


class Strategy(Protocol):
    """A part of a run's plan and the timing it is sent with."""

    @property
    def plan(self) -> Sequence[PlannedRequest]: ...

    async def run(self, send: Send) -> None: ...


def staggered(count: int) -> list[float]:
    """When each of `count` workers sends its first request, in seconds after the loop starts: staggered, because
    256 connection set-ups at once would queue on the event loop, inside TTFB."""
    return [index * WORKER_STAGGER_S for index in range(count)]


async def _workers(starts: list[float], work: Callable[[], Awaitable[None]]) -> None:
    """One worker doing `work` per start (seconds after now); one failed or the run stopped: the others end too,
    before it returns."""
    async def worker(start_s: float) -> None:
        await asyncio.sleep(start_s)
        await work()

    workers = [asyncio.create_task(worker(start_s)) for start_s in starts]
    try:
        await asyncio.gather(*workers)
    finally:
        await _cancel_and_wait(workers)


async def _on_time(arrivals: Iterable[tuple[float, PlannedRequest]], send: Send) -> None:
    """Each request sent as a task of its own the moment it is due (seconds after the start), whatever is in
    flight."""
    loop = asyncio.get_running_loop()
    start_loop, start_wall = loop.time(), time.time()
    # Only the requests in flight are held (a million finished tasks would be kept to the end otherwise);
    # the first that failed is raised once every request has been sent, as gathering them all did.
    in_flight: set[asyncio.Task[Sample]] = set()
    failed: list[BaseException] = []

    def ended(task: asyncio.Task[Sample]) -> None:
        in_flight.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            failed.append(error)

    try:
        for due_s, planned in arrivals:
            # a timer may fire a little early (uvloop counts whole milliseconds): a request never leaves
            # before its time, so its client queueing (sent − due) is never below 0
            while (left := start_loop + due_s - loop.time()) > 0:
                await asyncio.sleep(left)
            task = asyncio.create_task(send(planned, scheduled_at=start_wall + due_s))
            in_flight.add(task)
            task.add_done_callback(ended)
        await asyncio.gather(*in_flight)
        if failed:
            raise failed[0]
    finally:  # stopped: every request in flight writes its sample before the run closes
        await _cancel_and_wait(list(in_flight))


async def _cancel_and_wait(tasks: Sequence[asyncio.Task[Any]]) -> None:
    """Cancel the tasks still running and wait until each has ended (a request in flight writes its sample)."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@dataclass(frozen=True)
class ClosedLoop:
    """`concurrency` workers take `plan` in order; each sends its next request as soon as its last one ends."""

    plan: Sequence[PlannedRequest]
    concurrency: int

    async def run(self, send: Send) -> None:
        queue = iter(self.plan)

        async def work() -> None:
            for planned in queue:  # shared iterator: each request is taken by one worker
                await send(planned)

        await _workers(staggered(self.concurrency), work)


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

    async def run(self, send: Send) -> None:
        await _on_time(self.arrivals(), send)


@dataclass(frozen=True)
class Conversations:
    """`plan`'s sessions, `concurrent` at once: a session's turns in order, one after the other's answer; each
    turn carries the session's history, from its `system` prompt on."""

    plan: Sequence[PlannedRequest]
    concurrent: int
    system: str | None = None

    def sessions(self) -> list[list[PlannedRequest]]:
        """Each session's turns in order, the sessions in the order they start."""
        found: dict[int | None, list[PlannedRequest]] = {}
        for planned in self.plan:
            found.setdefault(planned.session, []).append(planned)
        return [sorted(turns, key=lambda p: p.turn or 0) for turns in found.values()]

    async def run(self, send: Send) -> None:
        """Each worker takes the next session and sends its turns in order: each turn the whole history (the
        system prompt, the earlier user turns and the assistant's real answers), after the previous answer and
        the turn's think time."""
        queue = iter(self.sessions())

        async def work() -> None:
            for turns in queue:  # shared iterator: each session is taken by one worker
                history = [{"role": "system", "content": self.system}] if self.system else []
                for planned in turns:
                    if planned.think_s:
                        await asyncio.sleep(planned.think_s)
                    sample = await send(planned, history=history)
                    # a failed turn's question stays, unanswered, as a chat client keeps it
                    history += [{"role": "user", "content": planned.prompt},
                                {"role": "assistant", "content": sample.text if sample.ok else ""}]

        await _workers(staggered(self.concurrent), work)


@dataclass(frozen=True)
class Replay:
    """A trace's requests, each due at its own time (`PlannedRequest.due_s`), whatever is in flight."""

    plan: Sequence[PlannedRequest]

    def arrivals(self) -> Iterator[tuple[float, PlannedRequest]]:
        """Each request with the moment it is due, in seconds after the replay starts."""
        for planned in self.plan:
            yield planned.due_s or 0.0, planned

    async def run(self, send: Send) -> None:
        await _on_time(self.arrivals(), send)


def phases(plan: RequestPlan, study: StudySpec) -> list[Strategy]:
    """The strategies that send `plan`, in turn: a rate sweep's levels (a pass as a closed loop, a rate as an
    open one), else the open loop of an open-loop study, else each concurrency level's closed loop. Each takes its
    part of the plan by kind (`where`): no request is made before it is sent."""
    if not plan:
        return []
    workload = study.workload
    scenarios = dict.fromkeys(kind.scenario for kind in plan.kinds)
    if plan[0].session is not None:  # each scenario's sessions, as many at once as its own `concurrent`
        found: list[Strategy] = []
        for name in scenarios:
            group = plan.where(lambda kind, n=name: kind.scenario == n)
            sessions = study.sessions_of(next(s for s in study.scenarios if s.name == name))
            found.append(Conversations(group, group[0].concurrency, sessions.system_prompt if sessions else None))
        return found
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
