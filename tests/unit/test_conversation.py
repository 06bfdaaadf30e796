"""Conversations and trace replay (issue 27): the plan, the trace's text, what a turn reused, the check."""

import json

import numpy as np
import pandas as pd
import pytest

from latencylab.analyse import compute
from latencylab.analyse.conversation import scenario_turns, turn_table, turns
from latencylab.analyse.findings import RunInfo
from latencylab.collect import strategies
from latencylab.collect.backends.base import http_error_kind
from latencylab.core.errors import StudyError
from latencylab.core.sample import ERROR_KINDS
from latencylab.plan import check
from latencylab.plan.study import parse_study
from latencylab.plan.trace import TraceRequest, read_trace, trace_prompt
from latencylab.plan.workload import plan_requests
from latencylab.runs.columnar import samples_frame


def _study(tmp_path=None, **workload):
    return parse_study({"name": "s", "backend": "ollama", "base_url": "http://127.0.0.1:9", "workload": workload,
                        "scenarios": [{"name": "a", "model": "m", "options": {"num_ctx": 512}}]},
                       base_dir=tmp_path)


def test_sessions_plan_each_session_s_turns_in_order_with_seeded_think_times():
    study = _study(sessions={"count": 2, "turns": 3, "think_time_s": [1, 2], "concurrent": 2})
    plan = plan_requests(study, "run")
    assert [(p.session, p.turn) for p in plan] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert [p.think_s is None for p in plan] == [True, False, False, True, False, False]
    assert all(1 <= p.think_s <= 2 for p in plan if p.think_s is not None)
    assert [p.think_s for p in plan] == [p.think_s for p in plan_requests(study, "run")]  # seeded
    assert plan[0].prompt != plan[3].prompt  # each session starts from its own place in the prompts
    phases = strategies.phases(plan, study)
    assert len(phases) == 1 and isinstance(phases[0], strategies.Conversations) and phases[0].concurrent == 2
    assert [[p.turn for p in s] for s in phases[0].sessions()] == [[0, 1, 2], [0, 1, 2]]


def test_a_scenario_s_own_sessions_replace_the_workload_s_and_are_checked_on_their_own():
    study = parse_study({
        "name": "s", "backend": "ollama", "base_url": "http://127.0.0.1:9",
        "workload": {"sessions": {"count": 3, "turns": 2, "concurrent": 2}},
        "scenarios": [{"name": "shared", "model": "m", "options": {"num_ctx": 256}},
                      {"name": "alone", "model": "m", "options": {"num_ctx": 256},
                       "sessions": {"count": 1, "turns": 6, "system_prompt": "Be brief."}}]})
    plan = plan_requests(study, "run")
    assert [(p.scenario, p.session, p.turn) for p in plan] == [
        *(("shared", s, t) for s in range(3) for t in range(2)), *(("alone", 0, t) for t in range(6))]
    phases = strategies.phases(plan, study)
    assert [(len(p.sessions()), p.concurrent) for p in phases] == [(3, 2), (1, 1)]
    # the check estimates each scenario's own conversation: two turns fit 256 tokens (about 126), six do not (470)
    found = [f for f in check.evaluate(check.Plan(study, None)) if f.rule == "conversation-overflow"]
    assert [f.scenario for f in found] == ["alone"]
    with pytest.raises(StudyError, match="give workload.sessions too"):
        parse_study({"name": "s", "backend": "ollama", "base_url": "http://127.0.0.1:9",
                     "scenarios": [{"name": "a", "model": "m", "sessions": {"count": 1}}]})


def test_sessions_and_an_open_loop_cannot_be_combined():
    with pytest.raises(StudyError, match="their own schedule"):
        _study(sessions={"turns": 2}, mode="open", rate_per_s=1.0)


def test_a_trace_s_hash_ids_are_the_same_text_wherever_they_appear(tmp_path):
    lines = [{"timestamp": 0, "input_length": 6, "output_length": 2, "hash_ids": [7, 8]},
             {"timestamp": 1500, "input_length": 5, "output_length": 3, "hash_ids": [7, 9]},
             {"timestamp": 700, "input_length": 4, "output_length": 1}]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    requests = read_trace(tmp_path / "t.jsonl")
    assert [r.timestamp_ms for r in requests] == [0, 700, 1500]  # in arrival order
    first, second = (trace_prompt(r, 4, i) for i, r in enumerate((requests[0], requests[2])))
    assert first.split()[:4] == second.split()[:4] and first.split()[4:] != second.split()[4:]
    assert len(first.split()) == 6 and len(second.split()) == 5  # the last block cut to what remains
    study = _study(tmp_path, trace={"file": "t.jsonl", "block_tokens": 4, "time_scale": 0.5})
    plan = plan_requests(study, "run")
    assert [(p.due_s, p.max_tokens) for p in plan] == [(0.0, 2), (0.35, 1), (0.75, 3)]
    assert list(strategies.Replay(plan).arrivals())[2] == (0.75, plan[2])


def test_an_unreadable_trace_line_is_named(tmp_path):
    (tmp_path / "t.jsonl").write_text('{"timestamp": 0, "input_length": 3}\n', encoding="utf-8")
    with pytest.raises(StudyError, match="t.jsonl:1"):
        read_trace(tmp_path / "t.jsonl")
    assert trace_prompt(TraceRequest(0, 3, 1), 512, 0) != trace_prompt(TraceRequest(0, 3, 1), 512, 1)


# One session as the bundled Ollama 0.5.4 served it (num_ctx 512, 40-token answers; measured, issue 27): the
# whole prompt in prompt_eval_count, only the processed tokens' time in prompt_eval_duration.
REAL = [(42, 87), (112, 144), (183, 130), (251, 129), (319, 221), (387, 142), (456, 156), (498, 932), (499, 1034),
        (498, 2185)]


def _turns(figures, cached=None, num_ctx=512):
    n = len(figures)
    return pd.DataFrame({"run": "r", "scenario": "a", "session": 0, "turn": range(n),
                         "prompt_tokens": [p for p, _ in figures], "output_tokens": 40,
                         "prompt_eval_ms": [float(ms) for _, ms in figures], "prompt_chars": 70, "num_ctx": num_ctx,
                         "cached_tokens": cached if cached is not None else [np.nan] * n,
                         "ttft_ms": [float(ms) + 20 for _, ms in figures]})


def test_ollama_s_reuse_is_read_from_the_prompt_time_and_the_overflow_turn_is_found():
    table = turns(_turns(REAL))
    assert list(table["cache_source"].iloc[1:7]) == ["timing"] * 6
    assert list(table["missed"].iloc[1:7]) == [0.0] * 6  # turns 1–6 reused the previous prompt and answer
    assert table["truncated"].tolist() == [False] * 7 + [True] * 3
    assert table["overflow"].tolist() == [False] * 7 + [True] + [False] * 2
    assert table["history_tokens"].iloc[-1] > 512  # what the history would have been, untruncated
    assert table["cached"].iloc[7:].tolist() == [0.0] * 3  # a cut history is processed whole
    found = scenario_turns(turn_table(_turns(REAL).join(table), "ttft_ms"))
    assert found.loc[("r", "a"), "overflow_turn"] == 7 and found.loc[("r", "a"), "cache_source"] == "timing"


def test_a_turn_that_processed_its_whole_history_again_is_a_miss():
    evicted = [(42, 87), (112, 200), (183, 360), (251, 500)]  # the prompt time grows with the whole prompt
    table = turns(_turns(evicted))
    assert (table["missed"].iloc[1:] == table["reusable"].iloc[1:]).all() and (table["reusable"].iloc[1:] > 0).all()


def test_the_server_s_cached_tokens_win_over_the_timing():
    table = turns(_turns([(42, 87), (112, 300)], cached=[0, 82]))
    assert table["cache_source"].tolist() == ["server", "server"] and table["cached"].iloc[1] == 82


def test_a_current_ollama_s_omitted_cached_count_is_a_zero_where_it_reported_one_and_unknown_where_it_never_did():
    # prompt_eval_cached_count is omitempty: turn 0 (nothing cached) and a missed turn carry none, turns that hit do
    cached = [np.nan, 106, np.nan, 245]
    table = turns(_turns([(42, 87), (112, 30), (183, 360), (251, 40)], cached=cached))
    assert table["cache_source"].tolist() == ["server"] * 4
    assert table["cached"].tolist() == [0.0, 106.0, 0.0, 245.0]
    assert table["missed"].iloc[2] == table["reusable"].iloc[2]  # the server's zero, not the timing's guess
    never = turns(_turns([(42, 87), (112, 30)]))  # Ollama 0.5.4: inferred from the prompt time
    assert never["cache_source"].tolist()[1] == "timing"


def test_the_check_warns_of_a_conversation_that_outgrows_num_ctx_and_of_think_times_past_keep_alive():
    study = parse_study({"name": "s", "backend": "ollama", "bundled_ollama": {"keep_alive": "2s"}, "workload": {
        "max_tokens": 40, "prompts": ["x" * 80], "sessions": {"turns": 10, "think_time_s": [1, 3]}},
        "scenarios": [{"name": "a", "model": "smollm2:135m-q4_1", "options": {"num_ctx": 512}}]})
    tokens = check.conversation_tokens(study, study.workload.sessions)
    assert tokens[0] == 28 and tokens[1] - tokens[0] == 76  # 80 chars + frame, then answer + frame + the next
    found = {f.rule: f for f in check.evaluate(check.Plan(study, None))}
    assert found["conversation-overflow"].evidence["turn"] == next(t for t, n in enumerate(tokens) if n > 512)
    assert found["conversation-overflow"].evidence["needed"] == 1024
    assert found["think-keep-alive"].evidence == {"think_s": 3, "keep_alive_s": 2.0}


# The spread (variance) on a conversation: a slow tail made of the turns a conversation cause owns is that cause's,
# never "the server stalled" (a false confirmation sends the user to hunt a stall that is not there).


def _session(prompts: list[int], prompt_ms: list[float], cached: list[float] | None = None,
             **columns: list) -> pd.DataFrame:
    """One session of Ollama-shaped samples: turn 0 cold (a 300 ms load), TTFT = load + prompt time + 20 ms."""
    rows = []
    for turn, (tokens, ms) in enumerate(zip(prompts, prompt_ms, strict=True)):
        extra = {name: values[turn] for name, values in columns.items()}
        load = extra.pop("load_ms", 300.0 if turn == 0 else 0.0)
        ttft = load + ms + 20.0
        rows.append({"run_id": "r1", "seq": turn, "scenario": "chat", "backend": "ollama", "model": "m", "ok": True,
                     "warmup": False, "phase": "first" if turn == 0 else "subsequent",
                     "state": "cold" if turn == 0 else "warm", "started_at": 1000.0 + 10 * turn, "session": 0,
                     "turn": turn, "think_s": None if turn == 0 else 1.0, "num_ctx": 512, "prompt_chars": 70,
                     "prompt_tokens": tokens, "output_tokens": 40, "output_tokens_source": "server",
                     "prompt_eval_ms": ms, "cached_tokens": None if cached is None else cached[turn],
                     "load_ms": load, "load_ms_source": "server", "ttft_ms": ttft, "ttfb_ms": ttft,
                     "e2e_ms": ttft + 200.0, **extra})
    return samples_frame(rows)


def _dx(samples: pd.DataFrame, **targets: float) -> dict:
    return {v.cause: v for v in compute.findings(samples, [RunInfo(run_id="r1", label="r1", study="hand")],
                                                 targets=targets).diagnosis.verdicts}


GROWING = [40 + 70 * k for k in range(7)]  # turns 0–6: 40 … 460 tokens, each the last prompt, its answer and 30 new


def test_the_turns_after_an_overflow_are_the_overflow_s_slow_tail_not_a_stall():
    # num_ctx 512: at turn 7 the history (460 + 40 + a 26-token message) passes it; turns 7–11 hold ~500 tokens
    # processed whole (500–540 ms at the first turn's 1 ms a token), turns 1–6 only their 30 new ones (40 ms)
    dx = _dx(_session(GROWING + [500] * 5, [40.0] * 7 + [500.0, 510.0, 520.0, 530.0, 540.0]))
    assert dx["overflow"].verdict == "confirmed" and dx["overflow"].values.turn == 7
    v = dx["variance"]
    # after the cold start 11 turns, median 60 ms (a reusing turn); the slowest 10 % are turns 10 and 11, both
    # after the overflow, slow in their prompt time (535 ms on average against a typical 40 ms): the overflow's
    assert (v.verdict, v.values.explains, v.values.tail_n) == ("present", "overflow", 2)
    assert (v.values.explains_ms, v.values.typical_ms, v.values.median) == (535.0, 40.0, 60.0)


def test_turns_that_missed_the_cache_are_the_cache_s_slow_tail_and_a_stall_on_a_reused_turn_stays_one():
    prompts = GROWING + [530, 600, 670, 740, 810]  # num_ctx 4096 below: no overflow
    reused = [0.0] + [p - 30.0 for p in prompts[1:]]  # the server says: all but the 30 new tokens came from cache
    slow = [40.0] * 12
    slow[5], slow[9] = 390.0, 670.0  # turns 5 and 9 processed their whole prompt (1 ms a token)
    missed = list(reused)
    missed[5], missed[9] = 0.0, 0.0
    ctx = {"num_ctx": [4096] * 12}
    dx = _dx(_session(prompts, slow, missed, **ctx))
    assert dx["cache"].verdict in ("confirmed", "present") and dx["cache"].values.missed_n == 2
    v = dx["variance"]
    # the slowest 10 % (2 of 11) are turns 5 and 9, the two misses (530 ms of prompt time on average, against 40)
    assert (v.verdict, v.values.explains, v.values.explains_ms) == ("present", "cache", 530.0)
    # the same prompt times where the server says both turns reused their history: nothing owns them, a stall
    stalled = _dx(_session(prompts, slow, reused, **ctx))
    assert stalled["cache"].verdict == "refuted"
    assert (stalled["variance"].verdict, stalled["variance"].values.explains) == ("confirmed", "stall_prompt")


def test_turns_that_paid_a_load_after_a_think_time_are_the_think_time_s_slow_tail():
    # turns 4 and 8 found the model unloaded after the user's second of thinking: a 400 ms load each
    loads = [300.0] + [400.0 if t in (4, 8) else 0.0 for t in range(1, 12)]
    states = ["cold"] + ["reload" if t in (4, 8) else "warm" for t in range(1, 12)]
    dx = _dx(_session([40] * 12, [40.0] * 12, [0.0] * 12, load_ms=loads, state=states))
    assert dx["think"].verdict == "confirmed" and dx["think"].values.unloaded_n == 2
    v = dx["variance"]
    assert (v.verdict, v.values.explains, v.values.explains_ms, v.values.typical_ms) == ("present", "think", 400.0,
                                                                                         0.0)


def test_a_turn_that_sent_a_long_new_message_is_a_longer_prompt_counted_in_the_tokens_processed():
    # every turn adds 30 new tokens (40 ms) but turns 5 and 9, whose user pasted 300 (400 ms); the server says the
    # rest came from cache. Per token of the whole prompt those two look 4–5× slower (a stall); per token processed
    # they ran as fast as the others: the longer prompts, the floor
    new = [40] + [300 if t in (5, 9) else 30 for t in range(1, 12)]
    prompts = [sum(new[:t + 1]) + 40 * t for t in range(12)]  # each turn: the last prompt, its answer, the new
    slow = [40.0 if n == 30 else 400.0 for n in new]
    cached = [0.0] + [float(p - n) for p, n in zip(prompts[1:], new[1:], strict=True)]
    dx = _dx(_session(prompts, slow, cached, num_ctx=[8192] * 12))
    assert dx["cache"].verdict == "refuted" and dx["overflow"].verdict == "refuted"
    v = dx["variance"]
    assert (v.verdict, v.values.explains, v.values.explains_ms) == ("present", "long_prompt", 400.0)


def test_the_floor_is_the_work_of_the_turns_nothing_wasted_counted_in_the_tokens_they_processed():
    # num_ctx 256: from turn 4 the history (250 + 40 + a 26-token message) passes it and turns 4–11 process their
    # whole ~250-token prompt again (250 ms); turns 1–3 only their 30 new tokens (40 ms). The overflow owns 8 of the
    # 11 turns after the cold start: the floor is the other three's, 40 ms for 30 tokens, below a 200 ms target
    dx = _dx(_session(GROWING[:4] + [250] * 8, [40.0] * 4 + [250.0] * 8, num_ctx=[256] * 12), subsequent_ms=200)
    assert dx["overflow"].verdict == "confirmed" and dx["overflow"].values.turn == 4
    floor = dx["prompt"]
    assert (floor.verdict, floor.values.floor_ms, floor.values.new_tokens) == ("floor", 40.0, 30.0)
    assert floor.values.prefill_tps == 750.0  # 30 tokens in 40 ms


def test_other_processes_are_not_blamed_for_the_whole_prompt_a_turn_after_the_overflow_processes():
    # the overflow's session, with other processes using half of 2 cores during turns 7–11 (and none before): those
    # turns processed ~500 tokens at ~1,000 tokens/s, as fast as the quiet turns' 30 tokens in 40 ms (750 tokens/s);
    # counted over the whole prompt, the quiet turns would seem 3,000–11,000 tokens/s and the CPU a cause
    busy = [0.0] * 7 + [500.0] * 5
    dx = _dx(_session(GROWING + [500] * 5, [40.0] * 7 + [500.0, 510.0, 520.0, 530.0, 540.0], host=["local"] * 12,
                      others_cpu_ms=busy, host_window_ms=[500.0] * 12, host_cores=[2] * 12))
    assert dx["overflow"].verdict == "confirmed"
    cpu = dx["cpu"]
    assert (cpu.verdict, cpu.values.contended_n, cpu.values.prefill_quiet) == ("present", 5, 750.0)


def test_a_prompt_refused_for_the_context_is_a_failure_of_its_own_kind():
    llama = (b'{"error": {"code": 400, "message": "request (287 tokens) exceeds the available context size (256 '
             b'tokens), try increasing it", "type": "exceed_context_size_error"}}')  # seen on the embedded engine
    openai = b'{"error": {"message": "too long", "type": "invalid_request_error", "code": "context_length_exceeded"}}'
    vllm = b'{"message": "This model\'s maximum context length is 2048 tokens. However, you requested 2100 tokens"}'
    assert [http_error_kind(400, body) for body in (llama, openai, vllm)] == ["context"] * 3
    assert http_error_kind(400, b'{"error": "invalid options"}') == "http"
    assert http_error_kind(500, llama) == "http"  # a server fault, whatever it says
    assert "context" in ERROR_KINDS
