"""The embedded llama-server is ours alone: it answers only requests with this run's random key, and the key is
written nowhere (run folder, logs, facts, report)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from latencylab.collect import runner
from latencylab.collect.engine import server as engine_server
from latencylab.core import paths
from latencylab.plan.study import parse_study
from latencylab.publish import render

pytestmark = pytest.mark.engine

KEY = "per-run-key-Zq8xW3vN0pLr5tYb7uKa"


def test_the_engine_requires_its_key_and_the_key_is_written_nowhere(workdir: Path, models: list[Path],
                                                                      monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(engine_server.secrets, "token_urlsafe", lambda n: KEY)  # a key the test can look for
    answers: dict[str, int] = {}

    def without_and_with_the_key(sample: object) -> None:
        if answers:
            return
        meta = json.loads((paths.run_dir(run_id) / "run.json").read_text(encoding="utf-8"))
        command = meta["server"]["command"]
        url = f"http://127.0.0.1:{command[command.index('--port') + 1]}"
        body = {"model": "smollm2-135m-q4_1--q4", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
        answers["none"] = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60).status_code
        answers["wrong"] = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60,
                                      headers={"Authorization": "Bearer not-the-key"}).status_code
        answers["key"] = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60,
                                    headers={"Authorization": f"Bearer {KEY}"}).status_code

    study = parse_study({"name": "key", "workload": {"requests": 2, "max_tokens": 2},
                         "scenarios": [{"name": "q4", "model": "smollm2-135m-q4_1"}]})
    run_id = runner.create_run(study)
    runner.run(run_id, on_sample=without_and_with_the_key, progress=False)
    assert answers == {"none": 401, "wrong": 401, "key": 200}
    page = render.publish([run_id], lang="en")
    files = [p for folder in (paths.run_dir(run_id), page.parent) for p in folder.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"run.json", "samples.jsonl", "llama-server.log", "index.html"}
    assert [p for p in files if KEY.encode() in p.read_bytes()] == []
