"""Conversations and trace replay on real servers (issue 27): the bundled Ollama 0.5.4 and the embedded llama-server.

Each test is short (SmolLM2-135M, short answers, a few turns). The session's bundled Ollama has one request slot
(OLLAMA_NUM_PARALLEL=1), so it has one cache slot too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from latencylab.collect import runner
from latencylab.collect.engine.ollama import BundledOllama
from latencylab.core import paths
from latencylab.plan.study import parse_study
from latencylab.publish import report
from latencylab.runs import store


def _verdicts(run_id: str) -> tuple[dict[str, Any], Any]:
    """The diagnosis's verdicts by cause, and the findings, of one run."""
    findings = report.document_of([run_id]).findings
    return {v.cause: v for v in findings.diagnosis.verdicts}, findings


def _samples(run_id: str) -> list[dict[str, Any]]:
    return sorted(store.read_samples(paths.run_dir(run_id) / "samples.jsonl"), key=lambda s: s["seq"])


def _ollama_chat(sessions: dict[str, Any], options: dict[str, Any]) -> Any:
    return parse_study({
        "name": "real-chat", "backend": "ollama", "bundled_ollama": True, "targets": {"metric": "ttft_ms"},
        "workload": {"max_tokens": 24, "temperature": 0.8, "sessions": sessions},
        "scenarios": [{"name": "chat", "model": "smollm2:135m-q4_1", "keep_alive": -1, "preload": True,
                       "options": options}]})


@pytest.mark.real_ollama
def test_ollama_reuses_the_history_until_it_passes_num_ctx_then_the_overflow_turn_is_found(
        real_ollama: BundledOllama, workdir: Path) -> None:
    run_id = runner.run_study(_ollama_chat({"turns": 9, "system_prompt": "Answer briefly."}, {"num_ctx": 256}),
                              ollama=real_ollama, progress=False)
    samples = _samples(run_id)
    assert [s["turn"] for s in samples] == list(range(9)) and all(s["ok"] for s in samples)
    assert samples[-1]["history_chars"] > samples[1]["history_chars"] > 0  # the history grew, answers included
    verdicts, findings = _verdicts(run_id)
    turns = findings.conversation
    before = turns[~turns["truncated"].astype(bool) & (turns["turn"] > 0)]
    assert (before["cache_source"] == "timing").all() and (before["cached"] > 0).any()  # reuse measured
    assert turns["overflow"].astype(bool).sum() == 1  # the turn where the history passed num_ctx
    assert verdicts["overflow"].verdict in ("confirmed", "present")
    assert verdicts["overflow"].values.num_ctx == 256


@pytest.mark.real_ollama
def test_two_sessions_on_one_ollama_slot_evict_each_other(real_ollama: BundledOllama, workdir: Path) -> None:
    study = _ollama_chat({"count": 2, "turns": 4, "concurrent": 2}, {"num_ctx": 2048})
    verdicts, _ = _verdicts(runner.run_study(study, ollama=real_ollama, progress=False))
    cache = verdicts["cache"]
    assert cache.verdict in ("confirmed", "present") and cache.values.reasons.get("evicted", 0) >= 1


def _engine_study(workload: dict[str, Any], parallel: int, num_ctx: int = 2048) -> Any:
    return parse_study({
        "name": "engine-chat", "backend": "embedded", "engine": {"threads": 1}, "targets": {"metric": "ttft_ms"},
        "workload": {"max_tokens": 8, **workload},
        "scenarios": [{"name": "chat", "model": "smollm2-135m-q4_1", "keep_alive": -1, "preload": True,
                       "options": {"num_ctx": num_ctx, "num_parallel": parallel}}]}, base_dir=paths.WORK_ROOT)


@pytest.mark.engine
def test_llama_server_reports_its_reuse_even_with_more_sessions_than_slots(models: list[Path], workdir: Path) -> None:
    # Three interleaved sessions on one slot: the bundled llama-server build still served most of each session's
    # history from cache (it keeps prompts beyond the slot), and says so in timings.cache_n (issue 27).
    run_id = runner.run_study(_engine_study({"sessions": {"count": 3, "turns": 3, "concurrent": 3}}, 1),
                              progress=False)
    samples = [s for s in _samples(run_id) if s["turn"]]
    assert all(s["cached_tokens"] is not None and s["processed_tokens"] is not None for s in samples)  # the server's
    assert all(s["prompt_tokens"] == s["cached_tokens"] + s["processed_tokens"] for s in samples)
    verdicts, findings = _verdicts(run_id)
    assert (findings.conversation.loc[findings.conversation["turn"] > 0, "cache_source"] == "server").all()
    assert verdicts["cache"].verdict in ("refuted", "present")  # what the server reported it reused


@pytest.mark.engine
def test_a_conversation_past_llama_server_s_context_ends_in_failed_turns_of_kind_context(models: list[Path],
                                                                                         workdir: Path) -> None:
    # llama-server refuses a prompt past its context (HTTP 400), where Ollama cuts the history: the run goes on,
    # and every turn from there fails, as the history only grows
    samples = _samples(runner.run_study(_engine_study({"sessions": {"count": 1, "turns": 6}}, 1, 128),
                                        progress=False))
    kinds = [None if s["ok"] else s["error_kind"] for s in samples]
    first = kinds.index("context")
    assert 0 < first and kinds[first:] == ["context"] * (len(kinds) - first) and None not in kinds[first:]
    assert "context size" in samples[first]["error"]


@pytest.mark.engine
def test_a_trace_is_replayed_on_its_schedule_and_its_shared_blocks_are_cached(models: list[Path],
                                                                               workdir: Path) -> None:
    lines = [{"timestamp": t, "input_length": 120, "output_length": 4, "hash_ids": [1, 2 + i]}
             for i, t in enumerate((0, 400, 800, 1200))]
    (workdir / "trace.jsonl").write_text("\n".join(json.dumps(line) for line in lines), encoding="utf-8")
    run_id = runner.run_study(_engine_study({"trace": {"file": "trace.jsonl", "block_tokens": 64}}, 1),
                              progress=False)
    samples = _samples(run_id)
    due = [s["scheduled_at"] - samples[0]["scheduled_at"] for s in samples]
    assert due == pytest.approx([0.0, 0.4, 0.8, 1.2], abs=0.01)  # the trace's own times
    # the client's lag behind the schedule, reported (the first includes the preload; two shared cores add more)
    assert all(s["client_queue_ms"] is not None and 0 <= s["client_queue_ms"] < 1000 for s in samples)
    assert all(s["output_tokens"] <= 4 for s in samples)  # each its own output_length
    assert any((s["cached_tokens"] or 0) >= 32 for s in samples[1:])  # block 1 is the same text in each
