import random

import pytest

from latencylab.collect import strategies
from latencylab.collect.strategies import WORKER_STAGGER_S, ClosedLoop, OpenLoop, staggered
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
