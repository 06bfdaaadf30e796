"""A run has one writer, from creation to its last sample: a killed CLI leaves nobody writing, a resume
of a run still being written is refused, a stop keeps the request in flight, a resume restores preloads."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from doubles.ollama import OllamaDouble
from latencylab.collect import runner
from latencylab.core import paths
from latencylab.plan.study import parse_study
from latencylab.runs import store

CLI = [sys.executable, "-m", "latencylab.cli"]


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, paths.HOME_ENV: str(home)}


def _study_file(tmp_path: Path, server: OllamaDouble, requests: int) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(json.dumps({"name": "life", "backend": "ollama", "base_url": server.base_url,
                                "workload": {"requests": requests, "max_tokens": 5},
                                "scenarios": [{"name": "a", "model": "tiny"}]}))
    return path


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _wait_for(condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_kill_9_of_the_cli_leaves_no_writer_behind(tmp_path):
    with OllamaDouble(models={"tiny": 1_000_000}, token_delay_s=0.02) as server:
        cli = subprocess.Popen([*CLI, "run", str(_study_file(tmp_path, server, 100)), "--run-id", "k", "--no-report"],
                               env=_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        samples = tmp_path / "data" / "runs" / "k" / "samples.jsonl"
        _wait_for(lambda: _lines(samples) >= 3)
        cli.send_signal(signal.SIGKILL)
        cli.wait(timeout=30)
        at_kill = _lines(samples)
        time.sleep(1.5)  # the old notebook kernel went on for seconds after its owner died
        assert _lines(samples) == at_kill, "something kept writing the run after the CLI was killed"
        server.token_delay_s = 0.0
        resumed = subprocess.run([*CLI, "run", "--resume", "k", "--no-report"], env=_env(tmp_path),
                                 capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    seqs = [json.loads(line)["seq"] for line in samples.read_text().splitlines()]
    assert sorted(seqs) == list(range(100))  # each request exactly once


def test_resume_of_a_run_still_being_written_exits_2_and_writes_nothing(tmp_path, workdir):
    spec = parse_study({"name": "busy", "backend": "ollama", "base_url": "http://127.0.0.1:9",
                        "scenarios": [{"name": "a", "model": "tiny"}]})
    run_id = runner.create_run(spec, run_id="busy")
    writer = store.RunWriter(run_id)  # this test process is the writer now
    folder = paths.run_dir(run_id)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    result = subprocess.run([*CLI, "run", "--resume", run_id], env=_env(workdir), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"run busy is being written by process {os.getpid()}" in result.stderr
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    writer.close("interrupted")


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_stop_keeps_the_request_in_flight_and_a_resume_sends_it_again(workdir, background_job, stop):
    tmp_path = workdir
    with OllamaDouble(models={"tiny": 1_000_000}, token_delay_s=1.0) as server:
        cli = background_job([*CLI, "run", str(_study_file(tmp_path, server, 3)), "--run-id", "cut", "--no-report"],
                             env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_for(lambda: server.bodies("/api/generate"))
        time.sleep(1.5)  # headers and the first token are in; the rest of the answer is not
        cli.send_signal(stop)
        _, stderr = cli.communicate(timeout=60)
        assert cli.returncode == 130 and "latencylab: interrupted; samples" in stderr, stderr[-2000:]
        samples = tmp_path / "data" / "runs" / "cut" / "samples.jsonl"
        [cut] = [json.loads(line) for line in samples.read_text().splitlines()]
        assert cut["seq"] == 0 and not cut["ok"] and cut["error_kind"] == "interrupted"
        assert 0 < cut["ttfb_ms"] <= cut["e2e_ms"] and cut["started_at"] > 0  # the times it reached
        meta = json.loads((samples.parent / "run.json").read_text())
        assert meta["status"] == "interrupted"
        server.token_delay_s = 0.0
        resumed = subprocess.run([*CLI, "run", "--resume", "cut", "--no-report"], env=_env(tmp_path),
                                 capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert [json.loads(line)["seq"] for line in samples.read_text().splitlines()] == [0, 0, 1, 2]
    frame, meta = store.load_run("cut"), store.load_meta("cut")
    assert list(frame["seq"]) == [0, 1, 2] and frame["ok"].all()  # the re-sent request replaced it
    assert meta.status == "complete" and [(r.samples_kept, r.next_seq) for r in meta.resumes] == [(0, 0)]
    assert meta.gc_collections == {"quiet": 1, "in_flight": 0}  # after its one level, none in flight


def test_a_resume_after_a_server_restart_preloads_again(workdir, interrupt_after):
    with OllamaDouble(models={"tiny": 1_000_000}) as server:
        spec = parse_study({"name": "pre", "backend": "ollama", "base_url": server.base_url,
                            "workload": {"requests": 4, "max_tokens": 3},
                            "scenarios": [{"name": "a", "model": "tiny", "preload": True, "keep_alive": "10m"}]})
        with pytest.raises(KeyboardInterrupt):
            runner.run_study(spec, run_id="pre", on_sample=interrupt_after(2), progress=False)
        with server.cond:
            server.loaded.clear()  # the server restarted: nothing is resident any more
        runner.run("pre", progress=False)
        preloads = [b for b in server.bodies("/api/generate") if b["prompt"] == ""]
    frame = store.load_run("pre").sort_values("seq")
    assert len(preloads) == 2 and all(b["keep_alive"] == "10m" for b in preloads)
    assert list(frame["state"]) == ["warm"] * 4  # not a cold request among the "optimised" ones
    resume = store.load_meta("pre").resumes[0]
    assert (resume.samples_kept, resume.next_seq) == (2, 2)


@pytest.mark.engine
def test_a_resume_on_the_embedded_engine_preloads_in_the_new_engine(workdir, models, interrupt_after):
    spec = parse_study({"name": "emb", "workload": {"requests": 4, "max_tokens": 4},
                        "scenarios": [{"name": "q4", "model": "smollm2-135m-q4_1", "preload": True, "keep_alive": -1}]})
    with pytest.raises(KeyboardInterrupt):
        runner.run_study(spec, run_id="emb", on_sample=interrupt_after(2), progress=False)
    runner.run("emb", progress=False)  # a new llama-server: nothing resident until the preload
    frame = store.load_run("emb").sort_values("seq")
    assert list(frame["state"]) == ["warm"] * 4 and frame["resident_before"].all()
    [resume] = store.load_meta("emb").resumes
    assert resume.engine_restarted and (resume.samples_kept, resume.next_seq) == (2, 2)
