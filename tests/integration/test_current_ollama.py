"""A current Ollama's own evidence (issue 34), through the product path against the Ollama double built from its
source (`doubles.ollama.current_ollama`: `prompt_eval_cached_count`, `/api/ps` `context_length`). The bundled
0.5.4, which reports neither, stays the test of record for inference: tests/integration/test_conversations.py."""

from __future__ import annotations

from typing import Any

from doubles.ollama import OllamaDouble, current_ollama
from latencylab.collect import runner
from latencylab.plan.study import parse_study
from latencylab.publish import report

MODEL = {"size": 1_000_000, "context_length": 8192}


def _chat(server: OllamaDouble, sessions: dict[str, Any], options: dict[str, Any]) -> Any:
    return parse_study({
        "name": "current-chat", "backend": "ollama", "base_url": server.base_url, "targets": {"metric": "ttft_ms"},
        "workload": {"max_tokens": 5, "sessions": sessions},
        "scenarios": [{"name": "chat", "model": "tiny", "endpoint": "chat", "keep_alive": -1, "preload": True,
                       "options": options}]})


def _findings(run_id: str) -> tuple[dict[str, Any], Any]:
    findings = report.document_of([run_id]).findings
    return {v.cause: v for v in findings.diagnosis.verdicts}, findings


def test_a_current_ollama_s_cached_count_is_the_source_of_where_the_cache_held(workdir) -> None:
    with current_ollama(models={"tiny": MODEL}) as server:
        run_id = runner.run_study(_chat(server, {"turns": 5}, {"num_ctx": 4096}), progress=False)
    verdicts, findings = _findings(run_id)
    turns = findings.conversation
    assert (turns["cache_source"] == "server").all()  # turn 0 too: its omitted count is the server's zero
    assert turns["cached"].iloc[0] == 0 and (turns["cached"].iloc[1:] > 0).all()
    assert verdicts["cache"].verdict == "refuted"  # every turn reused its history, by the server's own count


def test_sessions_that_evict_each_other_on_a_current_ollama_are_evictions_by_the_server_s_count(workdir) -> None:
    with current_ollama(models={"tiny": MODEL}, prompt_token_delay_s=0.002) as server:
        study = _chat(server, {"count": 2, "turns": 4, "concurrent": 2}, {"num_ctx": 4096})
        run_id = runner.run_study(study, progress=False)
    verdicts, findings = _findings(run_id)
    assert set(findings.conversation["cache_source"]) == {"server"}
    cache = verdicts["cache"]
    assert cache.verdict in ("confirmed", "present") and cache.values.reasons.get("evicted", 0) >= 1


def test_the_context_ollama_loaded_reaches_the_overflow_verdict(workdir) -> None:
    # The scenario asks for 8192 tokens of a model trained on 64: the server clamps it and says so in /api/ps
    with current_ollama(models={"tiny": {**MODEL, "context_length": 64}}) as server:
        run_id = runner.run_study(_chat(server, {"turns": 6}, {"num_ctx": 8192}), progress=False)
    verdicts, findings = _findings(run_id)
    assert verdicts["overflow"].values.num_ctx == 64
    assert findings.conversation["overflow"].astype(bool).sum() == 1
    assert verdicts["overflow"].verdict in ("confirmed", "present")
