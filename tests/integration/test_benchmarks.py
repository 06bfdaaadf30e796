"""The accuracy benchmark runs end to end, and its ground-truth server keeps its own schedule.

The client's accuracy goals are not asserted here: they are timings on a shared machine, printed by
`benchmarks/accuracy.py`, not pass/fail conditions of the test suite.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"
METRICS = ("headers_ms", "ttfb_ms", "ttft_ms", "itl_ms", "e2e_ms")
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"

sys.path.insert(0, str(BENCHMARKS))
import ground_truth_server as gt  # noqa: E402


@pytest.mark.timeout(120)
def test_accuracy_quick_runs_and_writes_its_report(tmp_path: Path) -> None:
    out = tmp_path / "accuracy.json"
    python = VENV_PYTHON if VENV_PYTHON.exists() else Path(sys.executable)
    done = subprocess.run([str(python), str(BENCHMARKS / "accuracy.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=110, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert any(line.startswith("form") and "ttft" in line and "cpu ms/req" in line for line in lines)
    for form in ("ollama", "openai"):
        assert any(line.split()[:3] == [form, "1", "spread"] for line in lines if line.strip())
        assert any(line.split()[:3] == [form, "8", "spread"] for line in lines if line.strip())
    assert any(line.startswith(("PASS", "MISS")) for line in lines)

    report = json.loads(out.read_text())
    assert {"settings", "machine", "results", "goals", "wall_s"} <= report.keys()
    assert report["settings"]["quick"] is True
    rows = [r for r in report["results"] if r["start"] == "spread"]
    assert {(r["form"], r["concurrency"]) for r in rows} == {(f, c) for f in ("ollama", "openai") for c in (1, 8)}
    for r in report["results"]:
        assert {"form", "concurrency", "start", "requests", "failed", "interval_ms", "cpu_ms_per_request",
                "lag_ms", "errors_ms", "server_schedule_ms"} <= r.keys()
        assert r["failed"] == 0 and r["problems"] == [], r["problems"]
        assert set(r["errors_ms"]) == set(METRICS)
        for m in METRICS:
            assert {"n", "median", "p99", "p99_abs", "max_abs"} <= r["errors_ms"][m].keys()
        # every sample was matched with the server's log
        assert r["errors_ms"]["ttft_ms"]["n"] == r["requests"]
        assert r["errors_ms"]["itl_ms"]["n"] == r["requests"] * (report["settings"]["chunks"] - 1)
        assert r["cpu_ms_per_request"] > 0
    assert {g["status"] for g in report["goals"]} <= {"PASS", "MISS", "NOT RUN"}


async def _stream(port: int, path: str, body: dict) -> tuple[int, bytes]:
    async with httpx.AsyncClient(timeout=10) as client:
        async with client.stream("POST", f"http://127.0.0.1:{port}{path}", json=body) as response:
            return response.status_code, await response.aread()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_ground_truth_server_keeps_its_schedule(tmp_path: Path, loop: str) -> None:
    log = tmp_path / "server.jsonl"
    plan = "d=3 e=4 n=10 i=5"

    async def run(port: int) -> list[tuple[int, bytes]]:
        answers = []
        for wave in range(3):  # low concurrency: 1, then 2 and 4 at once
            width = (1, 2, 4)[wave]
            answers += await asyncio.gather(*(
                _stream(port, "/api/generate", {"model": "m", "prompt": f"id=w{wave}-{k} {plan}", "stream": True})
                if k % 2 == 0 else
                _stream(port, "/v1/chat/completions",
                        {"model": "m", "messages": [{"role": "user", "content": f"id=w{wave}-{k} {plan}"}]})
                for k in range(width)))
        answers.append(await _stream(port, "/api/generate", {"model": "m", "prompt": "d=99999"}))
        answers.append(await _stream(port, "/api/nothing", {}))
        return answers

    with gt.serve(log, 60, "--loop", loop) as port:
        answers = asyncio.run(run(port))
        for _ in range(50):
            records = gt.read_log(log)
            if len(records) == 7:
                break
            time.sleep(0.05)

    *streams, bad_plan, unknown = answers
    assert bad_plan[0] == 400 and unknown[0] == 404
    for status, body in streams:
        assert status == 200
        if body.startswith(b"data:"):  # OpenAI SSE: role event, 10 content events, finish, usage, [DONE]
            events = [e for e in body.split(b"\n\n") if e]
            assert len(events) == 14 and events[-1] == b"data: [DONE]"
        else:  # Ollama NDJSON: 10 chunks, then the final one
            chunks = [json.loads(line) for line in body.splitlines()]
            assert len(chunks) == 11 and chunks[-1]["done"] and chunks[-1]["eval_count"] == 10

    assert len(records) == 7
    errors = []
    for record in records:
        assert len(record["content_ns"]) == record["n"] == 10
        times = [record["headers_ns"], record["first_body_ns"], *record["content_ns"], record["final_ns"]]
        assert times == sorted(times)
        assert record["last_ns"] == record["final_ns"]
        errors += gt.schedule_errors(record)
    errors = np.asarray(errors)
    assert errors.min() > -0.5, "a send went out before its planned time"
    assert np.percentile(errors, 99) < 20.0, f"schedule error p99 {np.percentile(errors, 99):.2f} ms"


@pytest.mark.timeout(300)
def test_product_path_quick_runs_the_real_cli_and_writes_its_report(tmp_path: Path) -> None:
    out = tmp_path / "product_path.json"
    python = VENV_PYTHON if VENV_PYTHON.exists() else Path(sys.executable)
    done = subprocess.run([str(python), str(BENCHMARKS / "product_path.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=290, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert any(line.startswith("client") and "ttft (distr.)" in line and "cpu ms/req" in line for line in lines)
    assert sum(line.startswith("side by side") for line in lines) == 2  # one table per server mode
    assert any(line.startswith(("PASS", "MISS")) for line in lines)

    report = json.loads(out.read_text())
    assert report["settings"]["quick"] is True
    rows = report["results"]
    assert [(r["client"], r["mode"], r["concurrency"]) for r in rows] == [
        ("latencylab", mode, c) for mode in ("reuse", "new") for c in (1, 4)]
    for r in rows:
        # a few requests cost less CPU than the start-up varies by: then no CPU figure, and a note says why
        noisy = r["cpu_ms_per_request"] is None and r["note"].startswith("cpu: start-up noise")
        assert r["failed"] == 0 and (r["note"] == "" or noisy), r["note"]
        assert r["server_records"] == r["requests"] + r["warmup"]
        assert r["matched_ms"]["ttft_ms"]["n"] == r["requests"]  # every sample matched with its own request
        split = r["matched_ms"]
        assert split["request_side_ms"]["n"] == split["response_side_ms"]["n"] == r["requests"]
        # the request side starts at the client's t0 and ends at the server's read, which comes after it
        assert split["request_side_ms"]["median"] > 0
        assert r["ttft_error_ms"]["median"] is not None and r["start_lag_ms"]["median"] is not None
        assert r["cpu_ms_per_request"] is not None or noisy
        assert r["connect_ms"]["reused_share"] is not None
    assert {g["status"] for g in report["goals"]} <= {"PASS", "MISS", "NOT RUN"}


@pytest.mark.timeout(120)
def test_connect_timeline_splits_the_error_where_the_server_read_the_request() -> None:
    done = subprocess.run([sys.executable, str(BENCHMARKS / "connect_timeline.py"), "--concurrency", "2",
                           "--requests", "8", "--chunks", "2"], capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "6 matched" in done.stdout  # every request but each worker's first
    for step in ("server accepted", "server read", "TTFT error", "request side", "response side", "accept lag"):
        assert step in done.stdout, done.stdout
