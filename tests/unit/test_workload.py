from latencylab.plan.study import parse_study
from latencylab.plan.workload import plan_requests


def _study(**workload):
    return parse_study({"name": "s", "workload": workload,
                        "scenarios": [{"name": "a", "model": "m"}, {"name": "b", "model": "n"}]})


def test_interleaved_sends_warmups_first_then_alternates():
    plan = plan_requests(_study(requests=2, warmup=1), "run")
    assert [(p.scenario, p.warmup) for p in plan] == [
        ("a", True), ("b", True), ("a", False), ("b", False), ("a", False), ("b", False)]
    assert [p.seq for p in plan] == list(range(6))


def test_blocked_runs_each_scenario_in_turn():
    plan = plan_requests(_study(requests=2, warmup=1, order="blocked"), "run")
    assert [(p.scenario, p.warmup) for p in plan] == [
        ("a", True), ("a", False), ("a", False), ("b", True), ("b", False), ("b", False)]


def test_prompts_are_unique_unless_caching_is_wanted():
    unique = plan_requests(_study(requests=10), "run")
    assert len({p.prompt for p in unique}) == len(unique)
    cached = plan_requests(_study(requests=10, unique_prefix=False, prompts=["hi"]), "run")
    assert {p.prompt for p in cached} == {"hi"}


def test_random_order_is_seeded_and_keeps_warmups_first():
    first = plan_requests(_study(requests=5, warmup=1, order="random", order_seed=3), "run")
    again = plan_requests(_study(requests=5, warmup=1, order="random", order_seed=3), "run")
    other = plan_requests(_study(requests=5, warmup=1, order="random", order_seed=4), "run")
    order = [p.scenario for p in first]
    assert order == [p.scenario for p in again] and order != [p.scenario for p in other]
    assert [p.warmup for p in first[:2]] == [True, True] and sorted(order[2:]) == ["a"] * 5 + ["b"] * 5
