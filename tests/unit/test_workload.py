import pytest

from latencylab.plan.study import StudyError, parse_study
from latencylab.plan.workload import BUILTIN_PROMPTS, estimate_s, plan_requests, sweep_rates


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


def _sent(plan, scenario):
    """The prompts a scenario was sent, in order, without each request's own first line."""
    return [p.prompt.split("\n", 1)[1] for p in plan if p.scenario == scenario]


@pytest.mark.parametrize("order", ["interleaved", "blocked", "random"])
def test_every_scenario_is_sent_the_same_prompts_in_the_same_order(order):
    plan = plan_requests(_study(requests=7, warmup=1, order=order), "run")
    assert _sent(plan, "a") == _sent(plan, "b") == [BUILTIN_PROMPTS[i % len(BUILTIN_PROMPTS)] for i in range(8)]
    assert [p.prompt_index for p in plan if p.scenario == "b"] == list(range(8))  # the warm-up first, as sent
    assert len({p.prompt for p in plan}) == len(plan)  # each request's first line is still its own


def test_a_rate_sweep_and_a_resumed_plan_keep_each_requests_prompt():
    rates = plan_requests(_study(mode="open", rate_per_s=[2.0, 4.0], requests=2, warmup=1), "run")
    assert _sent(rates, "a") == _sent(rates, "b") == list(BUILTIN_PROMPTS)  # the levels run on through them
    plan = plan_requests(_study(requests=3, order="random"), "run")
    rest = plan.without({0, 3})
    assert [(p.seq, p.prompt_index, p.prompt) for p in rest] == [
        (p.seq, p.prompt_index, p.prompt) for p in plan if p.seq not in (0, 3)]


def test_prompt_order_continue_runs_the_prompts_on_across_the_run():
    plan = plan_requests(_study(requests=3, order="blocked", prompt_order="continue"), "run")
    assert [p.prompt_index for p in plan] == [p.seq for p in plan] == list(range(6))
    assert _sent(plan, "a") + _sent(plan, "b") == list(BUILTIN_PROMPTS)


def test_random_order_is_seeded_and_keeps_warmups_first():
    first = plan_requests(_study(requests=5, warmup=1, order="random", order_seed=3), "run")
    again = plan_requests(_study(requests=5, warmup=1, order="random", order_seed=3), "run")
    other = plan_requests(_study(requests=5, warmup=1, order="random", order_seed=4), "run")
    order = [p.scenario for p in first]
    assert order == [p.scenario for p in again] and order != [p.scenario for p in other]
    assert [p.warmup for p in first[:2]] == [True, True] and sorted(order[2:]) == ["a"] * 5 + ["b"] * 5


def test_a_rate_list_runs_each_scenario_level_by_level_with_its_warmups():
    plan = plan_requests(_study(mode="open", rate_per_s=[2.0, 4.0], requests=2, warmup=1), "run")
    assert [(p.scenario, p.level, p.rate_per_s, p.warmup) for p in plan] == [
        ("a", 0, 2.0, True), ("a", 0, 2.0, False), ("a", 0, 2.0, False),
        ("a", 1, 4.0, True), ("a", 1, 4.0, False), ("a", 1, 4.0, False),
        ("b", 0, 2.0, True), ("b", 0, 2.0, False), ("b", 0, 2.0, False),
        ("b", 1, 4.0, True), ("b", 1, 4.0, False), ("b", 1, 4.0, False)]
    assert [p.seq for p in plan] == list(range(12))


def test_a_level_duration_sends_rate_times_duration_requests():
    plan = plan_requests(_study(mode="open", rate_per_s=[2.0, 5.0], level_duration_s=3, warmup=0), "run")
    counts = [sum(p.level == k and p.scenario == "a" for p in plan) for k in (0, 1)]
    assert counts == [6, 15]
    assert estimate_s(_study(mode="open", rate_per_s=[2.0, 5.0], level_duration_s=3, warmup=0), plan) == \
        pytest.approx(2 * (6 / 2 + 15 / 5))


def test_a_sweep_plans_its_passes_then_stops_until_their_rates_are_known():
    study = _study(mode="open", rate_per_s="sweep", sweep_rates=3, requests=2, warmup=1)
    first = plan_requests(study, "run")
    assert [(p.scenario, p.level, p.sweep_pass, p.concurrency) for p in first] == [
        ("a", 0, "synchronous", 1)] * 3 + [("a", 1, "throughput", 3)] * 3
    more = plan_requests(study, "run", {"a": [1.0, 2.0, 3.0]})
    assert more[:6] == first  # the same requests, the same seq: a resumed sweep finds them again
    assert [(p.scenario, p.level, p.rate_per_s) for p in more[6:15] if not p.warmup] == [
        ("a", 2, 1.0), ("a", 2, 1.0), ("a", 3, 2.0), ("a", 3, 2.0), ("a", 4, 3.0), ("a", 4, 3.0)]
    assert {(p.scenario, p.sweep_pass) for p in more[15:]} == {("b", "synchronous"), ("b", "throughput")}


def test_sweep_rates_span_the_synchronous_rate_to_past_the_throughput():
    # one at a time: 0.5 s each (2/s); all at once: 11 completions over 2 s (5/s)
    rates = sweep_rates([0.5] * 4, [0.2 * k for k in range(11)], 4)
    assert rates == pytest.approx([2.0, 3.333, 4.667, 6.0], abs=1e-3)  # from 2/s to 1.2 × 5/s
    # a server whose throughput is its synchronous rate (one slot): from half of it
    assert sweep_rates([0.1] * 3, [0.1 * k for k in range(6)], 3) == pytest.approx([5.0, 8.5, 12.0])
    with pytest.raises(ValueError, match="throughput pass"):
        sweep_rates([0.1], [1.0], 3)


def test_rate_lists_and_sweeps_are_open_loop():
    with pytest.raises(StudyError, match="add mode: open"):
        _study(rate_per_s=[1.0, 2.0])
    with pytest.raises(StudyError, match="above 0"):
        _study(mode="open", rate_per_s=[1.0, 0])


@pytest.mark.parametrize(("duration", "lang", "said"), [
    (10, "en", "then 3 rates from the passes, 10 s each: 30 s"),
    (None, "en", "then 3 rates from the passes (how long they take is said once the passes have found them)"),
    (10, "es", "plan: a pasada síncrona (3 pet.), a pasada de rendimiento (todas a la vez) (3 pet.); después, 3 tasas "
     "calculadas a partir de las pasadas, 10 s cada una: 30 s")])
def test_a_sweep_says_before_it_starts_how_long_its_rate_levels_take(capsys, duration, lang, said):
    from tqdm import tqdm

    from latencylab.collect.runner import _say_plan

    study = _study(mode="open", rate_per_s="sweep", sweep_rates=3, requests=2, warmup=1, level_duration_s=duration)
    _say_plan(study, plan_requests(study, "run"), {}, tqdm(disable=True), lang)
    assert said in capsys.readouterr().err


@pytest.mark.parametrize(("lang", "said"), [("en", "a: TTFT 123 ms (cold)"), ("es", "a: TTFT 123 ms (en frío)")])
def test_the_progress_bar_says_each_sample_in_the_users_language(lang, said):
    from latencylab.collect.runner import _postfix
    from latencylab.core.sample import Sample

    assert _postfix(Sample(run_id="r", scenario="a", ok=True, ttft_ms=123.4, state="cold"), lang) == said


def test_a_plan_holds_no_object_per_request():
    """A million-request run holds its plan while it is sent: a few bytes a request, each request made when asked."""
    import tracemalloc

    study = _study(requests=100_000, order="random")
    tracemalloc.start()
    plan = plan_requests(study, "run")
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(plan) == 200_000 and held < 200_000 * 16  # a PlannedRequest each would be ~100 bytes apiece
    assert [p.seq for p in plan[:3]] == [0, 1, 2] and plan[-1].seq == 199_999


def test_a_plan_without_finished_requests_or_of_one_kind_keeps_their_order():
    plan = plan_requests(_study(requests=3, warmup=1, concurrency=[1, 4]), "run")
    rest = plan.without({0, 2, 5})
    assert [p.seq for p in rest] == [s for s in range(16) if s not in (0, 2, 5)]
    assert [(p.seq, p.prompt) for p in rest] == [(p.seq, p.prompt) for p in plan if p.seq not in (0, 2, 5)]
    wide = rest.where(lambda kind: kind.concurrency == 4)
    assert [p.seq for p in wide] == list(range(8, 16)) and {k.concurrency for k in wide.kinds} == {4}
    assert plan.without(set()) is plan and plan.where(lambda kind: True) is plan
