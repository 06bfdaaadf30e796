import asyncio
import random
import time

import pytest

from latencylab.collect import strategies
from latencylab.collect.strategies import WORKER_STAGGER_S, ClosedLoop, OpenLoop, staggered
from latencylab.core.sample import Sample
from latencylab.plan.study import parse_study
from latencylab.plan.workload import plan_requests


def _study(**workload):
    return parse_study({"name": "s", "workload": workload,
                        "scenarios": [{"name": "a", "model": "m"}, {"name": "b", "model": "n"}]})


def _phases(study, rates=None):
    plan = plan_requests(study, "run", rates)
    return plan, strategies.phases(plan, study)


def test_an_open_loop_is_due_at_seeded_exponential_gaps():
    plan = plan_requests(_study(mode="open", rate_per_s=40, requests=5), "run")
    arrivals = list(OpenLoop(plan, 40, 5).arrivals())
    draw, due = random.Random(5), []
    for _ in plan:
        due.append((due[-1] if due else 0.0) + draw.expovariate(40))
    assert [d for d, _ in arrivals] == pytest.approx(due, abs=1e-12)
    assert [p for _, p in arrivals] == list(plan)  # in plan order
    assert list(OpenLoop(plan, 40, 5).arrivals()) == arrivals  # the same seed, the same schedule
    assert [d for d, _ in OpenLoop(plan, 40, 6).arrivals()] != [d for d, _ in arrivals]


def test_an_open_loops_gaps_average_one_over_its_rate():
    plan = plan_requests(_study(mode="open", rate_per_s=8, requests=4000), "run")
    *_, (last, _) = OpenLoop(plan, 8.0, 0).arrivals()
    assert last / len(plan) == pytest.approx(1 / 8, rel=0.05)


def test_a_closed_loops_workers_start_staggered():
    assert staggered(3) == pytest.approx([0.0, WORKER_STAGGER_S, 2 * WORKER_STAGGER_S])


def test_a_closed_study_is_one_closed_loop_per_concurrency_level_in_turn():
    plan, phases = _phases(_study(requests=2, concurrency=[1, 4]))
    assert [type(s) for s in phases] == [ClosedLoop, ClosedLoop]
    assert [s.concurrency for s in phases] == [1, 4]
    assert [list(s.plan) for s in phases] == [list(plan[:4]), list(plan[4:])]


def test_an_open_study_is_one_open_loop_at_its_rate_and_seed():
    plan, [loop] = _phases(_study(mode="open", rate_per_s=2.5, arrival_seed=9, requests=3))
    assert loop == OpenLoop(plan, 2.5, 9)


def test_a_rate_list_is_an_open_loop_per_scenario_and_level_each_seeded_apart():
    plan, phases = _phases(_study(mode="open", rate_per_s=[2.0, 4.0], arrival_seed=3, requests=2, warmup=1))
    assert [(s.rate, s.seed, [p.seq for p in s.plan]) for s in phases] == [
        (2.0, "3:a:0", [0, 1, 2]), (4.0, "3:a:1", [3, 4, 5]), (2.0, "3:b:0", [6, 7, 8]), (4.0, "3:b:1", [9, 10, 11])]


def test_a_sweeps_passes_are_closed_loops_and_its_found_rates_open_ones():
    study = _study(mode="open", rate_per_s="sweep", sweep_rates=2, requests=2, warmup=1)
    _, passes = _phases(study)
    assert [(type(s), s.concurrency, len(s.plan)) for s in passes] == [(ClosedLoop, 1, 3), (ClosedLoop, 3, 3)]
    _, phases = _phases(study, {"a": [1.0, 3.0]})
    assert [type(s) for s in phases] == [ClosedLoop, ClosedLoop, OpenLoop, OpenLoop, ClosedLoop, ClosedLoop]
    assert [(s.rate, s.seed) for s in phases if isinstance(s, OpenLoop)] == [(1.0, "0:a:2"), (3.0, "0:a:3")]


def test_nothing_to_send_is_no_phase():
    assert strategies.phases([], _study(mode="open", rate_per_s=2.0)) == []


class _Server:
    """A `send` without a server: each request takes `took_s`, answers its prompt's first word, and records when it
    left, what it carried and how many were in flight; `fail` fails the request of that seq (raises)."""

    def __init__(self, took_s: float = 0.01, fail: int | None = None) -> None:
        self.took_s, self.fail = took_s, fail
        self.sent: list[tuple[int, float, float | None, list[dict[str, str]] | None]] = []
        self.in_flight = self.most = 0
        self.ended: list[tuple[int, str]] = []  # (seq, "done" | "cancelled"): every request wrote its sample

    async def __call__(self, planned, scheduled_at=None, history=None):
        self.sent.append((planned.seq, asyncio.get_running_loop().time(), scheduled_at,
                          None if history is None else list(history)))
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(self.took_s)
            if planned.seq == self.fail:
                raise RuntimeError(f"request {planned.seq} failed")
            self.ended.append((planned.seq, "done"))
            return Sample(seq=planned.seq, ok=planned.seq % 2 == 0, text=f"answer {planned.seq}")
        except asyncio.CancelledError:
            self.ended.append((planned.seq, "cancelled"))
            raise
        finally:
            self.in_flight -= 1


def test_a_closed_loop_sends_each_request_once_with_its_concurrency_in_flight():
    plan = plan_requests(_study(requests=5, concurrency=3), "run")
    server = _Server()
    asyncio.run(ClosedLoop(plan, 3).run(server))
    assert sorted(seq for seq, *_ in server.sent) == [p.seq for p in plan] and server.most == 3
    assert all(scheduled is None and history is None for _, _, scheduled, history in server.sent)


def test_an_open_loop_sends_each_request_when_due_never_before():
    plan = plan_requests(_study(mode="open", rate_per_s=100, requests=4), "run")
    loop, server = OpenLoop(plan, 100.0, 7), _Server(took_s=0.05)

    async def run():
        start_loop, start_wall = asyncio.get_running_loop().time(), time.time()
        await loop.run(server)
        return start_loop, start_wall

    start_loop, start_wall = asyncio.run(run())
    due = dict((p.seq, d) for d, p in loop.arrivals())
    assert [seq for seq, *_ in server.sent] == [p.seq for p in plan]  # in order, whatever is in flight
    for seq, at, scheduled, _ in server.sent:
        assert at >= start_loop + due[seq] and scheduled == pytest.approx(start_wall + due[seq], abs=0.02)
    assert server.most > 1


def test_an_open_loop_sends_every_request_before_it_raises_the_first_that_failed():
    plan = plan_requests(_study(mode="open", rate_per_s=200, requests=3), "run")
    server = _Server(took_s=0.001, fail=plan[0].seq)
    with pytest.raises(RuntimeError, match=f"request {plan[0].seq} failed"):
        asyncio.run(OpenLoop(plan, 200.0, 1).run(server))
    assert len(server.sent) == len(plan)


def test_a_failed_worker_ends_the_others_and_each_request_in_flight_ends_first():
    plan = plan_requests(_study(requests=4, concurrency=2), "run")
    server = _Server(took_s=0.05, fail=plan[0].seq)
    async def run():
        with pytest.raises(RuntimeError):
            await ClosedLoop(plan, 2).run(server)
        assert server.in_flight == 0  # the other worker's request ended before the strategy did

    asyncio.run(run())
    assert "cancelled" in {how for _, how in server.ended}
    assert {seq for seq, *_ in server.sent} == {p.seq for p in plan[:2]}  # no worker took another request


@pytest.mark.parametrize("kind", ["closed", "open", "conversations"])
def test_a_stopped_strategy_waits_for_its_requests_in_flight(kind):
    """Ctrl-C or SIGTERM cancels the run: every request in flight ends (and writes its sample) before it stops."""
    study = {"closed": _study(requests=4, concurrency=2), "open": _study(mode="open", rate_per_s=1000, requests=4),
             "conversations": _study(sessions={"count": 2, "turns": 2, "concurrent": 2})}[kind]
    strategy = strategies.phases(plan_requests(study, "run"), study)[0]
    server = _Server(took_s=10)

    async def stop():
        task = asyncio.create_task(strategy.run(server))
        while server.in_flight < 2:
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert server.in_flight == 0  # before the run goes on to close

    asyncio.run(stop())
    assert [how for _, how in server.ended] == ["cancelled"] * len(server.sent)


def test_conversations_send_each_turn_with_the_session_s_history_after_its_think_time():
    study = parse_study({"name": "s", "workload": {"sessions": {"count": 2, "turns": 3, "think_time_s": 0.02,
                                                               "concurrent": 2, "system_prompt": "Be brief."}},
                         "scenarios": [{"name": "a", "model": "m"}]})
    plan = plan_requests(study, "run")
    [talks] = strategies.phases(plan, study)
    server = _Server(took_s=0.001)
    asyncio.run(talks.run(server))
    by_seq = {p.seq: p for p in plan}
    for session in talks.sessions():
        sent = [s for s in server.sent if by_seq[s[0]].session == session[0].session]
        assert [seq for seq, *_ in sent] == [p.seq for p in session]  # in turn order
        # each turn after the previous answer and the turn's think time
        assert all(later[1] - earlier[1] >= 0.02 for earlier, later in zip(sent, sent[1:], strict=False))
        expected = [{"role": "system", "content": "Be brief."}]
        for (seq, _, _, history), planned in zip(sent, session, strict=True):
            assert history == expected
            answer = f"answer {seq}" if seq % 2 == 0 else ""  # a failed turn's answer stays empty
            expected = [*expected, {"role": "user", "content": planned.prompt},
                        {"role": "assistant", "content": answer}]
